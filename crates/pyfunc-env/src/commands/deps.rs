//! `pyfunc-env deps`: what `mlflow.pyfunc.get_model_dependencies` gives, or the canonical spec.

use anyhow::Context;
use env_spec::ModelDir;
use serde::Serialize;

use crate::cli::{DepsArgs, DepsFormat};
use crate::commands::{open_model, print_warnings, write_atomic};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// Version of the `--format json` document.
pub const SPEC_SCHEMA_VERSION: u32 = 1;

/// The `deps --format json` document (schema in the README).
#[derive(Debug, Serialize)]
pub struct SpecDocument<'a> {
    /// [`SPEC_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model directory (canonical path).
    pub model_dir: String,
    /// `conda` or `virtualenv`.
    pub env_manager: env_spec::EnvManager,
    /// The environment key on this machine with default build options.
    pub key: env_spec::EnvKey,
    /// Everything besides the spec that the key covers.
    pub key_context: &'a env_spec::KeyContext,
    /// The files the environment is derived from.
    pub files: &'a [String],
    /// The canonical spec.
    pub spec: &'a env_spec::EnvSpec,
    /// Warnings about the model's files.
    pub warnings: &'a [env_spec::Warning],
}

/// Builds the JSON spec document for `manager`.
pub fn spec_json(
    model: &ModelDir,
    manager: env_spec::EnvManager,
) -> anyhow::Result<(String, Vec<env_spec::Warning>)> {
    let resolved = model.spec(manager).with_context(|| {
        format!(
            "Failed to read the {manager} environment of `{}`",
            model.root().display()
        )
    })?;
    let virtual_packages = env_solve::context::detect_virtual_packages()?;
    let context = env_solve::context::key_context(
        manager,
        &env_solve::BuildOptions::default(),
        &virtual_packages,
    )?;
    let document = SpecDocument {
        schema_version: SPEC_SCHEMA_VERSION,
        model_dir: model.root().display().to_string(),
        env_manager: manager,
        key: resolved.spec.key(&context),
        key_context: &context,
        files: &resolved.files,
        spec: &resolved.spec,
        warnings: &resolved.warnings,
    };
    let mut text = serde_json::to_string_pretty(&document)?;
    text.push('\n');
    Ok((text, resolved.warnings))
}

/// Runs `deps`.
pub fn deps(args: &DepsArgs, _settings: &Settings, printer: Printer) -> anyhow::Result<ExitStatus> {
    let model = open_model(&args.model.model, printer)?;
    let (text, warnings) = match args.format {
        DepsFormat::Pip => {
            let deps = model.pip_dependencies().with_context(|| {
                format!(
                    "Failed to get the pip requirements of `{}`",
                    args.model.model.display()
                )
            })?;
            (deps.text, deps.warnings)
        }
        DepsFormat::Conda => {
            let deps = model.conda_dependencies().with_context(|| {
                format!(
                    "Failed to get the conda environment of `{}`",
                    args.model.model.display()
                )
            })?;
            (deps.text, deps.warnings)
        }
        DepsFormat::Json => {
            let manager = match args.env_manager {
                None => model.default_env_manager(),
                Some(arg) => arg.manager().ok_or_else(|| {
                    crate::report::UserError::new(
                        "`--env-manager local` builds no environment, so it has no spec",
                    )
                    .with_hint("Pass `--env-manager conda`, `virtualenv` or `uv`, or leave it out for the model's default")
                })?,
            };
            spec_json(&model, manager)?
        }
    };
    print_warnings(printer, &warnings);
    match &args.output {
        Some(path) => {
            write_atomic(path, &text)?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        None => printer.data(&text).context("Failed to write to stdout")?,
    }
    Ok(ExitStatus::Success)
}
