//! The errors of lock files, moved verbatim out of env-build's `SolveError` (which wraps
//! them transparently as `SolveError::Lock`), so messages and hints are the ones users always
//! saw. URLs in messages are redacted.

use std::path::PathBuf;

use miette::Diagnostic;

/// The cause of an error whose type varies by where it happened (a lock file's parser, a
/// wheel's URL), kept as a source rather than flattened into the message.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a lock file could not be written, read or installed from.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum LockError {
    /// `uv pip compile` could not name the files of the installed distributions.
    #[error("Failed to find the files of the environment's Python packages for the lock (uv pip compile, exit code {}):\n{stderr}", code.map_or_else(|| "none".to_string(), |c| c.to_string()))]
    #[diagnostic(help(
        "The environment itself was built; the lock needs each installed distribution's file again, from the index it came from (or its direct URL). Check that the index is reachable, or drop `--offline`"
    ))]
    LockFiles {
        /// uv's exit code.
        code: Option<i32>,
        /// uv's stderr (redacted).
        stderr: String,
    },

    /// A distribution was installed from something a lock cannot record.
    #[error(
        "Cannot lock `{name}`: it was built from the local directory `{source_dir}`, and a lock records files with their sha256"
    )]
    #[diagnostic(help(
        "Build a wheel of it (`uv build`) and require the wheel file instead of the directory"
    ))]
    LockLocalDirectory {
        /// The distribution.
        name: String,
        /// Its source directory.
        source_dir: String,
    },

    /// A lock could not be written or read.
    #[error("Lock file error: {message}")]
    Lock {
        /// What went wrong.
        message: String,
        /// The cause.
        #[source]
        source: Option<Cause>,
    },

    /// A lock file cannot be used.
    #[error("Cannot use the lock file `{}`: {message}", path.display())]
    #[diagnostic(help("Write a new one with `pyfunc-env lock MODEL -o FILE`"))]
    LockInvalid {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
        /// The parser's error, when it is one.
        #[source]
        source: Option<Cause>,
    },

    /// A locked file could not be downloaded.
    #[error("Failed to download `{url}`")]
    #[diagnostic(help("Check the network, or run where the lock's URLs are reachable"))]
    LockDownload {
        /// The URL (redacted).
        url: String,
        /// The cause (redacted when the report is printed).
        #[source]
        source: reqwest::Error,
    },

    /// A locked file is not what the lock says.
    #[error("`{file}` has sha256 `{actual}`, but the lock file says `{expected}`")]
    #[diagnostic(help(
        "The file changed since the lock was written (or the lock was edited); refusing to install it"
    ))]
    LockHashMismatch {
        /// The file.
        file: String,
        /// The lock's digest.
        expected: String,
        /// What arrived.
        actual: String,
    },

    /// The model's spec changed since the lock was written.
    #[error("The lock file `{}` is stale: it was written for environment `{locked}`, but the model's files now give `{current}`", path.display())]
    #[diagnostic(help("The model's environment files (or the flags that change the environment) changed since the lock was written; regenerate it with `pyfunc-env lock MODEL -o {}`", path.display()))]
    LockStale {
        /// The file.
        path: PathBuf,
        /// The key in the lock.
        locked: String,
        /// The key now.
        current: String,
    },

    /// Offline and a locked file is not local (the same message as env-conda's
    /// `OfflinePackagesMissing`, which this raised before the cut; env-lock does not depend on
    /// env-conda, whose solver and installer it does not use).
    #[error("`--offline` but these packages are not in the package cache: {packages}")]
    #[diagnostic(help("Run the same command once without `--offline` to download them"))]
    OfflinePackagesMissing {
        /// The package files.
        packages: String,
    },

    /// This platform has no conda subdir (a lock records one platform's packages).
    #[error("This platform is not supported by conda")]
    UnsupportedPlatform,

    /// An I/O error.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl LockError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken:
    /// the classification `SolveError` gave these variants.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::LockInvalid { .. }
            | Self::LockStale { .. }
            | Self::LockHashMismatch { .. }
            | Self::LockLocalDirectory { .. }
            | Self::OfflinePackagesMissing { .. } => true,
            // Listed one by one, so a new variant has to be classified here: a catch-all
            // would make every new error exit 2 silently.
            Self::Lock { .. }
            | Self::LockDownload { .. }
            | Self::LockFiles { .. }
            | Self::UnsupportedPlatform
            | Self::Io { .. } => false,
        }
    }
}
