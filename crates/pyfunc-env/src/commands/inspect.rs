//! `pyfunc-env inspect`: a readable summary of what a model needs.

use std::fmt::Write as _;

use env_build::inspect::{Inspection, model_error};
use env_spec::PipSet;
use env_spec::summary::EnvFiles;

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
    for (flag, value) in env_spec::summary::index_options(&set.index) {
        let _ = writeln!(out, "      {} {value}", printer.dim(flag));
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
    let _ = writeln!(out, "{}", printer.bold("Environment files:"));
    match EnvFiles::of(&model) {
        Ok(files) => {
            let virtualenv = match files.virtualenv {
                Ok(described) => described,
                Err((name, err)) => format!(
                    "{name} ({})",
                    crate::report::shorten_lines(&err.to_string())
                ),
            };
            let _ = writeln!(out, "  virtualenv / uv: {virtualenv}");
            let _ = writeln!(out, "  conda: {}", files.conda);
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
    // The environment `create --env-manager MANAGER` would build, key included.
    let inspection = Inspection::of(&model, settings.uv.clone())?;
    let default = inspection.default;
    let _ = writeln!(out, "  Default env manager: {default}");
    for (manager, environment) in &inspection.environments {
        let marker = if *manager == default {
            " (default)"
        } else {
            ""
        };
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
                    let _ = writeln!(out, "    uv.lock: {}", project.describe());
                    let _ = writeln!(out, "    indexes: {}", project.registries().join(", "));
                }
                // Constraints pyfunc-env adds for the model's MLflow (`--no-compat-constraints`
                // drops them); the README's table gives each one's evidence.
                for constraint in &resolved.spec.compat_constraints {
                    let _ = writeln!(out, "    compat: {constraint}");
                }
            }
            Err(err) => {
                let _ = writeln!(
                    out,
                    "{}{marker}: {} {}",
                    printer.bold(format!("{manager} environment")),
                    printer.red("cannot be built:"),
                    crate::report::shorten_lines(&model_error(err).to_string())
                );
            }
        }
    }
    let warnings = inspection.warnings();
    if !warnings.is_empty() {
        let _ = writeln!(out, "{}", printer.bold("Warnings:"));
        for warning in warnings {
            let _ = writeln!(out, "  {warning}");
        }
    }
    // A human report: credentials in a direct-URL requirement or an index option are masked,
    // as in errors and logs (`deps` keeps them: its output is the model's own file for pip).
    printer.data(env_build::redact::redact(&out))?;
    // The summary is printed either way; a model whose default environment cannot be built
    // is bad input, with the full report (source line, hint) on stderr.
    if let Some(err) = inspection.into_default_error() {
        return Err(err.into());
    }
    Ok(ExitStatus::Success)
}
