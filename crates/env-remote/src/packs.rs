//! Packs: many blobs in one object, so a pull makes a few large requests rather than one per
//! file, and siblings share whole packs.
//!
//! A pack is the concatenation of one zstd frame per blob; a blob two groups have is in both. Blobs are grouped by what installs
//! them together (a top-level entry of `site-packages` with its `.dist-info`, else the first
//! two path components), with bytecode apart from sources: bytecode names the build prefix
//! (`co_filename`), so its bytes differ between machines where the sources do not. A group is
//! cut into packs of at most [`PACK_CONTENT`] bytes of content, in path order, so the same
//! files make the same pack, byte for byte, on every push.

use std::collections::{BTreeMap, HashSet};
use std::io::Read as _;
use std::path::Path;

use env_store::{Entry, Manifest as Tree, PrefixUse};
use sha2::{Digest as _, Sha256};

use crate::{RemoteError, io};

/// Content bytes a pack holds at most (a larger single file gets a pack of its own).
pub(crate) const PACK_CONTENT: u64 = 32 << 20;

/// The zstd level of every blob (the archive format used 3 too).
const LEVEL: i32 = 3;

/// One blob of a planned pack.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub sha256: String,
    /// A file of the environment with this content.
    pub path: String,
    pub size: u64,
}

/// A pack built in memory: its name, bytes, and where each blob is.
pub(crate) struct Built {
    pub name: String,
    pub bytes: Vec<u8>,
    /// `(sha256, offset, length)`.
    pub blobs: Vec<(String, u64, u64)>,
}

/// The group a file's blob goes to. `prefixed` holds the sources that name the prefix: their
/// bytecode differs between environments too, and goes with them.
fn group(entry: &Entry, prefixed: &HashSet<String>) -> String {
    if entry.prefix == PrefixUse::Text
        || source_of(&entry.path).is_some_and(|s| prefixed.contains(&s))
    {
        return "prefix".to_string();
    }
    let path = entry.path.as_str();
    let kind = if Path::new(path).extension().is_some_and(|e| e == "pyc") {
        "pyc"
    } else {
        "src"
    };
    let parts: Vec<&str> = path.split('/').collect();
    if let Some(at) = parts.iter().position(|p| *p == "site-packages")
        && let Some(top) = parts.get(at + 1)
    {
        // `numpy-1.26.4.dist-info` goes with `numpy/`; `six.py` is its own group.
        let name = top
            .split_once('-')
            .map_or(*top, |(name, _)| name)
            .split('.')
            .next()
            .unwrap_or(top)
            .to_ascii_lowercase()
            .replace('_', "-");
        return format!("site-packages/{name}:{kind}");
    }
    let head = parts
        .iter()
        .take(2.min(parts.len().saturating_sub(1)).max(1))
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    format!("{head}:{kind}")
}

/// `dir/x.py` for `dir/__pycache__/x.cpython-311.pyc`.
fn source_of(pyc: &str) -> Option<String> {
    let (dir, name) = pyc.rsplit_once("/__pycache__/")?;
    let module = name.strip_suffix(".pyc")?.split('.').next()?;
    Some(format!("{dir}/{module}.py"))
}

/// The packs of `tree`: each distinct blob once, grouped and cut (see the module's doc).
pub(crate) fn plan(tree: &Tree) -> Vec<Vec<Planned>> {
    let prefixed: HashSet<String> = tree
        .entries
        .iter()
        .filter(|e| e.prefix == PrefixUse::Text)
        .map(|e| e.path.clone())
        .collect();
    let mut groups: BTreeMap<String, Vec<Planned>> = BTreeMap::new();
    // Distinct within a group only: a file that two groups have (an empty `__init__.py`, a
    // vendored module) is in both their packs, so what a group holds never depends on the
    // other groups of the environment, and siblings share whole packs (measured: deduplicating
    // across groups moved such files between packs and made siblings share 26% instead of
    // nearly all).
    let mut seen = HashSet::new();
    for entry in &tree.entries {
        let Some(sha) = entry.sha256.as_deref() else {
            continue;
        };
        let name = group(entry, &prefixed);
        if !seen.insert((name.clone(), sha)) {
            continue;
        }
        groups.entry(name).or_default().push(Planned {
            sha256: sha.to_string(),
            path: entry.path.clone(),
            size: entry.size,
        });
    }
    let mut packs = Vec::new();
    for (_, blobs) in groups {
        let mut current: Vec<Planned> = Vec::new();
        let mut content = 0;
        for blob in blobs {
            if !current.is_empty() && content + blob.size > PACK_CONTENT {
                packs.push(std::mem::take(&mut current));
                content = 0;
            }
            content += blob.size;
            current.push(blob);
        }
        if !current.is_empty() {
            packs.push(current);
        }
    }
    packs
}

/// Reads each planned blob from the environment at `prefix`, checks it is still what the
/// manifest says, and compresses it into one pack.
pub(crate) fn build(prefix: &Path, planned: &[Planned]) -> Result<Built, RemoteError> {
    let mut bytes = Vec::new();
    let mut blobs = Vec::with_capacity(planned.len());
    let mut buffer = Vec::new();
    for blob in planned {
        let path = prefix.join(&blob.path);
        buffer.clear();
        fs_err::File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut buffer))
            .map_err(io(&path))?;
        let sha = env_store::hex(&Sha256::digest(&buffer));
        if sha != blob.sha256 || buffer.len() as u64 != blob.size {
            return Err(RemoteError::Io {
                path,
                source: std::io::Error::other(
                    "the file changed since the environment's manifest was made",
                ),
            });
        }
        let offset = bytes.len() as u64;
        let frame = zstd::bulk::compress(&buffer, LEVEL).map_err(io(&path))?;
        bytes.extend_from_slice(&frame);
        blobs.push((blob.sha256.clone(), offset, frame.len() as u64));
    }
    let name = env_store::hex(&Sha256::digest(&bytes));
    Ok(Built { name, bytes, blobs })
}

/// Decompresses one blob's frame into the store, refusing more than `size` bytes and checking
/// its hash. `Err` with what is wrong when the frame is not that blob.
pub(crate) fn unpack_blob(
    store: &env_store::Store,
    frame: &[u8],
    entry: &Entry,
) -> Result<(), Result<String, RemoteError>> {
    let sha = entry.sha256.as_deref().unwrap_or_default();
    let mut writer = store.writer(sha, entry.size).map_err(|e| Err(e.into()))?;
    let decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| Ok(format!("blob `{sha}` does not decompress: {e}")))?;
    let mut limited = decoder.take(entry.size + 1);
    if let Err(error) = std::io::copy(&mut limited, &mut writer) {
        return Err(Ok(format!("blob `{sha}`: {error}")));
    }
    match writer.commit(entry.mode, entry.mtime) {
        Ok(_) => Ok(()),
        Err(env_store::StoreError::Damaged { message, .. }) => {
            Err(Ok(format!("blob `{sha}`: {message}")))
        }
        Err(other) => Err(Err(other.into())),
    }
}

/// Checks one blob's frame without storing it: it decompresses to exactly `entry.size` bytes
/// whose sha256 is `entry.sha256`. `Err` says what is wrong.
pub(crate) fn check_blob(frame: &[u8], entry: &Entry) -> Result<(), String> {
    let sha = entry.sha256.as_deref().unwrap_or_default();
    let decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .map_err(|e| format!("blob `{sha}` does not decompress: {e}"))?;
    let mut limited = decoder.take(entry.size + 1);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = limited
            .read(&mut buffer)
            .map_err(|e| format!("blob `{sha}`: {e}"))?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buffer[..n]);
    }
    if size != entry.size {
        return Err(format!(
            "blob `{sha}` has {size} bytes where the manifest says {}",
            entry.size
        ));
    }
    let found = env_store::hex(&hasher.finalize());
    if found != sha {
        return Err(format!("blob `{sha}` has the sha256 `{found}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: env_store::Kind::File,
            mode: 0o644,
            size: 1,
            sha256: Some(path.into()),
            mtime: 0,
            target: None,
            prefix: PrefixUse::None,
        }
    }

    #[test]
    fn groups() {
        let sp = "lib/python3.11/site-packages";
        for (path, expected) in [
            (format!("{sp}/numpy/core/x.py"), "site-packages/numpy:src"),
            (
                format!("{sp}/numpy-1.26.4.dist-info/RECORD"),
                "site-packages/numpy:src",
            ),
            (
                format!("{sp}/numpy/__pycache__/x.cpython-311.pyc"),
                "site-packages/numpy:pyc",
            ),
            (
                format!("{sp}/scikit_learn-1.5.dist-info/RECORD"),
                "site-packages/scikit-learn:src",
            ),
            (format!("{sp}/six.py"), "site-packages/six:src"),
            ("lib/python3.11/os.py".to_string(), "lib/python3.11:src"),
            ("lib/libz.so".to_string(), "lib:src"),
            ("bin/python3.11".to_string(), "bin:src"),
            ("LICENSE".to_string(), "LICENSE:src"),
        ] {
            assert_eq!(group(&entry(&path), &HashSet::new()), expected, "{path}");
        }
        let text = Entry {
            prefix: PrefixUse::Text,
            ..entry("bin/pip")
        };
        assert_eq!(group(&text, &HashSet::new()), "prefix");
        let prefixed = HashSet::from(["lib/python3.11/_sysconfigdata.py".to_string()]);
        let pyc = entry("lib/python3.11/__pycache__/_sysconfigdata.cpython-311.pyc");
        assert_eq!(group(&pyc, &prefixed), "prefix");
    }
}
