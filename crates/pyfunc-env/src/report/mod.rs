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

/// The library error types the report knows, each tried in turn on one cause of the chain:
/// `$found` runs with the first type that matches.
macro_rules! first_typed {
    ($cause:expr, |$error:ident| $found:expr, [$($ty:ty),+ $(,)?]) => {
        $(if let Some($error) = $cause.downcast_ref::<$ty>() {
            return Some($found);
        })+
    };
}

/// The diagnostic view of an error in the chain, for the error types that carry one.
fn as_diagnostic<'a>(cause: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic> {
    first_typed! { cause, |error| error as &dyn Diagnostic, [
        env_spec::SpecError, env_build::SolveError, env_build::EnvError, env_build::EnsureError,
        env_cache::CacheError, env_run::RunError, env_run::CheckError, env_pack::PackError,
        env_image::ImageError, env_source::SourceError, env_source::OpenError,
        env_remote::RemoteError, env_build::verify::VerifyError, env_cache::units::UnitError,
        env_spec::InvalidKey,
    ] }
    None
}

/// The class of one cause, when its type has one: its library's `is_user_error()` (exit 1 for
/// the user's input, 2 for something broken), or a shell's code for a command it cannot run.
fn class_of(cause: &(dyn std::error::Error + 'static)) -> Option<ExitStatus> {
    let run_error = match cause.downcast_ref::<env_run::CheckError>() {
        // Transparent: the chain goes on below the run error, which would not be seen.
        Some(env_run::CheckError::Inspect(error)) => Some(error),
        _ => cause.downcast_ref::<env_run::RunError>(),
    };
    if let Some(error) = run_error {
        // What a shell answers for a command it cannot find or run; other run errors are
        // classified by a cause further down, or are something broken.
        return error.exit_code().map(ExitStatus::External);
    }
    first_typed! { cause, |error| classify(error.is_user_error()), [
        env_spec::SpecError, env_build::EnvError, env_build::EnsureError, env_build::SolveError,
        UserError, env_run::local::LocalError, env_run::input::InputError, env_run::CheckError,
        env_source::SourceError, env_pack::PackError, env_image::ImageError,
        env_remote::RemoteError, env_cache::CacheError, env_build::verify::VerifyError,
        env_cache::units::UnitError, env_spec::InvalidKey,
    ] }
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
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// What is wrong.
    pub message: String,
    /// What to do instead, printed as the report's `hint:`.
    pub hint: Option<String>,
}

impl UserError {
    /// Always the user's (exit 1), as [`class_of`] asks of every error type.
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
