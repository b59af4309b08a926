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
    let key = resolved.spec.key(&context);
    tracing::debug!("Environment key {key} for {}", model.root().display());

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
