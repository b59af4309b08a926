//! The manifest of a complete environment: computed by one walk that hashes every file and
//! finds the files naming the prefix; checked entry by entry before anything is written for it.

use std::collections::HashSet;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Component, Path};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{StoreError, hex, io, is_sha256};

/// The manifest's file name inside an environment's `.pyfunc-env/`.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The manifest format, recorded in every manifest.
const FORMAT: u32 = 1;

/// The kind of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// Whether and how a file names the prefix it was built at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefixUse {
    /// It does not (or it does only where nothing reads it: `.pyc` files, whose
    /// `co_filename` the import system replaces on load).
    #[default]
    None,
    /// A text file (no NUL byte) naming it: shebangs, `_sysconfigdata`, `*.pc`. Written per
    /// environment with the new prefix.
    Text,
    /// A binary file naming it: linked as it is (as `pack` leaves it; `CPython` finds its prefix
    /// from the executable's location), so it keeps naming the path it was built at
    /// ([`Manifest::binary_prefix`]).
    Binary,
}

impl PrefixUse {
    #[expect(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's `skip_serializing_if` passes a reference"
    )]
    fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// One entry of an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// `/`-separated, relative to the prefix.
    pub path: String,
    /// File, directory or symlink.
    pub kind: Kind,
    /// Permission bits (`0o777`; setuid, setgid and sticky are never recorded).
    #[serde(default)]
    pub mode: u32,
    /// Bytes (files).
    #[serde(default)]
    pub size: u64,
    /// Content hash, lowercase hex (files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Modification time, seconds since the epoch (files): a timestamp-based `.pyc` is valid
    /// only for a source with the same size and mtime, so bytecode built with the environment
    /// stays valid where it is materialised.
    #[serde(default)]
    pub mtime: u64,
    /// The symlink's target (relative, inside the prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Whether the file names the prefix.
    #[serde(default, skip_serializing_if = "PrefixUse::is_none")]
    pub prefix: PrefixUse,
}

/// A complete environment as entries over content-addressed files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The manifest format.
    pub format: u32,
    /// The absolute path the environment is at (what [`PrefixUse::Text`] files name).
    pub prefix: String,
    /// The path [`PrefixUse::Binary`] files name, when it is not [`Self::prefix`]: the path
    /// the environment was built at, kept as it is by [`Self::relocated`] (a pull rewrites only
    /// text files), so `pack` and images can replace it too. Absent in a builder's manifest,
    /// and in manifests of pulls by versions before it (which left nothing to say where those
    /// files' path came from).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_prefix: Option<String>,
    /// Every entry, sorted by path (a directory before its contents); `.pyfunc-env/` is not
    /// one.
    pub entries: Vec<Entry>,
    /// Regular files.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Manifest {
    /// Walks the complete environment at `prefix`: every file hashed (on every core), the
    /// files naming `prefix` found in the same read.
    pub fn scan(prefix: &Path) -> Result<Self, StoreError> {
        let mut entries = Vec::new();
        walk(prefix, "", &mut entries)?;
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let needle = prefix.to_string_lossy().into_owned();
        let threads = std::thread::available_parallelism().map_or(1, usize::from);
        let files: Vec<usize> = (0..entries.len())
            .filter(|&i| entries[i].kind == Kind::File)
            .collect();
        let results: Vec<Result<(usize, String, PrefixUse), StoreError>> = {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let (entries, files, needle) = (&entries, &files, needle.as_bytes());
            std::thread::scope(|scope| {
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(|| {
                            let finder = memchr::memmem::Finder::new(needle);
                            let mut buffer = Vec::new();
                            let mut out = Vec::new();
                            loop {
                                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(&index) = files.get(n) else { break };
                                let entry = &entries[index];
                                let path = prefix.join(&entry.path);
                                out.push(
                                    hash_file(&path, &entry.path, &finder, &mut buffer)
                                        .map(|(sha, use_)| (index, sha, use_)),
                                );
                            }
                            out
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_default())
                    .collect()
            })
        };
        for result in results {
            let (index, sha, prefix_use) = result?;
            entries[index].sha256 = Some(sha);
            entries[index].prefix = prefix_use;
        }
        let (files, bytes) = entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .fold((0, 0), |(n, b), e| (n + 1, b + e.size));
        Ok(Self {
            format: FORMAT,
            prefix: needle,
            binary_prefix: None,
            entries,
            files,
            bytes,
        })
    }

    /// The manifest kept beside the complete environment at `prefix`, or a new scan, kept
    /// there (the environment must not change while this runs: hold its lock).
    pub fn load_or_scan(prefix: &Path) -> Result<Self, StoreError> {
        let path = prefix.join(env_cache::META_DIR).join(MANIFEST_FILE);
        if let Ok(bytes) = fs_err::read(&path)
            && let Ok(manifest) = serde_json::from_slice::<Self>(&bytes)
            && manifest.prefix == prefix.to_string_lossy()
            && manifest.check(u64::MAX, u64::MAX).is_ok()
        {
            return Ok(manifest);
        }
        let manifest = Self::scan(prefix)?;
        manifest.save(prefix)?;
        Ok(manifest)
    }

    /// The manifest kept beside the environment at `prefix`, if it has a readable one (no scan:
    /// for readers such as `cache prune` that must not hash whole environments).
    #[must_use]
    pub fn saved(prefix: &Path) -> Option<Self> {
        let path = prefix.join(env_cache::META_DIR).join(MANIFEST_FILE);
        let bytes = fs_err::read(&path).ok()?;
        serde_json::from_slice::<Self>(&bytes).ok()
    }

    /// Keeps the manifest beside the environment at `prefix`.
    pub fn save(&self, prefix: &Path) -> Result<(), StoreError> {
        let path = prefix.join(env_cache::META_DIR).join(MANIFEST_FILE);
        let dir = prefix.join(env_cache::META_DIR);
        fs_err::create_dir_all(&dir).map_err(io(&dir))?;
        let bytes = serde_json::to_vec(self).map_err(|e| StoreError::BadManifest {
            message: e.to_string(),
        })?;
        env_cache::write_atomic(&path, &bytes)?;
        Ok(())
    }

    /// Checks every entry before anything is written for it: safe relative paths, each once,
    /// parents before children, symlinks that stay inside, file hashes, and the totals it
    /// claims within `max_file` per file and `max_total` in all.
    pub fn check(&self, max_file: u64, max_total: u64) -> Result<(), StoreError> {
        let bad = |message: String| Err(StoreError::BadManifest { message });
        if self.format != FORMAT {
            return bad(format!(
                "format {} (this version reads {FORMAT})",
                self.format
            ));
        }
        let mut seen: HashSet<&str> = HashSet::new();
        let mut dirs: HashSet<&str> = HashSet::new();
        let (mut files, mut bytes) = (0u64, 0u64);
        for entry in &self.entries {
            let path = entry.path.as_str();
            if !safe_relative(path) {
                return bad(format!("the entry `{path}` is not a plain relative path"));
            }
            if path == env_cache::META_DIR || path.starts_with(&format!("{}/", env_cache::META_DIR))
            {
                return bad(format!("the entry `{path}` is pyfunc-env's own"));
            }
            if !seen.insert(path) {
                return bad(format!("the entry `{path}` appears twice"));
            }
            if let Some((parent, _)) = path.rsplit_once('/')
                && !dirs.contains(parent)
            {
                return bad(format!("the entry `{path}` comes before its directory"));
            }
            if entry.mode & !0o777 != 0 {
                return bad(format!("the entry `{path}` has mode {:o}", entry.mode));
            }
            match entry.kind {
                Kind::Dir => {
                    dirs.insert(path);
                }
                Kind::Symlink => {
                    let target = entry.target.as_deref().unwrap_or_default();
                    let parent = Path::new(path).parent().unwrap_or(Path::new(""));
                    if target.is_empty()
                        || Path::new(target).is_absolute()
                        || !stays_inside(&parent.join(target))
                    {
                        return bad(format!("the symlink `{path}` points outside (`{target}`)"));
                    }
                }
                Kind::File => {
                    if !entry.sha256.as_deref().is_some_and(is_sha256) {
                        return bad(format!("the file `{path}` has no valid sha256"));
                    }
                    if entry.size > max_file {
                        return bad(format!(
                            "the file `{path}` claims {} bytes, more than the {max_file} allowed",
                            entry.size
                        ));
                    }
                    files += 1;
                    bytes = bytes.saturating_add(entry.size);
                }
            }
        }
        if bytes > max_total {
            return bad(format!(
                "its files claim {bytes} bytes, more than the {max_total} allowed"
            ));
        }
        if (files, bytes) != (self.files, self.bytes) {
            return bad(format!(
                "it says {} files of {} bytes, its entries {files} of {bytes}",
                self.files, self.bytes
            ));
        }
        if !Path::new(&self.prefix).is_absolute() {
            return bad(format!("its prefix `{}` is not absolute", self.prefix));
        }
        if let Some(binary) = &self.binary_prefix
            && !Path::new(binary).is_absolute()
        {
            return bad(format!("its binary prefix `{binary}` is not absolute"));
        }
        Ok(())
    }

    /// The path the [`PrefixUse::Binary`] files name.
    #[must_use]
    pub fn binary_prefix(&self) -> &str {
        self.binary_prefix.as_deref().unwrap_or(&self.prefix)
    }

    /// This manifest for the environment materialised at `written` (to be moved to
    /// `prefix`): the files naming the prefix hashed again, as they were written there. The
    /// binary files were linked as they are, so they still name [`Self::binary_prefix`],
    /// which the result records when it is not `prefix`.
    pub fn relocated(&self, written: &Path, prefix: &Path) -> Result<Self, StoreError> {
        let mut out = self.clone();
        out.prefix = prefix.to_string_lossy().into_owned();
        out.binary_prefix = Some(self.binary_prefix().to_string()).filter(|b| *b != out.prefix);
        for entry in &mut out.entries {
            if entry.prefix != PrefixUse::Text {
                continue;
            }
            let path = written.join(&entry.path);
            let bytes = fs_err::read(&path).map_err(io(&path))?;
            let metadata = fs_err::metadata(&path).map_err(io(&path))?;
            entry.sha256 = Some(hex(&Sha256::digest(&bytes)));
            entry.size = bytes.len() as u64;
            entry.mtime = u64::try_from(metadata.mtime()).unwrap_or(0);
        }
        out.bytes = out
            .entries
            .iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| e.size)
            .sum();
        Ok(out)
    }

    /// The distinct file hashes, each with the first entry that has it.
    #[must_use]
    pub fn blobs(&self) -> Vec<&Entry> {
        let mut seen = HashSet::new();
        self.entries
            .iter()
            .filter(|e| e.kind == Kind::File && seen.insert(e.sha256.as_deref().unwrap_or("")))
            .collect()
    }
}

fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\0')
        && !path.contains('\\')
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && !path.ends_with('/')
        && !path.contains("//")
}

fn stays_inside(path: &Path) -> bool {
    let mut depth = 0usize;
    for component in path.components() {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

fn walk(root: &Path, rel: &str, out: &mut Vec<Entry>) -> Result<(), StoreError> {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for child in fs_err::read_dir(&dir).map_err(io(&dir))? {
        let child = child.map_err(io(&dir))?;
        let name = child.file_name().to_string_lossy().into_owned();
        if rel.is_empty() && name == env_cache::META_DIR {
            continue;
        }
        let path = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        let full = child.path();
        let metadata = fs_err::symlink_metadata(&full).map_err(io(&full))?;
        let mode = metadata.permissions().mode() & 0o777;
        if metadata.is_dir() {
            out.push(Entry {
                path: path.clone(),
                kind: Kind::Dir,
                mode,
                size: 0,
                sha256: None,
                mtime: 0,
                target: None,
                prefix: PrefixUse::None,
            });
            walk(root, &path, out)?;
        } else if metadata.file_type().is_symlink() {
            let target = fs_err::read_link(&full).map_err(io(&full))?;
            out.push(Entry {
                path,
                kind: Kind::Symlink,
                mode: 0o777,
                size: 0,
                sha256: None,
                mtime: 0,
                target: Some(target.to_string_lossy().into_owned()),
                prefix: PrefixUse::None,
            });
        } else if metadata.is_file() {
            out.push(Entry {
                path,
                kind: Kind::File,
                mode,
                size: metadata.len(),
                sha256: None,
                mtime: u64::try_from(metadata.mtime()).unwrap_or(0),
                target: None,
                prefix: PrefixUse::None,
            });
        } else {
            tracing::debug!("Leaving `{path}` out of the manifest: not a file, directory or link");
        }
    }
    Ok(())
}

/// sha256 of the file, and whether it names the prefix (`finder`).
fn hash_file(
    path: &Path,
    rel: &str,
    finder: &memchr::memmem::Finder<'_>,
    buffer: &mut Vec<u8>,
) -> Result<(String, PrefixUse), StoreError> {
    let mut file = fs_err::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let overlap = finder.needle().len().saturating_sub(1);
    let (mut found, mut nul) = (false, false);
    buffer.clear();
    buffer.resize(1 << 20, 0);
    // `buffer[..kept]` holds the previous read's tail, so a match across reads is found.
    let mut kept = 0;
    loop {
        let read = file.read(&mut buffer[kept..]).map_err(io(path))?;
        if read == 0 {
            break;
        }
        let fresh = &buffer[kept..kept + read];
        hasher.update(fresh);
        nul |= memchr::memchr(0, fresh).is_some();
        let window = &buffer[..kept + read];
        found |= finder.find(window).is_some();
        let tail = window.len().min(overlap);
        let start = window.len() - tail;
        buffer.copy_within(start..start + tail, 0);
        kept = tail;
    }
    let use_ = if !found || Path::new(rel).extension().is_some_and(|e| e == "pyc") {
        PrefixUse::None
    } else if nul {
        PrefixUse::Binary
    } else {
        PrefixUse::Text
    };
    Ok((hex(&hasher.finalize()), use_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_of(entries: Vec<Entry>) -> Manifest {
        let files = entries.iter().filter(|e| e.kind == Kind::File).count() as u64;
        let bytes = entries.iter().map(|e| e.size).sum();
        Manifest {
            format: FORMAT,
            prefix: "/p".into(),
            binary_prefix: None,
            entries,
            files,
            bytes,
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            mode: 0o644,
            size,
            sha256: Some("a".repeat(64)),
            mtime: 0,
            target: None,
            prefix: PrefixUse::None,
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            kind: Kind::Dir,
            sha256: None,
            size: 0,
            mode: 0o755,
            ..file(path, 0)
        }
    }

    #[test]
    fn scan_hashes_files_and_finds_the_prefix() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("env");
        fs_err::create_dir_all(root.join("bin")).unwrap();
        fs_err::create_dir_all(root.join(".pyfunc-env")).unwrap();
        fs_err::write(root.join(".pyfunc-env/complete"), "x").unwrap();
        let shebang = format!("#!{}/bin/python3.11\nimport x\n", root.display());
        fs_err::write(root.join("bin/tool"), &shebang).unwrap();
        let mut binary = vec![0u8, 1, 2];
        binary.extend_from_slice(root.to_string_lossy().as_bytes());
        fs_err::write(root.join("bin/lib.so"), &binary).unwrap();
        fs_err::write(root.join("bin/x.pyc"), &binary).unwrap();
        fs_err::write(root.join("plain"), "hello").unwrap();
        fs_err::os::unix::fs::symlink("bin/tool", root.join("link")).unwrap();
        let manifest = Manifest::scan(&root).unwrap();
        let paths: Vec<(&str, Kind, PrefixUse)> = manifest
            .entries
            .iter()
            .map(|e| (e.path.as_str(), e.kind, e.prefix))
            .collect();
        assert_eq!(
            paths,
            [
                ("bin", Kind::Dir, PrefixUse::None),
                ("bin/lib.so", Kind::File, PrefixUse::Binary),
                ("bin/tool", Kind::File, PrefixUse::Text),
                ("bin/x.pyc", Kind::File, PrefixUse::None),
                ("link", Kind::Symlink, PrefixUse::None),
                ("plain", Kind::File, PrefixUse::None),
            ]
        );
        let plain = manifest.entries.iter().find(|e| e.path == "plain").unwrap();
        assert_eq!(
            plain.sha256.as_deref(),
            Some("2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
        );
        assert_eq!(
            (manifest.files, manifest.bytes),
            (4, 5 + shebang.len() as u64 + 2 * binary.len() as u64)
        );
        manifest.check(u64::MAX, u64::MAX).unwrap();
    }

    /// A relocated manifest keeps the path its binary files name (they are linked as they
    /// are), through any number of pulls; a builder's manifest does not write the field, so
    /// its bytes are what versions before it wrote.
    #[test]
    fn relocation_keeps_the_path_binary_files_name() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("env");
        fs_err::create_dir_all(root.join("bin")).unwrap();
        fs_err::write(
            root.join("bin/tool"),
            format!("#!{}/bin/python\n", root.display()),
        )
        .unwrap();
        let mut binary = vec![0u8, 1, 2];
        binary.extend_from_slice(root.to_string_lossy().as_bytes());
        fs_err::write(root.join("bin/lib.so"), &binary).unwrap();
        let built = Manifest::scan(&root).unwrap();
        let built_at = root.to_string_lossy().into_owned();
        assert_eq!(
            (built.binary_prefix.as_deref(), built.binary_prefix()),
            (None, built_at.as_str())
        );
        assert!(
            !String::from_utf8(serde_json::to_vec(&built).unwrap())
                .unwrap()
                .contains("binary_prefix")
        );
        let pulled = built
            .relocated(&root, Path::new("/agent-b/envs-v1/k"))
            .unwrap();
        assert_eq!(pulled.prefix, "/agent-b/envs-v1/k");
        assert_eq!(pulled.binary_prefix.as_deref(), Some(built_at.as_str()));
        pulled.check(u64::MAX, u64::MAX).unwrap();
        let read: Manifest = serde_json::from_slice(&serde_json::to_vec(&pulled).unwrap()).unwrap();
        assert_eq!(read, pulled);
        let again = read.relocated(&root, Path::new("/agent-c/k")).unwrap();
        assert_eq!(again.binary_prefix(), built_at);
        let home = again.relocated(&root, &root).unwrap();
        assert_eq!(home.binary_prefix, None);
        let mut relative = pulled;
        relative.binary_prefix = Some("envs-v1/k".into());
        assert!(relative.check(u64::MAX, u64::MAX).is_err());
    }

    /// A prefix split across two reads is still found.
    #[test]
    fn finds_the_prefix_across_reads() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("f");
        let needle = "/some/prefix/envs-v1/abc";
        let mut text = vec![b'a'; (1 << 20) - 5];
        text.extend_from_slice(needle.as_bytes());
        fs_err::write(&path, &text).unwrap();
        let finder = memchr::memmem::Finder::new(needle.as_bytes());
        let (_, use_) = hash_file(&path, "f", &finder, &mut Vec::new()).unwrap();
        assert_eq!(use_, PrefixUse::Text);
    }

    #[test]
    fn check_refuses_hostile_entries() {
        let ok = manifest_of(vec![dir("a"), file("a/b", 10)]);
        ok.check(10, 10).unwrap();
        assert!(ok.check(9, 100).is_err(), "per-file bound");
        assert!(ok.check(100, 9).is_err(), "total bound");
        let cases = [
            vec![file("../x", 1)],
            vec![file("/etc/passwd", 1)],
            vec![file("a/b", 1)],
            vec![file("x", 1), file("x", 1)],
            vec![file(".pyfunc-env", 1)],
            vec![Entry {
                kind: Kind::Symlink,
                target: Some("../../etc".into()),
                ..file("l", 0)
            }],
            vec![Entry {
                mode: 0o4755,
                ..file("s", 0)
            }],
            vec![Entry {
                sha256: Some("zz".into()),
                ..file("h", 0)
            }],
        ];
        for entries in cases {
            let manifest = manifest_of(entries.clone());
            assert!(manifest.check(100, 100).is_err(), "{entries:?}");
        }
        // Totals that do not add up.
        let mut lying = manifest_of(vec![file("x", 5)]);
        lying.bytes = 1;
        assert!(lying.check(100, 100).is_err());
    }
}
