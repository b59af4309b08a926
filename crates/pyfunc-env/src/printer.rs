//! All of the CLI's own output goes through [`Printer`]: messages to stderr, data to stdout.
//!
//! Messages must read correctly without colour; colour only adds emphasis (green success, red
//! errors, yellow warnings, cyan hints and paths).

use std::fmt::Display;
use std::io::Write;

use anstyle::{AnsiColor, Style};

/// How much the CLI says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-qq`: nothing but data on stdout (and errors).
    Silent,
    /// `-q`: no progress or informational messages, warnings still shown.
    Quiet,
    /// The default.
    Normal,
    /// `-v` and more.
    Verbose,
}

/// Writes the CLI's messages.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    verbosity: Verbosity,
    color: bool,
}

impl Printer {
    /// A printer.
    #[must_use]
    pub fn new(verbosity: Verbosity, color: bool) -> Self {
        Self { verbosity, color }
    }

    /// The verbosity.
    #[must_use]
    pub fn verbosity(self) -> Verbosity {
        self.verbosity
    }

    fn paint(self, style: Style, text: &str) -> String {
        if self.color {
            format!("{}{text}{}", style.render(), style.render_reset())
        } else {
            text.to_string()
        }
    }

    /// Whether colours are on.
    #[must_use]
    pub fn color(self) -> bool {
        self.color
    }

    /// Text in the path/hint colour.
    #[must_use]
    pub fn cyan(self, text: impl Display) -> String {
        self.paint(AnsiColor::Cyan.on_default(), &text.to_string())
    }

    /// Bold text.
    #[must_use]
    pub fn bold(self, text: impl Display) -> String {
        self.paint(Style::new().bold(), &text.to_string())
    }

    /// Dimmed text.
    #[must_use]
    pub fn dim(self, text: impl Display) -> String {
        self.paint(Style::new().dimmed(), &text.to_string())
    }

    /// Text in the success colour.
    #[must_use]
    pub fn green(self, text: impl Display) -> String {
        self.paint(AnsiColor::Green.on_default().bold(), &text.to_string())
    }

    /// Text in the error colour.
    #[must_use]
    pub fn red(self, text: impl Display) -> String {
        self.paint(AnsiColor::Red.on_default().bold(), &text.to_string())
    }

    /// Text in the warning colour.
    #[must_use]
    pub fn yellow(self, text: impl Display) -> String {
        self.paint(AnsiColor::Yellow.on_default().bold(), &text.to_string())
    }

    #[expect(
        clippy::unused_self,
        reason = "a method like its callers, for when output gets a destination"
    )]
    fn line(self, text: &str) {
        let mut stderr = std::io::stderr().lock();
        // A closed stderr is not worth failing over.
        let _ = writeln!(stderr, "{text}");
    }

    /// An informational message (hidden by `-q`).
    pub fn info(self, text: impl Display) {
        if self.verbosity >= Verbosity::Normal {
            self.line(&text.to_string());
        }
    }

    /// A warning the user can act on (hidden by `-qq`).
    pub fn warn(self, text: impl Display) {
        if self.verbosity >= Verbosity::Quiet {
            self.line(&format!("{}: {text}", self.yellow("warning")));
        }
    }

    /// An error (always shown).
    pub fn error(self, text: impl Display) {
        self.line(&text.to_string());
    }

    /// Data for stdout (a method, though it needs no state: all output goes through the
    /// printer, data too).
    pub fn data(self, text: impl Display) -> std::io::Result<()> {
        let mut stdout = std::io::stdout().lock();
        write!(stdout, "{text}")?;
        stdout.flush()
    }
}
