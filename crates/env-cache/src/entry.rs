//! One environment in the cache: its directory, lock file, metadata and completion marker.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::child::Holder;
use crate::lock::{LockKind, LockedFile};
use crate::{CacheError, io, write_atomic};

/// Directory inside an environment that holds our own files.
pub const META_DIR: &str = ".pyfunc-env";
const COMPLETE: &str = "complete";
const METADATA: &str = "metadata.json";
const BUILDING: &str = "building.json";

/// Written last: its presence, with a matching key, is what makes an environment usable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Fingerprint {
    /// The environment key.
    pub key: String,
    /// The cache layout version.
    pub layout: u32,
    /// When the build finished (seconds since the Unix epoch).
    pub created: u64,
    /// Where it was built. Shebangs, `pyvenv.cfg` and conda's prefix replacements name this
    /// path, so a cache moved or restored elsewhere is not complete there (issue 15, item 4).
    /// Absent in fingerprints written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<PathBuf>,
}

/// What we record about an environment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metadata {
    /// The key.
    pub key: String,
    /// pyfunc-env's version that built it.
    pub tool_version: String,
    /// When the build started and finished (seconds since the Unix epoch).
    pub created: u64,
    /// How long the build took.
    pub build_seconds: f64,
    /// `conda` or `virtualenv`.
    pub env_manager: String,
    /// The model directory it was first built for.
    pub model: String,
    /// The environment's Python interpreter, relative to the environment.
    pub python: Option<String>,
    /// Its version.
    pub python_version: Option<String>,
    /// The canonical spec (`env_spec::EnvSpec` as JSON).
    pub spec: serde_json::Value,
    /// The solved and installed conda records.
    pub conda_packages: Vec<serde_json::Value>,
    /// The Python distributions installed (name, version, installer).
    pub pip_packages: Vec<serde_json::Value>,
    /// Anything else worth keeping (timings, tool versions).
    #[serde(default)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The state of an environment directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvState {
    /// Complete and usable.
    Complete(Fingerprint),
    /// The directory exists without a valid fingerprint: a build crashed or is running.
    Incomplete,
    /// No directory.
    Missing,
}

/// An environment entry of the cache.
#[derive(Debug, Clone)]
pub struct EnvEntry {
    key: String,
    dir: PathBuf,
    lock_path: PathBuf,
    lock_timeout: Duration,
}

/// Whether two paths name the same directory (the same one through a symlinked cache path
/// counts; a copy at another path, or another directory at the old path, does not).
fn same_directory(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (fs_err::metadata(a), fs_err::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    false
}

/// Seconds since the Unix epoch.
#[must_use]
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl EnvEntry {
    pub(crate) fn new(bucket: &Path, key: &str, lock_timeout: Duration) -> Self {
        Self {
            key: key.to_string(),
            dir: bucket.join(key),
            lock_path: bucket.join(format!("{key}.lock")),
            lock_timeout,
        }
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The environment's prefix directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lock file.
    #[must_use]
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    fn meta(&self, name: &str) -> PathBuf {
        self.dir.join(META_DIR).join(name)
    }

    /// Whether the environment is complete, incomplete or absent.
    #[must_use]
    pub fn state(&self) -> EnvState {
        match fs_err::read(self.meta(COMPLETE)) {
            Ok(bytes) => match serde_json::from_slice::<Fingerprint>(&bytes) {
                Ok(fingerprint) if fingerprint.key == self.key => match &fingerprint.prefix {
                    Some(built_at) if !same_directory(built_at, &self.dir) => {
                        tracing::debug!(
                            "`{}` was built at `{}` and moved: its scripts name the old path, so it is rebuilt",
                            self.dir.display(),
                            built_at.display()
                        );
                        EnvState::Incomplete
                    }
                    _ => EnvState::Complete(fingerprint),
                },
                _ => EnvState::Incomplete,
            },
            Err(_) if self.dir.exists() => EnvState::Incomplete,
            Err(_) => EnvState::Missing,
        }
    }

    /// The recorded metadata of a complete environment.
    pub fn metadata(&self) -> Result<Metadata, CacheError> {
        let path = self.meta(METADATA);
        let bytes = fs_err::read(&path).map_err(|e| CacheError::Io {
            path: path.clone(),
            source: e,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CacheError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })
    }

    /// Locks the environment for building, waiting for whoever holds it (another builder, a
    /// running model) at most the cache's lock timeout. `on_wait` is called when the lock is
    /// busy and then every 30 s, with the processes holding it.
    pub fn lock_exclusive(
        &self,
        on_wait: impl FnMut(Duration, &[Holder]),
    ) -> Result<LockedFile, CacheError> {
        let lock = self.wait_for(LockKind::Exclusive, on_wait)?;
        if lock.read_only() {
            // `envs-v1/<key>.lock`: the cache root is two levels up.
            let root = self.lock_path.parent().and_then(Path::parent);
            return Err(CacheError::ReadOnly {
                path: root.unwrap_or(&self.lock_path).to_path_buf(),
            });
        }
        Ok(lock)
    }

    /// Tries to lock the environment exclusively without waiting (for `cache prune`).
    pub fn try_lock_exclusive(&self) -> Result<Option<LockedFile>, CacheError> {
        LockedFile::try_acquire(&self.lock_path, LockKind::Exclusive)
    }

    /// Locks the environment for use (`run`), waiting for a builder to finish (at most the
    /// cache's lock timeout).
    pub fn lock_shared(
        &self,
        on_wait: impl FnMut(Duration, &[Holder]),
    ) -> Result<LockedFile, CacheError> {
        self.wait_for(LockKind::Shared, on_wait)
    }

    /// Tries to lock the environment shared without waiting (`cache verify` during a build).
    pub fn try_lock_shared(&self) -> Result<Option<LockedFile>, CacheError> {
        LockedFile::try_acquire(&self.lock_path, LockKind::Shared)
    }

    fn wait_for(
        &self,
        kind: LockKind,
        mut on_wait: impl FnMut(Duration, &[Holder]),
    ) -> Result<LockedFile, CacheError> {
        if let Some(lock) = LockedFile::try_acquire(&self.lock_path, kind)? {
            return Ok(lock);
        }
        // A build killed with SIGKILL can leave children (a build backend uv started) that
        // still hold its lock; they would only delay us, and nothing may write into the
        // environment once we rebuild it.
        for holder in crate::child::kill_orphans(&self.lock_path) {
            tracing::debug!(
                "Stopped {holder}, left running by a killed build of `{}`",
                self.key
            );
        }
        LockedFile::acquire(
            &self.lock_path,
            kind,
            Some(self.lock_timeout),
            Duration::from_secs(30),
            |waited| on_wait(waited, &crate::child::holders(&self.lock_path)),
        )
    }

    /// Starts a build: wipes whatever a crashed build left, creates the directory and records
    /// who is building. The caller must hold the exclusive lock.
    pub fn begin_build(&self, tmp_dir: &Path) -> Result<(), CacheError> {
        if self.dir.exists() {
            self.remove_dir(tmp_dir)?;
        }
        let meta = self.dir.join(META_DIR);
        fs_err::create_dir_all(&meta).map_err(|e| CacheError::Io {
            path: meta.clone(),
            source: e,
        })?;
        let building = serde_json::json!({ "pid": std::process::id(), "started": now() });
        write_atomic(&self.meta(BUILDING), building.to_string().as_bytes())
    }

    /// Finishes a build: writes the metadata, then the fingerprint, last. The caller must hold
    /// the exclusive lock.
    pub fn finish_build(&self, metadata: &Metadata) -> Result<Fingerprint, CacheError> {
        let bytes = serde_json::to_vec_pretty(metadata).map_err(|e| CacheError::Io {
            path: self.meta(METADATA),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.meta(METADATA), &bytes)?;
        let _ = fs_err::remove_file(self.meta(BUILDING));
        let fingerprint = Fingerprint {
            key: self.key.clone(),
            layout: 1,
            created: now(),
            prefix: Some(self.dir.clone()),
        };
        let bytes = serde_json::to_vec(&fingerprint).map_err(|e| CacheError::Io {
            path: self.meta(COMPLETE),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.meta(COMPLETE), &bytes)?;
        // Make the rename itself durable.
        if let Ok(dir) = fs_err::File::open(self.dir.join(META_DIR)) {
            let _ = dir.sync_all();
        }
        self.touch();
        Ok(fingerprint)
    }

    /// Records a use (the lock file's modification time).
    pub fn touch(&self) {
        if let Ok(file) = fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&self.lock_path)
        {
            let _ = file.file().set_modified(SystemTime::now());
        }
    }

    /// When the environment was last used.
    #[must_use]
    pub fn last_used(&self) -> Option<SystemTime> {
        fs_err::metadata(&self.lock_path).ok()?.modified().ok()
    }

    /// Removes the environment directory: first renamed into `tmp_dir` (so the entry
    /// disappears atomically), then deleted. The caller must hold the exclusive lock.
    pub fn remove_dir(&self, tmp_dir: &Path) -> Result<(), CacheError> {
        fs_err::create_dir_all(tmp_dir).map_err(|e| CacheError::Io {
            path: tmp_dir.to_path_buf(),
            source: e,
        })?;
        let trash = tmp_dir.join(format!(
            "{}-removing-{}-{}",
            self.key,
            std::process::id(),
            now()
        ));
        match fs_err::rename(&self.dir, &trash) {
            Ok(()) => fs_err::remove_dir_all(&trash).map_err(|e| CacheError::Io {
                path: trash.clone(),
                source: e,
            }),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            // Rename across filesystems is impossible if tmp_dir is elsewhere: delete in place,
            // starting with the fingerprint so a half-deleted directory is never "complete".
            Err(_) => {
                let _ = fs_err::remove_file(self.meta(COMPLETE));
                fs_err::remove_dir_all(&self.dir).map_err(io(&self.dir))
            }
        }
    }

    /// Removes the environment and its lock file (for `cache prune`). The caller must hold
    /// the exclusive lock, which keeps working on the unlinked file until dropped.
    pub fn remove(&self, tmp_dir: &Path) -> Result<(), CacheError> {
        self.remove_dir(tmp_dir)?;
        let _ = fs_err::remove_file(&self.lock_path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Cache;

    fn metadata(key: &str) -> Metadata {
        Metadata {
            key: key.into(),
            tool_version: "0".into(),
            created: now(),
            build_seconds: 0.0,
            env_manager: "conda".into(),
            model: "m".into(),
            python: None,
            python_version: None,
            spec: serde_json::Value::Null,
            conda_packages: vec![],
            pip_packages: vec![],
            extra: serde_json::Map::new(),
        }
    }

    #[test]
    fn build_protocol() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        cache.init().unwrap();
        let tmp = cache.bucket(crate::TMP_DIR).unwrap();
        let env = cache.env("abc").unwrap();
        assert_eq!(env.state(), EnvState::Missing);
        let _lock = env.lock_exclusive(|_, _| {}).unwrap();
        env.begin_build(&tmp).unwrap();
        fs_err::write(env.dir().join("file"), "x").unwrap();
        assert_eq!(env.state(), EnvState::Incomplete);
        env.finish_build(&metadata("abc")).unwrap();
        assert!(matches!(env.state(), EnvState::Complete(_)));
        assert_eq!(env.metadata().unwrap().key, "abc");
        // A rebuild wipes everything first.
        env.begin_build(&tmp).unwrap();
        assert!(!env.dir().join("file").exists());
        assert_eq!(env.state(), EnvState::Incomplete);
    }

    #[test]
    fn a_moved_environment_is_not_complete_but_a_symlinked_path_is() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("a"));
        cache.init().unwrap();
        let tmp = cache.bucket(crate::TMP_DIR).unwrap();
        let env = cache.env("abc").unwrap();
        let lock = env.lock_exclusive(|_, _| {}).unwrap();
        env.begin_build(&tmp).unwrap();
        env.finish_build(&metadata("abc")).unwrap();
        drop(lock);
        #[cfg(unix)]
        {
            fs_err::os::unix::fs::symlink(root.path().join("a"), root.path().join("link")).unwrap();
            let linked = Cache::new(root.path().join("link")).env("abc").unwrap();
            assert!(matches!(linked.state(), EnvState::Complete(_)));
            fs_err::remove_file(root.path().join("link")).unwrap();
        }
        fs_err::rename(root.path().join("a"), root.path().join("b")).unwrap();
        let moved = Cache::new(root.path().join("b")).env("abc").unwrap();
        assert_eq!(moved.state(), EnvState::Incomplete);
        // Another directory at the old path does not make it complete either.
        fs_err::create_dir_all(root.path().join("a/envs-v1/abc")).unwrap();
        assert_eq!(moved.state(), EnvState::Incomplete);
    }

    #[test]
    fn a_fingerprint_for_another_key_is_not_complete() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path());
        cache.init().unwrap();
        let env = cache.env("abc").unwrap();
        fs_err::create_dir_all(env.dir().join(META_DIR)).unwrap();
        fs_err::write(
            env.dir().join(META_DIR).join(COMPLETE),
            r#"{"key":"other","layout":1,"created":0}"#,
        )
        .unwrap();
        assert_eq!(env.state(), EnvState::Incomplete);
    }

    #[test]
    fn init_refuses_foreign_directories() {
        let root = tempfile::tempdir().unwrap();
        fs_err::write(root.path().join("precious.txt"), "x").unwrap();
        assert!(matches!(
            Cache::new(root.path()).init(),
            Err(CacheError::NotACache { .. })
        ));
    }
}
