//! The pyfunc-env cache root: buckets, file locks, atomic writes, environment entries.
//!
//! ```text
//! <root>/                       CACHEDIR.TAG, .gitignore (*), .lock (cache-wide lock)
//!   envs-v1/<key>/              one environment, never modified once complete
//!   envs-v1/<key>/.pyfunc-env/  metadata.json, then `complete` (the fingerprint) written last
//!   envs-v1/<key>.lock          the environment's lock file; its mtime is the last use
//!   pkgs-v1/ repodata-v1/ uv-v1/ tools-v1/ tmp/
//! ```
//!
//! Guarantees, and why they hold:
//! - **An environment is used only if complete.** `complete` is written (atomically, by rename)
//!   after everything else; anything without it is wiped before a rebuild. `kill -9` at any
//!   moment leaves either no `complete` (rebuilt next time) or a complete environment.
//! - **One builder per environment.** Builders hold an exclusive lock on `<key>.lock`; the
//!   others wait, then find `complete` and reuse. The lock file lives *beside* the environment,
//!   never inside it: wiping a directory that holds a lock file would let a second process lock
//!   a new inode at the same path while the first still holds the old one (the flock/unlink
//!   race), so two builders could run at once. This is why the layout differs from STYLE.md's
//!   lock-inside-the-environment sketch.
//! - **Nothing in use is deleted.** Users of an environment (`run`) hold a shared lock on
//!   `<key>.lock`; `cache prune` deletes an environment only after taking its lock exclusively
//!   without waiting. `cache clean` takes the cache-wide `.lock` exclusively, which every other
//!   command holds shared.
//!
//! Locks are `flock`-style file locks (`std::fs::File::lock`), so they work between processes
//! and on shared volumes that support them, and are released by the kernel when a process dies.
#![warn(missing_docs)]

pub mod child;
mod entry;
mod listing;
mod lock;
pub mod units;

use std::path::{Path, PathBuf};

pub use entry::{EnvEntry, EnvState, Fingerprint, META_DIR, Metadata, now as unix_now};
pub use listing::{EnvSummary, ListedState};
pub use lock::{LockKind, LockedFile, held_by, read_only};

/// The environments bucket.
pub const ENVS_BUCKET: &str = "envs-v1";
/// The rattler package cache bucket.
pub const PKGS_BUCKET: &str = "pkgs-v1";
/// The repodata cache bucket.
pub const REPODATA_BUCKET: &str = "repodata-v1";
/// uv's cache (`UV_CACHE_DIR`).
pub const UV_BUCKET: &str = "uv-v1";
/// Tools we download (uv).
pub const TOOLS_BUCKET: &str = "tools-v1";
/// Shared bytecode, hard-linked into environments.
pub const PYC_BUCKET: &str = "pyc-v1";
/// Models downloaded from model URIs (`env-source`).
pub const MODELS_BUCKET: &str = "models-v1";
/// OCI image blobs (`pyfunc-env image`): environment layers by key, base layers, model layers.
pub const IMAGES_BUCKET: &str = "images-v1";
/// Files of environments by content hash (`env-store`), hard-linked into pulled environments.
pub const STORE_BUCKET: &str = "store-v1";
/// Archives of environments packed for Spark (`pack --cached`, `pyfunc_env.spark_udf`), by key.
pub const PACKS_BUCKET: &str = "packs-v1";
/// Environments and models of `pyfunc_env.spark_udf` unpacked on a Spark node, by archive name
/// (written by the UDF's executor code in Python, not by this crate; see `docs/guides/spark.md`).
pub const SPARK_BUCKET: &str = "spark-v1";
/// Staging area (same filesystem as the buckets, so renames are atomic).
pub const TMP_DIR: &str = "tmp";
/// Every bucket this version knows; `cache prune` removes the others.
pub const KNOWN_BUCKETS: &[&str] = &[
    ENVS_BUCKET,
    PKGS_BUCKET,
    REPODATA_BUCKET,
    UV_BUCKET,
    TOOLS_BUCKET,
    PYC_BUCKET,
    MODELS_BUCKET,
    IMAGES_BUCKET,
    STORE_BUCKET,
    PACKS_BUCKET,
    SPARK_BUCKET,
    TMP_DIR,
];

/// Errors of the cache.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CacheError {
    /// An I/O error on a cache path.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// A lock could not be taken in time.
    #[error("Timed out after {seconds} s waiting for the lock on `{}`{held_by}", path.display())]
    #[diagnostic(help(
        "Another process is using it (a running model holds its environment's lock for as long as it runs). Wait for it to finish or stop it, or raise `PYFUNC_ENV_LOCK_TIMEOUT` (seconds)"
    ))]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        seconds: u64,
        /// `, held by pid N (`command`)`, or empty when unknown.
        held_by: String,
    },

    /// The cache cannot be written, and the command must write.
    #[error("The cache `{}` is read-only", path.display())]
    #[diagnostic(help(
        "Commands that use complete environments (`run`, `cache list`, `cache verify`, `deps`, `inspect`) work on a read-only cache; to build, point `--cache-dir` (or `PYFUNC_ENV_CACHE_DIR`) at a writable directory"
    ))]
    ReadOnly {
        /// The cache root.
        path: PathBuf,
    },

    /// The cache root is not a pyfunc-env cache.
    #[error("`{}` exists and is not a pyfunc-env cache", path.display())]
    #[diagnostic(help("Point `--cache-dir` at an empty or new directory"))]
    NotACache {
        /// The directory.
        path: PathBuf,
    },

    /// An output file the caller named is a directory.
    #[error("Cannot write to `{}`: it is a directory", path.display())]
    #[diagnostic(help("Pass a file name to `-o`, e.g. `-o requirements.txt`"))]
    OutputIsDirectory {
        /// The path given.
        path: PathBuf,
    },

    /// An output file the caller named is in a directory that does not exist.
    #[error("Cannot write to `{}`: the directory `{}` does not exist", path.display(), parent.display())]
    #[diagnostic(help("Create the directory first, or pass another path to `-o`"))]
    OutputDirectoryMissing {
        /// The path given.
        path: PathBuf,
        /// Its directory.
        parent: PathBuf,
    },
}

impl CacheError {
    /// Whether the caller can fix it (exit code 1): an output path that cannot be written.
    /// A cache that cannot be used is something broken (exit 2), which build agents retry.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Self::OutputIsDirectory { .. } | Self::OutputDirectoryMissing { .. }
        )
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The cache root.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    lock_timeout: std::time::Duration,
}

/// How long lock waits last unless [`Cache::with_lock_timeout`] says otherwise
/// (`PYFUNC_ENV_LOCK_TIMEOUT`'s default).
pub const DEFAULT_LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by pyfunc-env.\n# For information about cache directory tags see https://bford.info/cachedir/\n";

impl Cache {
    /// A cache at `root` (absolute). Nothing is created until [`Cache::init`].
    #[must_use]
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same cache, giving up on every lock wait after `timeout` (`PYFUNC_ENV_LOCK_TIMEOUT`).
    #[must_use]
    pub fn with_lock_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// How long lock waits last.
    #[must_use]
    pub fn lock_timeout(&self) -> std::time::Duration {
        self.lock_timeout
    }

    /// The root directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the root is a pyfunc-env cache already ([`Self::init`] has run: its
    /// `CACHEDIR.TAG` is there). `cache clean` and `cache prune` have nothing to do otherwise.
    #[must_use]
    pub fn exists(&self) -> bool {
        self.root.join("CACHEDIR.TAG").is_file()
    }

    /// Creates the root and its marker files if missing. Refuses a non-empty directory that is
    /// not a pyfunc-env cache, so `--cache-dir ~` cannot make `cache clean` delete a home.
    pub fn init(&self) -> Result<(), CacheError> {
        let tag = self.root.join("CACHEDIR.TAG");
        if self.exists() {
            return Ok(());
        }
        if self.root.is_dir() {
            // Another process may be initialising the same root right now: only our own
            // files and buckets may be there.
            let entries = fs_err::read_dir(&self.root).map_err(|e| CacheError::Io {
                path: self.root.clone(),
                source: e,
            })?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let ours = matches!(name.as_str(), ".gitignore" | ".lock" | "CACHEDIR.TAG")
                    || name.starts_with(".tmp-")
                    || KNOWN_BUCKETS.contains(&name.as_str());
                if !ours {
                    return Err(CacheError::NotACache {
                        path: self.root.clone(),
                    });
                }
            }
        }
        fs_err::create_dir_all(&self.root).map_err(|e| CacheError::Io {
            path: self.root.clone(),
            source: e,
        })?;
        write_atomic(&tag, CACHEDIR_TAG.as_bytes())?;
        write_atomic(&self.root.join(".gitignore"), b"*\n")?;
        Ok(())
    }

    /// A bucket directory, created if missing.
    pub fn bucket(&self, name: &str) -> Result<PathBuf, CacheError> {
        let path = self.root.join(name);
        fs_err::create_dir_all(&path).map_err(|e| CacheError::Io {
            path: path.clone(),
            source: e,
        })?;
        Ok(path)
    }

    /// The cache-wide lock file.
    #[must_use]
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(".lock")
    }

    /// Takes the cache-wide lock shared: every command holds it while it works.
    pub fn lock_shared(&self) -> Result<LockedFile, CacheError> {
        LockedFile::acquire(
            &self.lock_path(),
            LockKind::Shared,
            Some(self.lock_timeout),
            std::time::Duration::from_secs(30),
            |waited| {
                tracing::debug!(
                    "Waiting for the cache lock{} ({} s)",
                    held_by(&self.lock_path()),
                    waited.as_secs()
                );
            },
        )
    }

    /// The environment entry for a key.
    pub fn env(&self, key: &str) -> Result<EnvEntry, CacheError> {
        Ok(EnvEntry::new(
            &self.bucket(ENVS_BUCKET)?,
            key,
            self.lock_timeout,
        ))
    }

    /// Every environment entry in the cache (complete or not).
    pub fn envs(&self) -> Result<Vec<EnvEntry>, CacheError> {
        let dir = self.root.join(ENVS_BUCKET);
        let Ok(read) = fs_err::read_dir(&dir) else {
            return Ok(Vec::new());
        };
        let mut keys = std::collections::BTreeSet::new();
        for entry in read {
            let entry = entry.map_err(|e| CacheError::Io {
                path: dir.clone(),
                source: e,
            })?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let key = name.strip_suffix(".lock").unwrap_or(&name).to_string();
            if !key.starts_with('.') {
                keys.insert(key);
            }
        }
        Ok(keys
            .into_iter()
            .map(|key| EnvEntry::new(&dir, &key, self.lock_timeout))
            .collect())
    }
}

/// The mode new files get before the umask (0644 under umask 022), as `open(2)` gives any
/// tool's output. tempfile's default is 0600, which made a cache built by one user (an image
/// baked as root) unreadable to every other: its environments looked incomplete (issue 23).
#[cfg(unix)]
#[must_use]
pub fn file_permissions() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o666)
}

/// The mode new directories get before the umask (0755 under umask 022); see
/// [`file_permissions`].
#[cfg(unix)]
#[must_use]
pub fn dir_permissions() -> std::fs::Permissions {
    std::os::unix::fs::PermissionsExt::from_mode(0o777)
}

/// A [`tempfile::Builder`] whose files and directories get the umask's mode like any other
/// tool's output, not tempfile's owner-only 0600/0700: what is staged there is renamed into
/// the cache (or an output path) and read by other users.
#[must_use]
pub fn temp_builder<'b>(prefix: &str, directory: bool) -> tempfile::Builder<'_, 'b> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    builder.permissions(if directory {
        dir_permissions()
    } else {
        file_permissions()
    });
    #[cfg(not(unix))]
    let _ = directory;
    builder
}

/// Writes a small file atomically: a temporary file in the same directory, flushed to disk,
/// then renamed over the target. The file gets the umask's mode (0644 under umask 022).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    // `out.lock`'s parent is "": the current directory, named as such in an error.
    let dir = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = temp_builder(".tmp-", false)
        .tempfile_in(dir)
        .map_err(io(dir))?;
    std::io::Write::write_all(&mut temp, bytes).map_err(io(path))?;
    temp.as_file().sync_all().map_err(io(path))?;
    temp.persist(path).map_err(|e| CacheError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Refuses an output path (`deps -o`) that cannot be written for a reason the caller can fix,
/// before any work is done: a directory, or a file in a directory that does not exist (rather
/// than an I/O error about a temporary file at the end).
pub fn check_output_file(path: &Path) -> Result<(), CacheError> {
    if path.is_dir() {
        return Err(CacheError::OutputIsDirectory {
            path: path.to_path_buf(),
        });
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(CacheError::OutputDirectoryMissing {
            path: path.to_path_buf(),
            parent: parent.to_path_buf(),
        });
    }
    Ok(())
}

/// Total size in bytes of the files under `path`, counting each hard-linked inode once
/// (environments share files with the package cache).
pub fn disk_usage<S: std::hash::BuildHasher>(
    path: &Path,
    seen: &mut std::collections::HashSet<(u64, u64), S>,
) -> u64 {
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs_err::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(metadata) = entry.path().symlink_metadata() else {
                continue;
            };
            if metadata.is_dir() {
                stack.push(entry.path());
            } else if metadata.is_file() {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::MetadataExt;
                    if metadata.nlink() > 1 && !seen.insert((metadata.dev(), metadata.ino())) {
                        continue;
                    }
                }
                total += metadata.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_exists_once_initialised_and_a_plain_directory_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        assert!(!cache.exists());
        fs_err::create_dir_all(cache.root()).unwrap();
        assert!(!cache.exists());
        cache.init().unwrap();
        assert!(cache.exists());
    }

    #[test]
    fn output_paths_that_cannot_be_written_are_the_callers_to_fix() {
        let dir = tempfile::tempdir().unwrap();
        check_output_file(&dir.path().join("spec.json")).unwrap();
        check_output_file(Path::new("spec.json")).unwrap();
        for (path, message) in [
            (dir.path().to_path_buf(), "it is a directory"),
            (dir.path().join("missing/spec.json"), "does not exist"),
        ] {
            let err = check_output_file(&path).unwrap_err();
            assert!(err.to_string().contains(message), "{err}");
            assert!(err.is_user_error());
            assert!(miette::Diagnostic::help(&err).is_some());
        }
    }
}
