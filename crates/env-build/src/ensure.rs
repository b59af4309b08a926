//! The environment of a model, ready for a command: the one call `create`, `lock`, `run` and
//! `pack` make ([`ModelEnvironment::ensure`]). (`cache push` never builds: it calls env-remote's
//! `Remote::push_model`.)
//!
//! It decides the environment ([`ModelEnvironment::resolve`]), takes the cache's shared lock,
//! builds or reuses the environment, and returns it with that lock, held for as long as the
//! caller keeps the result. Before this module each command made these calls itself in the
//! CLI, and each brought its own async runtime (issue 11).
//!
//! The model comes in opened ([`OpenedModel`], a downloaded model holding its lock) and its lock
//! stays in [`Ensured`] with the others, so one value holds everything a command needs kept:
//! the model, the cache and the environment ([`Ensured::lock_files`]), and `env-run` hands all
//! of them to the process it starts. (Before issue 24 the model's lock travelled beside the
//! environment, and each command had to remember to pass it on.)
//!
//! For a command that uses the environment (`run`, `pack`): between "the environment is
//! complete" and "the command has finished with it", `cache prune` or a `--reinstall` in another
//! process could remove it. So the cache's shared lock is taken before the build and the
//! environment's shared lock after it, both kept in [`Ensured`] for as long as the command runs
//! (and passed on to the process it starts); the environment is then checked again, since it may
//! have gone while we waited for its lock.

use std::borrow::Cow;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use env_cache::{Cache, EnvState, LockedFile};
use env_source::{OpenedModel, Resolved};
use env_spec::EnvManager;

use crate::build::Created;
use crate::environment::{BuildSettings, EnvError, EnvRequest, LockChoice, ModelEnvironment};
use crate::error::SolveError;
use crate::reporter::Reporter;

/// When a freshly built environment's bytecode is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bytecode {
    /// During the build, before the environment is handed out.
    DuringBuild,
    /// After the build, in a detached low-priority process (`program args... PREFIX`, e.g.
    /// `pyfunc-env --cache-dir DIR __compile-bytecode`), so a model starts as soon as its
    /// packages are installed ([`crate::build::compile_in_background`]).
    InBackground {
        /// The compiler program.
        program: PathBuf,
        /// Its arguments; the prefix is appended.
        args: Vec<OsString>,
    },
}

impl Bytecode {
    /// When a fresh build's bytecode is compiled for a command that uses the environment:
    /// before it starts (`foreground`, `run --compile-foreground`), else after it started, by
    /// this very program's hidden command (`EXE --cache-dir DIR __compile-bytecode PREFIX`).
    #[must_use]
    pub fn for_use(foreground: bool, cache_dir: &std::path::Path) -> Self {
        if foreground {
            return Self::DuringBuild;
        }
        Self::InBackground {
            program: std::env::current_exe().unwrap_or_else(|_| "pyfunc-env".into()),
            args: vec![
                "--cache-dir".into(),
                cache_dir.as_os_str().to_owned(),
                "__compile-bytecode".into(),
            ],
        }
    }
}

/// What the command does with the environment's mlflow, when it needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlflowUse {
    /// `run -- predict`.
    Score,
    /// `run -- serve`.
    Serve,
}

impl MlflowUse {
    fn verb(self) -> &'static str {
        match self {
            Self::Score => "score",
            Self::Serve => "serve",
        }
    }
}

/// What the command does with the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// `create`: build or reuse it.
    Create,
    /// `lock`: build or reuse it from a fresh solve, then write its lock file text
    /// ([`Ensured::lock_text`]).
    Lock,
    /// `run`, `pack`: build or reuse it, then hold it (its shared lock) and check it is usable.
    Use {
        /// When a fresh build's bytecode is compiled.
        bytecode: Bytecode,
        /// Whether the command needs the environment's mlflow.
        mlflow: Option<MlflowUse>,
    },
}

impl Purpose {
    /// The request as this purpose takes it: a lock describes a fresh solve, never another
    /// lock, so [`Purpose::Lock`] ignores any lock file (`--locked`, the model's own).
    fn request<'a>(&self, request: &'a EnvRequest) -> Cow<'a, EnvRequest> {
        match self {
            Self::Lock if request.lock != LockChoice::Ignore => Cow::Owned(EnvRequest {
                lock: LockChoice::Ignore,
                ..request.clone()
            }),
            _ => Cow::Borrowed(request),
        }
    }
}

/// What [`ModelEnvironment::ensure`] would do with a model's environment, found without
/// building anything ([`ModelEnvironment::plan`], `create --dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Complete in the cache: it would be reused.
    Cached,
    /// Not in the cache, and the remote cache holds it: it would be pulled.
    Pull,
    /// It would be built (not in the cache nor the remote cache, or `--reinstall`).
    Build,
}

/// A model's environment decided, and what ensuring it would do.
#[derive(Debug)]
pub struct Planned {
    /// The model's environment: spec, key, lock.
    pub env: ModelEnvironment,
    /// What the model URI resolved to (holding the downloaded model's lock); `None` for a
    /// directory.
    pub source: Option<Resolved>,
    /// Where it lives (or would).
    pub prefix: PathBuf,
    /// Its Python.
    pub python: PathBuf,
    /// What [`ModelEnvironment::ensure`] would do.
    pub plan: Plan,
}

impl Planned {
    /// The `create --dry-run --json` document: the model, its manager, key, prefix and Python,
    /// and whether the environment is cached. (Was copied field by field in the CLI.)
    #[must_use]
    pub fn document(&self) -> PlanDocument {
        PlanDocument {
            model_dir: self.env.root().display().to_string(),
            env_manager: self.env.manager,
            key: self.env.key.to_string(),
            prefix: self.prefix.display().to_string(),
            python: self.python.display().to_string(),
            cache_hit: self.plan == Plan::Cached,
            dry_run: true,
        }
    }
}

impl Planned {
    /// What `create --dry-run` says of this plan, with the remote cache of `build`.
    #[must_use]
    pub fn note(&self, build: &BuildSettings) -> PlanNote {
        PlanNote {
            plan: self.plan,
            manager: self.env.manager,
            remote: build.remote.as_ref().map(|remote| remote.url()),
        }
    }
}

/// What `create --dry-run` says a [`Plan`] would do, in the words before the prefix (which
/// the caller shows after a colon): "Environment is cached", "Would pull conda environment
/// from the remote cache \`URL\`", "Would create conda environment". (Was worded in the
/// CLI's `create`.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanNote {
    /// What would be done.
    pub plan: Plan,
    /// The env manager.
    pub manager: EnvManager,
    /// The remote cache's URL (no secrets), if there is one.
    pub remote: Option<String>,
}

impl std::fmt::Display for PlanNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let manager = self.manager;
        match self.plan {
            Plan::Cached => f.write_str("Environment is cached"),
            Plan::Pull => write!(
                f,
                "Would pull {manager} environment from the remote cache `{}`",
                self.remote.as_deref().unwrap_or_default()
            ),
            Plan::Build => write!(f, "Would create {manager} environment"),
        }
    }
}

/// The `create --dry-run --json` document ([`Planned::document`]).
#[derive(Debug, serde::Serialize)]
pub struct PlanDocument {
    /// The model directory.
    pub model_dir: String,
    /// The env manager.
    pub env_manager: EnvManager,
    /// The environment's key.
    pub key: String,
    /// Where it lives (or would).
    pub prefix: String,
    /// Its Python.
    pub python: String,
    /// Whether it is complete in the cache.
    pub cache_hit: bool,
    /// Always `true`: nothing was built.
    pub dry_run: bool,
}

/// Receives what [`ModelEnvironment::ensure`] decides and waits for; the CLI prints it
/// (libraries never print).
pub trait EnsureReporter: Send + Sync {
    /// The environment is decided (its warnings, its lock file), nothing built yet; returns the
    /// reporter of its build.
    fn on_resolved(&self, env: &ModelEnvironment) -> Arc<dyn Reporter>;

    /// Another process holds the environment exclusively ([`Purpose::Use`]); called again every
    /// 30 s while waiting.
    fn on_wait(&self, _message: &str) {}
}

/// Why an environment could not be made ready.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EnsureError {
    /// The model's environment could not be decided.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Env(#[from] EnvError),

    /// Building (or reusing) the environment failed.
    #[error("Failed to create the {manager} environment for `{}`", model.display())]
    Build {
        /// The env manager.
        manager: EnvManager,
        /// The model directory.
        model: PathBuf,
        /// The cause.
        #[source]
        source: SolveError,
    },

    /// Building the environment or writing its lock file failed ([`Purpose::Lock`]).
    #[error("Failed to lock the {manager} environment for `{}`", model.display())]
    Lock {
        /// The env manager.
        manager: EnvManager,
        /// The model directory.
        model: PathBuf,
        /// The cause.
        #[source]
        source: SolveError,
    },

    /// The cache could not be opened or locked.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),

    /// `cache prune` or a rebuild removed the environment while we waited for its lock.
    #[error("The environment `{key}` was removed while starting; run the command again")]
    Removed {
        /// The key.
        key: String,
    },

    /// The environment is complete but its Python is gone.
    #[error("The environment's Python `{}` is missing: the environment is damaged", python.display())]
    #[diagnostic(help(
        "Check it with `pyfunc-env cache verify {key}` and rebuild it with `pyfunc-env create {} --reinstall`", model.display()
    ))]
    PythonMissing {
        /// The interpreter that should be there.
        python: PathBuf,
        /// The key.
        key: String,
        /// The model directory.
        model: PathBuf,
    },

    /// The command scores or serves, and the environment has no mlflow.
    #[error(
        "mlflow is not installed in the model's environment, so it cannot {}. Rerun with `--install-mlflow`{}",
        purpose.verb(),
        recorded.as_ref().map(|v| format!(" (adds mlflow=={v}, the version that saved the model)")).unwrap_or_default()
    )]
    MlflowMissing {
        /// What the command does.
        purpose: MlflowUse,
        /// The mlflow version the MLmodel records.
        recorded: Option<String>,
    },

    /// A blocking task of the runtime failed (a bug).
    #[error("Internal error: {message}")]
    Internal {
        /// What failed.
        message: String,
    },
}

impl EnsureError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Env(source) => source.is_user_error(),
            Self::Build { source, .. } | Self::Lock { source, .. } => source.is_user_error(),
            Self::PythonMissing { .. } | Self::MlflowMissing { .. } => true,
            Self::Cache(_) | Self::Removed { .. } | Self::Internal { .. } => false,
        }
    }
}

/// A model's environment, built (or reused) and held for a command.
#[derive(Debug)]
pub struct Ensured {
    /// The model's environment: spec, key, lock.
    pub env: ModelEnvironment,
    /// What the build did.
    pub created: Created,
    /// The lock file text ([`Purpose::Lock`]).
    pub lock_text: Option<String>,
    /// What the model URI resolved to, holding the downloaded model's lock (`cache prune`
    /// keeps the model while it is held); `None` for a directory.
    pub source: Option<Resolved>,
    /// The cache's shared lock: `cache clean` waits while it is held.
    cache_lock: LockedFile,
    /// The environment's shared lock ([`Purpose::Use`]): `cache prune` and rebuilds wait while
    /// it is held.
    env_lock: Option<LockedFile>,
}

/// The `create --json` document ([`Ensured::document`]): the model, where a model URI came
/// from, the manager, and what the build did.
#[derive(Debug, serde::Serialize)]
pub struct EnsuredDocument<'a> {
    /// The model directory.
    pub model_dir: String,
    /// Where the model came from, when given as a URI: the URI, the artifact location, the
    /// registered name and resolved version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_source: Option<&'a Resolved>,
    /// The env manager.
    pub env_manager: EnvManager,
    /// What the build did.
    #[serde(flatten)]
    pub created: &'a Created,
}

impl Ensured {
    /// The `create --json` document. (Was assembled in the CLI.)
    #[must_use]
    pub fn document(&self) -> EnsuredDocument<'_> {
        EnsuredDocument {
            model_dir: self.env.root().display().to_string(),
            model_source: self.source.as_ref(),
            env_manager: self.env.manager,
            created: &self.created,
        }
    }

    /// The lock files a process started in the environment must inherit, so the cache, the
    /// environment and a downloaded model stay until that process (not only this one) has
    /// exited.
    #[must_use]
    pub fn lock_files(&self) -> Vec<&std::fs::File> {
        let model = self
            .source
            .as_ref()
            .and_then(|source| source.lock.as_deref());
        std::iter::once(self.cache_lock.file())
            .chain(self.env_lock.as_ref().map(LockedFile::file))
            .chain(model.map(LockedFile::file))
            .flatten()
            .collect()
    }
}

impl ModelEnvironment {
    /// The one call of `create`, `lock`, `run` and `pack`: decides the environment of `model`
    /// (a directory, or an [`OpenedModel`] holding a downloaded model's lock, which the result
    /// keeps) under `request`, tells `reporter` ([`EnsureReporter::on_resolved`]), takes `cache`'s
    /// shared lock (initialising the cache), builds or reuses the environment, and for
    /// [`Purpose::Use`] holds and checks it. The locks are held as long as the result lives.
    pub async fn ensure(
        model: impl Into<OpenedModel>,
        request: &EnvRequest,
        cache: &Cache,
        settings: &BuildSettings,
        purpose: &Purpose,
        reporter: Arc<dyn EnsureReporter>,
    ) -> Result<Ensured, EnsureError> {
        let OpenedModel { model, source } = model.into();
        let env = Self::resolve_for_cache(model, &purpose.request(request), cache)?;
        let build_reporter = reporter.on_resolved(&env);
        let cache_lock = {
            let cache = cache.clone();
            let uv = env.uv.clone();
            // Waits while `cache clean` or `cache prune` holds the cache.
            blocking(move || {
                cache.init()?;
                uv.save();
                cache.lock_shared()
            })
            .await??
        };
        let (created, lock_text) = match purpose {
            Purpose::Create => {
                let created = env
                    .build(cache, settings, false, build_reporter)
                    .await
                    .map_err(|source| env.build_error(source))?;
                (created, None)
            }
            Purpose::Lock => {
                let (created, text) = env
                    .build_and_lock(cache, settings, build_reporter)
                    .await
                    .map_err(|source| EnsureError::Lock {
                        manager: env.manager,
                        model: env.root().to_path_buf(),
                        source,
                    })?;
                (created, Some(text))
            }
            Purpose::Use { bytecode, .. } => {
                let defer_bytecode = matches!(bytecode, Bytecode::InBackground { .. });
                let created = env
                    .build(cache, settings, defer_bytecode, build_reporter)
                    .await
                    .map_err(|source| env.build_error(source))?;
                (created, None)
            }
        };
        let mut ensured = Ensured {
            env,
            created,
            lock_text,
            source,
            cache_lock,
            env_lock: None,
        };
        if let Purpose::Use { bytecode, mlflow } = purpose {
            ensured.env_lock = Some(hold(&ensured, cache, bytecode, *mlflow, reporter).await?);
        }
        Ok(ensured)
    }

    /// The dry-run mode of [`Self::ensure`] (`create --dry-run`): decides the environment of
    /// `model` under `request` exactly as `ensure` would for `purpose` (the same key), and says
    /// whether it would be reused, pulled from the remote cache (its manifest is read, nothing
    /// downloaded) or built. Builds and locks nothing; it writes no more than `ensure` does
    /// before building (the cache's memo that this machine has no NVIDIA driver).
    pub async fn plan(
        model: impl Into<OpenedModel>,
        request: &EnvRequest,
        cache: &Cache,
        settings: &BuildSettings,
        purpose: &Purpose,
    ) -> Result<Planned, EnsureError> {
        let OpenedModel { model, source } = model.into();
        let env = Self::resolve_for_cache(model, &purpose.request(request), cache)?;
        let prefix = env.prefix(cache);
        let mut plan = plan_of(&env, cache, settings).map_err(EnvError::from)?;
        if let (Plan::Build, Some(remote), false) = (plan, &settings.remote, settings.reinstall)
            && remote.holds(env.key.as_str()).await
        {
            plan = Plan::Pull;
        }
        Ok(Planned {
            python: env_prefix::python_of(&prefix),
            prefix,
            env,
            source,
            plan,
        })
    }

    /// [`Self::resolve`] for a command about to use `cache`: what every `run` pays before its
    /// command starts, so nothing here starts a process on a cache hit (issue 25). The uv
    /// version in the key comes from the cache's memo while the binary is unchanged, and the
    /// CUDA detection from rattler's record in the tools bucket, or on a machine without an
    /// NVIDIA driver from [`crate::context::NO_CUDA_MEMO`] (no `nvidia-smi`). The uv memo only finds
    /// environments: when the environment is not complete, uv is asked for its version and the
    /// key recomputed if the memo was stale, so a build never runs under a wrong key.
    fn resolve_for_cache(
        model: env_spec::ModelDir,
        request: &EnvRequest,
        cache: &Cache,
    ) -> Result<Self, EnsureError> {
        let tools = cache.root().join(env_cache::TOOLS_BUCKET);
        let virtual_packages = crate::context::detect_virtual_packages_in(Some(tools.as_path()))
            .map_err(EnvError::from)?;
        let uv = env_uv::UvProbe::remembering(request.uv.clone(), uv_memo(cache));
        let env = Self::resolve_probing(model, request, virtual_packages, uv)?;
        if env.context.uv.is_none()
            || !env.uv.memo_was_used()
            || env.is_cached(cache).map_err(EnvError::from)?
        {
            return Ok(env);
        }
        let uv = env.uv.asked_again();
        let asked = uv.expected_version();
        if asked == env.context.uv {
            return Ok(env);
        }
        tracing::debug!(
            "uv's version changed since it was remembered ({:?} now, {:?} remembered): keying again",
            asked,
            env.context.uv
        );
        Ok(Self::resolve_probing(
            env.model,
            request,
            env.virtual_packages,
            uv,
        )?)
    }

    fn build_error(&self, source: SolveError) -> EnsureError {
        EnsureError::Build {
            manager: self.manager,
            model: self.root().to_path_buf(),
            source,
        }
    }
}

/// What ensuring `env` would do in `cache`, the remote cache not asked.
pub(crate) fn plan_of(
    env: &ModelEnvironment,
    cache: &Cache,
    settings: &BuildSettings,
) -> Result<Plan, SolveError> {
    Ok(if !settings.reinstall && env.is_cached(cache)? {
        Plan::Cached
    } else {
        Plan::Build
    })
}

/// The cache's memo of uv versions ([`env_uv::VERSION_MEMO`]).
fn uv_memo(cache: &Cache) -> PathBuf {
    cache
        .root()
        .join(env_cache::TOOLS_BUCKET)
        .join(env_uv::VERSION_MEMO)
}

/// Runs blocking work (a lock that may wait) on the runtime's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, EnsureError> {
    crate::build::spawn_blocking(work)
        .await
        .map_err(|error| EnsureError::Internal {
            message: error.to_string(),
        })
}

/// Takes the environment's shared lock for a command that uses it, checks it is still there
/// and usable, and starts the background bytecode compiler if the build deferred it.
async fn hold(
    ensured: &Ensured,
    cache: &Cache,
    bytecode: &Bytecode,
    mlflow: Option<MlflowUse>,
    reporter: Arc<dyn EnsureReporter>,
) -> Result<LockedFile, EnsureError> {
    let created = &ensured.created;
    let entry = cache.env(created.key.as_str())?;
    let env_lock = {
        let entry = entry.clone();
        blocking(move || {
            entry.lock_shared(|_, holders| {
                reporter.on_wait(&format!(
                    "Waiting for the environment to be free{}",
                    env_cache::child::describe(holders)
                ));
            })
        })
        .await??
    };
    if !matches!(entry.state(), EnvState::Complete(_)) {
        return Err(EnsureError::Removed {
            key: created.key.to_string(),
        });
    }
    let python = env_prefix::python_of(&created.prefix);
    if !python.exists() {
        return Err(EnsureError::PythonMissing {
            python,
            key: created.key.to_string(),
            model: ensured.env.root().to_path_buf(),
        });
    }
    if let Some(purpose) = mlflow
        && !env_prefix::has_mlflow(&created.prefix)
    {
        return Err(EnsureError::MlflowMissing {
            purpose,
            recorded: ensured
                .env
                .model
                .mlmodel()
                .ok()
                .and_then(|m| m.mlflow_version()),
        });
    }
    if let Bytecode::InBackground { program, args } = bytecode
        && created.bytecode_deferred
    {
        // The command starts now; the bytecode is compiled alongside, at low priority,
        // holding the environment's lock like the command does. Only after the checks
        // above: it used to start before them, compiling for a command that then failed
        // and holding the environment's lock after it (issue 23).
        let mut args = args.clone();
        args.push(created.prefix.clone().into_os_string());
        match crate::build::compile_in_background(program, &args, env_lock.file()) {
            Ok(pid) => tracing::debug!(
                "Compiling bytecode in the background at low priority (pid {pid}); `--compile-foreground` compiles before the command starts"
            ),
            Err(err) => {
                tracing::debug!("Could not start compiling bytecode in the background: {err}");
            }
        }
    }
    Ok(env_lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each plan in its words, the remote named for a pull.
    #[test]
    fn a_plan_note_says_what_would_be_done() {
        let note = |plan| PlanNote {
            plan,
            manager: EnvManager::Conda,
            remote: Some("file:///shared/envs".into()),
        };
        assert_eq!(note(Plan::Cached).to_string(), "Environment is cached");
        assert_eq!(
            note(Plan::Pull).to_string(),
            "Would pull conda environment from the remote cache `file:///shared/envs`"
        );
        assert_eq!(
            PlanNote {
                manager: EnvManager::Virtualenv,
                ..note(Plan::Build)
            }
            .to_string(),
            "Would create virtualenv environment"
        );
    }

    /// `lock` solves afresh whatever lock file the flags or the model name; the other purposes
    /// take the request as it is. (Was forced in the CLI's `commands/create`.)
    #[test]
    fn a_lock_ignores_every_lock_file_and_nothing_else_does() {
        for lock in [
            LockChoice::Auto,
            LockChoice::File("env.lock".into()),
            LockChoice::Ignore,
        ] {
            let request = EnvRequest {
                lock: lock.clone(),
                python_version: Some("3.11".into()),
                ..EnvRequest::default()
            };
            let locking = Purpose::Lock.request(&request);
            assert_eq!(locking.lock, LockChoice::Ignore);
            assert_eq!(locking.python_version.as_deref(), Some("3.11"));
            let using = Purpose::Use {
                bytecode: Bytecode::DuringBuild,
                mlflow: None,
            };
            for purpose in [Purpose::Create, using] {
                assert_eq!(purpose.request(&request).lock, lock);
            }
        }
    }
}
