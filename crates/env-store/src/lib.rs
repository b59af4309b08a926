//! A built environment as a manifest over content-addressed files (issue 25), the way Nix,
//! `OSTree` and casync ship trees.
//!
//! - [`Manifest`]: every entry of a complete prefix (path, kind, mode, size, sha256, symlink
//!   target) and which files name the prefix. Computed once from a complete environment and
//!   kept beside it (`envs-v1/<key>/.pyfunc-env/manifest.json`), so the remote cache (and
//!   later `pack` and images) never re-scan the prefix.
//! - [`Store`]: `store-v1/<aa>/<sha256>`, the files of environments by content. A file is
//!   written to `tmp/`, checked against its hash and size while it is written, made read-only
//!   and renamed into place, so a store file is always whole and right. A pulled environment
//!   is materialised by hard links from it ([`Store::materialise`]); only the few files that
//!   name the prefix are written per environment, with the new prefix.
#![warn(missing_docs)]

mod manifest;
mod seed;
mod store;

use std::path::PathBuf;

pub use manifest::{Entry, Kind, MANIFEST_FILE, Manifest, PrefixUse};
pub use seed::{Candidate, Seeded};
pub use store::{BlobWriter, Materialised, PullReport, Store, sweep};

/// Errors of manifests and the store.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum StoreError {
    /// An I/O error on a path.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A manifest that cannot be used as it is.
    #[error("Unusable environment manifest: {message}")]
    #[diagnostic(help(
        "The manifest was not written by pyfunc-env, or was tampered with; nothing was written for it"
    ))]
    BadManifest {
        /// Why.
        message: String,
    },

    /// Content that is not what its hash or size says.
    #[error("The content of `{what}` is damaged: {message}")]
    Damaged {
        /// The blob (sha256) or file.
        what: String,
        /// What differs.
        message: String,
    },

    /// A signal stopped the work (see `env_cache::child::SignalsDeferred`); what it wrote is
    /// removed by the caller.
    #[error("Interrupted while writing `{}`", path.display())]
    Interrupted {
        /// What was being written.
        path: PathBuf,
    },

    /// The local cache.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Whether `text` is a lowercase hex sha256.
#[must_use]
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
