//! `pyfunc-env deps`: what `mlflow.pyfunc.get_model_dependencies` gives, or the canonical spec.

use std::path::Path;

use anyhow::Context;

use crate::cli::{DepsArgs, DepsFormat};
use crate::commands::{open_model, print_warnings, write_atomic};
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// Refuses an `-o` path that cannot be written for a reason the caller can fix (exit 1 with a
/// hint rather than an I/O error about a temporary file).
fn check_output_path(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        return Err(UserError::new(format!(
            "Cannot write to `{}`: it is a directory",
            path.display()
        ))
        .with_hint("Pass a file name to `-o`, e.g. `-o requirements.txt`")
        .into());
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(UserError::new(format!(
            "Cannot write to `{}`: the directory `{}` does not exist",
            path.display(),
            parent.display()
        ))
        .with_hint("Create the directory first, or pass another path to `-o`")
        .into());
    }
    Ok(())
}

/// Runs `deps`.
pub async fn deps(
    args: &DepsArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if let Some(path) = &args.output {
        check_output_path(path)?;
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
            env_solve::spec_document::spec_json(model, manager, settings.uv.clone())?
        }
    };
    print_warnings(printer, &warnings);
    match &args.output {
        // The file is the model's, credentials included: it is meant to be installed from.
        Some(path) => {
            write_atomic(path, &text)?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        // On a terminal or in a build log, secrets are masked, as `--format json` masks them.
        None => printer
            .data(env_spec::redact::mask_url_secrets(&text))
            .context("Failed to write to stdout")?,
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_that_cannot_be_written_are_the_callers_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        check_output_path(&dir.path().join("spec.json")).unwrap();
        check_output_path(Path::new("spec.json")).unwrap();
        for (path, message) in [
            (dir.path().to_path_buf(), "it is a directory"),
            (dir.path().join("missing/spec.json"), "does not exist"),
        ] {
            let err = check_output_path(&path).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert_eq!(crate::report::exit_status(&err), ExitStatus::Failure);
            assert!(err.downcast_ref::<UserError>().unwrap().hint.is_some());
        }
    }
}
