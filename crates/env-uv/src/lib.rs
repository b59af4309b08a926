//! The pinned `uv` and everything pyfunc-env does with it: find or fetch it (its sha256 checked)
//! ([`UvProbe`], [`Uv`]), run `uv pip install` / `uv venv` with only the variables that cannot
//! change an environment ([`UV_PASSED_VARIABLES`]), stage a model's local requirements in the
//! cache ([`local`]), install a model's `uv.lock` ([`uv_lock`]), and read uv's stderr for the
//! hint that fits a failure (the one place that does).
//!
//! It depends on env-spec (requirements, index options, redaction), env-cache (the tools bucket,
//! locks, child processes) and env-prefix (`uv` on `PATH`), not on rattler's solver or
//! installer. env-build (the orchestrator) builds environments with it and passes its progress
//! through the narrow [`Reporter`] here; the lock file code uses [`Uv::command`] to name the
//! files of what it installed.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use rattler_conda_types::Subdir;

pub mod local;
mod uv;
pub mod uv_lock;
mod uv_stderr;

pub use uv::*;

/// The cause of an error whose type varies by where it happened (a wheel's zip reader, the
/// HTTP client), kept as a source rather than flattened into the message.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Receives uv's progress: each line uv writes to stderr, for a spinner's message. env-build's
/// `Reporter` is passed in through a one-line adapter.
pub trait Reporter: Send + Sync {
    /// A line of output from uv.
    fn on_tool_output(&self, _line: &str) {}
}

/// Why uv could not be found, fetched or run. env-build wraps it transparently
/// (`SolveError::Uv`), so its messages and hints are the ones users always saw.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum UvError {
    /// The configured uv does not run.
    #[error("`{}` is not a working uv binary", path.display())]
    #[diagnostic(help(
        "Point `--uv` / `PYFUNC_ENV_UV` at a uv binary (`pip install uv` installs one)"
    ))]
    UvNotRunnable {
        /// The path.
        path: PathBuf,
    },

    /// No uv and offline.
    #[error("uv is needed to install pip requirements, and none is available offline")]
    #[diagnostic(help(
        "Install uv (`pip install uv==0.13.9`, or your OS package) so it is on `PATH`, point `--uv` / `PYFUNC_ENV_UV` at one, or run once online so pyfunc-env can download its own copy"
    ))]
    UvUnavailableOffline,

    /// No uv wheel for this platform.
    #[error("pyfunc-env has no pinned uv download for `{platform}`")]
    #[diagnostic(help("Install uv yourself and put it on `PATH`, or pass `--uv`"))]
    UvNoWheel {
        /// The platform.
        platform: String,
    },

    /// Downloading uv failed.
    #[error("Failed to download uv from `{url}`{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    #[diagnostic(help("Install uv yourself and put it on `PATH`, or pass `--uv`"))]
    UvDownload {
        /// The URL (redacted).
        url: String,
        /// What was wrong with what arrived, when there is no underlying error.
        detail: Option<String>,
        /// The cause (redacted when the report is printed).
        #[source]
        source: Option<Cause>,
    },

    /// The downloaded uv wheel is not the one we pinned.
    #[error("The downloaded `{file}` has sha256 `{actual}`, expected `{expected}`")]
    #[diagnostic(help("Something between you and PyPI changed the file; refusing to run it"))]
    UvChecksum {
        /// The wheel.
        file: String,
        /// The pinned digest.
        expected: String,
        /// What arrived.
        actual: String,
    },

    /// `uv pip install` failed.
    #[error("Failed to install the {step} with uv (exit code {}):\n{stderr}", code.map_or_else(|| "none".to_string(), |c| c.to_string()))]
    #[diagnostic(help("{hint}"))]
    PipFailed {
        /// Which step.
        step: String,
        /// uv's exit code.
        code: Option<i32>,
        /// uv's stderr (redacted).
        stderr: String,
        /// Whether it looks like a resolution failure (bad input) rather than a broken network.
        user: bool,
        /// What to do about it, read from uv's message (see [`UvError::pip_failed`]).
        hint: &'static str,
    },

    /// The model's uv project is itself a package, and building it failed: its source is not
    /// in the model directory (MLflow's `uv sync` fails the same way).
    #[error("Failed to install `{project}`, the uv project the model was logged from:\n{stderr}")]
    #[diagnostic(help(
        "The model's `uv.lock` installs its own project (`source = {{ editable = \".\" }}`), whose source MLflow does not log; MLflow's `--env-manager uv` fails the same way. Use `--env-manager virtualenv` (it installs `requirements.txt`), or log the model from a project without a `[build-system]` (`uv init --app`, or `[tool.uv] package = false`)"
    ))]
    UvProjectNotInModel {
        /// The project's name.
        project: String,
        /// uv's message (redacted).
        stderr: String,
    },

    /// This platform has no conda subdir (uv's wheel is chosen by it).
    #[error("This platform is not supported by conda")]
    UnsupportedPlatform,

    /// A cache operation (the tools bucket's lock) failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),

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

impl UvError {
    /// A failed uv run, with the hint that fits its cause: the model's files are blamed only
    /// for a resolution failure, not for `--offline` with packages missing from uv's cache or
    /// for a full disk (issue 15 item 9). `stderr` must already be redacted.
    #[must_use]
    pub fn pip_failed(
        step: impl Into<String>,
        code: Option<i32>,
        stderr: String,
        offline: bool,
    ) -> Self {
        let (user, hint) = match crate::uv_stderr::UvFailure::of(&stderr, offline) {
            crate::uv_stderr::UvFailure::DiskFull => (
                false,
                "The disk holding the cache is full; free space there or move the cache (`--cache-dir`, `PYFUNC_ENV_CACHE_DIR`) and run again",
            ),
            crate::uv_stderr::UvFailure::OfflineCacheMiss => (
                true,
                "`--offline` and uv's cache lacks these packages; run the same command once without `--offline` to download them",
            ),
            crate::uv_stderr::UvFailure::Resolution => (
                true,
                "The message above is uv's own; fix the requirement it names in the model's files, or check the index",
            ),
            crate::uv_stderr::UvFailure::Other => (
                false,
                "The message above is uv's own; check the network and the package index the model's files name, then run again",
            ),
        };
        Self::PipFailed {
            step: step.into(),
            code,
            stderr,
            user,
            hint,
        }
    }

    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::UvUnavailableOffline | Self::UvProjectNotInModel { .. } => true,
            Self::PipFailed { user, .. } => *user,
            // Listed one by one, so a new variant has to be classified here.
            Self::UvNotRunnable { .. }
            | Self::UvNoWheel { .. }
            | Self::UvDownload { .. }
            | Self::UvChecksum { .. }
            | Self::UnsupportedPlatform
            | Self::Cache(_)
            | Self::Io { .. }
            | Self::Internal { .. } => false,
        }
    }
}

/// The platform this binary runs on, as a conda subdir (uv's wheel is picked by it).
pub(crate) fn current_platform() -> Result<Subdir, UvError> {
    Subdir::current().ok_or(UvError::UnsupportedPlatform)
}

/// `map_err` adapter: an I/O error on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UvError + '_ {
    move |source| UvError::Io {
        path: path.to_path_buf(),
        source,
    }
}
