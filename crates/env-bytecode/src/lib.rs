//! Bytecode for the environments of a cache: the content-addressed `.pyc` store (`pyc-v1/`)
//! that every environment shares by hard link ([`store`]), the driver that compiles an
//! environment's site-packages into it, in this process or in a detached low-priority one
//! ([`environment`]), and the bytecode of an archive of an environment, compiled into a
//! staging directory or reused from the environment ([`archive`], for env-pack): every
//! compile of `.pyc` files goes through this crate.
//!
//! It builds nothing and resolves nothing: it depends on env-cache (the bucket and its lock),
//! env-prefix (an environment's interpreter and site-packages) and env-store (the manifest a
//! compile invalidates), not on rattler or uv. env-build compiles at the end of a build and
//! prunes the store in `cache prune`; the CLI's hidden `__compile-bytecode` command runs
//! [`compile_in_this_process`] through env-build.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use miette::Diagnostic;

pub mod archive;
pub mod environment;
pub mod store;

pub use archive::{
    ArchiveLibrary, ArchivePyc, ArchiveSource, ReusedBytecode, compile_for_archive,
    reuse_for_archive,
};
pub use environment::{
    compile_environment, compile_in_background, compile_in_this_process, link_environment,
};
pub use store::{Linked, Stats, cache_tag, compile, link_stored, prune_store, stored_pyc};

/// Why bytecode could not be compiled or linked. env-build wraps it transparently
/// (`SolveError::Bytecode`), so its messages are the ones users always saw; none of them is
/// the user's fault (exit code 2).
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum BytecodeError {
    /// A cache operation (the store's lock, a bucket, an environment's lock) failed.
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

    /// The environment's Python failed while compiling an archive's bytecode (files that do
    /// not compile are skipped, not this). env-pack reports it as its own `PythonFailed`.
    #[error("Failed to run `{}`: {message}", python.display())]
    PythonFailed {
        /// The interpreter.
        python: PathBuf,
        /// Its exit status and the tail of its stderr.
        message: String,
    },

    /// A bug (an interpreter that reports no bytecode cache tag).
    #[error("Internal error: {message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

/// `map_err` adapter: an I/O error on `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BytecodeError + '_ {
    move |source| BytecodeError::Io {
        path: path.to_path_buf(),
        source,
    }
}
