//! The environment of a model under given settings, decided once.
//!
//! Every command that needs "the environment of this model" (`deps --format json`, `inspect`,
//! `create`, `run`, `lock`, `pack`) calls [`ModelEnvironment::resolve`], which computes, in
//! this order: the spec of the chosen env manager, the effective channels
//! (`--channel`/`--override-channels` applied, `nodefaults` dropped), `--python-version` and
//! `--install-mlflow`, the key context of this machine, the spec's key, the lock file decision
//! and the key of the environment's bucket. Before this module existed, `deps` and `inspect`
//! hashed the model's raw channels while `create` hashed the effective ones, so for
//! `channels: [conda-forge, nodefaults]` they printed a key `create` never built (issue 11).
//! Computing it in one place makes that class of disagreement impossible.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use env_cache::Cache;
use env_spec::{EnvKey, EnvManager, KeyContext, ModelDir, PipRequirement, ResolvedSpec, SpecError};
use rattler_conda_types::GenericVirtualPackage;

use crate::build::{CreateRequest, Created};
use crate::context::BuildOptions;
use crate::error::SolveError;
use crate::reporter::Reporter;
use env_conda::ChannelSettings;
use env_lock::LockedEnv;

/// Which lock file to install from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LockChoice {
    /// `pyfunc-env.lock` in the model directory, when there is one.
    #[default]
    Auto,
    /// This file (`--locked FILE`).
    File(PathBuf),
    /// None: solve (`--no-lock`, and `lock` itself).
    Ignore,
}

/// `--install-mlflow[=VERSION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMlflow {
    /// The version the MLmodel records (`mlflow_version`).
    Recorded,
    /// This version.
    Version(String),
}

impl LockChoice {
    /// `--locked FILE` names the lock file (and wins over `--no-lock`); else `--no-lock`
    /// solves afresh; else the model's own `pyfunc-env.lock`, when there is one.
    #[must_use]
    pub fn from_flags(locked: Option<PathBuf>, no_lock: bool) -> Self {
        match (locked, no_lock) {
            (Some(path), _) => Self::File(path),
            (None, false) => Self::Auto,
            (None, true) => Self::Ignore,
        }
    }
}

impl InstallMlflow {
    /// `--install-mlflow` without a value (`""`) is the version the model recorded;
    /// `--install-mlflow=VERSION` that version.
    #[must_use]
    pub fn from_flag(value: &str) -> Self {
        if value.is_empty() {
            Self::Recorded
        } else {
            Self::Version(value.to_string())
        }
    }
}

/// What the caller asks for: everything that decides which environment a model gets.
#[derive(Debug, Clone, Default)]
pub struct EnvRequest {
    /// The env manager; `None` for the model's default (MLflow's choice).
    pub manager: Option<EnvManager>,
    /// `--python-version`: replaces the Python version of a virtualenv-mode spec.
    pub python_version: Option<String>,
    /// `--install-mlflow`: adds (or replaces) the `mlflow` requirement.
    pub install_mlflow: Option<InstallMlflow>,
    /// Channels and mirrors.
    pub channels: ChannelSettings,
    /// Build options (part of the key).
    pub options: BuildOptions,
    /// Which lock file to install from.
    pub lock: LockChoice,
    /// The uv binary (`--uv`, `PYFUNC_ENV_UV`); its version is part of the key.
    pub uv: Option<PathBuf>,
    /// `predict -r/--pip-requirements-override`: requirements that replace the model's own
    /// pins of the same packages (MLflow's meaning), so the environment gets its own key.
    pub pip_requirements_override: Vec<String>,
    /// `--no-compat-constraints`: build exactly what MLflow builds, without the constraints
    /// that keep old MLflow scoring stacks working (issue 16).
    pub no_compat_constraints: bool,
}

/// How to build, beyond what the key covers: nothing here changes the environment.
#[derive(Debug, Clone, Default)]
pub struct BuildSettings {
    /// No network.
    pub offline: bool,
    /// uv's cache directory (default: the cache's `uv-v1/`).
    pub uv_cache_dir: Option<PathBuf>,
    /// Rebuild even if complete (`--reinstall`).
    pub reinstall: bool,
    /// A shared cache to pull complete environments from and push built ones to
    /// (`--remote-cache`).
    pub remote: Option<Arc<dyn crate::remote::RemoteCache>>,
}

/// Why a model's environment could not be decided.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EnvError {
    /// The model's files do not give a spec for this env manager.
    #[error("Failed to read the {manager} environment of `{}`", model.display())]
    Spec {
        /// The env manager.
        manager: EnvManager,
        /// The model directory.
        model: PathBuf,
        /// The cause.
        #[source]
        source: SpecError,
    },

    /// The MLmodel could not be read for `--install-mlflow`'s default version.
    #[error("Failed to read the MLmodel of `{}`", model.display())]
    MlModel {
        /// The model directory.
        model: PathBuf,
        /// The cause.
        #[source]
        source: SpecError,
    },

    /// `--python-version` in conda mode.
    #[error(
        "`--python-version` applies to virtualenv environments; in conda mode Python is one of the conda dependencies"
    )]
    PythonVersionInCondaMode,

    /// `--install-mlflow` without a version, and the MLmodel records none.
    #[error("The MLmodel records no `mlflow_version`; pass one: `--install-mlflow=2.9.2`")]
    NoMlflowVersion,

    /// A `--pip-requirements-override` entry is not a requirement.
    #[error("Invalid `--pip-requirements-override` requirement `{requirement}`: {message}")]
    InvalidOverride {
        /// The entry given.
        requirement: String,
        /// Why it does not parse.
        message: String,
    },

    /// `--exclude-newer model` and the MLmodel has no usable creation time.
    #[error(
        "`--exclude-newer model` needs the MLmodel's `utc_time_created`, which is missing or not a `YYYY-MM-DD HH:MM:SS` time"
    )]
    #[diagnostic(help("Pass a date instead: `--exclude-newer 2024-05-01`"))]
    NoCreationTime,

    /// `--install-mlflow=VERSION` does not make a requirement.
    #[error("Invalid `--install-mlflow` version `{version}`: {message}")]
    InvalidMlflowVersion {
        /// The version given.
        version: String,
        /// Why it does not parse.
        message: String,
    },

    /// Virtual packages, the platform, or the lock file.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Solve(#[from] SolveError),
}

impl EnvError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Spec { source, .. } | Self::MlModel { source, .. } => source.is_user_error(),
            Self::PythonVersionInCondaMode
            | Self::NoMlflowVersion
            | Self::InvalidOverride { .. }
            | Self::NoCreationTime
            | Self::InvalidMlflowVersion { .. } => true,
            Self::Solve(error) => error.is_user_error(),
        }
    }
}

/// The environment of one model under one [`EnvRequest`]: everything decided, nothing built.
#[derive(Debug)]
pub struct ModelEnvironment {
    /// The model.
    pub model: ModelDir,
    /// The env manager.
    pub manager: EnvManager,
    /// The spec the key is computed over: effective channels, `--python-version` and
    /// `--install-mlflow` applied.
    pub resolved: ResolvedSpec,
    /// What besides the spec the key covers on this machine.
    pub context: KeyContext,
    /// The key of the spec alone, which lock files record.
    pub spec_key: EnvKey,
    /// The key of the environment: [`Self::spec_key`], or with a lock, the key of the lock.
    /// The environment lives in `envs-v1/<key>`.
    pub key: EnvKey,
    /// The lock file installed from, and what it holds.
    pub lock: Option<(PathBuf, LockedEnv)>,
    /// Channels and mirrors.
    pub channels: ChannelSettings,
    /// Build options.
    pub options: BuildOptions,
    /// The machine's virtual packages.
    pub virtual_packages: Vec<GenericVirtualPackage>,
    /// The uv binary asked for (`--uv`), if any, and what it (or the `uv` on `PATH`) is.
    pub uv: env_uv::UvProbe,
}

impl ModelEnvironment {
    /// Decides the environment of `model` under `request`: the one function every command
    /// uses, so they all agree on the key.
    pub fn resolve(model: ModelDir, request: &EnvRequest) -> Result<Self, EnvError> {
        let virtual_packages = crate::context::detect_virtual_packages()?;
        Self::resolve_with(model, request, virtual_packages)
    }

    /// [`Self::resolve`] with the virtual packages already detected (`inspect` resolves both
    /// env managers; `create` many models).
    pub fn resolve_with(
        model: ModelDir,
        request: &EnvRequest,
        virtual_packages: Vec<GenericVirtualPackage>,
    ) -> Result<Self, EnvError> {
        let uv = env_uv::UvProbe::new(request.uv.clone());
        Self::resolve_probing(model, request, virtual_packages, uv)
    }

    /// [`Self::resolve_with`], keyed with the version `uv` gives (a probe that may answer from
    /// the cache's memo, [`env_uv::UvProbe::remembering`]).
    pub(crate) fn resolve_probing(
        model: ModelDir,
        request: &EnvRequest,
        virtual_packages: Vec<GenericVirtualPackage>,
        uv: env_uv::UvProbe,
    ) -> Result<Self, EnvError> {
        // Without an MLmodel there is no model, whatever the env manager: say that, not
        // "Failed to read the conda environment" of a manager nobody chose (issue 23).
        if !model.fs().exists(env_spec::mlmodel::MLMODEL_FILE) {
            return Err(EnvError::MlModel {
                model: model.root().to_path_buf(),
                source: SpecError::NoMlmodel {
                    dir: model.root().to_path_buf(),
                },
            });
        }
        let requested = request
            .manager
            .unwrap_or_else(|| model.default_env_manager());
        let mut resolved = model.spec(requested).map_err(|source| EnvError::Spec {
            manager: requested,
            model: model.root().to_path_buf(),
            source,
        })?;
        // `uv` on a model without `uv.lock` builds (and shares) the virtualenv environment.
        let manager = resolved.spec.env_manager;
        if let Some(conda) = resolved.spec.conda.as_mut() {
            conda.channels = request.channels.effective(&conda.channels);
        }
        if let Some(version) = &request.python_version {
            if manager == EnvManager::Conda {
                return Err(EnvError::PythonVersionInCondaMode);
            }
            resolved.spec.python = Some(version.clone());
        }
        if let Some(install) = &request.install_mlflow {
            let version = match install {
                InstallMlflow::Version(version) => version.clone(),
                InstallMlflow::Recorded => model
                    .mlmodel()
                    .map_err(|source| EnvError::MlModel {
                        model: model.root().to_path_buf(),
                        source,
                    })?
                    .mlflow_version()
                    .ok_or(EnvError::NoMlflowVersion)?,
            };
            let requirement =
                PipRequirement::named(&format!("mlflow=={version}")).map_err(|message| {
                    EnvError::InvalidMlflowVersion {
                        version: version.clone(),
                        message,
                    }
                })?;
            resolved
                .spec
                .pip
                .requirements
                .retain(|r| r.name().as_deref() != Some("mlflow"));
            resolved.spec.pip.requirements.push(requirement);
        }
        if !request.pip_requirements_override.is_empty() {
            let overrides = request
                .pip_requirements_override
                .iter()
                .map(|text| {
                    PipRequirement::named(text).map_err(|message| EnvError::InvalidOverride {
                        requirement: text.clone(),
                        message,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            resolved.spec.override_requirements(overrides);
        }
        // The compatibility constraints follow the final requirements: a package the
        // overrides or `--install-mlflow` pin is no longer left open.
        resolved.spec.refresh_compat_constraints();
        if request.no_compat_constraints {
            resolved.spec.compat_constraints.clear();
        }
        let mut options = request.options.clone();
        if options.exclude_newer.as_deref() == Some("model") {
            let created = model
                .mlmodel()
                .map_err(|source| EnvError::MlModel {
                    model: model.root().to_path_buf(),
                    source,
                })?
                .utc_time_created()
                .ok_or(EnvError::NoCreationTime)?;
            options.exclude_newer = Some(created);
        }
        // uv installs a virtualenv-mode environment's packages (and makes the venv), and a conda
        // file's `pip:` list; its version is then part of the key.
        let uses_uv =
            manager.is_venv() || !resolved.spec.build.is_empty() || !resolved.spec.pip.is_empty();
        let uv_version = if uses_uv { uv.expected_version() } else { None };
        let context =
            crate::context::key_context(manager, &options, &virtual_packages, uv_version)?;
        let spec_key = resolved.spec.key(&context);
        let lock_path = match &request.lock {
            LockChoice::File(path) => Some(path.clone()),
            LockChoice::Auto => {
                Some(env_lock::default_lock_path(model.root())).filter(|p| p.is_file())
            }
            LockChoice::Ignore => None,
        };
        let (key, lock) = match lock_path {
            Some(path) => {
                let locked = env_lock::read_lock(&path).map_err(SolveError::from)?;
                if locked.key != spec_key.as_str() {
                    return Err(SolveError::from(env_lock::LockError::LockStale {
                        path,
                        locked: locked.key,
                        current: spec_key.to_string(),
                    })
                    .into());
                }
                (spec_key.with_lock(&locked.text), Some((path, locked)))
            }
            None => (spec_key.clone(), None),
        };
        tracing::debug!("Environment key {key} for {}", model.root().display());
        Ok(Self {
            model,
            manager,
            resolved,
            context,
            spec_key,
            key,
            lock,
            channels: request.channels.clone(),
            options,
            virtual_packages,
            uv,
        })
    }

    /// A short name for progress and tables: the model directory's name.
    #[must_use]
    pub fn name(&self) -> String {
        self.model.root().file_name().map_or_else(
            || self.key.to_string(),
            |n| n.to_string_lossy().into_owned(),
        )
    }

    /// Where the environment lives (or will) in `cache`. Creates nothing.
    #[must_use]
    pub fn prefix(&self, cache: &Cache) -> PathBuf {
        cache
            .root()
            .join(env_cache::ENVS_BUCKET)
            .join(self.key.as_str())
    }

    /// Whether `cache` holds the environment, complete. Creates nothing.
    pub fn is_cached(&self, cache: &Cache) -> Result<bool, SolveError> {
        if !cache.root().join(env_cache::ENVS_BUCKET).is_dir() {
            return Ok(false);
        }
        Ok(matches!(
            cache.env(self.key.as_str())?.state(),
            env_cache::EnvState::Complete(_)
        ))
    }

    /// The effective conda channels (conda mode), or the channels a virtualenv-mode Python
    /// would come from.
    #[must_use]
    pub fn effective_channels(&self) -> Vec<String> {
        self.resolved.spec.conda.as_ref().map_or_else(
            || self.channels.effective(&[]),
            |conda| conda.channels.clone(),
        )
    }

    /// Variables the environment's conda file sets on activation.
    #[must_use]
    pub fn variables(&self) -> std::collections::BTreeMap<String, String> {
        self.resolved
            .spec
            .conda
            .as_ref()
            .map(|c| c.variables.clone())
            .unwrap_or_default()
    }

    /// How uv is told the spec's pip index options (flags, and variables for the URLs).
    #[must_use]
    pub fn index_args(&self) -> env_uv::IndexArgs {
        let mut args = env_uv::index_args(&self.resolved.spec.pip.index, self.model.root());
        // A uv.lock's packages come from the indexes it records (PyPI is uv's default): `lock`
        // finds their files there. Lock files never hold credentials. They join the model's
        // extra indexes in uv's variable: a flag would replace the variable entirely.
        if let Some(project) = &self.resolved.spec.uv_project {
            let extra: Vec<String> = project
                .registries()
                .into_iter()
                .filter(|url| {
                    !url.trim_end_matches('/')
                        .eq_ignore_ascii_case("https://pypi.org/simple")
                })
                .map(ToString::to_string)
                .collect();
            if !extra.is_empty() {
                match args
                    .env
                    .iter_mut()
                    .find(|(name, _)| name == "UV_EXTRA_INDEX_URL")
                {
                    Some((_, value)) => {
                        value.push(' ');
                        value.push_str(&extra.join(" "));
                    }
                    None => args
                        .env
                        .push(("UV_EXTRA_INDEX_URL".to_string(), extra.join(" "))),
                }
            }
        }
        args
    }

    /// Builds (or reuses) the environment. The caller holds the cache's shared lock.
    pub async fn build(
        &self,
        cache: &Cache,
        settings: &BuildSettings,
        defer_bytecode: bool,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Created, SolveError> {
        let request = CreateRequest {
            model_root: self.model.root(),
            spec: &self.resolved.spec,
            key: &self.key,
            options: &self.options,
            channels: &self.channels,
            offline: settings.offline,
            virtual_packages: &self.virtual_packages,
            uv: &self.uv,
            uv_cache_dir: settings.uv_cache_dir.as_deref(),
            locked: self.lock.as_ref().map(|(_, locked)| locked),
            defer_bytecode,
            reinstall: settings.reinstall,
            remote: settings.remote.as_ref(),
        };
        crate::build::create(cache, &request, reporter).await
    }

    /// Builds (or reuses) the environment from a fresh solve, then its lock file text (`lock`).
    /// The caller holds the cache's shared lock.
    pub async fn build_and_lock(
        &self,
        cache: &Cache,
        settings: &BuildSettings,
        reporter: Arc<dyn Reporter>,
    ) -> Result<(Created, String), SolveError> {
        let created = self.build(cache, settings, false, reporter).await?;
        let text = self.lock(&created.prefix, cache, settings).await?;
        Ok((created, text))
    }

    /// The lock file text of this environment, built at `prefix` (from [`Self::build`]):
    /// every conda record and every distribution uv installed, headed by [`Self::spec_key`].
    pub async fn lock(
        &self,
        prefix: &Path,
        cache: &Cache,
        settings: &BuildSettings,
    ) -> Result<String, SolveError> {
        let uv = self.uv.find(cache, settings.offline).await?;
        let uv_cache = match &settings.uv_cache_dir {
            Some(dir) => dir.clone(),
            None => cache.bucket(env_cache::UV_BUCKET)?,
        };
        let (prefix, spec_key, manager, channels, index_args, scratch, offline) = (
            prefix.to_path_buf(),
            self.spec_key.to_string(),
            self.manager.to_string(),
            self.effective_channels(),
            self.index_args(),
            cache.bucket(env_cache::TMP_DIR)?,
            settings.offline,
        );
        // It reads the prefix and runs uv: blocking work.
        crate::build::off_runtime(move || {
            env_lock::lock_environment(
                &prefix,
                &spec_key,
                &manager,
                &channels,
                &uv,
                &index_args,
                &uv_cache,
                &scratch,
                offline,
            )
            .map_err(SolveError::from)
        })
        .await
    }

    /// The model directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        self.model.root()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_lock_file_wins_over_no_lock() {
        let file = PathBuf::from("env.lock");
        assert_eq!(
            LockChoice::from_flags(Some(file.clone()), true),
            LockChoice::File(file.clone())
        );
        assert_eq!(
            LockChoice::from_flags(Some(file.clone()), false),
            LockChoice::File(file)
        );
        assert_eq!(LockChoice::from_flags(None, true), LockChoice::Ignore);
        assert_eq!(LockChoice::from_flags(None, false), LockChoice::Auto);
    }

    #[test]
    fn install_mlflow_without_a_version_is_the_recorded_one() {
        assert_eq!(InstallMlflow::from_flag(""), InstallMlflow::Recorded);
        assert_eq!(
            InstallMlflow::from_flag("2.9.2"),
            InstallMlflow::Version("2.9.2".into())
        );
    }
}
