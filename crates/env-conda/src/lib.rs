//! The conda layer: which channels to use and where to fetch them from ([`channels`]:
//! `--channel`, `--override-channels`, mirrors), repodata through rattler's gateway, a resolvo
//! solve with `--exclude-newer`, and rattler's installer ([`conda`]).
//!
//! Everything of pyfunc-env that pulls in rattler's solver, installer and repodata gateway is
//! here (the lock format is env-build's `lock.rs`, to become env-lock). It depends on env-spec
//! (redaction) and the rattler crates, no crate of ours that builds or caches environments.
//! env-build, the orchestrator, solves and installs with it and reports progress through the
//! narrow [`Reporter`] here.
#![warn(missing_docs)]

use std::path::PathBuf;

use miette::Diagnostic;

pub mod channels;
pub mod conda;
mod reporter;

pub use channels::ChannelSettings;

/// Receives the progress of a conda install. env-build's `Reporter` is passed in through an
/// adapter. Every method has an empty default.
pub trait Reporter: Send + Sync {
    /// A download started; returns an id for the other calls.
    fn on_download_start(&self, _name: &str) -> usize {
        0
    }
    /// Bytes downloaded so far.
    fn on_download_progress(&self, _id: usize, _bytes: u64, _total: Option<u64>) {}
    /// A download finished.
    fn on_download_complete(&self, _id: usize) {}
    /// The number of packages about to be linked into the environment.
    fn on_link_start(&self, _total: usize) {}
    /// One package linked.
    fn on_link_complete(&self, _name: &str) {}
}

/// Why conda packages could not be solved or installed, or the channels not be resolved.
/// env-build wraps it transparently (`SolveError::Conda`), so its messages and hints are the
/// ones users always saw.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum CondaError {
    /// A channel name or URL is invalid.
    #[error("Invalid conda channel `{channel}`")]
    #[diagnostic(help(
        "Channels are names (`conda-forge`), URLs (`https://host/channel`) or local directories"
    ))]
    InvalidChannel {
        /// The channel (redacted).
        channel: String,
        /// The cause.
        #[source]
        source: rattler_conda_types::ParseChannelError,
    },

    /// A mirror setting is invalid.
    #[error("Invalid channel mirror `{mirror}`")]
    #[diagnostic(help(
        "Mirrors look like `conda-forge=https://mirror.example/conda-forge` (a channel name or URL prefix, `=`, the URL or directory to use instead)"
    ))]
    InvalidMirror {
        /// The mirror (redacted).
        mirror: String,
    },

    /// `--exclude-newer` is neither a date nor an RFC 3339 time.
    #[error("Invalid `--exclude-newer` value `{value}`")]
    #[diagnostic(help(
        "Give a date (`2024-06-01`), an RFC 3339 time (`2024-06-01T12:00:00Z`) or `model`"
    ))]
    InvalidExcludeNewer {
        /// What was given.
        value: String,
    },

    /// A conda spec of the spec does not parse (a bug: specs were validated when read).
    #[error("Invalid conda spec `{spec}`")]
    InvalidSpec {
        /// The spec.
        spec: String,
        /// The cause.
        #[source]
        source: rattler_conda_types::ParseMatchSpecError,
    },

    /// Repodata could not be fetched.
    #[error("Failed to fetch package lists from {channels}")]
    #[diagnostic(help(
        "Check the network, or point the channel at a reachable mirror: `--mirror conda-forge=https://mirror.example/conda-forge` (or `PYFUNC_ENV_MIRRORS`, or `[mirrors]` in the config file); with everything cached, `--offline` skips the network"
    ))]
    ChannelUnreachable {
        /// The channels (redacted).
        channels: String,
        /// The cause (redacted when the report is printed).
        #[source]
        source: rattler_repodata_gateway::GatewayError,
    },

    /// Offline without cached repodata.
    #[error("`--offline` but the package lists of {channels} are not cached")]
    #[diagnostic(help(
        "Run the same command once without `--offline` to fill the cache, or use a local channel (`--mirror NAME=/path/to/channel`)"
    ))]
    OfflineNoRepodata {
        /// The channels (redacted).
        channels: String,
        /// The cause (redacted when the report is printed).
        #[source]
        source: rattler_repodata_gateway::GatewayError,
    },

    /// Offline and packages are not in the package cache.
    #[error("`--offline` but these packages are not in the package cache: {packages}")]
    #[diagnostic(help("Run the same command once without `--offline` to download them"))]
    OfflinePackagesMissing {
        /// The package files.
        packages: String,
    },

    /// No channel has a package the spec asks for.
    #[error(
        "No channel has a package for `{spec}` (looked in {channels} for `{platform}` and `noarch`)"
    )]
    #[diagnostic(help(
        "Check the package name in the model's conda environment file, or add the channel that has it with `--channel`"
    ))]
    PackageNotFound {
        /// The spec.
        spec: String,
        /// The channels (redacted).
        channels: String,
        /// The platform.
        platform: String,
    },

    /// The specs cannot be satisfied together.
    #[error("The conda dependencies cannot be installed together ({specs}):\n{explanation}")]
    #[diagnostic(help("Relax the conflicting pins in the model's conda environment file"))]
    Unsolvable {
        /// The requested specs.
        specs: String,
        /// resolvo's explanation.
        explanation: String,
    },

    /// Linking conda packages failed.
    #[error("Failed to install the conda packages")]
    Install {
        /// The cause (redacted when the report is printed).
        #[source]
        source: rattler::install::InstallerError,
    },

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

impl CondaError {
    /// Whether the error is caused by the input (exit code 1) rather than by something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::InvalidChannel { .. }
            | Self::InvalidMirror { .. }
            | Self::PackageNotFound { .. }
            | Self::Unsolvable { .. }
            | Self::OfflineNoRepodata { .. }
            | Self::OfflinePackagesMissing { .. }
            | Self::InvalidExcludeNewer { .. } => true,
            // Listed one by one, so a new variant has to be classified here.
            Self::InvalidSpec { .. }
            | Self::ChannelUnreachable { .. }
            | Self::Install { .. }
            | Self::Io { .. }
            | Self::Internal { .. } => false,
        }
    }
}
