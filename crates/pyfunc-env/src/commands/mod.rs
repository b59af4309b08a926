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
    // A directory, or a `file:` URI naming one (decoded: never the URI text as a path).
    if let Some(path) = env_source::ModelUri::local_path(text) {
        return Ok((path, None));
    }
    let shown = env_spec::redact::redact_url(text);
    let source_settings =
        env_source::SourceSettings::from_env(|name| std::env::var(name).ok(), settings.offline)
            .with_context(|| format!("Failed to get the model `{shown}`"))?;
    let cache = settings.cache();
    // Held while downloading, like every command that stages in `tmp/` holds it: `cache
    // prune` removes all of `tmp/` only when nobody holds it (issue 23).
    let _cache_lock = env_solve::hold_cache(&cache).await?;
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

/// A model opened from the command line. A downloaded model's lock is held as long as this
/// value (or the lock [`Opened::into_model`] returns) lives: `cache prune` keeps the model
/// meanwhile.
pub struct Opened {
    /// The model directory.
    pub model: ModelDir,
    /// What a model URI resolved to; `None` for a directory given as such.
    pub source: Option<env_source::Resolved>,
}

/// A downloaded model's shared lock (`None` for a local directory): hold it while the model
/// is used, and pass its file on to a process that uses it after us.
pub type ModelLock = Option<std::sync::Arc<env_cache::LockedFile>>;

impl Opened {
    /// The model, and its lock to hold while it is used.
    #[must_use]
    pub fn into_model(self) -> (ModelDir, ModelLock) {
        (self.model, self.source.and_then(|source| source.lock))
    }
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
    // The umask's mode like any tool's output, not tempfile's 0600 (issue 23).
    let mut temp = env_cache::temp_builder(".tmp-", false)
        .tempfile_in(dir)
        .with_context(|| format!("Failed to create a temporary file in `{}`", dir.display()))?;
    std::io::Write::write_all(&mut temp, text.as_bytes())
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("Failed to write `{}`", path.display()))?;
    Ok(())
}
