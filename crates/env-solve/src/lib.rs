//! Turns an [`env_spec::EnvSpec`] into an environment on disk: conda packages solved and
//! installed in-process with the rattler crates, PyPI packages installed with a pinned `uv`,
//! into a content-addressed, lock-protected, crash-safe cache.
#![warn(missing_docs)]

pub mod context;
pub mod error;

pub use context::{BuildOptions, PythonSource};
pub use error::SolveError;
