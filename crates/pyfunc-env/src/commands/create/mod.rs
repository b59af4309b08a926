//! `pyfunc-env create`: build the model's environment, or reuse it.

mod many;
mod summary;

use std::path::{Path, PathBuf};

use env_build::{EnvRequest, ModelEnvironment, Purpose};

use crate::cli::CreateArgs;
use crate::commands::open_model;
use crate::environment::{
    build_settings, ensure, env_request, origin_line, print_build_notes, print_resolved,
};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// The model directories of `create`: the arguments, then `--from`'s lines.
fn model_list(args: &CreateArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut models = args.models.clone();
    if let Some(list) = &args.from {
        models.extend(env_source::read_model_list(list)?);
    }
    Ok(models)
}

/// Runs `create`.
pub async fn create(
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let models = model_list(args)?;
    let request = env_request(&args.env, settings)?;
    if models.len() == 1 && args.from.is_none() {
        if args.dry_run {
            return dry_run_one(&models[0], &request, args, settings, printer).await;
        }
        let start = std::time::Instant::now();
        return match create_one(&models[0], &request, args, settings, printer).await {
            // `--json` promises a document on stdout: a failure gets one too, the shape of a
            // failed model of a multi-model `create` (the full error still goes to stderr).
            Err(err) if args.json => {
                let result = many::failed(models[0].display().to_string(), &err, start.elapsed());
                printer.data(format!("{}\n", serde_json::to_string_pretty(&result)?))?;
                Err(err)
            }
            other => other,
        };
    }
    many::create_many(&models, &request, args, settings, printer).await
}

/// `create --dry-run` of one model: [`ModelEnvironment::plan`], shown.
async fn dry_run_one(
    model: &Path,
    request: &EnvRequest,
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let opened = open_model(model, settings, printer).await?;
    let build = build_settings(&args.env, settings);
    let cache = settings.cache();
    let planned = ModelEnvironment::plan(opened, request, &cache, &build, &Purpose::Create).await?;
    let prefix = planned.prefix.display();
    print_resolved(&planned.env, printer);
    printer.info(format!(
        "{}: {}",
        planned.note(&build),
        printer.cyan(&prefix)
    ));
    if args.json {
        let document = planned.document();
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    } else {
        printer.data(format!("{prefix}\n"))?;
    }
    Ok(ExitStatus::Success)
}

async fn create_one(
    model: &Path,
    request: &EnvRequest,
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let opened = open_model(model, settings, printer).await?;
    let build = build_settings(&args.env, settings);
    let purpose = Purpose::Create;
    let ensured = ensure(opened, request, &build, &purpose, settings, printer).await?;
    let created = &ensured.created;
    print_build_notes(created, &build, printer);
    printer.info(origin_line(&ensured.env, created, printer));
    if args.json {
        let document = ensured.document();
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    } else {
        // `ENV=$(pyfunc-env create model/)`.
        printer.data(format!("{}\n", created.prefix.display()))?;
    }
    Ok(ExitStatus::Success)
}

/// Runs `lock`.
pub async fn lock(
    args: &crate::cli::LockArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    // `ensure` solves afresh for `Purpose::Lock`, whatever lock file there is.
    let request = env_request(&args.env, settings)?;
    let opened = open_model(&args.model.model, settings, printer).await?;
    let build = build_settings(&args.env, settings);
    let ensured = ensure(opened, &request, &build, &Purpose::Lock, settings, printer).await?;
    print_build_notes(&ensured.created, &build, printer);
    let text = ensured.lock_text.as_deref().unwrap_or_default();
    match &args.output {
        Some(path) => {
            env_cache::write_atomic(path, text.as_bytes())?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        None => printer.data(text)?,
    }
    Ok(ExitStatus::Success)
}
