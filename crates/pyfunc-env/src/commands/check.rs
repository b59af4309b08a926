//! `pyfunc-env check`: the model's requirements against an interpreter or a cached environment.

use std::fmt::Write as _;

use env_run::CheckPython;

use crate::cli::CheckArgs;
use crate::commands::open_model;
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;
use crate::table::{Column, Table};

/// Runs `check`.
pub async fn check(
    args: &CheckArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let (model, _model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let key: Option<env_spec::EnvKey> = args.env.as_deref().map(str::parse).transpose()?;
    let cache = settings.cache();
    let python = match (&args.python, &key) {
        (Some(python), _) => CheckPython::Path(python),
        (None, Some(key)) => CheckPython::Cached { cache: &cache, key },
        (None, None) => CheckPython::OnPath,
    };
    let report = env_run::check_model(&model, python)?;
    let python = &report.python;
    if args.json {
        let text = serde_json::to_string_pretty(&report)?;
        printer.data(format!("{}\n", env_build::redact::redact(&text)))?;
    } else {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Interpreter: {} (Python {})",
            printer.cyan(python.display()),
            report.python_version
        );
        let _ = writeln!(
            out,
            "Model Python: {}{}",
            report.model_python_version.as_deref().unwrap_or("unknown"),
            if report.python_mismatch {
                format!("  {}", printer.yellow("differs (major.minor)"))
            } else {
                String::new()
            }
        );
        if report.mismatches.is_empty() {
            let _ = writeln!(
                out,
                "{} {} requirement(s) satisfied",
                printer.green("OK"),
                report.checked
            );
        } else {
            let mut table = Table::new([
                Column::fit("PACKAGE"),
                Column::left("INSTALLED", 14),
                Column::left("REQUIRED", 0),
            ]);
            for mismatch in &report.mismatches {
                table.row([
                    mismatch.package.clone(),
                    mismatch
                        .installed
                        .as_deref()
                        .unwrap_or("uninstalled")
                        .to_string(),
                    mismatch.requirement.clone(),
                ]);
            }
            table.render(&mut out);
            let _ = writeln!(
                out,
                "{} of {} requirement(s) not satisfied",
                report.mismatches.len(),
                report.checked
            );
        }
        printer.data(env_build::redact::redact(&out))?;
    }
    Ok(if args.strict && !report.is_ok() {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}
