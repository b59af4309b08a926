//! Helpers shared by the fuzz targets in `fuzz_targets/`.
//!
//! Each target turns arbitrary bytes into the text of one model file and drives the same
//! `env-spec` entry points the CLI uses. On top of parsing, every result is rendered the way the
//! CLI renders it (error messages with their cause chain, diagnostic labels read back from their
//! source, warnings), because a span that ends inside a character panics there, not in the
//! parser.

use std::path::Path;
use std::sync::OnceLock;

use env_spec::SpecError;
use env_spec::source::SourceFile;
use miette::Diagnostic;

/// The input as text, or `None` when it is not UTF-8: `ModelFs` refuses such files before any
/// parser sees them (`SpecError::NotUtf8`), so they exercise nothing.
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// A file of the model directory with `name` and `text`, as `ModelFs::read` hands it over (BOM
/// removed).
pub fn source(name: &str, text: &str) -> SourceFile {
    SourceFile {
        name: name.to_string(),
        text: text.strip_prefix('\u{feff}').unwrap_or(text).to_string(),
    }
}

/// Renders an error as the CLI does: its message and causes, and each label read back from the
/// diagnostic's source code.
pub fn render_error(error: &SpecError) {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(current) = cause {
        std::hint::black_box(current.to_string());
        cause = current.source();
    }
    std::hint::black_box(format!("{error:?}"));
    std::hint::black_box(error.mlflow_equivalent());
    if let Some(help) = error.help() {
        std::hint::black_box(help.to_string());
    }
    let Some(source) = error.source_code() else {
        return;
    };
    let Ok(whole) = source.read_span(&(0, 0).into(), usize::MAX, usize::MAX) else {
        return;
    };
    let text = String::from_utf8_lossy(whole.data()).into_owned();
    if let Some(labels) = error.labels() {
        for label in labels {
            // The CLI clamps labels to the text and to char boundaries; miette itself must not
            // panic on them either.
            std::hint::black_box(source.read_span(label.inner(), 1, 1).is_ok());
            let start = label.offset().min(text.len());
            let end = (label.offset() + label.len()).min(text.len());
            std::hint::black_box(text.get(start..end));
        }
    }
}

/// Renders warnings as the CLI does.
pub fn render_warnings(warnings: &[env_spec::Warning]) {
    for warning in warnings {
        std::hint::black_box(warning.to_string());
    }
}

/// Renders a result: the error, or nothing for a value (callers look at values themselves).
pub fn check<T>(result: &Result<T, SpecError>) {
    if let Err(error) = result {
        render_error(error);
    }
}

/// A model directory for the requirements and model targets, made once per process in the
/// system temp dir. A static is never dropped, so each run leaves its (small) directory behind:
/// `rm -rf /tmp/env-spec-fuzz-*` after fuzzing.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("env-spec-fuzz-")
            .tempdir()
            .expect("the system temp dir is writable")
    })
    .path()
}
