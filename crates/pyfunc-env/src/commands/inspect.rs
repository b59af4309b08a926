//! `pyfunc-env inspect`: a readable summary of what a model needs.

use std::fmt::Write as _;

use env_spec::PipSet;

use crate::cli::InspectArgs;
use crate::commands::open_model;
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

fn pip_lines(out: &mut String, printer: Printer, label: &str, set: &PipSet) {
    if set.requirements.is_empty() && set.constraints.is_empty() && set.index.is_empty() {
        return;
    }
    let _ = writeln!(out, "    {label}:");
    for requirement in &set.requirements {
        let _ = writeln!(
            out,
            "      {}",
            env_spec::summary::requirement_text(requirement)
        );
    }
    for constraint in &set.constraints {
        let _ = writeln!(
            out,
            "      {} {}",
            printer.dim("constraint"),
            env_spec::summary::requirement_text(constraint)
        );
    }
    let index = serde_json::to_value(&set.index).unwrap_or_default();
    if let Some(options) = index.as_object() {
        for (name, value) in options {
            let _ = writeln!(
                out,
                "      {} {value}",
                printer.dim(format!("--{}", name.replace('_', "-")))
            );
        }
    }
}

/// Runs `inspect`.
pub async fn inspect(
    args: &InspectArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let (model, _model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let mlmodel = model.mlmodel()?;
    let mut out = String::new();
    let none = || printer.dim("(none)");
    let _ = writeln!(
        out,
        "{} {}",
        printer.bold("Model:"),
        printer.cyan(model.root().display())
    );
    let _ = writeln!(
        out,
        "  MLflow version: {}",
        mlmodel.mlflow_version().unwrap_or_else(none)
    );
    let _ = writeln!(
        out,
        "  Flavors: {}",
        if mlmodel.flavors.is_empty() {
            none()
        } else {
            mlmodel.flavors.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "  Loader module: {}",
        mlmodel.loader_module().unwrap_or_else(none)
    );
    let _ = writeln!(
        out,
        "  Python version (MLmodel): {}",
        mlmodel.python_version().unwrap_or_else(none)
    );
    if let Some(signature) = mlmodel.signature() {
        for (part, schema) in &signature {
            let _ = writeln!(
                out,
                "  Signature {part}: {}",
                env_spec::summary::schema_summary(schema)
            );
        }
    }
    let mut warnings = Vec::new();
    let _ = writeln!(out, "{}", printer.bold("Environment files:"));
    match model.env_file_names() {
        Ok(names) => {
            let virtualenv = match model.virtualenv_env() {
                Ok(env) => env.source.describe(),
                Err(err) => format!(
                    "{} ({})",
                    names.virtualenv,
                    crate::report::shorten_lines(&err.to_string())
                ),
            };
            let _ = writeln!(out, "  virtualenv / uv: {virtualenv}");
            let _ = writeln!(
                out,
                "  conda: {}",
                mlmodel.conda_file_name().unwrap_or(names.conda)
            );
        }
        Err(err) => {
            let _ = writeln!(
                out,
                "  {} {}",
                printer.red("unreadable:"),
                crate::report::shorten_lines(&err.to_string())
            );
        }
    }
    let default = model.default_env_manager();
    let _ = writeln!(out, "  Default env manager: {default}");
    let mut default_error = None;
    // The environment `create --env-manager MANAGER` would build, key included.
    let request = env_build::EnvRequest {
        uv: settings.uv.clone(),
        ..env_build::EnvRequest::default()
    };
    for (manager, environment) in env_build::inspect::environments_by_manager(&model, &request)? {
        let marker = if manager == default { " (default)" } else { "" };
        match environment {
            Ok(env) => {
                let resolved = &env.resolved;
                let _ = writeln!(
                    out,
                    "{}{marker}  key {}",
                    printer.bold(format!("{manager} environment")),
                    printer.cyan(&env.key)
                );
                let _ = writeln!(out, "    from: {}", resolved.files.join(", "));
                if let Some((path, _)) = &env.lock {
                    let _ = writeln!(out, "    lock: {}", path.display());
                }
                if let Some(python) = &resolved.spec.python {
                    let _ = writeln!(out, "    python: {python}");
                }
                if let Some(conda) = &resolved.spec.conda {
                    let _ = writeln!(out, "    channels: {}", conda.channels.join(", "));
                    let _ = writeln!(out, "    conda:");
                    for spec in &conda.specs {
                        let _ = writeln!(out, "      {spec}");
                    }
                }
                pip_lines(&mut out, printer, "build", &resolved.spec.build);
                pip_lines(&mut out, printer, "pip", &resolved.spec.pip);
                if let Some(project) = &resolved.spec.uv_project {
                    let _ = writeln!(
                        out,
                        "    uv.lock: {} packages, installed as `uv sync --frozen --no-dev` (default groups, no extras)",
                        project.packages.len()
                    );
                    let _ = writeln!(out, "    indexes: {}", project.registries().join(", "));
                }
                // Constraints pyfunc-env adds for the model's MLflow (`--no-compat-constraints`
                // drops them); the README's table gives each one's evidence.
                for constraint in &resolved.spec.compat_constraints {
                    let _ = writeln!(
                        out,
                        "    compat: {} ({}, for mlflow {})",
                        constraint.constraint, constraint.id, constraint.mlflow
                    );
                }
                for warning in &resolved.warnings {
                    if !warnings.contains(warning) {
                        warnings.push(warning.clone());
                    }
                }
            }
            Err(err) => {
                // The model's own error (the spec's), not the layer that names the model.
                let err = match err {
                    env_build::EnvError::Spec { source, .. } => anyhow::Error::new(source),
                    other => anyhow::Error::new(other),
                };
                let _ = writeln!(
                    out,
                    "{}{marker}: {} {}",
                    printer.bold(format!("{manager} environment")),
                    printer.red("cannot be built:"),
                    crate::report::shorten_lines(&err.to_string())
                );
                if manager == default {
                    default_error = Some(err);
                }
            }
        }
    }
    if !warnings.is_empty() {
        let _ = writeln!(out, "{}", printer.bold("Warnings:"));
        for warning in &warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    // A human report: credentials in a direct-URL requirement or an index option are masked,
    // as in errors and logs (`deps` keeps them: its output is the model's own file for pip).
    printer.data(env_build::redact::redact(&out))?;
    // The summary is printed either way; a model whose default environment cannot be built
    // is bad input, with the full report (source line, hint) on stderr.
    if let Some(err) = default_error {
        return Err(err.context(format!(
            "The model's default ({default}) environment cannot be built"
        )));
    }
    Ok(ExitStatus::Success)
}
