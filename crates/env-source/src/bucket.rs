//! The model cache bucket (`models-v1/`): entries, their locks, reuse and pruning.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use env_cache::{Cache, CacheError, LockKind, LockedFile};
use serde::{Deserialize, Serialize};

use crate::download::download_entry;
use crate::{MODELS_BUCKET, Reporter, Resolved, SourceError, SourceSettings};

/// What `source.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryInfo {
    /// The first URI that downloaded it (redacted).
    pub uri: String,
    /// The artifact location (redacted).
    pub source: String,
    /// Registered model name, if any.
    pub name: Option<String>,
    /// Version, if any.
    pub version: Option<String>,
    /// Unix seconds.
    pub created: u64,
}

/// A cached model entry.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    dir: PathBuf,
    lock: PathBuf,
}

impl ModelEntry {
    fn new(bucket: &Path, key: &str) -> Self {
        Self {
            dir: bucket.join(key),
            lock: bucket.join(format!("{key}.lock")),
        }
    }

    /// The entry directory (`model/` and `source.json`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model directory inside it.
    #[must_use]
    pub fn model_dir(&self) -> PathBuf {
        self.dir.join("model")
    }

    /// The lock file beside it.
    #[must_use]
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// When a command last used it (the lock file's modification time).
    #[must_use]
    pub fn last_used(&self) -> Option<std::time::SystemTime> {
        fs_err::metadata(&self.lock).ok()?.modified().ok()
    }

    /// Takes the entry's lock exclusively if nobody uses it.
    pub fn try_lock_exclusive(&self) -> Result<Option<LockedFile>, CacheError> {
        LockedFile::try_acquire(&self.lock, LockKind::Exclusive)
    }

    /// Removes the entry (hold its lock): renamed into `tmp_dir` first, so an interrupted
    /// removal never leaves something that looks like a model.
    pub fn remove(&self, tmp_dir: &Path) -> Result<(), SourceError> {
        if self.dir.exists() {
            let doomed = tmp_dir.join(format!("removing-model-{}", self.key()));
            let write = |path: &Path| {
                let path = path.to_path_buf();
                move |source| SourceError::Write { path, source }
            };
            fs_err::rename(&self.dir, &doomed).map_err(write(&self.dir))?;
            fs_err::remove_dir_all(&doomed).map_err(write(&doomed))?;
        }
        let _ = fs_err::remove_file(&self.lock);
        Ok(())
    }

    /// What it came from; `None` if incomplete.
    #[must_use]
    pub fn info(&self) -> Option<EntryInfo> {
        serde_json::from_slice(&fs_err::read(self.dir.join("source.json")).ok()?).ok()
    }
}

/// The state of a listed model entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Downloaded; `source.json` is there.
    Complete,
    /// Incomplete, and another process holds its lock: a download is running.
    Downloading,
    /// Incomplete, and nobody holds it (`cache prune` removes it).
    Incomplete,
}

/// One entry of the model cache, as `cache list` shows it.
#[derive(Debug, Clone)]
pub struct ModelSummary {
    /// The entry's key.
    pub key: String,
    /// Complete, downloading, or a leftover.
    pub state: ModelState,
    /// What it was downloaded from; `None` until complete.
    pub info: Option<EntryInfo>,
    /// The model directory inside the entry.
    pub model_dir: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// When a command last used it.
    pub last_used: Option<std::time::SystemTime>,
    /// Whether another process holds its lock (a download, a command using it).
    pub in_use: bool,
}

/// Every entry of the model cache that has a directory, in key order; whether one is in use is
/// found by trying its lock exclusively without waiting (and releasing it at once).
pub fn list_models(cache: &Cache) -> Result<Vec<ModelSummary>, CacheError> {
    let mut summaries = Vec::new();
    for model in entries(cache) {
        let info = model.info();
        if info.is_none() && !model.dir().exists() {
            continue;
        }
        let in_use = model.try_lock_exclusive()?.is_none();
        summaries.push(ModelSummary {
            key: model.key(),
            state: match (&info, in_use) {
                (Some(_), _) => ModelState::Complete,
                (None, true) => ModelState::Downloading,
                (None, false) => ModelState::Incomplete,
            },
            info,
            model_dir: model.model_dir(),
            size: env_cache::disk_usage(model.dir(), &mut std::collections::HashSet::new()),
            last_used: model.last_used(),
            in_use,
        });
    }
    Ok(summaries)
}

/// A downloaded model `cache prune` removed (or, in a dry run, would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedModel {
    /// The entry's key.
    pub key: String,
    /// The URI it was downloaded for; `None` for an incomplete download.
    pub uri: Option<String>,
    /// Bytes on disk.
    pub size: u64,
}

impl std::fmt::Display for PrunedModel {
    /// What it is, for `Removed …` or `Would remove …`: ``downloaded model `models:/m/1` KEY
    /// (1.0 KiB)``, `(incomplete)` in place of the URI for an unfinished download.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = env_cache::units::human_size(self.size);
        match &self.uri {
            Some(uri) => write!(f, "downloaded model `{uri}` {} ({size})", self.key),
            None => write!(f, "downloaded model (incomplete) {} ({size})", self.key),
        }
    }
}

/// What [`prune_models`] did.
#[derive(Debug, Clone, Default)]
pub struct PruneModelsReport {
    /// Bytes freed.
    pub freed: u64,
    /// Entries kept because another process uses them.
    pub skipped_in_use: usize,
}

/// Removes downloaded models unused for longer than `older_than`, and incomplete downloads,
/// skipping those another process holds. `on_removal` is called before each removal.
pub fn prune_models(
    cache: &Cache,
    older_than: Option<std::time::Duration>,
    dry_run: bool,
    on_removal: &mut dyn FnMut(&PrunedModel),
) -> Result<PruneModelsReport, SourceError> {
    let mut report = PruneModelsReport::default();
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    let now = std::time::SystemTime::now();
    for model in entries(cache) {
        let last_used = model
            .last_used()
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let info = model.info();
        let incomplete = model.dir().exists() && info.is_none();
        let stale =
            older_than.is_some_and(|age| now.duration_since(last_used).unwrap_or_default() > age);
        if !(stale || incomplete) {
            continue;
        }
        let Some(lock) = model.try_lock_exclusive()? else {
            report.skipped_in_use += 1;
            continue;
        };
        let size = env_cache::disk_usage(model.dir(), &mut std::collections::HashSet::new());
        on_removal(&PrunedModel {
            key: model.key(),
            uri: info.map(|i| i.uri),
            size,
        });
        if !dry_run {
            model.remove(&tmp)?;
        }
        drop(lock);
        report.freed += size;
    }
    Ok(report)
}

/// Every entry of the model cache.
pub fn entries(cache: &Cache) -> Vec<ModelEntry> {
    let bucket = cache.root().join(MODELS_BUCKET);
    let mut keys = std::collections::BTreeSet::new();
    for entry in fs_err::read_dir(&bucket).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = name.strip_suffix(".lock").unwrap_or(&name).to_string();
        if key != "refs" && !key.starts_with('.') {
            keys.insert(key);
        }
    }
    keys.iter()
        .map(|key| ModelEntry::new(&bucket, key))
        .collect()
}

/// A model entry's lock, waiting at most the cache's lock timeout (`PYFUNC_ENV_LOCK_TIMEOUT`)
/// for another process downloading it (or, for a download, using it); the timeout error
/// names the holder. The wait runs on tokio's blocking pool, so it never stalls a worker of
/// the caller's runtime (a `create --from` resolving many models shares it with builds).
async fn wait_for(cache: &Cache, path: &Path, kind: LockKind) -> Result<LockedFile, CacheError> {
    let timeout = cache.lock_timeout();
    let path = path.to_path_buf();
    let waiting = path.clone();
    tokio::task::spawn_blocking(move || {
        LockedFile::acquire(
            &path,
            kind,
            Some(timeout),
            std::time::Duration::from_secs(30),
            |waited| {
                tracing::debug!(
                    "Waiting for another process holding `{}` ({waited:?})",
                    path.display()
                );
            },
        )
    })
    .await
    .unwrap_or_else(|join| {
        Err(CacheError::Io {
            path: waiting,
            source: std::io::Error::other(join.to_string()),
        })
    })
}

/// Reuses the entry `key` if complete; else (online) locks it, resolves the artifact location
/// with `locate` and downloads it through staging.
pub(crate) async fn fetch_cached<F, Fut>(
    cache: &Cache,
    settings: &SourceSettings,
    reporter: &Arc<dyn Reporter>,
    key: &str,
    shown: &str,
    registered: Option<(&str, &str)>,
    locate: F,
) -> Result<Resolved, SourceError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, SourceError>>,
{
    let bucket = cache.bucket(MODELS_BUCKET)?;
    let entry = ModelEntry::new(&bucket, key);
    let found = async |entry: &ModelEntry, cached: bool| -> Result<Option<Resolved>, SourceError> {
        let Some(info) = entry.info() else {
            return Ok(None);
        };
        let lock = wait_for(cache, entry.lock_path(), LockKind::Shared).await?;
        // The lock file's mtime is the last use (`cache prune --older-than`); a read-only
        // cache records none.
        if let Some(file) = lock.file() {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        tracing::debug!("Model cache hit for `{shown}`: {}", entry.dir().display());
        Ok(Some(Resolved {
            uri: shown.to_string(),
            dir: entry.model_dir(),
            source: Some(info.source),
            name: info.name,
            version: info.version,
            cached,
            warnings: Vec::new(),
            lock: Some(Arc::new(lock)),
        }))
    };
    if let Some(resolved) = found(&entry, true).await? {
        return Ok(resolved);
    }
    if settings.offline {
        return Err(SourceError::OfflineNotCached {
            uri: shown.to_string(),
        });
    }
    let lock = wait_for(cache, entry.lock_path(), LockKind::Exclusive).await?;
    if entry.info().is_none() {
        let location = locate().await?;
        download_entry(
            cache, settings, reporter, &entry, shown, registered, &location,
        )
        .await?;
    }
    drop(lock);
    found(&entry, false)
        .await?
        .ok_or_else(|| SourceError::OfflineNotCached {
            uri: shown.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pruned_model_says_its_uri_or_that_it_is_incomplete() {
        let model = |uri: Option<&str>| PrunedModel {
            key: "abc".into(),
            uri: uri.map(str::to_string),
            size: 1024,
        };
        assert_eq!(
            model(Some("models:/m/1")).to_string(),
            "downloaded model `models:/m/1` abc (1.0 KiB)"
        );
        assert_eq!(
            model(None).to_string(),
            "downloaded model (incomplete) abc (1.0 KiB)"
        );
    }

    #[test]
    fn listing_tells_downloaded_from_incomplete_models() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        cache.init().unwrap();
        let bucket = cache.bucket(MODELS_BUCKET).unwrap();
        fs_err::create_dir_all(bucket.join("a/model")).unwrap();
        fs_err::write(bucket.join("a/model/MLmodel"), "flavors: {}\n").unwrap();
        fs_err::write(
            bucket.join("a/source.json"),
            r#"{"uri":"models:/iris/3","source":"s3://b/p","name":"iris","version":"3","created":5}"#,
        )
        .unwrap();
        fs_err::create_dir_all(bucket.join("b/model")).unwrap();
        // A lock file alone, and the refs directory, are not entries.
        fs_err::write(bucket.join("c.lock"), "").unwrap();
        fs_err::create_dir_all(bucket.join("refs")).unwrap();

        let listed = list_models(&cache).unwrap();
        let states: Vec<_> = listed.iter().map(|m| (m.key.as_str(), m.state)).collect();
        assert_eq!(
            states,
            [("a", ModelState::Complete), ("b", ModelState::Incomplete)]
        );
        let a = &listed[0];
        assert_eq!(a.info.as_ref().unwrap().version.as_deref(), Some("3"));
        assert_eq!(a.model_dir, bucket.join("a/model"));
        assert!(a.size >= 12 && !a.in_use);

        // Another process downloading it holds its lock.
        let held = ModelEntry::new(&bucket, "b").try_lock_exclusive().unwrap();
        assert!(held.is_some());
        let listed = list_models(&cache).unwrap();
        assert_eq!(listed[1].state, ModelState::Downloading);
        assert!(listed[1].in_use);
    }
}
