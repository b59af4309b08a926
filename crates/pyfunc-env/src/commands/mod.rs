//! One module per subcommand.

pub mod cache;
pub mod check;
pub mod create;
pub mod deps;
pub mod inspect;
pub mod pack;
pub mod run;

use std::path::Path;

use anyhow::Context;
use env_spec::ModelDir;

use crate::printer::Printer;

/// Opens a model directory, saying which one failed.
pub fn open_model(path: &Path, printer: Printer) -> anyhow::Result<ModelDir> {
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
