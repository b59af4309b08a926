//! `store-v1/`: files by content hash, and environments materialised from it by hard links.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::manifest::{Entry, Kind, Manifest, PrefixUse};
use crate::{StoreError, hex, io, is_sha256};

/// The local file store of a cache.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
}

/// What [`Store::materialise`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Materialised {
    /// Files hard-linked from the store.
    pub linked: u64,
    /// Files copied from it (another mode or mtime than the stored file, or another
    /// filesystem).
    pub copied: u64,
    /// Files naming the prefix, written with the new one.
    pub rewritten: u64,
    /// Bytes of file content in the environment.
    pub bytes: u64,
}

/// What a pull fetched and took from local caches: written by env-remote into the
/// environment's metadata (`remote.pull`), read back by the orchestrator for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullReport {
    /// Distinct blobs the environment needs.
    pub blobs: u64,
    /// Of them, fetched from the remote.
    pub blobs_downloaded: u64,
    /// Bytes downloaded (compressed, including the gaps of coalesced ranges).
    pub downloaded_bytes: u64,
    /// Bytes of file content the local store already had (before seeding).
    pub reused_bytes: u64,
    /// Files taken from the agent's uv cache into the store, each checked by its sha256,
    /// so not downloaded.
    pub seeded_files: u64,
    /// Their bytes.
    pub seeded_bytes: u64,
    /// Bytecode files taken from the bytecode store `pyc-v1/`, each checked by its sha256.
    pub seeded_pyc_files: u64,
    /// Their bytes.
    pub seeded_pyc_bytes: u64,
    /// Files the uv cache's `RECORD` or the bytecode store's key named whose content did not
    /// match: downloaded instead.
    pub seed_rejected: u64,
    /// Bytes of file content of the environment.
    pub env_bytes: u64,
    /// Requests for packs.
    pub requests: u64,
    /// Files linked from the store, copied, and written with the new prefix.
    pub materialised: Materialised,
}

/// Where a pull's bytes came from, in one line: `12.0 MiB downloaded, 40.0 MiB from local
/// caches (30.0 MiB from uv's cache, 2.0 MiB from the bytecode store)`. (Was written field by
/// field in the CLI.)
impl std::fmt::Display for PullReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = env_cache::units::human_size;
        let local = self.reused_bytes + self.seeded_bytes + self.seeded_pyc_bytes;
        write!(
            f,
            "{} downloaded, {} from local caches ({} from uv's cache, {} from the bytecode store)",
            size(self.downloaded_bytes),
            size(local),
            size(self.seeded_bytes),
            size(self.seeded_pyc_bytes),
        )
    }
}

impl Store {
    /// The store of `cache` (`store-v1/`, staging in `tmp/`).
    pub fn open(cache: &env_cache::Cache) -> Result<Self, StoreError> {
        Ok(Self {
            root: cache.bucket(env_cache::STORE_BUCKET)?,
            tmp: cache.bucket(env_cache::TMP_DIR)?,
        })
    }

    /// Where the file with hash `sha256` is (or would be).
    #[must_use]
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.root.join(&sha256[..2.min(sha256.len())]).join(sha256)
    }

    /// Whether the store has the file with hash `sha256`.
    #[must_use]
    pub fn has(&self, sha256: &str) -> bool {
        is_sha256(sha256) && self.path(sha256).is_file()
    }

    /// Adds the files of the complete environment at `prefix`, which `manifest` describes, by
    /// hard link (copied where the link fails): the agent that built an environment holds its
    /// files for the pulls of its siblings. Returns how many were added.
    pub fn ingest(&self, manifest: &Manifest, prefix: &Path) -> Result<u64, StoreError> {
        let mut added = 0;
        for entry in manifest.blobs() {
            let sha = entry.sha256.as_deref().unwrap_or_default();
            if self.has(sha) {
                continue;
            }
            let from = prefix.join(&entry.path);
            let to = self.path(sha);
            let dir = to.parent().unwrap_or(&self.root);
            fs_err::create_dir_all(dir).map_err(io(dir))?;
            match fs_err::hard_link(&from, &to) {
                Ok(()) => added += 1,
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(_) => {
                    let mut writer = self.writer(sha, entry.size)?;
                    let mut file = fs_err::File::open(&from).map_err(io(&from))?;
                    std::io::copy(&mut file, &mut writer).map_err(io(&from))?;
                    if writer.commit(entry.mode, entry.mtime)? {
                        added += 1;
                    }
                }
            }
        }
        Ok(added)
    }

    /// A writer for the file with hash `sha256` and `size` bytes: it refuses to take more
    /// than `size` bytes, and [`BlobWriter::commit`] checks size and hash before the file
    /// enters the store.
    pub fn writer(&self, sha256: &str, size: u64) -> Result<BlobWriter, StoreError> {
        if !is_sha256(sha256) {
            return Err(StoreError::BadManifest {
                message: format!("`{sha256}` is not a sha256"),
            });
        }
        fs_err::create_dir_all(&self.tmp).map_err(io(&self.tmp))?;
        let file = tempfile::Builder::new()
            .prefix(".store-")
            .tempfile_in(&self.tmp)
            .map_err(io(&self.tmp))?;
        Ok(BlobWriter {
            file,
            hasher: Sha256::new(),
            written: 0,
            size,
            sha256: sha256.to_string(),
            target: self.path(sha256),
        })
    }

    /// Writes the environment `manifest` describes into `target` (new), every file from the
    /// store (which must have them all), the files naming the prefix with `new_prefix` (where
    /// `target` will be renamed to) instead. Directory modes are set last, so a read-only
    /// directory is still filled.
    /// Stops with [`StoreError::Interrupted`] at the first entry after a deferred signal
    /// (`env_cache::child::interrupted`), leaving `target` to the caller to remove.
    pub fn materialise(
        &self,
        manifest: &Manifest,
        target: &Path,
        new_prefix: &Path,
    ) -> Result<Materialised, StoreError> {
        let mut done = Materialised::default();
        fs_err::create_dir(target).map_err(io(target))?;
        let new_prefix = new_prefix.to_string_lossy().into_owned();
        for entry in &manifest.entries {
            if env_cache::child::interrupted() {
                return Err(StoreError::Interrupted {
                    path: target.to_path_buf(),
                });
            }
            let path = target.join(&entry.path);
            match entry.kind {
                Kind::Dir => fs_err::create_dir(&path).map_err(io(&path))?,
                Kind::Symlink => {
                    let link = entry.target.as_deref().unwrap_or_default();
                    fs_err::os::unix::fs::symlink(link, &path).map_err(io(&path))?;
                }
                Kind::File => {
                    self.file(entry, &path, &manifest.prefix, &new_prefix, &mut done)?;
                }
            }
        }
        for entry in manifest.entries.iter().rev() {
            if entry.kind == Kind::Dir {
                let path = target.join(&entry.path);
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))
                    .map_err(io(&path))?;
            }
        }
        Ok(done)
    }

    fn file(
        &self,
        entry: &Entry,
        path: &Path,
        old_prefix: &str,
        new_prefix: &str,
        done: &mut Materialised,
    ) -> Result<(), StoreError> {
        let sha = entry.sha256.as_deref().unwrap_or_default();
        let blob = self.path(sha);
        let metadata = fs_err::metadata(&blob).map_err(io(&blob))?;
        if metadata.len() != entry.size {
            // Never link a store file that is not what its name says; the next pull fetches
            // it again.
            let _ = fs_err::remove_file(&blob);
            return Err(StoreError::Damaged {
                what: format!("store-v1/{sha}"),
                message: format!(
                    "{} bytes where `{}` needs {}; removed",
                    metadata.len(),
                    entry.path,
                    entry.size
                ),
            });
        }
        done.bytes += entry.size;
        if entry.prefix == PrefixUse::Text {
            let text = fs_err::read(&blob).map_err(io(&blob))?;
            let replaced = replace(&text, old_prefix.as_bytes(), new_prefix.as_bytes());
            let mut file = fs_err::File::create_new(path).map_err(io(path))?;
            file.write_all(&replaced).map_err(io(path))?;
            // The new mtime makes any timestamp `.pyc` of this file stale, as it must be:
            // it holds the old prefix.
            file.set_permissions(std::fs::Permissions::from_mode(entry.mode))
                .map_err(io(path))?;
            done.rewritten += 1;
            return Ok(());
        }
        let same_mode = metadata.permissions().mode() & 0o555 == entry.mode & 0o555;
        // A timestamp `.pyc` records its source's mtime: a source must keep it.
        let needs_mtime = Path::new(&entry.path)
            .extension()
            .is_some_and(|e| e == "py");
        let same_mtime =
            !needs_mtime || u64::try_from(metadata.mtime()).is_ok_and(|m| m == entry.mtime);
        if same_mode && same_mtime && fs_err::hard_link(&blob, path).is_ok() {
            done.linked += 1;
            return Ok(());
        }
        fs_err::copy(&blob, path).map_err(io(path))?;
        let file = fs_err::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io(path))?;
        file.set_permissions(std::fs::Permissions::from_mode(entry.mode))
            .map_err(io(path))?;
        file.file()
            .set_modified(UNIX_EPOCH + Duration::from_secs(entry.mtime))
            .map_err(io(path))?;
        done.copied += 1;
        Ok(())
    }
}

/// `text` with every `from` replaced by `to`.
fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(text, from) {
        out.extend_from_slice(&text[last..at]);
        out.extend_from_slice(to);
        last = at + from.len();
    }
    out.extend_from_slice(&text[last..]);
    out
}

/// Removes from the store at `root` (`store-v1/`) every file whose hash is not in `keep`, and
/// returns the bytes that frees (a file still linked elsewhere frees nothing).
///
/// Environments hold their own hard links, so removing a store file never changes an
/// environment: what goes is only the sharing a later pull of a sibling would have had. It is
/// also what lets `pyc-v1/` drop bytecode no environment uses (its rule is "only the store
/// links it"). Run it with the cache to yourself (`cache prune` holds the cache's exclusive
/// lock): a pull or an ingest links from the store while holding the shared lock.
#[must_use]
pub fn sweep<S: std::hash::BuildHasher>(
    root: &Path,
    keep: &std::collections::HashSet<String, S>,
) -> u64 {
    let mut freed = 0;
    let Ok(shards) = fs_err::read_dir(root) else {
        return 0;
    };
    for shard in shards.flatten() {
        let Ok(files) = fs_err::read_dir(shard.path()) else {
            continue;
        };
        for file in files.flatten() {
            let name = file.file_name();
            if name.to_str().is_some_and(|name| keep.contains(name)) {
                continue;
            }
            let Ok(metadata) = file.metadata() else {
                continue;
            };
            if fs_err::remove_file(file.path()).is_ok() && metadata.nlink() == 1 {
                freed += metadata.len();
            }
        }
        // An emptied shard goes too (fails harmlessly when it is not empty).
        let _ = fs_err::remove_dir(shard.path());
    }
    freed
}

/// A file on its way into the store (see [`Store::writer`]). Dropped without
/// [`BlobWriter::commit`], it leaves nothing behind.
#[derive(Debug)]
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    written: u64,
    size: u64,
    sha256: String,
    target: PathBuf,
}

impl std::io::Write for BlobWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.written + bytes.len() as u64 > self.size {
            return Err(std::io::Error::other(format!(
                "more than the {} bytes of `{}`",
                self.size, self.sha256
            )));
        }
        let n = self.file.write(bytes)?;
        self.hasher.update(&bytes[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl BlobWriter {
    /// Checks size and hash, then renames the file into the store, read-only, with `mode`'s
    /// execute bits and `mtime`. `Ok(true)` when this writer stored the blob, `Ok(false)` when
    /// another writer (a parallel seed or pull) stored the same content first, so that callers
    /// counting what they added count each blob once.
    pub fn commit(mut self, mode: u32, mtime: u64) -> Result<bool, StoreError> {
        self.file.flush().map_err(io(self.file.path()))?;
        let sha = hex(&self.hasher.finalize_reset());
        if self.written != self.size || sha != self.sha256 {
            return Err(StoreError::Damaged {
                what: self.sha256.clone(),
                message: if self.written == self.size {
                    format!("its sha256 is {sha}")
                } else {
                    format!("{} bytes where {} were expected", self.written, self.size)
                },
            });
        }
        let file = self.file.as_file();
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o555))
            .map_err(io(&self.target))?;
        file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime))
            .map_err(io(&self.target))?;
        let dir = self.target.parent().unwrap_or(Path::new("."));
        fs_err::create_dir_all(dir).map_err(io(dir))?;
        match self.file.persist_noclobber(&self.target) {
            Ok(_) => Ok(true),
            // Another pull stored it first: the same content.
            Err(error) if error.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(error) => Err(StoreError::Io {
                path: self.target.clone(),
                source: error.error,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pull's line: what was downloaded, what local caches gave (the store's own files, uv's
    /// cache and the bytecode store, summed), then the two seeded parts.
    #[test]
    fn a_pull_report_says_where_its_bytes_came_from() {
        let report = PullReport {
            downloaded_bytes: 2048,
            reused_bytes: 1024,
            seeded_bytes: 3 * 1024 * 1024,
            seeded_pyc_bytes: 0,
            ..PullReport::default()
        };
        assert_eq!(
            report.to_string(),
            "2.0 KiB downloaded, 3.0 MiB from local caches (3.0 MiB from uv's cache, 0 B from the bytecode store)"
        );
    }

    #[test]
    fn replace_every_occurrence() {
        assert_eq!(
            replace(b"a/p/b /p", b"/p", b"/longer"),
            b"a/longer/b /longer"
        );
        assert_eq!(replace(b"none", b"/p", b"/x"), b"none");
    }

    /// The sweep keeps what a manifest names and removes the rest, without touching an
    /// environment that links a removed file.
    #[test]
    fn sweep_removes_what_no_manifest_names() {
        let temp = tempfile::tempdir().unwrap();
        let cache = env_cache::Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let store = Store::open(&cache).unwrap();
        let env = temp.path().join("env");
        fs_err::create_dir_all(&env).unwrap();
        fs_err::write(env.join("kept.py"), "kept = 1\n").unwrap();
        fs_err::write(env.join("gone.py"), "gone = 1\n").unwrap();
        let manifest = Manifest::scan(&env).unwrap();
        assert_eq!(store.ingest(&manifest, &env).unwrap(), 2);
        let hash = |name: &str| {
            manifest
                .entries
                .iter()
                .find(|e| e.path == name)
                .and_then(|e| e.sha256.clone())
                .unwrap()
        };
        let keep: std::collections::HashSet<String> = [hash("kept.py")].into();
        // Both files are still linked from the environment: removing them frees nothing.
        assert_eq!(sweep(&store.root, &keep), 0);
        assert!(store.has(&hash("kept.py")));
        assert!(!store.has(&hash("gone.py")));
        assert_eq!(
            fs_err::read_to_string(env.join("gone.py")).unwrap(),
            "gone = 1\n"
        );
        // Once nothing names it, the last file goes, and its bytes are freed.
        assert_eq!(sweep(&store.root, &std::collections::HashSet::new()), 0);
        assert!(!store.has(&hash("kept.py")));
        fs_err::remove_dir_all(&env).unwrap();
        let lonely = temp.path().join("lonely");
        fs_err::create_dir_all(&lonely).unwrap();
        fs_err::write(lonely.join("x.py"), "x = 2\n").unwrap();
        let alone = Manifest::scan(&lonely).unwrap();
        store.ingest(&alone, &lonely).unwrap();
        fs_err::remove_dir_all(&lonely).unwrap();
        assert_eq!(sweep(&store.root, &std::collections::HashSet::new()), 6);
    }

    /// An environment scanned, ingested, and materialised at another path: files linked from
    /// the store with their modes and source mtimes, the prefix rewritten where named.
    #[test]
    fn materialise_elsewhere() {
        let temp = tempfile::tempdir().unwrap();
        let cache = env_cache::Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let store = Store::open(&cache).unwrap();
        let env = temp.path().join("a/env");
        fs_err::create_dir_all(env.join("bin")).unwrap();
        fs_err::create_dir_all(env.join("lib")).unwrap();
        let script = format!("#!{}/bin/python\nprint(1)\n", env.display());
        fs_err::write(env.join("bin/tool"), &script).unwrap();
        fs_err::set_permissions(env.join("bin/tool"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        fs_err::write(env.join("lib/m.py"), "x = 1\n").unwrap();
        fs_err::hard_link(env.join("lib/m.py"), env.join("lib/copy.py")).unwrap();
        fs_err::os::unix::fs::symlink("tool", env.join("bin/alias")).unwrap();
        let manifest = Manifest::scan(&env).unwrap();
        // The two equal files are one blob.
        assert_eq!(store.ingest(&manifest, &env).unwrap(), 2);
        let target = temp.path().join("cache/tmp/b-env");
        let done = store.materialise(&manifest, &target, &target).unwrap();
        assert_eq!((done.linked, done.copied, done.rewritten), (2, 0, 1));
        assert_eq!(
            fs_err::read_to_string(target.join("bin/tool")).unwrap(),
            format!("#!{}/bin/python\nprint(1)\n", target.display())
        );
        let mode = fs_err::metadata(target.join("bin/tool"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);
        let source = fs_err::metadata(env.join("lib/m.py")).unwrap();
        let linked = fs_err::metadata(target.join("lib/m.py")).unwrap();
        assert_eq!(linked.ino(), source.ino(), "linked, not copied");
        assert_eq!(linked.mtime(), source.mtime());
        assert_eq!(
            fs_err::read_link(target.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
    }

    #[test]
    fn writer_checks_size_and_hash() {
        let temp = tempfile::tempdir().unwrap();
        let cache = env_cache::Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let store = Store::open(&cache).unwrap();
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let mut writer = store.writer(hello, 5).unwrap();
        assert!(writer.write_all(b"hello!").is_err(), "more than its size");
        drop(writer);
        let mut writer = store.writer(hello, 5).unwrap();
        writer.write_all(b"jello").unwrap();
        assert!(matches!(
            writer.commit(0o644, 0),
            Err(StoreError::Damaged { .. })
        ));
        assert!(!store.has(hello));
        let mut writer = store.writer(hello, 5).unwrap();
        writer.write_all(b"hello").unwrap();
        // A second writer of the same blob, open before the first committed, stores nothing.
        let mut late = store.writer(hello, 5).unwrap();
        late.write_all(b"hello").unwrap();
        assert!(
            writer.commit(0o644, 7).unwrap(),
            "the first writer stores it"
        );
        assert!(
            !late.commit(0o644, 7).unwrap(),
            "the second finds it stored"
        );
        assert!(store.has(hello));
        let metadata = fs_err::metadata(store.path(hello)).unwrap();
        assert_eq!(
            (metadata.permissions().mode() & 0o777, metadata.mtime()),
            (0o444, 7)
        );
        // Nothing left in tmp/.
        let left: Vec<_> = fs_err::read_dir(temp.path().join("cache/tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
