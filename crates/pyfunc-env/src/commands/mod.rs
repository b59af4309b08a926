//! One module per subcommand.

pub mod cache;
pub mod check;
pub mod create;
pub mod deps;
pub mod inspect;
pub mod pack;
pub mod run;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use anyhow::Context;
use env_spec::ModelDir;

use crate::printer::Printer;
use crate::settings::Settings;

/// What each model URI opened by this process resolved to (for `--json` outputs).
static RESOLVED: Mutex<Vec<env_source::Resolved>> = Mutex::new(Vec::new());

/// What the model opened from `dir` was resolved from, if it came from a URI.
pub fn resolution_of(dir: &Path) -> Option<env_source::Resolved> {
    RESOLVED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .find(|r| r.dir == dir || dir.starts_with(&r.dir))
        .cloned()
}

/// Resolves a model argument (a directory or a model URI, downloaded into `models-v1/` if
/// needed) to a local directory.
pub fn resolve_model(
    model: &OsStr,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<PathBuf> {
    // A non-UTF-8 argument can only be a local path.
    let Some(text) = model.to_str() else {
        return Ok(PathBuf::from(model));
    };
    if matches!(
        env_source::ModelUri::parse(text),
        Ok(env_source::ModelUri::Local(_))
    ) {
        return Ok(PathBuf::from(model));
    }
    let source_settings =
        env_source::SourceSettings::from_env(|name| std::env::var(name).ok(), settings.offline);
    let cache = settings.cache();
    cache.init()?;
    let shown = env_spec::redact::redact_url(text);
    let progress = std::sync::Arc::new(crate::progress::ProgressReporter::new(
        settings,
        printer,
        &format!("Getting `{shown}`"),
    ));
    let resolved = env_source::resolve_blocking(text, &source_settings, &cache, progress.clone());
    env_solve::Reporter::on_finish(progress.as_ref());
    let resolved = resolved.with_context(|| format!("Failed to get the model `{shown}`"))?;
    for warning in &resolved.warnings {
        printer.warn(warning);
    }
    if !resolved.cached {
        let version = resolved
            .version
            .as_ref()
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default();
        let from = resolved
            .source
            .as_deref()
            .filter(|source| *source != resolved.uri)
            .map(|source| format!(" from `{source}`"))
            .unwrap_or_default();
        printer.info(format!("Downloaded `{}`{version}{from}", resolved.uri));
    }
    let dir = resolved.dir.clone();
    RESOLVED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(resolved);
    Ok(dir)
}

/// Opens a model (a directory or a model URI), saying which one failed.
pub fn open_model(
    model: impl AsRef<OsStr>,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ModelDir> {
    let path = resolve_model(model.as_ref(), settings, printer)?;
    let path = path.as_path();
    let model = ModelDir::open(path)
        .with_context(|| format!("Failed to read the model at `{}`", path.display()))?;
    if model.artifacts_subdir {
        printer.info(format!(
            "Using the model in `{}` (an MLflow 3 logged-model directory keeps it under `artifacts/`)",
            printer.cyan(model.root().display())
        ));
    }
    Ok(model)
}

/// Prints warnings about the model's files.
pub fn print_warnings(printer: Printer, warnings: &[env_spec::Warning]) {
    for warning in warnings {
        printer.warn(warning);
    }
}

/// Writes `text` to `path` atomically: a temporary file in the same directory, then a rename,
/// so a reader never sees half a file.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("Failed to create a temporary file in `{}`", dir.display()))?;
    std::io::Write::write_all(&mut temp, text.as_bytes())
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    Ok(())
}
