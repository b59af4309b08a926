//! `pyfunc-env create`: build the model's environment, or reuse it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use env_solve::{
    BuildOptions, BuildSettings, ChannelSettings, Ensured, EnvRequest, InstallMlflow, LockChoice,
    ModelEnvironment, Purpose, PythonSource, SolveError,
};
use env_spec::EnvManager;
use serde::Serialize;

use crate::cli::{CreateArgs, EnvArgs, PythonSourceArg};
use crate::commands::{open_model, print_warnings};
use crate::printer::Printer;
use crate::progress::ProgressReporter;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// The channel settings of a run: flags, then `PYFUNC_ENV_MIRRORS`/config (already merged
/// into `settings.mirrors`).
pub fn channel_settings(args: &EnvArgs, settings: &Settings) -> anyhow::Result<ChannelSettings> {
    let mut mirrors: Vec<(String, String)> = Vec::new();
    for text in &args.mirrors {
        mirrors.push(env_solve::channels::parse_mirror(text)?);
    }
    for (from, to) in &settings.mirrors {
        if !mirrors.iter().any(|(f, _)| f == from) {
            mirrors.push((from.clone(), to.clone()));
        }
    }
    Ok(ChannelSettings {
        mirrors,
        channels: args.channels.clone(),
        override_channels: args.override_channels,
    })
}

/// Build options from the flags.
pub fn build_options(args: &EnvArgs) -> BuildOptions {
    BuildOptions {
        compile_bytecode: !args.no_compile,
        exclude_newer: args.exclude_newer.clone(),
        python_source: match args.python_source {
            PythonSourceArg::Auto => PythonSource::Auto,
            PythonSourceArg::Conda => PythonSource::Conda,
            PythonSourceArg::System => PythonSource::System,
        },
    }
}

/// The flags that decide the environment, as the library's [`EnvRequest`].
pub fn env_request(args: &EnvArgs, settings: &Settings) -> anyhow::Result<EnvRequest> {
    let manager = match args.env_manager {
        None => None,
        Some(arg) => Some(arg.manager().ok_or_else(|| {
            crate::report::UserError::new(
                "`--env-manager local` builds no environment; it only applies to `run`",
            )
        })?),
    };
    Ok(EnvRequest {
        manager,
        python_version: args.python_version.clone(),
        install_mlflow: args.install_mlflow.as_ref().map(|version| {
            if version.is_empty() {
                InstallMlflow::Recorded
            } else {
                InstallMlflow::Version(version.clone())
            }
        }),
        channels: channel_settings(args, settings)?,
        options: build_options(args),
        lock: match (&args.locked, args.no_lock) {
            (Some(path), _) => LockChoice::File(path.clone()),
            (None, false) => LockChoice::Auto,
            (None, true) => LockChoice::Ignore,
        },
        uv: args.uv.clone().or_else(|| settings.uv.clone()),
        pip_requirements_override: args.pip_requirements_override.clone(),
        no_compat_constraints: args.no_compat_constraints,
    })
}

/// The settings that change how, not what, is built.
pub fn build_settings(args: &EnvArgs, settings: &Settings) -> BuildSettings {
    BuildSettings {
        offline: settings.offline,
        uv_cache_dir: settings.uv_cache_dir.clone(),
        reinstall: args.reinstall,
        remote: settings
            .remote_cache(
                args.remote.remote_cache.as_ref(),
                args.remote.remote_cache_read_only,
            )
            .map(|remote| Arc::new(remote) as Arc<dyn env_solve::remote::RemoteCache>),
    }
}

/// Where a remote hit came from and whether a build was pushed, for human output.
pub fn remote_note(created: &env_solve::Created, build: &BuildSettings) -> Option<String> {
    let remote = build.remote.as_ref()?;
    let url = format!("`{}`", remote.url());
    if created.remote_hit {
        Some(format!(
            "Pulled from the remote cache {url} in {:.1}s (nothing solved or installed)",
            created.timings.remote
        ))
    } else if created.pushed {
        Some(format!(
            "Pushed to the remote cache {url} in {:.1}s",
            created.timings.remote
        ))
    } else {
        None
    }
}

/// Prints what deciding a model's environment found: the model's warnings and the lock file
/// installed from.
fn print_resolved(env: &ModelEnvironment, printer: Printer) {
    print_warnings(printer, &env.resolved.warnings);
    if let Some((path, _)) = &env.lock {
        printer.info(format!("Using lock file {}", printer.cyan(path.display())));
    }
}

/// Decides the environment of an opened model (spec, key, lock) without building it, printing
/// the model's warnings: `create --dry-run` and `cache push`.
pub fn resolve(
    model: env_spec::ModelDir,
    request: &EnvRequest,
    printer: Printer,
) -> anyhow::Result<ModelEnvironment> {
    let env = ModelEnvironment::resolve(model, request)?;
    print_resolved(&env, printer);
    Ok(env)
}

/// What the CLI shows of [`ModelEnvironment::ensure`]: the model's warnings and lock file once
/// the environment is decided, the build's progress, and waits for the environment.
struct Shown {
    multi: indicatif::MultiProgress,
    printer: Printer,
}

impl env_solve::EnsureReporter for Shown {
    fn on_resolved(&self, env: &ModelEnvironment) -> Arc<dyn env_solve::Reporter> {
        print_resolved(env, self.printer);
        Arc::new(ProgressReporter::printing(
            self.multi.clone(),
            self.printer,
            &env.name(),
        ))
    }

    fn on_wait(&self, message: &str) {
        self.printer.info(message);
    }
}

/// The one library call of `create`, `lock`, `run` and `pack`: decides the opened model's
/// environment under `request`, builds or reuses it for `purpose`, and holds it (and the
/// cache's shared lock) while the result lives; progress and the model's warnings are shown.
pub async fn ensure(
    model: env_spec::ModelDir,
    request: &EnvRequest,
    build: &BuildSettings,
    purpose: &Purpose,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<Ensured> {
    let shown = Shown {
        multi: crate::progress::shared_multi(settings, printer),
        printer,
    };
    let ensured = ModelEnvironment::ensure(
        model,
        request,
        &settings.cache(),
        build,
        purpose,
        Arc::new(shown),
    )
    .await?;
    Ok(ensured)
}

/// The context line of a failed build.
fn failed_to_create(env: &ModelEnvironment) -> String {
    format!(
        "Failed to create the {} environment for `{}`",
        env.manager,
        env.root().display()
    )
}

/// `Created conda environment in 1.2s: PREFIX`.
fn created_line(env: &ModelEnvironment, created: &env_solve::Created, printer: Printer) -> String {
    format!(
        "{} {} environment in {:.1}s: {}",
        printer.green("Created"),
        env.manager,
        created.timings.total,
        printer.cyan(created.prefix.display())
    )
}

/// `Pulled conda environment from the remote cache: PREFIX`.
fn pulled_line(env: &ModelEnvironment, created: &env_solve::Created, printer: Printer) -> String {
    format!(
        "{} {} environment from the remote cache: {}",
        printer.green("Pulled"),
        env.manager,
        printer.cyan(created.prefix.display())
    )
}

/// For a command that uses the environment (`run`, `pack`): the build's warnings, and a line
/// when the environment was built or pulled now (a reused one is not worth a line there).
pub fn print_created(env: &ModelEnvironment, created: &env_solve::Created, printer: Printer) {
    for warning in &created.warnings {
        printer.warn(warning);
    }
    if created.remote_hit {
        printer.info(pulled_line(env, created, printer));
    } else if !created.cache_hit && !created.built_by_other {
        printer.info(created_line(env, created, printer));
    }
}

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

/// A `--from` line without its comment. As in a requirements file, `#` starts a comment only
/// at the start of the line or after whitespace: `models/run#3` and `s3://b/k#v` are names.
fn strip_comment(line: &str) -> &str {
    let mut previous_is_space = true;
    for (index, c) in line.char_indices() {
        if c == '#' && previous_is_space {
            return &line[..index];
        }
        previous_is_space = c.is_whitespace();
    }
    line
}

/// The model directories of `create`: the arguments, then `--from`'s lines.
fn model_list(args: &CreateArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut models = args.models.clone();
    if let Some(list) = &args.from {
        let text = fs_err::read_to_string(list)?;
        for line in text.lines() {
            let line = strip_comment(line).trim();
            if !line.is_empty() {
                // Relative entries are relative to the list file; model URIs are as written;
                // a `file:` URI is the directory it names.
                models.push(match env_source::ModelUri::local_path(line) {
                    Some(path) if path.is_relative() => {
                        list.parent().unwrap_or(Path::new(".")).join(path)
                    }
                    Some(path) => path,
                    None => PathBuf::from(line),
                });
            }
        }
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
                let result = failed(models[0].display().to_string(), None, &err, start.elapsed());
                printer.data(format!("{}\n", serde_json::to_string_pretty(&result)?))?;
                Err(err)
            }
            other => other,
        };
    }
    create_many(&models, &request, args, settings, printer).await
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

/// One model's outcome in a multi-model `create`.
#[derive(Serialize)]
struct ModelResult {
    model_dir: String,
    env_manager: Option<EnvManager>,
    key: Option<String>,
    /// `built`, `cached`, `pulled` (from the remote cache), `built by another process`,
    /// `shared` (same key as a model before it), `failed`; with `--dry-run`, `to build` and
    /// `cached`.
    result: &'static str,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<env_solve::Created>,
    #[serde(skip)]
    status: ExitStatus,
}

/// Builds many models' environments, `--jobs` at a time, each distinct key once (the
/// scheduling is [`env_solve::many::create_many`]); failures are reported at the end and do
/// not stop the others.
async fn create_many(
    models: &[PathBuf],
    request: &EnvRequest,
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let quiet = Printer::new(crate::printer::Verbosity::Quiet, printer.color());
    let mut results: Vec<ModelResult> = Vec::with_capacity(models.len());
    let mut envs: Vec<Option<ModelEnvironment>> = Vec::with_capacity(models.len());
    let virtual_packages = env_solve::context::detect_virtual_packages()?;
    // Downloaded models' locks, held until every build is done (`cache prune` keeps them).
    let mut model_locks = Vec::new();
    for model in models {
        let start = std::time::Instant::now();
        let env = open_model(model, settings, quiet).await.and_then(|opened| {
            let (model, lock) = opened.into_model();
            model_locks.push(lock);
            Ok(ModelEnvironment::resolve_with(
                model,
                request,
                virtual_packages.clone(),
            )?)
        });
        match env {
            Ok(env) => {
                // What a single-model `create` shows, with the model it is about.
                for warning in &env.resolved.warnings {
                    printer.warn(format!("`{}`: {warning}", env.root().display()));
                }
                results.push(ModelResult {
                    model_dir: env.root().display().to_string(),
                    env_manager: Some(env.manager),
                    key: Some(env.key.to_string()),
                    result: "pending",
                    seconds: 0.0,
                    error: None,
                    created: None,
                    status: ExitStatus::Success,
                });
                envs.push(Some(env));
            }
            Err(err) => {
                results.push(failed(
                    model.display().to_string(),
                    None,
                    &err,
                    start.elapsed(),
                ));
                envs.push(None);
            }
        }
    }
    if args.dry_run {
        let cache = settings.cache();
        for members in env_solve::many::group_by_key(&envs) {
            for (position, index) in members.into_iter().enumerate() {
                if let Some(env) = &envs[index] {
                    results[index].result = if position > 0 {
                        "shared"
                    } else if env.is_cached(&cache)? {
                        "cached"
                    } else {
                        "to build"
                    };
                }
            }
        }
    } else {
        let cache = settings.cache();
        let multi = crate::progress::shared_multi(settings, printer);
        let total = env_solve::many::group_by_key(&envs).len();
        let overall = multi.add(indicatif::ProgressBar::new(total as u64));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} environments, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("create");
        let failures = std::sync::atomic::AtomicUsize::new(0);
        let build = build_settings(&args.env, settings);
        let built: Arc<[Option<ModelEnvironment>]> = std::mem::take(&mut envs).into();
        let on_finished = {
            let overall = overall.clone();
            move |_: &ModelEnvironment, result: &Result<env_solve::Created, SolveError>| {
                if result.is_err() {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                overall.inc(1);
                overall.set_message(format!(
                    "{} failed",
                    failures.load(std::sync::atomic::Ordering::Relaxed)
                ));
            }
        };
        let outcomes = env_solve::many::create_many(
            built.clone(),
            usize::from(args.jobs),
            &cache,
            &build,
            Arc::new(
                move |env: &ModelEnvironment| -> Arc<dyn env_solve::Reporter> {
                    Arc::new(ProgressReporter::in_multi(multi.clone(), &env.name()))
                },
            ),
            Arc::new(on_finished),
        )
        .await?;
        let envs = &built;
        overall.finish_and_clear();
        // A remote cache's trouble is the same for every model: once. Every other build
        // warning is about one environment: with the model that built it.
        let remote_warnings: std::collections::BTreeSet<&str> = outcomes
            .iter()
            .filter_map(|outcome| outcome.result.as_ref().ok())
            .flat_map(|created| &created.warnings)
            .filter_map(|warning| match warning {
                env_solve::BuildWarning::RemoteCache(message) => Some(message.as_str()),
                env_solve::BuildWarning::Environment(_) => None,
            })
            .collect();
        for warning in remote_warnings {
            printer.warn(warning);
        }
        for outcome in &outcomes {
            let (Ok(created), Some(env)) = (&outcome.result, envs[outcome.members[0]].as_ref())
            else {
                continue;
            };
            for warning in &created.warnings {
                if let env_solve::BuildWarning::Environment(message) = warning {
                    printer.warn(format!("`{}`: {message}", env.root().display()));
                }
            }
        }
        for outcome in outcomes {
            let Some(env) = envs[outcome.members[0]].as_ref() else {
                continue;
            };
            let (result, created, error, status) = match outcome.result {
                Ok(created) => {
                    let result = if created.cache_hit {
                        "cached"
                    } else if created.remote_hit {
                        "pulled"
                    } else if created.built_by_other {
                        "built by another process"
                    } else {
                        "built"
                    };
                    (result, Some(created), None, ExitStatus::Success)
                }
                Err(err) => {
                    let err = anyhow::Error::new(err).context(failed_to_create(env));
                    let row = failed(String::new(), Some(env), &err, Duration::ZERO);
                    ("failed", None, row.error, row.status)
                }
            };
            for (position, index) in outcome.members.into_iter().enumerate() {
                let row = &mut results[index];
                // The first model of a key built it; the others share that environment.
                row.result = if position > 0 && result != "failed" {
                    "shared"
                } else {
                    result
                };
                row.seconds = outcome.seconds;
                row.error.clone_from(&error);
                row.created.clone_from(&created);
                row.status = status;
            }
        }
    }
    print_summary(&results, args.dry_run, printer);
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&results)?))?;
    }
    let worst = results
        .iter()
        .map(|r| r.status)
        .fold(ExitStatus::Success, |worst, status| match (worst, status) {
            (ExitStatus::Error, _) | (_, ExitStatus::Error) => ExitStatus::Error,
            (ExitStatus::Failure, _) | (_, ExitStatus::Failure) => ExitStatus::Failure,
            _ => ExitStatus::Success,
        });
    drop(model_locks);
    Ok(worst)
}

fn failed(
    model_dir: String,
    env: Option<&ModelEnvironment>,
    err: &anyhow::Error,
    elapsed: Duration,
) -> ModelResult {
    let plain = Printer::new(crate::printer::Verbosity::Normal, false);
    ModelResult {
        model_dir,
        env_manager: env.map(|env| env.manager),
        key: env.map(|env| env.key.to_string()),
        result: "failed",
        seconds: elapsed.as_secs_f64(),
        error: Some(env_solve::redact::redact(
            crate::report::render(plain, err).trim_end(),
        )),
        created: None,
        status: crate::report::exit_status(err),
    }
}

/// `text` cut to its last `width` characters (not bytes: a model path can be any Unicode),
/// with `...` in front when cut.
fn tail_chars(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let keep = width.saturating_sub(3);
    let tail: String = text.chars().skip(count - keep).collect();
    format!("...{tail}")
}

fn summary_table(results: &[ModelResult], dry_run: bool, printer: Printer) -> String {
    use std::fmt::Write as _;
    let width = results
        .iter()
        .map(|r| r.model_dir.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:<32}  {:<24}  {:>8}  ERROR",
        "MODEL", "KEY", "RESULT", "SECONDS"
    );
    for r in results {
        let model = tail_chars(&r.model_dir, width);
        let error = r
            .error
            .as_deref()
            .map(|e| {
                e.lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with("Caused by:"))
                    .or_else(|| e.lines().next())
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("Caused by:")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let result = match r.result {
            "failed" => printer.red(r.result),
            other => printer.green(other),
        };
        let pad = 24usize.saturating_sub(r.result.len());
        let _ = writeln!(
            out,
            "{model:<width$}  {:<32}  {result}{}  {:>8.1}  {error}",
            r.key.as_deref().unwrap_or("-"),
            " ".repeat(pad),
            r.seconds
        );
    }
    let failed = results.iter().filter(|r| r.result == "failed").count();
    let built = results.iter().filter(|r| r.result == "built").count();
    let to_build = results.iter().filter(|r| r.result == "to build").count();
    if dry_run {
        let _ = writeln!(
            out,
            "{} models: {to_build} to build, {} cached or shared, {failed} failed (dry run)",
            results.len(),
            results.len() - to_build - failed,
        );
    } else {
        let _ = writeln!(
            out,
            "{} models: {built} built, {} cached or shared, {failed} failed",
            results.len(),
            results.len() - built - failed,
        );
    }
    out
}

fn print_summary(results: &[ModelResult], dry_run: bool, printer: Printer) {
    printer.error(summary_table(results, dry_run, printer).trim_end());
    for r in results.iter().filter(|r| r.result == "failed") {
        if let Some(error) = &r.error {
            printer.error(format!("\n{}:\n{error}", r.model_dir));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model_dir: String) -> ModelResult {
        ModelResult {
            model_dir,
            env_manager: Some(EnvManager::Conda),
            key: Some("0".repeat(32)),
            result: "built",
            seconds: 1.0,
            error: None,
            created: None,
            status: ExitStatus::Success,
        }
    }

    /// Property: for any model paths (any Unicode, any length), the table renders, and each
    /// model column holds at most 60 characters, ending with the path's last characters.
    #[test]
    fn a_hash_starts_a_comment_only_at_line_start_or_after_whitespace() {
        for (line, expected) in [
            ("# all of them", ""),
            ("models/a # the first", "models/a "),
            ("models/a\t#tab", "models/a\t"),
            ("models/run#3", "models/run#3"),
            ("s3://bucket/k#v/model", "s3://bucket/k#v/model"),
            ("models/x#y # comment", "models/x#y "),
            ("", ""),
        ] {
            assert_eq!(strip_comment(line), expected, "{line:?}");
        }
    }

    #[test]
    fn the_summary_table_takes_any_unicode_path() {
        // Multi-byte characters of every UTF-8 length, a combining mark and a wide one.
        const ALPHABET: &[char] = &[
            'a', '/', ' ', 'é', 'ж', 'ß', '日', '本', '\u{301}', '🦀', '𝔘', '-', '\u{200b}',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let printer = Printer::new(crate::printer::Verbosity::Normal, false);
        for _ in 0..300 {
            let rows: Vec<ModelResult> = (0..=(next() % 4))
                .map(|_| {
                    let length = usize::try_from(next() % 150).unwrap();
                    let path: String = (0..length)
                        .map(|_| ALPHABET[usize::try_from(next()).unwrap() % ALPHABET.len()])
                        .collect();
                    row(path)
                })
                .collect();
            let table = summary_table(&rows, false, printer);
            for (line, r) in table.lines().skip(1).zip(&rows) {
                let model: String = line.chars().take(60).collect();
                let expected = tail_chars(&r.model_dir, 60);
                assert!(expected.chars().count() <= 60, "{expected}");
                assert!(model.starts_with(&expected), "{model:?} vs {expected:?}");
                if r.model_dir.chars().count() > 60 {
                    let kept: String = expected.chars().skip(3).collect();
                    assert!(r.model_dir.ends_with(&kept));
                }
            }
        }
    }
}
