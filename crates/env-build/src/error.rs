//! Errors of `env-build`, one variant per failure. URLs in messages are redacted.

use std::path::{Path, PathBuf};

use miette::Diagnostic;

/// The cause of an error whose type varies by where it happened (a lock file's parser, a
/// wheel's zip reader), kept as a source rather than flattened into the message.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an environment could not be built.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SolveError {
    /// The remote cache holds the environment without a valid signature by a trusted key,
    /// and `--remote-cache-require-signed` is set (issue 26).
    #[error("{message}")]
    #[diagnostic(help("{help}"))]
    RemoteUntrusted {
        /// Which entry and why.
        message: String,
        /// What to do.
        help: String,
    },

    /// `--env-manager local` given to a command that builds an environment: only `run` takes
    /// it (it uses an existing interpreter instead).
    #[error("`--env-manager local` builds no environment; it only applies to `run`")]
    LocalBuildsNothing,

    /// This platform has no conda subdir.
    #[error("This platform is not supported by conda")]
    UnsupportedPlatform,

    /// Virtual package detection failed.
    #[error("Failed to detect the system's virtual packages (`__glibc`, `__cuda`, ...)")]
    #[diagnostic(help(
        "Set them explicitly with `CONDA_OVERRIDE_GLIBC`, `CONDA_OVERRIDE_CUDA`, ..."
    ))]
    VirtualPackages {
        /// The cause.
        #[source]
        source: rattler_virtual_packages::DetectVirtualPackageError,
    },

    /// The environment has no Python after the conda step.
    #[error("The environment `{}` has no Python interpreter", prefix.display())]
    #[diagnostic(help("Add `python=X.Y` to the model's conda dependencies"))]
    NoPythonInEnvironment {
        /// The prefix.
        prefix: PathBuf,
    },

    /// A virtualenv-mode spec without a Python version.
    #[error("The model's environment files name no Python version")]
    #[diagnostic(help("Pass `--python-version X.Y.Z` (the version the model was trained with)"))]
    NoPythonVersion,

    /// The Python version is not a version.
    #[error("`{version}` is not a Python version")]
    #[diagnostic(help("Python versions look like `3.11.7` or `3.11`"))]
    InvalidPythonVersion {
        /// The version.
        version: String,
    },

    /// No source has the requested Python (not even another patch version).
    #[error("Cannot provide Python {version}:\n{attempts}")]
    #[diagnostic(help(
        "Install that Python (e.g. `pyenv install {version}` or `uv python install {version}`), make a conda channel with it reachable (`--mirror conda-forge=...`), or choose another version with `--python-version`"
    ))]
    PythonUnavailable {
        /// The requested version.
        version: String,
        /// What was tried, one per line.
        attempts: String,
    },

    /// A cache operation failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),

    /// Compiling or linking bytecode failed (env-bytecode; its messages are unchanged).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Bytecode(#[from] env_bytecode::BytecodeError),

    /// Writing, reading or installing from a lock file failed (env-lock; its messages are
    /// unchanged).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(#[from] env_lock::LockError),

    /// Finding, fetching or running uv failed (env-uv; its messages are unchanged).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Uv(#[from] env_uv::UvError),

    /// Solving or installing conda packages failed, or a channel or mirror is invalid
    /// (env-conda; its messages are unchanged).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Conda(#[from] env_conda::CondaError),

    /// Pruning or reading the downloaded models (`models-v1/`) failed (env-source; its
    /// messages are unchanged).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Source(#[from] env_source::SourceError),

    /// An I/O error.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A bug.
    #[error("Internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl SolveError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NoPythonInEnvironment { .. }
            | Self::NoPythonVersion
            | Self::InvalidPythonVersion { .. }
            | Self::PythonUnavailable { .. }
            | Self::LocalBuildsNothing
            // Not transient: a retry finds the same entry. The operator pushes it again from
            // CI with the signing key, or removes it.
            | Self::RemoteUntrusted { .. } => true,
            Self::Uv(error) => error.is_user_error(),
            Self::Conda(error) => error.is_user_error(),
            Self::Lock(error) => error.is_user_error(),
            Self::Source(error) => error.is_user_error(),
            // Listed one by one, so a new variant has to be classified here: a catch-all
            // would make every new error exit 2 silently.
            Self::UnsupportedPlatform
            | Self::VirtualPackages { .. }
            | Self::Cache(_)
            | Self::Bytecode(_)
            | Self::Io { .. }
            | Self::Internal { .. } => false,
        }
    }
}

/// An error and its causes on one line (`a: b: c`), each cause once, for messages that list
/// several failures (the Python sources tried).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// `map_err` adapter: an I/O error on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SolveError + '_ {
    move |source| SolveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use env_lock::LockError;

    use super::*;

    /// env-lock's errors keep the exit codes and messages they had as `SolveError` variants:
    /// a stale, tampered or unreadable lock (or an offline install missing a locked file) is
    /// the user's to fix (exit 1); a failed download or write is not (exit 2).
    #[test]
    fn lock_errors_keep_their_message_and_exit_class_through_solve_error() {
        let stale = SolveError::from(LockError::LockStale {
            path: "model/pyfunc-env.lock".into(),
            locked: "aaaa".into(),
            current: "bbbb".into(),
        });
        assert!(stale.is_user_error());
        assert_eq!(
            stale.to_string(),
            "The lock file `model/pyfunc-env.lock` is stale: it was written for environment \
             `aaaa`, but the model's files now give `bbbb`"
        );
        let offline = SolveError::from(LockError::OfflinePackagesMissing {
            packages: "pkg-1.0-py3-none-any.whl".into(),
        });
        assert!(offline.is_user_error());
        let broken = SolveError::from(LockError::Lock {
            message: "cannot render it".into(),
            source: None,
        });
        assert!(!broken.is_user_error());
        assert_eq!(broken.to_string(), "Lock file error: cannot render it");
    }
}
