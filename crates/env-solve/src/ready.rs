//! An environment ready for a command to use (`run`, `pack`): built or reused, then held.
//!
//! Between "the environment is complete" and "the command has finished with it", `cache prune`
//! or a `--reinstall` in another process could remove it. So the cache's shared lock is taken
//! before the build and the environment's shared lock after it, both kept in [`Ready`] for as
//! long as the command runs (and passed on to the process it starts); the environment is then
//! checked again, since it may have gone while we waited for its lock. Before this module,
//! `run` and `pack` each did these steps themselves in the CLI (issue 11).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;

use env_cache::{Cache, EnvState, LockedFile};
use env_spec::EnvManager;

use crate::build::Created;
use crate::environment::{BuildSettings, ModelEnvironment};
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

/// Why an environment could not be made ready.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ReadyError {
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
}

impl ReadyError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Build { source, .. } => source.is_user_error(),
            Self::PythonMissing { .. } | Self::MlflowMissing { .. } => true,
            Self::Cache(_) | Self::Removed { .. } => false,
        }
    }
}

/// An environment built (or reused) and held for a command.
#[derive(Debug)]
pub struct Ready {
    /// What the build did.
    pub created: Created,
    /// The cache's shared lock: `cache clean` waits while it is held.
    cache_lock: LockedFile,
    /// The environment's shared lock: `cache prune` and rebuilds wait while it is held.
    env_lock: LockedFile,
}

impl Ready {
    /// The lock files a process started in the environment must inherit, so the environment
    /// stays until that process (not only this one) has exited.
    #[must_use]
    pub fn lock_files(&self) -> Vec<&std::fs::File> {
        [self.cache_lock.file(), self.env_lock.file()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The environment's lock file, for a process that keeps the environment in use.
    #[must_use]
    pub fn env_lock_file(&self) -> Option<&std::fs::File> {
        self.env_lock.file()
    }
}

impl ModelEnvironment {
    /// Builds or reuses the environment and holds it for a command: the one call `run` and
    /// `pack` make. `on_wait` receives a message when another process holds the environment
    /// exclusively; `mlflow` says whether the command needs the environment's mlflow.
    pub fn ready_blocking(
        &self,
        cache: &Cache,
        settings: &BuildSettings,
        bytecode: &Bytecode,
        mlflow: Option<MlflowUse>,
        reporter: Arc<dyn Reporter>,
        on_wait: &mut dyn FnMut(&str),
    ) -> Result<Ready, ReadyError> {
        cache.init()?;
        let cache_lock = cache.lock_shared()?;
        let defer_bytecode = matches!(bytecode, Bytecode::InBackground { .. });
        let created = self
            .build_blocking(cache, settings, defer_bytecode, reporter)
            .map_err(|source| ReadyError::Build {
                manager: self.manager,
                model: self.root().to_path_buf(),
                source,
            })?;
        let entry = cache.env(created.key.as_str())?;
        let env_lock = entry.lock_shared(|_, holders| {
            on_wait(&format!(
                "Waiting for the environment to be free{}",
                env_cache::child::describe(holders)
            ));
        })?;
        if !matches!(entry.state(), EnvState::Complete(_)) {
            return Err(ReadyError::Removed {
                key: created.key.to_string(),
            });
        }
        if let Bytecode::InBackground { program, args } = bytecode
            && created.bytecode_deferred
        {
            // The command starts now; the bytecode is compiled alongside, at low priority,
            // holding the environment's lock like the command does.
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
        let python = env_prefix::python_of(&created.prefix);
        if !python.exists() {
            return Err(ReadyError::PythonMissing {
                python,
                key: created.key.to_string(),
                model: self.root().to_path_buf(),
            });
        }
        if let Some(purpose) = mlflow
            && !env_prefix::has_mlflow(&created.prefix)
        {
            return Err(ReadyError::MlflowMissing {
                purpose,
                recorded: self.model.mlmodel().ok().and_then(|m| m.mlflow_version()),
            });
        }
        Ok(Ready {
            created,
            cache_lock,
            env_lock,
        })
    }
}
