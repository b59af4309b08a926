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

/// The diagnostic view of an error in the chain, for the error types that carry one.
fn as_diagnostic<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a dyn Diagnostic> {
    if let Some(error) = error.downcast_ref::<env_spec::SpecError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_solve::SolveError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_cache::CacheError>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<env_run::RunError>() {
        return Some(error);
    }
    None
}

/// Whether the error is the user's input (exit 1) rather than something broken (exit 2).
#[must_use]
pub fn exit_status(error: &anyhow::Error) -> ExitStatus {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<env_spec::SpecError>() {
            return match error {
                env_spec::SpecError::Read { .. } => ExitStatus::Error,
                _ => ExitStatus::Failure,
            };
        }
        if let Some(error) = cause.downcast_ref::<env_solve::SolveError>() {
            return if error.is_user_error() {
                ExitStatus::Failure
            } else {
                ExitStatus::Error
            };
        }
        if let Some(env_run::RunError::Spawn { source, .. }) =
            cause.downcast_ref::<env_run::RunError>()
        {
            // What a shell answers for a command it cannot find or run.
            return match source.kind() {
                std::io::ErrorKind::NotFound => ExitStatus::External(127),
                _ => ExitStatus::External(126),
            };
        }
        if cause.downcast_ref::<UserError>().is_some() {
            return ExitStatus::Failure;
        }
    }
    ExitStatus::Error
}

/// An error caused by how the command was called (exit code 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// What is wrong.
    pub message: String,
}

impl UserError {
    /// A new error.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Renders an error report.
#[must_use]
pub fn render(printer: &Printer, error: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut hints: Vec<String> = Vec::new();
    let mut previous = String::new();
    for (index, cause) in error.chain().enumerate() {
        let message = indent_continuation(cause.to_string().trim_end());
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
                hints.push(help.to_string());
            }
        }
    }
    for hint in hints {
        let _ = writeln!(out, "\n{}: {hint}", printer.cyan("hint"));
    }
    out
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

/// The source line a diagnostic points at, rustc style.
fn snippet(printer: &Printer, diagnostic: &dyn Diagnostic, out: &mut String) {
    let (Some(source), Some(mut labels)) = (diagnostic.source_code(), diagnostic.labels()) else {
        return;
    };
    let Some(label) = labels.next() else {
        return;
    };
    // With unlimited context lines, miette hands back the whole document.
    let Ok(whole) = source.read_span(&(0, 0).into(), usize::MAX, usize::MAX) else {
        return;
    };
    let text = String::from_utf8_lossy(whole.data());
    let name = whole.name().unwrap_or("<input>").to_string();
    let offset = label.offset().min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let line_number = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    let underline = text[offset..(offset + label.len()).min(line_end).max(offset)]
        .chars()
        .count()
        .max(1);
    let width = line_number.to_string().len();
    let pad = " ".repeat(width);
    let marker = format!("{}{}", " ".repeat(column - 1), "^".repeat(underline));
    let _ = writeln!(
        out,
        "  {pad}{} {name}:{line_number}:{column}",
        printer.cyan("-->")
    );
    let _ = writeln!(out, "  {pad} {}", printer.cyan("|"));
    let _ = writeln!(
        out,
        "  {} {} {line_text}",
        printer.cyan(line_number),
        printer.cyan("|")
    );
    let label_text = label.label().unwrap_or_default();
    let _ = writeln!(
        out,
        "  {pad} {} {} {label_text}",
        printer.cyan("|"),
        printer.red(marker)
    );
}
