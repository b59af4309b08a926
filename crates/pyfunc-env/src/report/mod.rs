//! Error reports: `error:` with one `Caused by:` line per context layer, the offending source
//! line when the error knows it, and a `hint:`.
//!
//! ```text
//! error: Failed to read the environment of `model/`
//!   Caused by: Invalid YAML in `MLmodel` at line 16, column 1: could not find expected ':'
//!   --> MLmodel:16:1
//!    |
//! 16 | <<<<<<< HEAD
//!    | ^ here
//! hint: `MLmodel` contains git merge-conflict markers (`<<<<<<<`, `=======`, `>>>>>>>`); resolve the conflict
//! ```

use std::fmt::Write as _;

use miette::Diagnostic;

use crate::printer::Printer;

mod snippet;

use snippet::snippet;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0.
    Success,
    /// 1: bad input (bad spec, no solution, missing model, a mismatch under `--strict`).
    Failure,
    /// 2: something broke (I/O, network, a bug).
    Error,
    /// The exit code of the process we ran.
    External(u8),
}

impl From<ExitStatus> for std::process::ExitCode {
    fn from(status: ExitStatus) -> Self {
        match status {
            ExitStatus::Success => Self::SUCCESS,
            ExitStatus::Failure => Self::from(1),
            ExitStatus::Error => Self::from(2),
            ExitStatus::External(code) => Self::from(code),
        }
    }
}

/// What the report knows of one cause: its class (`None`: a cause further down decides) and its
/// diagnostic view (source snippet, `hint:`).
type Known<'a> = (Option<ExitStatus>, Option<&'a dyn Diagnostic>);

/// Tries each listed type on `$cause`, returning the [`Known`] of the first that matches, by
/// the kind of its list: `class_and_view` (its library's `is_user_error()` and its
/// `miette::Diagnostic`), `class` (`is_user_error()` only) or `view` (classified by its causes).
macro_rules! known_types {
    ($cause:ident, $($kind:ident: [$($ty:ty),+ $(,)?]),+ $(,)?) => {
        $($(if let Some(error) = $cause.downcast_ref::<$ty>() {
            return Some(known_types!(@$kind error));
        })+)+
    };
    (@class_and_view $error:ident) => {
        (Some(classify($error.is_user_error())), Some($error as &dyn Diagnostic))
    };
    (@class $error:ident) => {
        (Some(classify($error.is_user_error())), None)
    };
    (@view $error:ident) => {
        (None, Some($error as &dyn Diagnostic))
    };
}

/// The one list of the library error types the report knows (it was two before issue 24, for
/// the class and for the view, kept in step by hand).
fn known<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<Known<'a>> {
    let run_error = match cause.downcast_ref::<env_run::CheckError>() {
        // Transparent: the chain goes on below the run error, which would not be seen.
        Some(env_run::CheckError::Inspect(error)) => Some(error),
        _ => cause.downcast_ref::<env_run::RunError>(),
    };
    if let Some(error) = run_error {
        // What a shell answers for a command it cannot find or run; other run errors are
        // classified by a cause further down, or are something broken.
        return Some((error.exit_code().map(ExitStatus::External), Some(error)));
    }
    known_types! { cause,
        class_and_view: [
            env_spec::SpecError, env_build::SolveError, env_build::EnvError,
            env_build::EnsureError, env_cache::CacheError, env_run::CheckError,
            env_pack::PackError, env_image::ImageError, env_source::SourceError,
            env_remote::RemoteError, env_build::verify::VerifyError, env_cache::units::UnitError,
            env_spec::InvalidKey, UserError,
        ],
        class: [env_run::local::LocalError, env_run::input::InputError],
        view: [env_source::OpenError],
    }
    None
}

/// The diagnostic view of an error in the chain, for the error types that carry one.
fn as_diagnostic<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic> {
    known(cause)?.1
}

/// The class of one cause, when its type has one: its library's `is_user_error()` (exit 1 for
/// the user's input, 2 for something broken), or a shell's code for a command it cannot run.
fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ExitStatus> {
    known(cause)?.0
}

/// Whether the error is the user's input (exit 1) rather than something broken (exit 2).
#[must_use]
pub fn exit_status(error: &anyhow::Error) -> ExitStatus {
    exit_status_of(&**error)
}

/// An error and its causes, outermost first (what `anyhow::Error::chain` walks).
fn chain<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(error), |error| error.source())
}

/// [`exit_status`] of any error (a library's typed one, not yet an `anyhow::Error`): the class
/// of the outermost cause that has one, else something broken.
#[must_use]
pub fn exit_status_of(error: &(dyn std::error::Error + 'static)) -> ExitStatus {
    chain(error).find_map(class_of).unwrap_or(ExitStatus::Error)
}

/// Exit code 1 for the user's input, 2 for something broken.
fn classify(user_error: bool) -> ExitStatus {
    if user_error {
        ExitStatus::Failure
    } else {
        ExitStatus::Error
    }
}

/// An error caused by how the command was called (exit code 1).
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("{message}")]
pub struct UserError {
    /// What is wrong.
    pub message: String,
    /// What to do instead, printed as the report's `hint:`.
    #[help]
    pub hint: Option<String>,
}

impl UserError {
    /// Always the user's (exit 1), as [`known`] asks of every error type.
    #[expect(clippy::unused_self, reason = "the same call as the libraries' errors")]
    const fn is_user_error(&self) -> bool {
        true
    }

    /// A new error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a `hint:`.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Renders an error report.
#[must_use]
pub fn render(printer: Printer, error: &anyhow::Error) -> String {
    render_of(printer, &**error)
}

/// [`render`] of any error (a library's typed one, not yet an `anyhow::Error`).
#[must_use]
pub fn render_of(printer: Printer, error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut hints: Vec<String> = Vec::new();
    let mut previous = String::new();
    for (index, cause) in chain(error).enumerate() {
        let message = indent_continuation(&shorten_lines(cause.to_string().trim_end()));
        // A layer that only repeats its source adds nothing.
        if message == previous {
            continue;
        }
        if index == 0 {
            let _ = writeln!(out, "{}: {message}", printer.red("error"));
        } else {
            let _ = writeln!(out, "  {} {message}", printer.bold("Caused by:"));
        }
        previous = message;
        if let Some(diagnostic) = as_diagnostic(cause) {
            snippet(printer, diagnostic, &mut out);
            if let Some(help) = diagnostic.help() {
                hints.push(shorten_lines(&help.to_string()));
            }
        }
    }
    for hint in hints {
        let _ = writeln!(out, "\n{}: {hint}", printer.cyan("hint"));
    }
    out
}

/// [`render_of`] as a message to print or record: without its last newline, and with the
/// credentials in URLs masked ([`env_build::redact::redact`]), as every report leaves the process.
#[must_use]
pub fn render_redacted(printer: Printer, error: &(dyn std::error::Error + 'static)) -> String {
    env_build::redact::redact(render_of(printer, error).trim_end())
}

/// Longest message line we print: a message can quote a value from the model, and a hostile
/// file can hold a 10 MB line; the report must stay one screen.
pub const MAX_LINE_CHARS: usize = 400;

/// Cuts every line of `text` longer than [`MAX_LINE_CHARS`] characters, saying how much is left
/// out, and replaces control characters (a model file's ESC sequences must not reach the
/// terminal).
#[must_use]
pub fn shorten_lines(text: &str) -> String {
    if text
        .lines()
        .all(|line| line.len() <= MAX_LINE_CHARS && !line.chars().any(is_unsafe_control))
    {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len().min(64 * 1024));
    for (index, line) in text.lines().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let total = line.chars().count();
        out.extend(line.chars().take(MAX_LINE_CHARS).map(printable));
        if total > MAX_LINE_CHARS {
            let _ = write!(out, "… ({} more characters)", total - MAX_LINE_CHARS);
        }
    }
    out
}

/// A control character that would move the cursor or change the terminal (tabs are fine).
fn is_unsafe_control(c: char) -> bool {
    c.is_control() && c != '\t'
}

/// `c`, or `�` for a control character.
fn printable(c: char) -> char {
    if is_unsafe_control(c) { '\u{fffd}' } else { c }
}

/// Indents the lines after the first, so a multi-line cause stays under its `Caused by:`.
fn indent_continuation(message: &str) -> String {
    let mut lines = message.lines();
    let mut out = lines.next().unwrap_or_default().to_string();
    for line in lines {
        out.push_str("\n    ");
        out.push_str(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The types classified by hand or by their causes (one list since issue 24): a run error
    /// exits as a shell would, under a check error too (transparent: the chain skips the run
    /// error), and leaves an interpreter it could not inspect to what broke; an open error is
    /// its cause's class with its own view; a `UserError`'s hint is its diagnostic help.
    #[test]
    fn run_check_open_and_user_errors_keep_their_class_and_view() {
        let spawn = || env_run::RunError::Spawn {
            program: "x".into(),
            bindir: "/env/bin".into(),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        };
        assert_eq!(exit_status_of(&spawn()), ExitStatus::External(127));
        let check = env_run::CheckError::Inspect(spawn());
        assert_eq!(exit_status_of(&check), ExitStatus::External(127));
        assert!(as_diagnostic(&check).is_some());
        let inspect = env_run::RunError::Inspect {
            python: "/usr/bin/python3".into(),
            message: "broken".into(),
        };
        let check = env_run::CheckError::Inspect(inspect);
        assert_eq!(exit_status_of(&check), ExitStatus::Error);
        let check = env_run::CheckError::NoPython3;
        assert_eq!(exit_status_of(&check), ExitStatus::Failure);
        let open = env_source::OpenError::Get {
            shown: "models:/x".into(),
            source: env_source::SourceError::InvalidUri {
                uri: "models:/x".into(),
                form: "models:/NAME/VERSION",
            },
        };
        assert_eq!(exit_status_of(&open), ExitStatus::Failure);
        assert!(as_diagnostic(&open).is_some());
        let user = UserError::new("bad").with_hint("fix it");
        assert_eq!(exit_status_of(&user), ExitStatus::Failure);
        let help = as_diagnostic(&user).and_then(|d| d.help().map(|h| h.to_string()));
        assert_eq!(help.as_deref(), Some("fix it"));
    }
}
