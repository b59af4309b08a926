//! `pyfunc-env create`: build the model's environment, or reuse it.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use env_solve::{BuildOptions, ChannelSettings, PythonSource};
use env_spec::{EnvManager, ModelDir};
use serde::Serialize;

use crate::cli::{CreateArgs, EnvArgs, PythonSourceArg};
use crate::commands::{open_model, print_warnings};
use crate::printer::Printer;
use crate::progress::ProgressReporter;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// A built (or reused) environment and what it was built from.
pub struct Ensured {
    /// The model.
    pub model: ModelDir,
    /// The env manager.
    pub manager: EnvManager,
    /// The result of `create`.
    pub created: env_solve::Created,
    /// Variables the environment's conda file sets on activation.
    pub variables: std::collections::BTreeMap<String, String>,
    /// The cache.
    pub cache: env_cache::Cache,
    /// The cache-wide shared lock, held while the environment is used.
    pub cache_lock: env_cache::LockedFile,
    /// The key of the spec (without a lock), which a lock file records.
    pub spec_key: String,
    /// The effective conda channels.
    pub channels: Vec<String>,
    /// uv flags for the spec's pip index options.
    pub index_args: Vec<String>,
}

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

/// A model whose environment is ready to build: everything decided, nothing built.
pub struct Prepared {
    /// The model.
    pub model: ModelDir,
    /// The env manager.
    pub manager: EnvManager,
    /// The spec (effective channels, `--python-version`, `--install-mlflow` applied).
    pub resolved: env_spec::ResolvedSpec,
    /// The environment key (of the lock, when installing from one).
    pub key: env_spec::EnvKey,
    /// The key of the spec alone, which lock files record.
    pub spec_key: String,
    /// The lock to install, if any.
    pub locked: Option<env_solve::lock::LockedEnv>,
    /// Channels and mirrors.
    pub channels: ChannelSettings,
    /// Build options.
    pub options: BuildOptions,
    /// The machine's virtual packages.
    pub virtual_packages: Vec<rattler_conda_types::GenericVirtualPackage>,
}

/// Reads the model and decides its environment: spec, key, lock.
pub fn prepare(
    model_path: &Path,
    args: &EnvArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<Prepared> {
    let model = open_model(model_path, settings, printer)?;
    let manager = match args.env_manager {
        None => model.default_env_manager(),
        Some(arg) => arg.manager().ok_or_else(|| {
            crate::report::UserError::new(
                "`--env-manager local` builds no environment; it only applies to `run`",
            )
        })?,
    };
    let mut resolved = model.spec(manager).with_context(|| {
        format!(
            "Failed to read the {manager} environment of `{}`",
            model_path.display()
        )
    })?;
    print_warnings(printer, &resolved.warnings);
    let channels = channel_settings(args, settings)?;
    if let Some(conda) = resolved.spec.conda.as_mut() {
        conda.channels = channels.effective(&conda.channels);
    }
    if let Some(version) = &args.python_version {
        if manager == EnvManager::Conda {
            anyhow::bail!(crate::report::UserError::new(
                "`--python-version` applies to virtualenv environments; in conda mode Python is one of the conda dependencies"
            ));
        }
        resolved.spec.python = Some(version.clone());
    }
    if let Some(version) = &args.install_mlflow {
        let version = if version.is_empty() {
            model.mlmodel()?.mlflow_version().ok_or_else(|| {
                crate::report::UserError::new(
                    "The MLmodel records no `mlflow_version`; pass one: `--install-mlflow=2.9.2`",
                )
            })?
        } else {
            version.clone()
        };
        let requirement =
            env_spec::PipRequirement::named(&format!("mlflow=={version}")).map_err(|e| {
                crate::report::UserError::new(format!(
                    "Invalid `--install-mlflow` version `{version}`: {e}"
                ))
            })?;
        resolved
            .spec
            .pip
            .requirements
            .retain(|r| r.name().as_deref() != Some("mlflow"));
        resolved.spec.pip.requirements.push(requirement);
    }
    let options = build_options(args);
    let virtual_packages = env_solve::context::detect_virtual_packages()?;
    let context = env_solve::context::key_context(manager, &options, &virtual_packages)?;
    let spec_key = resolved.spec.key(&context);
    let lock_path = match (&args.locked, args.no_lock) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => {
            Some(env_solve::lock::default_lock_path(model.root())).filter(|p| p.is_file())
        }
        (None, true) => None,
    };
    let (key, locked) = match &lock_path {
        Some(path) => {
            let locked = env_solve::lock::read_lock(path)?;
            if locked.key != spec_key.as_str() {
                return Err(env_solve::SolveError::LockStale {
                    path: path.clone(),
                    locked: locked.key,
                    current: spec_key.to_string(),
                }
                .into());
            }
            printer.info(format!("Using lock file {}", printer.cyan(path.display())));
            (spec_key.with_lock(&locked.text), Some(locked))
        }
        None => (spec_key.clone(), None),
    };
    tracing::debug!("Environment key {key} for {}", model.root().display());
    Ok(Prepared {
        model,
        manager,
        resolved,
        key,
        spec_key: spec_key.to_string(),
        locked,
        channels,
        options,
        virtual_packages,
    })
}

impl Prepared {
    /// A short name for progress and tables: the model directory's name.
    #[must_use]
    pub fn name(&self) -> String {
        self.model.root().file_name().map_or_else(
            || self.key.to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Builds (or reuses) the environment. The caller holds the cache's shared lock.
    pub fn build(
        &self,
        defer_bytecode: bool,
        cache: &env_cache::Cache,
        args: &EnvArgs,
        settings: &Settings,
        reporter: Arc<dyn env_solve::Reporter>,
    ) -> anyhow::Result<env_solve::Created> {
        let uv = args.uv.clone().or_else(|| settings.uv.clone());
        let request = env_solve::CreateRequest {
            model_root: self.model.root(),
            spec: &self.resolved.spec,
            key: &self.key,
            options: &self.options,
            channels: &self.channels,
            offline: settings.offline,
            virtual_packages: &self.virtual_packages,
            uv: uv.as_deref(),
            uv_cache_dir: settings.uv_cache_dir.as_deref(),
            locked: self.locked.as_ref(),
            defer_bytecode,
            reinstall: args.reinstall,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("Failed to start the async runtime")?;
        runtime
            .block_on(env_solve::create(cache, &request, reporter))
            .with_context(|| {
                format!(
                    "Failed to create the {} environment for `{}`",
                    self.manager,
                    self.model.root().display()
                )
            })
    }
}

/// Opens the cache for building: initialised, and its shared lock taken.
pub fn open_cache(
    settings: &Settings,
) -> anyhow::Result<(env_cache::Cache, env_cache::LockedFile)> {
    let cache = env_cache::Cache::new(&settings.cache_dir);
    cache.init()?;
    let lock = cache.lock_shared()?;
    Ok((cache, lock))
}

/// Reads the model, computes its key and builds or reuses its environment.
pub fn ensure_env(
    model_path: &Path,
    args: &EnvArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<Ensured> {
    ensure_env_with(model_path, args, settings, printer, false)
}

/// [`ensure_env`], optionally leaving bytecode to compile in the background after the build
/// (`run`, so the model starts as soon as its packages are installed).
pub fn ensure_env_with(
    model_path: &Path,
    args: &EnvArgs,
    settings: &Settings,
    printer: Printer,
    defer_bytecode: bool,
) -> anyhow::Result<Ensured> {
    let prepared = prepare(model_path, args, settings, printer)?;
    let (cache, cache_lock) = open_cache(settings)?;
    let reporter: Arc<dyn env_solve::Reporter> =
        Arc::new(ProgressReporter::new(settings, printer, &prepared.name()));
    let created = prepared.build(defer_bytecode, &cache, args, settings, reporter)?;
    for warning in &created.warnings {
        printer.warn(warning);
    }
    let spec = &prepared.resolved.spec;
    Ok(Ensured {
        variables: spec
            .conda
            .as_ref()
            .map(|c| c.variables.clone())
            .unwrap_or_default(),
        channels: spec
            .conda
            .as_ref()
            .map_or_else(|| prepared.channels.effective(&[]), |c| c.channels.clone()),
        index_args: env_solve::uv::index_args(&spec.pip.index, prepared.model.root()),
        spec_key: prepared.spec_key,
        model: prepared.model,
        manager: prepared.manager,
        created,
        cache,
        cache_lock,
    })
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

/// Runs `create`.
pub fn create(
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let mut models = args.models.clone();
    if let Some(list) = &args.from {
        let text = fs_err::read_to_string(list)?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if !line.is_empty() {
                // Relative entries are relative to the list file; model URIs are as written.
                let path = std::path::PathBuf::from(line);
                let is_uri = !matches!(
                    env_source::ModelUri::parse(line),
                    Ok(env_source::ModelUri::Local(_))
                );
                models.push(if path.is_absolute() || is_uri {
                    path
                } else {
                    list.parent().unwrap_or(Path::new(".")).join(path)
                });
            }
        }
    }
    if models.len() == 1 && args.from.is_none() {
        return create_one(&models[0], args, settings, printer);
    }
    create_many(&models, args, settings, printer)
}

fn create_one(
    model: &Path,
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let ensured = ensure_env(model, &args.env, settings, printer)?;
    let created = &ensured.created;
    if created.cache_hit {
        printer.info(format!(
            "Using cached environment: {}",
            printer.cyan(created.prefix.display())
        ));
    } else if created.built_by_other {
        printer.info(format!(
            "Using environment built by another process: {}",
            printer.cyan(created.prefix.display())
        ));
    } else {
        printer.info(format!(
            "{} {} environment in {:.1}s: {}",
            printer.green("Created"),
            ensured.manager,
            created.timings.total,
            printer.cyan(created.prefix.display())
        ));
    }
    if args.json {
        let document = CreateJson {
            model_dir: ensured.model.root().display().to_string(),
            model_source: crate::commands::resolution_of(ensured.model.root()),
            env_manager: ensured.manager,
            created,
        };
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    }
    Ok(ExitStatus::Success)
}

/// One model's outcome in a multi-model `create`.
#[derive(Serialize)]
struct ModelResult {
    model_dir: String,
    env_manager: Option<EnvManager>,
    key: Option<String>,
    /// `built`, `cached`, `built by another process`, `shared` (same key as a model before it), `failed`.
    result: &'static str,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<env_solve::Created>,
    #[serde(skip)]
    status: ExitStatus,
}

/// Builds many models' environments, `--jobs` at a time, each distinct key once; failures
/// are reported at the end and do not stop the others.
fn create_many(
    models: &[std::path::PathBuf],
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;

    let quiet = Printer::new(crate::printer::Verbosity::Quiet, printer.color());
    let mut results: Vec<ModelResult> = Vec::with_capacity(models.len());
    let mut prepared: Vec<Option<Prepared>> = Vec::with_capacity(models.len());
    for model in models {
        let start = std::time::Instant::now();
        match prepare(model, &args.env, settings, quiet) {
            Ok(p) => {
                results.push(ModelResult {
                    model_dir: p.model.root().display().to_string(),
                    env_manager: Some(p.manager),
                    key: Some(p.key.to_string()),
                    result: "pending",
                    seconds: 0.0,
                    error: None,
                    created: None,
                    status: ExitStatus::Success,
                });
                prepared.push(Some(p));
            }
            Err(err) => {
                results.push(failed(
                    model.display().to_string(),
                    None,
                    &err,
                    start.elapsed(),
                    printer,
                ));
                prepared.push(None);
            }
        }
    }
    // One build per key; the other models with that key share its outcome.
    let mut by_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (index, p) in prepared.iter().enumerate() {
        if let Some(p) = p {
            by_key.entry(p.key.to_string()).or_default().push(index);
        }
    }
    let queue: Mutex<VecDeque<Vec<usize>>> = Mutex::new(by_key.into_values().collect());
    let total = queue.lock().map_or(0, |q| q.len());
    let (cache, _cache_lock) = open_cache(settings)?;
    let multi = crate::progress::shared_multi(settings, printer);
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
    let outcomes: Mutex<Vec<(Vec<usize>, ModelResult)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..usize::from(args.jobs).min(total.max(1)) {
            scope.spawn(|| {
                while let Some(group) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
                    let Some(p) = prepared[group[0]].as_ref() else {
                        continue;
                    };
                    let start = std::time::Instant::now();
                    let reporter: Arc<dyn env_solve::Reporter> =
                        Arc::new(ProgressReporter::in_multi(multi.clone(), &p.name()));
                    let outcome = match p.build(false, &cache, &args.env, settings, reporter) {
                        Ok(created) => ModelResult {
                            model_dir: p.model.root().display().to_string(),
                            env_manager: Some(p.manager),
                            key: Some(p.key.to_string()),
                            result: if created.cache_hit {
                                "cached"
                            } else if created.built_by_other {
                                "built by another process"
                            } else {
                                "built"
                            },
                            seconds: start.elapsed().as_secs_f64(),
                            error: None,
                            created: Some(created),
                            status: ExitStatus::Success,
                        },
                        Err(err) => {
                            failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            failed(
                                p.model.root().display().to_string(),
                                Some(p),
                                &err,
                                start.elapsed(),
                                printer,
                            )
                        }
                    };
                    overall.inc(1);
                    overall.set_message(format!(
                        "{} failed",
                        failures.load(std::sync::atomic::Ordering::Relaxed)
                    ));
                    if let Ok(mut all) = outcomes.lock() {
                        all.push((group, outcome));
                    }
                }
            });
        }
    });
    overall.finish_and_clear();
    for (group, outcome) in outcomes.into_inner().unwrap_or_default() {
        for (position, index) in group.into_iter().enumerate() {
            let result = &mut results[index];
            // The first model of a key built it; the others share that environment.
            result.result = if position > 0 && outcome.result != "failed" {
                "shared"
            } else {
                outcome.result
            };
            result.seconds = outcome.seconds;
            result.error.clone_from(&outcome.error);
            result.created.clone_from(&outcome.created);
            result.status = outcome.status;
        }
    }
    print_summary(&results, printer);
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
    Ok(worst)
}

fn failed(
    model_dir: String,
    prepared: Option<&Prepared>,
    err: &anyhow::Error,
    elapsed: std::time::Duration,
    printer: Printer,
) -> ModelResult {
    let plain = Printer::new(crate::printer::Verbosity::Normal, false);
    let _ = printer;
    ModelResult {
        model_dir,
        env_manager: prepared.map(|p| p.manager),
        key: prepared.map(|p| p.key.to_string()),
        result: "failed",
        seconds: elapsed.as_secs_f64(),
        error: Some(env_solve::redact::redact(
            crate::report::render(plain, err).trim_end(),
        )),
        created: None,
        status: crate::report::exit_status(err),
    }
}

fn print_summary(results: &[ModelResult], printer: Printer) {
    use std::fmt::Write as _;
    let width = results
        .iter()
        .map(|r| r.model_dir.len())
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
        let model = if r.model_dir.len() > width {
            format!("...{}", &r.model_dir[r.model_dir.len() - (width - 3)..])
        } else {
            r.model_dir.clone()
        };
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
    let failed: Vec<&ModelResult> = results.iter().filter(|r| r.result == "failed").collect();
    let built = results.iter().filter(|r| r.result == "built").count();
    let _ = writeln!(
        out,
        "{} models: {built} built, {} cached or shared, {} failed",
        results.len(),
        results.len() - built - failed.len(),
        failed.len()
    );
    printer.error(out.trim_end());
    for r in failed {
        if let Some(error) = &r.error {
            printer.error(format!("\n{}:\n{error}", r.model_dir));
        }
    }
}

/// Runs `lock`.
pub fn lock(
    args: &crate::cli::LockArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let mut env = args.env.clone();
    // A lock describes a fresh solve, never another lock.
    env.no_lock = true;
    env.locked = None;
    let ensured = ensure_env(
        std::path::Path::new(&args.model.model),
        &env,
        settings,
        printer,
    )?;
    let cache = &ensured.cache;
    let uv = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(env_solve::uv::Uv::find(
            args.env.uv.as_deref().or(settings.uv.as_deref()),
            &cache.bucket(env_cache::TOOLS_BUCKET)?,
            settings.offline,
        ))?;
    let uv_cache = match &settings.uv_cache_dir {
        Some(dir) => dir.clone(),
        None => cache.bucket(env_cache::UV_BUCKET)?,
    };
    let text = env_solve::lock::lock_environment(
        &ensured.created.prefix,
        &ensured.spec_key,
        &ensured.manager.to_string(),
        &ensured.channels,
        &uv,
        &ensured.index_args,
        &uv_cache,
        &cache.bucket(env_cache::TMP_DIR)?,
        settings.offline,
    )?;
    match &args.output {
        Some(path) => {
            crate::commands::write_atomic(path, &text)?;
            printer.info(format!("Wrote {}", printer.cyan(path.display())));
        }
        None => printer.data(&text)?,
    }
    Ok(ExitStatus::Success)
}
