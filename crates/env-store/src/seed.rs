//! Seeding the store from what the agent already holds (issue 25): before a pull downloads
//! anything, the files of the environment that uv's cache has unpacked enter the store by
//! hard link, each checked by its full sha256 first.
//!
//! uv keeps every wheel it installed unpacked in `archive-v0/<id>/`, with the wheel's
//! `<dist>.dist-info/RECORD` listing each file's path (relative to site-packages) and sha256.
//! Only the distributions the manifest names (its `*.dist-info` directories) are looked at:
//! one directory listing per archive entry, then one `RECORD` per candidate, so an agent with a
//! large uv cache pays for the wheels it needs, not for the whole cache.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::manifest::{Entry, Kind, Manifest};
use crate::store::Store;
use crate::{hex, is_sha256};

/// What [`Store::seed_from_uv`] took from uv's cache.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Seeded {
    /// Distinct files that entered the store from the cache.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files whose `RECORD` matched the manifest but whose content did not (damaged or
    /// changed in the cache): not used; the pull downloads them.
    pub rejected: u64,
}

/// A file on this machine that something (uv's `RECORD`, the bytecode store's key) says is
/// the blob `entry` needs: [`Store::seed`] checks that before it uses it.
#[derive(Debug)]
pub struct Candidate<'a> {
    /// The file.
    pub source: PathBuf,
    /// The entry whose blob it should be.
    pub entry: &'a Entry,
}

impl Store {
    /// Adds to the store every file of `manifest` it lacks that uv's cache at `uv_cache` holds
    /// unpacked, by hard link (a copy across filesystems). A file enters only once its own
    /// sha256 and size are the manifest's: `RECORD` only says where to look. Best effort: a
    /// cache that cannot be read seeds nothing, and the pull downloads what is still missing.
    #[must_use]
    pub fn seed_from_uv(&self, manifest: &Manifest, uv_cache: &Path) -> Seeded {
        let seeded = self.seed(&uv_candidates(self, manifest, uv_cache));
        tracing::debug!(
            "Seeded the store from the uv cache `{}`: {} files, {} bytes ({} rejected)",
            uv_cache.display(),
            seeded.files,
            seeded.bytes,
            seeded.rejected
        );
        seeded
    }

    /// Adds each candidate the store lacks whose content is its entry's blob (size and full
    /// sha256), by hard link (a copy across filesystems); the others are counted as rejected.
    /// Several candidates of one blob: the first that matches is stored, the rest skipped.
    #[must_use]
    pub fn seed(&self, candidates: &[Candidate<'_>]) -> Seeded {
        if candidates.is_empty() {
            return Seeded::default();
        }
        let next = AtomicUsize::new(0);
        let seeded = Mutex::new(Seeded::default());
        let workers = std::thread::available_parallelism()
            .map_or(2, std::num::NonZeroUsize::get)
            .clamp(1, 4);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| {
                    let mut buffer = vec![0u8; 1 << 18];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(candidate) = candidates.get(i) else {
                            break;
                        };
                        let took = self.seed_file(&candidate.source, candidate.entry, &mut buffer);
                        let mut seeded = seeded
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        match took {
                            Some(true) => {
                                seeded.files += 1;
                                seeded.bytes += candidate.entry.size;
                            }
                            Some(false) => seeded.rejected += 1,
                            None => {}
                        }
                    }
                });
            }
        });
        seeded
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Puts `source` into the store as `entry`'s blob if its content is that blob:
    /// `Some(true)` stored, `Some(false)` its content differs (not used), `None` not
    /// readable or stored already.
    fn seed_file(&self, source: &Path, entry: &Entry, buffer: &mut [u8]) -> Option<bool> {
        let sha = entry.sha256.as_deref()?;
        let target = self.path(sha);
        if target.is_file() {
            return None;
        }
        // Hash what will be linked, in full: `RECORD` is a claim of the cache, and a cache
        // file can be damaged, truncated or edited after uv wrote it.
        let mut file = fs_err::File::open(source).ok()?;
        let metadata = file.metadata().ok()?;
        if !metadata.is_file() || metadata.len() != entry.size {
            return Some(false);
        }
        let mut hasher = Sha256::new();
        loop {
            match file.read(buffer) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buffer[..n]),
                Err(_) => return None,
            }
        }
        if hex(&hasher.finalize()) != sha {
            tracing::debug!(
                "Not seeding `{}` from `{}`: its content is not the manifest's",
                entry.path,
                source.display()
            );
            return Some(false);
        }
        let dir = target.parent()?;
        fs_err::create_dir_all(dir).ok()?;
        // A source whose mtime is not the manifest's (another agent unpacked the wheel at
        // another time) would be copied into every environment, since its `.pyc` records the
        // mtime: it enters the store as a copy with the right mtime once instead.
        let is_source = Path::new(&entry.path)
            .extension()
            .is_some_and(|e| e == "py");
        let same_mtime = u64::try_from(std::os::unix::fs::MetadataExt::mtime(&metadata))
            .is_ok_and(|m| m == entry.mtime);
        let linked = if is_source && !same_mtime {
            Err(std::io::Error::other("another mtime"))
        } else {
            fs_err::hard_link(source, &target)
        };
        match linked {
            Ok(()) => Some(true),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => None,
            // Another filesystem (or links refused, or another mtime): a copy, checked again
            // as it is written.
            Err(_) => {
                let mut writer = self.writer(sha, entry.size).ok()?;
                let mut file = fs_err::File::open(source).ok()?;
                std::io::copy(&mut file, &mut writer).ok()?;
                // Another worker may have stored the same blob from another candidate
                // meanwhile: it is counted once, by whoever stored it.
                match writer.commit(entry.mode, entry.mtime) {
                    Ok(stored) => stored.then_some(true),
                    Err(crate::StoreError::Damaged { .. }) => Some(false),
                    Err(_) => None,
                }
            }
        }
    }
}

/// The files of uv's cache whose `RECORD` says they are blobs the store lacks.
fn uv_candidates<'a>(store: &Store, manifest: &'a Manifest, uv_cache: &Path) -> Vec<Candidate<'a>> {
    // The files the store lacks, by path; the dist-info directories, by name, with the
    // site-packages directories they are in.
    let mut missing: HashMap<&str, &Entry> = HashMap::new();
    let mut dist_infos: HashMap<&str, Vec<&str>> = HashMap::new();
    for entry in &manifest.entries {
        match entry.kind {
            Kind::File => {
                let sha = entry.sha256.as_deref().unwrap_or_default();
                if is_sha256(sha) && !store.has(sha) {
                    missing.insert(entry.path.as_str(), entry);
                }
            }
            Kind::Dir => {
                let (parent, name) = entry.path.rsplit_once('/').unwrap_or(("", &entry.path));
                if name.ends_with(".dist-info") {
                    dist_infos.entry(name).or_default().push(parent);
                }
            }
            Kind::Symlink => {}
        }
    }
    if missing.is_empty() || dist_infos.is_empty() {
        return Vec::new();
    }
    let archive = uv_cache.join("archive-v0");
    let Ok(ids) = fs_err::read_dir(&archive) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for id in ids.flatten() {
        let root = id.path();
        let Ok(children) = fs_err::read_dir(&root) else {
            continue;
        };
        for child in children.flatten() {
            let name = child.file_name();
            let Some(parents) = name.to_str().and_then(|n| dist_infos.get(n)) else {
                continue;
            };
            let Ok(record) = fs_err::read_to_string(child.path().join("RECORD")) else {
                continue;
            };
            for (path, sha) in record.lines().filter_map(parse_record_line) {
                for parent in parents {
                    let installed = if parent.is_empty() {
                        path.to_string()
                    } else {
                        format!("{parent}/{path}")
                    };
                    let Some(entry) = missing.get(installed.as_str()) else {
                        continue;
                    };
                    let want = entry.sha256.as_deref().unwrap_or_default();
                    // Every candidate of a blob: a damaged one is refused and the next tried
                    // (once one is stored, the rest are skipped without being read).
                    if want == sha {
                        out.push(Candidate {
                            source: root.join(path),
                            entry,
                        });
                    }
                }
            }
        }
    }
    out
}

/// `path,sha256=<urlsafe base64>,size` → the path and the hex sha256; `None` for the
/// `RECORD` line itself, other hashes, quoted paths (commas inside) and paths that climb out
/// of site-packages (scripts, `.data`).
fn parse_record_line(line: &str) -> Option<(&str, String)> {
    let mut fields = line.rsplitn(3, ',');
    let _size = fields.next()?;
    let hash = fields.next()?.strip_prefix("sha256=")?;
    let path = fields.next()?;
    if path.is_empty()
        || path.starts_with('"')
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return None;
    }
    let digest = urlsafe_base64(hash)?;
    (digest.len() == 32).then(|| (path, hex(&digest)))
}

/// Decodes unpadded (or padded) urlsafe base64, the encoding of `RECORD`'s hashes.
fn urlsafe_base64(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_lines_give_path_and_hex_sha256() {
        // sha256("hello"), as `RECORD` writes it.
        let line = "pkg/mod.py,sha256=LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ,5";
        assert_eq!(
            parse_record_line(line),
            Some((
                "pkg/mod.py",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".to_string()
            ))
        );
        for line in [
            "pkg-1.0.dist-info/RECORD,,",
            "../../bin/tool,sha256=LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ,5",
            "pkg/mod.py,md5=abc,5",
            "\"a,b.py\",sha256=LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ,5",
            "pkg/mod.py,sha256=short,5",
        ] {
            assert_eq!(parse_record_line(line), None, "{line}");
        }
    }

    /// A uv cache with one wheel unpacked: the file `RECORD` matches is linked into the store;
    /// one whose content was changed in the cache (same size, `RECORD` unchanged) is not.
    #[test]
    fn seeds_matching_files_and_refuses_changed_ones() {
        use std::os::unix::fs::MetadataExt as _;
        let temp = tempfile::tempdir().unwrap();
        let uv = temp.path().join("uv");
        let wheel = uv.join("archive-v0/abc");
        fs_err::create_dir_all(wheel.join("pkg")).unwrap();
        fs_err::create_dir_all(wheel.join("pkg-1.0.dist-info")).unwrap();
        fs_err::write(wheel.join("pkg/a.py"), "hello").unwrap();
        fs_err::write(wheel.join("pkg/b.py"), "jello").unwrap();
        let hello = "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ";
        fs_err::write(
            wheel.join("pkg-1.0.dist-info/RECORD"),
            format!(
                "pkg/a.py,sha256={hello},5\npkg/b.py,sha256={hello},5\npkg-1.0.dist-info/RECORD,,\n"
            ),
        )
        .unwrap();
        let sha = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        // The mtime the cache's files have: a source with another one is copied (below).
        let mtime =
            u64::try_from(fs_err::metadata(wheel.join("pkg/a.py")).unwrap().mtime()).unwrap();
        let file = |path: &str| Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            size: 5,
            sha256: Some(sha.into()),
            mtime,
            target: None,
            prefix: crate::PrefixUse::None,
        };
        let dir = |path: &str| Entry {
            kind: Kind::Dir,
            size: 0,
            sha256: None,
            mode: 0o755,
            ..file(path)
        };
        let cache = env_cache::Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let store = Store::open(&cache).unwrap();
        // Only b.py, whose cache file is not "hello".
        let only_b = Manifest {
            format: 1,
            prefix: "/p".into(),
            binary_prefix: None,
            entries: vec![
                dir("sp"),
                dir("sp/pkg"),
                dir("sp/pkg-1.0.dist-info"),
                file("sp/pkg/b.py"),
            ],
            files: 1,
            bytes: 5,
        };
        let seeded = store.seed_from_uv(&only_b, &uv);
        assert_eq!((seeded.files, seeded.rejected), (0, 1));
        assert!(!store.has(sha));
        let mut both = only_b.clone();
        both.entries.insert(3, file("sp/pkg/a.py"));
        (both.files, both.bytes) = (2, 10);
        let seeded = store.seed_from_uv(&both, &uv);
        assert_eq!((seeded.files, seeded.bytes), (1, 5));
        assert_eq!(
            fs_err::metadata(store.path(sha)).unwrap().ino(),
            fs_err::metadata(wheel.join("pkg/a.py")).unwrap().ino(),
            "linked, not copied"
        );
        // Held now: nothing more to seed.
        assert_eq!(store.seed_from_uv(&both, &uv), Seeded::default());
        // A source whose mtime is not the manifest's enters as a copy with the manifest's.
        let cache2 = env_cache::Cache::new(temp.path().join("cache2"));
        cache2.init().unwrap();
        let store2 = Store::open(&cache2).unwrap();
        let mut older = both.clone();
        for entry in &mut older.entries {
            entry.mtime = entry.mtime.min(1_000_000_000);
        }
        assert_eq!(store2.seed_from_uv(&older, &uv).files, 1);
        let stored = fs_err::metadata(store2.path(sha)).unwrap();
        assert_ne!(
            stored.ino(),
            fs_err::metadata(wheel.join("pkg/a.py")).unwrap().ino()
        );
        assert_eq!(stored.mtime(), 1_000_000_000);
    }

    /// Candidates of one blob seeded in parallel (the same wheel unpacked twice in uv's cache,
    /// copied because the files' mtime is not the manifest's): the workers race to store it,
    /// and the blob is counted once, as the pull's report adds seeded and downloaded blobs
    /// up to the manifest's. Counted twice, a pull on CI reported 3,237 blobs of 3,236.
    #[test]
    fn one_blob_from_parallel_candidates_counts_once() {
        let temp = tempfile::tempdir().unwrap();
        // Big enough that both workers are still hashing when the other starts.
        let content = vec![b'x'; 16 << 20];
        let sha = hex(&Sha256::digest(&content));
        let sources: Vec<PathBuf> = (0..8)
            .map(|i| {
                let dir = temp.path().join(format!("archive-{i}/pkg"));
                fs_err::create_dir_all(&dir).unwrap();
                fs_err::write(dir.join("mod.py"), &content).unwrap();
                dir.join("mod.py")
            })
            .collect();
        let size = content.len() as u64;
        let entry = Entry {
            path: "sp/pkg/mod.py".into(),
            kind: Kind::File,
            mode: 0o644,
            size,
            sha256: Some(sha.clone()),
            mtime: 1_000_000_000,
            target: None,
            prefix: crate::PrefixUse::None,
        };
        let candidates: Vec<Candidate<'_>> = sources
            .into_iter()
            .map(|source| Candidate {
                source,
                entry: &entry,
            })
            .collect();
        let cache = env_cache::Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let store = Store::open(&cache).unwrap();
        let seeded = store.seed(&candidates);
        assert_eq!((seeded.files, seeded.bytes, seeded.rejected), (1, size, 0));
        assert!(store.has(&sha));
    }
}
