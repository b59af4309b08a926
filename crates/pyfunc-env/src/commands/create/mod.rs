//! `pyfunc-env create`: build the model's environment, or reuse it.

mod many;
mod summary;

use std::path::{Path, PathBuf};

use env_solve::{EnvRequest, LockChoice, Purpose};
use env_spec::EnvManager;
use serde::Serialize;

use crate::cli::CreateArgs;
use crate::commands::open_model;
use crate::environment::{
    build_settings, created_line, ensure, env_request, pulled_line, remote_note, resolve,
};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

#[derive(Serialize)]
struct CreateJson<'a> {
    model_dir: String,
    /// Where the model came from, when given as a URI: the URI, the artifact location, the
    /// registered name and resolved version.
    #[serde(skip_serializing_if = "Option::is_none")]
    model_source: Option<env_source::Resolved>,
    env_manager: EnvManager,
    #[serde(flatten)]
    created: &'a env_solve::Created,
}

/// `create --dry-run --json`: what `create` would use, nothing built.
#[derive(Serialize)]
struct DryRunJson {
    model_dir: String,
    env_manager: EnvManager,
    key: String,
    prefix: String,
    python: String,
    cache_hit: bool,
    dry_run: bool,
}

/// The model directories of `create`: the arguments, then `--from`'s lines.
fn model_list(args: &CreateArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut models = args.models.clone();
    if let Some(list) = &args.from {
        let text = fs_err::read_to_string(list)?;
        models.extend(env_source::parse_model_list(
            &text,
            list.parent().unwrap_or(Path::new(".")),
        ));
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

async fn dry_run_one(
    model: &Path,
    request: &EnvRequest,
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let (model, _model_lock) = open_model(model, settings, printer).await?.into_model();
    let env = resolve(model, request, printer)?;
    let cache = settings.cache();
    let prefix = env.prefix(&cache);
    let cached = env.is_cached(&cache)?;
    if cached {
        printer.info(format!(
            "Environment is cached: {}",
            printer.cyan(prefix.display())
        ));
    } else {
        printer.info(format!(
            "Would create {} environment: {}",
            env.manager,
            printer.cyan(prefix.display())
        ));
    }
    if args.json {
        let document = DryRunJson {
            model_dir: env.root().display().to_string(),
            env_manager: env.manager,
            key: env.key.to_string(),
            python: env_solve::build::python_of(&prefix).display().to_string(),
            prefix: prefix.display().to_string(),
            cache_hit: cached,
            dry_run: true,
        };
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    } else {
        printer.data(format!("{}\n", prefix.display()))?;
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
    let ensured = ensure(
        opened.model,
        request,
        &build,
        &Purpose::Create,
        settings,
        printer,
    )
    .await?;
    let created = &ensured.created;
    for warning in &created.warnings {
        printer.warn(warning);
    }
    if let Some(note) = remote_note(created, &build) {
        printer.info(note);
    }
    if created.cache_hit {
        printer.info(format!(
            "Using cached environment: {}",
            printer.cyan(created.prefix.display())
        ));
    } else if created.remote_hit {
        printer.info(pulled_line(&ensured.env, created, printer));
    } else if created.built_by_other {
        printer.info(format!(
            "Using environment built by another process: {}",
            printer.cyan(created.prefix.display())
        ));
    } else {
        printer.info(created_line(&ensured.env, created, printer));
    }
    if args.json {
        let document = CreateJson {
            model_dir: ensured.env.root().display().to_string(),
            model_source: opened.source,
            env_manager: ensured.env.manager,
            created,
        };
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
    let mut request = env_request(&args.env, settings)?;
    // A lock describes a fresh solve, never another lock.
    request.lock = LockChoice::Ignore;
    let (model, _model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let build = build_settings(&args.env, settings);
    let ensured = ensure(model, &request, &build, &Purpose::Lock, settings, printer).await?;
    let created = &ensured.created;
    for warning in &created.warnings {
        printer.warn(warning);
    }
    if let Some(note) = remote_note(created, &build) {
        printer.info(note);
    }
    let text = ensured.lock_text.as_deref().unwrap_or_default();
    match &args.output {
        Some(path) => {
            crate::commands::write_atomic(path, text)?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        None => printer.data(text)?,
    }
    Ok(ExitStatus::Success)
}
