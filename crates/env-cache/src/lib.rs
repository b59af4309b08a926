//! The pyfunc-env cache root.
#![warn(missing_docs)]

/// A cache error.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CacheError {
    /// An I/O error on a cache path.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
