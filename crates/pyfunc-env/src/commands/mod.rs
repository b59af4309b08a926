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

use env_source::OpenNotice;

use crate::printer::Printer;
use crate::settings::Settings;

/// Opens a model (a directory or a model URI, downloaded into `models-v1/` if needed) with
/// [`env_source::open_model`], and shows what that did. A downloaded model's lock is held as
/// long as the result lives (into `ensure`, which keeps it in `Ensured`).
pub async fn open_model(
    model: impl AsRef<OsStr>,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<env_source::OpenedModel> {
    Ok(open_typed(model, settings, printer).await?)
}

/// [`open_model`], its error typed (a multi-model `create` classifies it).
pub async fn open_typed(
    model: impl AsRef<OsStr>,
    settings: &Settings,
    printer: Printer,
) -> Result<env_source::OpenedModel, env_source::OpenError> {
    let mut progress = None;
    let opened = env_source::open_model(
        model.as_ref(),
        |name| std::env::var(name).ok(),
        settings.offline,
        &settings.cache(),
        |shown| {
            let reporter = std::sync::Arc::new(crate::progress::ProgressReporter::new(
                settings,
                printer,
                &format!("Getting `{shown}`"),
            ));
            progress = Some(reporter.clone());
            reporter
        },
    )
    .await;
    if let Some(progress) = &progress {
        env_build::Reporter::on_finish(progress.as_ref());
    }
    let opened = opened?;
    for notice in opened.notices() {
        match notice {
            OpenNotice::Warning(warning) => printer.warn(warning),
            OpenNotice::Downloaded(resolved) => printer.info(format!("Downloaded {resolved}")),
            OpenNotice::ArtifactsSubdir(root) => printer.info(format!(
                "Using the model in `{}` (an MLflow 3 logged-model directory keeps it under `artifacts/`)",
                printer.cyan(root.display())
            )),
        }
    }
    Ok(opened)
}

/// Prints warnings about the model's files.
pub fn print_warnings(printer: Printer, warnings: &[env_spec::Warning]) {
    for warning in warnings {
        printer.warn(warning);
    }
}
