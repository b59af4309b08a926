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

/// Reads the model, computes its key and builds or reuses its environment.
pub fn ensure_env(
    model_path: &Path,
    args: &EnvArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<Ensured> {
    let model = open_model(model_path, printer)?;
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
    let mut key = resolved.spec.key(&context);
    let lock_path = match (&args.locked, args.no_lock) {
        (Some(path), _) => Some(path.clone()),
        (None, false) => {
            Some(env_solve::lock::default_lock_path(model.root())).filter(|p| p.is_file())
        }
        (None, true) => None,
    };
    let locked = match &lock_path {
        Some(path) => {
            let locked = env_solve::lock::read_lock(path)?;
            if locked.key != key.as_str() {
                return Err(env_solve::SolveError::LockStale {
                    path: path.clone(),
                    locked: locked.key,
                    current: key.to_string(),
                }
                .into());
            }
            printer.info(format!("Using lock file {}", printer.cyan(path.display())));
            key = key.with_lock(&locked.text);
            Some(locked)
        }
        None => None,
    };
    tracing::debug!("Environment key {key} for {}", model.root().display());

    let spec_key = resolved.spec.key(&context).to_string();
    let model_root = model.root().to_path_buf();
    let model_root = model_root.as_path();
    let cache = env_cache::Cache::new(&settings.cache_dir);
    cache.init()?;
    let cache_lock = cache.lock_shared()?;
    let uv = args.uv.clone().or_else(|| settings.uv.clone());
    let request = env_solve::CreateRequest {
        model_root: model.root(),
        spec: &resolved.spec,
        key: &key,
        options: &options,
        channels: &channels,
        offline: settings.offline,
        virtual_packages: &virtual_packages,
        uv: uv.as_deref(),
        uv_cache_dir: settings.uv_cache_dir.as_deref(),
        locked: locked.as_ref(),
        reinstall: args.reinstall,
    };
    let name = model
        .root()
        .file_name()
        .map_or_else(|| key.to_string(), |n| n.to_string_lossy().into_owned());
    let reporter: Arc<dyn env_solve::Reporter> =
        Arc::new(ProgressReporter::new(settings, printer, &name));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("Failed to start the async runtime")?;
    let created = runtime
        .block_on(env_solve::create(&cache, &request, reporter))
        .with_context(|| {
            format!(
                "Failed to create the {manager} environment for `{}`",
                model_path.display()
            )
        })?;
    for warning in &created.warnings {
        printer.warn(warning);
    }
    let variables = resolved
        .spec
        .conda
        .as_ref()
        .map(|c| c.variables.clone())
        .unwrap_or_default();
    Ok(Ensured {
        model,
        manager,
        created,
        variables,
        cache,
        cache_lock,
        spec_key,
        channels: resolved
            .spec
            .conda
            .as_ref()
            .map(|c| c.channels.clone())
            .unwrap_or_else(|| channels.effective(&[])),
        index_args: env_solve::uv::index_args(&resolved.spec.pip.index, model_root),
    })
}

#[derive(Serialize)]
struct CreateJson<'a> {
    model_dir: String,
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
    let ensured = ensure_env(&args.model.model, &args.env, settings, printer)?;
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
            env_manager: ensured.manager,
            created,
        };
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    }
    Ok(ExitStatus::Success)
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
    let ensured = ensure_env(&args.model.model, &env, settings, printer)?;
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
