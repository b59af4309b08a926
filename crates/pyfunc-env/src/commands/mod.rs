//! One module per subcommand.

pub mod cache;
pub mod check;
pub mod create;
pub mod deps;
pub mod image;
pub mod inspect;
pub mod pack;
pub mod run;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use env_spec::ModelDir;

use crate::printer::Printer;
use crate::settings::Settings;

/// Resolves a model argument (a directory or a model URI, downloaded into `models-v1/` if
/// needed) to a local directory, and what a URI resolved to (for `--json` outputs).
pub async fn resolve_model(
    model: &OsStr,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<(PathBuf, Option<env_source::Resolved>)> {
    // A non-UTF-8 argument can only be a local path.
    let Some(text) = model.to_str() else {
        return Ok((PathBuf::from(model), None));
    };
    if matches!(
        env_source::ModelUri::parse(text),
        Ok(env_source::ModelUri::Local(_))
    ) {
        return Ok((PathBuf::from(model), None));
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
    let resolved = env_source::resolve(text, &source_settings, &cache, progress.clone()).await;
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
    Ok((resolved.dir.clone(), Some(resolved)))
}

/// A model opened from the command line.
pub struct Opened {
    /// The model directory.
    pub model: ModelDir,
    /// What a model URI resolved to; `None` for a directory given as such.
    pub source: Option<env_source::Resolved>,
}

/// Opens a model (a directory or a model URI), saying which one failed.
pub async fn open_model(
    model: impl AsRef<OsStr>,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<Opened> {
    let (path, source) = resolve_model(model.as_ref(), settings, printer).await?;
    let path = path.as_path();
    let model = ModelDir::open(path)
        .with_context(|| format!("Failed to read the model at `{}`", path.display()))?;
    if model.artifacts_subdir {
        printer.info(format!(
            "Using the model in `{}` (an MLflow 3 logged-model directory keeps it under `artifacts/`)",
            printer.cyan(model.root().display())
        ));
    }
    Ok(Opened { model, source })
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
