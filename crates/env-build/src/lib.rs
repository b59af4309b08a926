//! Turns an [`env_spec::EnvSpec`] into an environment on disk: conda packages solved and
//! installed in-process with the rattler crates, PyPI packages installed with a pinned `uv`,
//! into a content-addressed, lock-protected, crash-safe cache ([`env_cache`]).
#![warn(missing_docs)]

pub mod build;
/// Channels and mirrors ([`env_conda::channels`]). [`merge_mirrors`](channels::merge_mirrors)
/// returns a [`SolveError`], as every function the CLI calls, for the CLI's report.
pub mod channels {
    pub use env_conda::channels::*;

    /// [`env_conda::channels::merge_mirrors`], its error a [`SolveError`](crate::SolveError).
    pub fn merge_mirrors<'a>(
        flags: &[String],
        configured: impl IntoIterator<Item = (&'a String, &'a String)>,
    ) -> Result<Vec<(String, String)>, crate::SolveError> {
        Ok(env_conda::channels::merge_mirrors(flags, configured)?)
    }
}
pub mod context;
pub mod ensure;
pub mod environment;
pub mod error;
pub mod inspect;
pub mod many;
pub mod prune;
pub mod remote;
pub use env_spec::redact;
pub mod reporter;
pub mod request;
pub mod spec_document;
pub mod verdict_row;
pub mod verify;

pub use build::{BuildWarning, CreateRequest, Created, Timings, create, hold_cache};
pub use context::{BuildOptions, PythonSource};
pub use ensure::{
    Bytecode, EnsureError, EnsureReporter, Ensured, EnsuredDocument, MlflowUse, Plan, PlanDocument,
    PlanNote, Planned, Purpose,
};
pub use env_conda::ChannelSettings;
pub use environment::{
    BuildSettings, EnvError, EnvRequest, InstallMlflow, LockChoice, ModelEnvironment,
};
pub use error::SolveError;
pub use reporter::{NoReporter, Reporter};
