//! `pyfunc-env deps`: what `mlflow.pyfunc.get_model_dependencies` gives, or the canonical spec.

use anyhow::Context;

use crate::cli::{DepsArgs, DepsFormat};
use crate::commands::{open_model, print_warnings};
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// Runs `deps`.
pub async fn deps(
    args: &DepsArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if let Some(path) = &args.output {
        env_cache::check_output_file(path)?;
    }
    let (model, _model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let (text, warnings) = match args.format {
        DepsFormat::Pip => {
            let deps = model.pip_dependencies().with_context(|| {
                format!(
                    "Failed to get the pip requirements of `{}`",
                    args.model.model
                )
            })?;
            (deps.text, deps.warnings)
        }
        DepsFormat::Conda => {
            let deps = model.conda_dependencies().with_context(|| {
                format!(
                    "Failed to get the conda environment of `{}`",
                    args.model.model
                )
            })?;
            (deps.text, deps.warnings)
        }
        DepsFormat::Json => {
            let manager = match args.env_manager {
                None => model.default_env_manager(),
                Some(arg) => arg.manager().ok_or_else(|| {
                    UserError::new(
                        "`--env-manager local` builds no environment, so it has no spec",
                    )
                    .with_hint("Pass `--env-manager conda`, `virtualenv` or `uv`, or leave it out for the model's default")
                })?,
            };
            env_build::spec_document::spec_json(model, manager, settings.uv.clone())?
        }
    };
    print_warnings(printer, &warnings);
    match &args.output {
        // The file is the model's, credentials included: it is meant to be installed from.
        Some(path) => {
            env_cache::write_atomic(path, text.as_bytes())?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        // On a terminal or in a build log, secrets are masked, as `--format json` masks them.
        None => printer
            .data(env_spec::redact::mask_url_secrets(&text))
            .context("Failed to write to stdout")?,
    }
    Ok(ExitStatus::Success)
}
