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

impl ExitStatus {
    /// The status of a run of many (a multi-model `create`): an error if any broke, else a
    /// failure if any failed, else success.
    #[must_use]
    pub fn worst(statuses: impl IntoIterator<Item = Self>) -> Self {
        statuses
            .into_iter()
            .fold(Self::Success, |worst, status| match (worst, status) {
                (Self::Error, _) | (_, Self::Error) => Self::Error,
                (Self::Failure, _) | (_, Self::Failure) => Self::Failure,
                _ => Self::Success,
            })
    }
}

/// The diagnostic view of an error in the chain, for the error types that carry one.
fn as_diagnostic<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic> {
    if let Some(error) = error.downcast_ref::<env_spec::SpecError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_solve::SolveError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_solve::EnvError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_solve::EnsureError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_cache::CacheError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_run::RunError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_pack::PackError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_image::ImageError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_source::SourceError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_source::OpenError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_remote::RemoteError>() {
        return Some(error);
    }
    None
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

/// [`exit_status`] of any error (a library's typed one, not yet an `anyhow::Error`).
#[must_use]
pub fn exit_status_of(error: &(dyn std::error::Error + 'static)) -> ExitStatus {
    for cause in chain(error) {
        if let Some(error) = cause.downcast_ref::<env_spec::SpecError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_solve::EnvError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_solve::EnsureError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_solve::SolveError>() {
            return classify(error.is_user_error());
        }
        if let Some(code) = cause
            .downcast_ref::<env_run::RunError>()
            .and_then(env_run::RunError::exit_code)
        {
            // What a shell answers for a command it cannot find or run.
            return ExitStatus::External(code);
        }
        if cause.downcast_ref::<UserError>().is_some() {
            return ExitStatus::Failure;
        }
        if let Some(error) = cause.downcast_ref::<env_run::local::LocalError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_run::input::InputError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_source::SourceError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_pack::PackError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_image::ImageError>() {
            return classify(error.is_user_error());
        }
        if let Some(error) = cause.downcast_ref::<env_remote::RemoteError>() {
            return if error.is_user_error() {
                ExitStatus::Failure
            } else {
                ExitStatus::Error
            };
        }
    }
    ExitStatus::Error
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
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// What is wrong.
    pub message: String,
    /// What to do instead, printed as the report's `hint:`.
    pub hint: Option<String>,
}

impl UserError {
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
        if let Some(hint) = cause
            .downcast_ref::<UserError>()
            .and_then(|error| error.hint.as_ref())
        {
            hints.push(shorten_lines(hint));
        }
    }
    for hint in hints {
        let _ = writeln!(out, "\n{}: {hint}", printer.cyan("hint"));
    }
    out
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
