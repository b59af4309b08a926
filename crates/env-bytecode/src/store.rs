//! Bytecode for environments, compiled once per distinct source file across the whole cache.
//!
//! Compiling every `.py` of an environment is CPU-bound (13-16 s for the scikit-learn fixture
//! on 2 cores) and writes a private copy of each `.pyc` (about 200 MB per such environment):
//! measured with `benches/bench_many.py`, 20 environments that differ in one pin took 2.5x
//! longer than MLflow's `prepare-env` and 4.7 GB instead of 0.7 GB, nearly all of it identical
//! bytecode. So `.pyc` files live in a content-addressed store (`pyc-v1/`) and are hard-linked
//! into each environment:
//!
//! - the key of a source file is its sha256, size and modification time, plus the interpreter's
//!   cache tag (`cpython-311`): a timestamp-based `.pyc` records the source's size and mtime,
//!   so a stored `.pyc` is valid exactly for sources with that content, size and mtime. Files
//!   installed from the same package (hard links to the package or uv cache) share all three.
//! - missing entries are compiled in one batch by the environment's own interpreter
//!   (`compileall -j0`), then linked into the store;
//! - `.pyc` files are replaced, never modified, by Python, so sharing them by hard link is safe,
//!   and a store entry whose link count drops to 1 is unused (`cache prune` removes it).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use sha2::{Digest, Sha256};

use crate::{BytecodeError, io};

/// What [`compile`] did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    /// `.pyc` files taken from the store.
    pub reused: usize,
    /// `.py` files compiled now.
    pub compiled: usize,
}

/// The interpreter's `sys.implementation.cache_tag` (`cpython-311`).
pub fn cache_tag(python: &Path) -> Result<String, BytecodeError> {
    let output = env_cache::child::output(env_prefix::isolated_python(python).args([
        "-I",
        "-B",
        "-c",
        "import sys; print(sys.implementation.cache_tag)",
    ]))
    .map_err(io(python))?;
    let tag = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || tag.is_empty() {
        return Err(BytecodeError::Internal {
            message: format!("`{}` reports no bytecode cache tag", python.display()),
        });
    }
    Ok(tag)
}

/// Every `.py` file under `dir`, skipping `__pycache__`.
fn python_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            if entry.file_name() != "__pycache__" {
                python_files(&path, out);
            }
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "py") {
            out.push(path);
        }
    }
}

/// A file's modification time in whole seconds since the Unix epoch (what a `.pyc` header
/// records, before it keeps the low 32 bits).
pub(crate) fn mtime_secs(metadata: &std::fs::Metadata) -> Option<u64> {
    Some(
        metadata
            .modified()
            .ok()?
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs(),
    )
}

/// `buffer` is scratch space, reused across calls: one `read` per file instead of one per 8 KiB
/// (`std::io::copy`), 23,000 fewer system calls for the scikit-learn fixture's 151 MB of sources.
fn source_key(path: &Path, tag: &str, buffer: &mut Vec<u8>) -> Option<String> {
    let mut file = fs_err::File::open(path).ok()?;
    let metadata = file.metadata().ok()?;
    let mtime = mtime_secs(&metadata)?;
    buffer.clear();
    buffer.reserve(usize::try_from(metadata.len()).ok()?.saturating_add(1));
    std::io::Read::read_to_end(&mut file, buffer).ok()?;
    Some(key(
        &env_store::hex(&Sha256::digest(&buffer)),
        metadata.len(),
        mtime,
        tag,
    ))
}

/// The key of a source with hash `sha256`, `size` bytes and `mtime`, for the interpreter
/// with cache tag `tag`.
fn key(sha256: &str, size: u64, mtime: u64, tag: &str) -> String {
    // The `.pyc` header holds the mtime as 32 bits.
    format!("{sha256}-{size}-{}-{tag}", mtime & 0xffff_ffff)
}

/// Where the store at `store` (`pyc-v1/`) keeps the bytecode of a source with hash `sha256`,
/// `size` bytes and `mtime` for the interpreter with cache tag `tag` (a pull takes it from
/// there rather than download it; issue 25). It may be absent.
#[must_use]
pub fn stored_pyc(store: &Path, sha256: &str, size: u64, mtime: u64, tag: &str) -> PathBuf {
    store_path(store, &key(sha256, size, mtime, tag))
}

fn pyc_path(source: &Path, tag: &str) -> Option<PathBuf> {
    let stem = source.file_stem()?.to_string_lossy().into_owned();
    Some(
        source
            .parent()?
            .join("__pycache__")
            .join(format!("{stem}.{tag}.pyc")),
    )
}

fn store_path(store: &Path, key: &str) -> PathBuf {
    store.join(&key[..2]).join(format!("{key}.pyc"))
}

/// Links the store's `stored` to `pyc`, which does not exist yet; false when the store has no
/// such entry. One `link` call for most files (the temporary name and rename of
/// [`link_or_copy`] are for replacing a file, and there is none to replace): 9,100 files on the
/// path to the model's start. A `.pyc` that appeared meanwhile (the interpreter writes its own
/// when allowed to, atomically) is as good as ours.
fn link_stored_file(stored: &Path, pyc: &Path) -> bool {
    match fs_err::hard_link(stored, pyc) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            // No store entry, or no `__pycache__` yet.
            stored.is_file()
                && pyc
                    .parent()
                    .is_some_and(|dir| fs_err::create_dir_all(dir).is_ok())
                && (fs_err::hard_link(stored, pyc).is_ok() || link_or_copy(stored, pyc).is_ok())
        }
        // Another filesystem, or a link count at its limit: a copy.
        Err(_) => stored.is_file() && link_or_copy(stored, pyc).is_ok(),
    }
}

/// Links `from` to `to` (replacing it), falling back to a copy across filesystems.
fn link_or_copy(from: &Path, to: &Path) -> std::io::Result<()> {
    let parent = to.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(parent)?;
    let temp = parent.join(format!(
        ".{}.{}.tmp",
        to.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = fs_err::remove_file(&temp);
    if fs_err::hard_link(from, &temp).is_err() {
        fs_err::copy(from, &temp)?;
    }
    fs_err::rename(&temp, to)
}

/// Links into place the stored `.pyc` of every source in `sources` that has none yet; returns
/// how many were linked and the sources the store lacks, with their keys. Hashing the sources
/// is most of the work (9,100 files, about 100 MB, for the scikit-learn fixture), so it is
/// spread over the cores, each worker taking a contiguous share (mostly whole directories).
fn link_from_store(
    sources: &[PathBuf],
    tag: &str,
    store: &Path,
) -> (usize, Vec<(PathBuf, String)>) {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(sources.len().max(1));
    let share = sources.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = sources
            .chunks(share)
            .map(|chunk| {
                scope.spawn(move || {
                    let mut reused = 0;
                    let mut missing = Vec::new();
                    let mut buffer = Vec::new();
                    // Sources come directory by directory: whether the directory has a
                    // `__pycache__` at all, asked once (in a new environment none has).
                    let mut pycache: Option<(PathBuf, bool)> = None;
                    for source in chunk {
                        let Some(pyc) = pyc_path(source, tag) else {
                            continue;
                        };
                        let dir = pyc.parent().unwrap_or(Path::new(""));
                        if pycache.as_ref().is_none_or(|(known, _)| known != dir) {
                            pycache = Some((dir.to_path_buf(), dir.is_dir()));
                        }
                        // A package may ship its own `.pyc` (it is then one of its recorded
                        // files); keep it.
                        if pycache.as_ref().is_some_and(|(_, exists)| *exists) && pyc.exists() {
                            continue;
                        }
                        let Some(key) = source_key(source, tag, &mut buffer) else {
                            continue;
                        };
                        if link_stored_file(&store_path(store, &key), &pyc) {
                            reused += 1;
                        } else {
                            missing.push((source.clone(), key));
                        }
                    }
                    (reused, missing)
                })
            })
            .collect();
        let mut reused = 0;
        let mut missing = Vec::new();
        for handle in handles {
            // A worker only panics if the code above has a bug; its share is then left
            // uncompiled, as files that fail to compile are.
            if let Ok((count, found)) = handle.join() {
                reused += count;
                missing.extend(found);
            }
        }
        (reused, missing)
    })
}

/// What [`link_stored`] did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Linked {
    /// `.pyc` files taken from the store.
    pub reused: usize,
    /// `.py` files the store has no bytecode for: [`compile`] remains to be run.
    pub missing: usize,
}

/// Links the bytecode the store already has for the `.py` files under `dirs`, compiling
/// nothing: what `run` does on a cache miss before the model starts, so that the first
/// predict imports from bytecode (measured with `benches/bench_cold.py`: without it the first
/// predict of the scikit-learn fixture compiled every import in memory, about 2x the floor)
/// while only the store's misses are left to [`compile`] in the background.
///
/// Takes no store lock: a compiler holding it (for seconds, in another build) must not delay
/// a model's start, and nothing here needs it. Store entries appear by rename, complete; an
/// entry `cache prune` removes meanwhile is either not linked (the source is then a miss) or
/// stays in this environment as its own file.
pub fn link_stored(tag: &str, dirs: &[PathBuf], store: &Path) -> Linked {
    let mut sources = Vec::new();
    for dir in dirs {
        python_files(dir, &mut sources);
    }
    let (reused, missing) = link_from_store(&sources, tag, store);
    Linked {
        reused,
        missing: missing.len(),
    }
}

/// Compiles bytecode for every `.py` under `dirs` (an environment's site-packages), reusing
/// and filling the store at `store`.
/// `on_wait` is called when another process is compiling into the store and this one waits,
/// at most `lock_timeout` (`PYFUNC_ENV_LOCK_TIMEOUT`), after which the error names the holder.
pub fn compile(
    python: &Path,
    dirs: &[PathBuf],
    store: &Path,
    lock_timeout: std::time::Duration,
    on_wait: &mut dyn FnMut(),
) -> Result<Stats, BytecodeError> {
    let tag = cache_tag(python)?;
    // One compiler at a time: parallel builds (`create --jobs 4` on an empty store) would
    // otherwise all compile the same sources at once and each keep a private copy (measured:
    // 20 environments, 92.6 s and 1.47 GB instead of 48.3 s and 0.86 GB with one). Each
    // compiler already uses every core, so waiting costs nothing, and the waiter then finds
    // most of its files in the store.
    fs_err::create_dir_all(store).map_err(io(store))?;
    let _lock = env_cache::LockedFile::acquire(
        &store.join(".lock"),
        env_cache::LockKind::Exclusive,
        Some(lock_timeout),
        std::time::Duration::from_secs(3600),
        |_| on_wait(),
    )?;
    let mut sources = Vec::new();
    for dir in dirs {
        python_files(dir, &mut sources);
    }
    let (reused, to_compile) = link_from_store(&sources, &tag, store);
    let mut stats = Stats {
        reused,
        compiled: 0,
    };
    if !to_compile.is_empty() {
        // `compileall -i` compiles a file list on one core; run one per core on a share each.
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(to_compile.len());
        let strip = strip_dir(dirs, &tag);
        let mut children = Vec::with_capacity(workers);
        for worker in 0..workers {
            let mut list = String::new();
            for (source, _) in to_compile.iter().skip(worker).step_by(workers) {
                list.push_str(&source.to_string_lossy());
                list.push('\n');
            }
            let mut child = env_cache::child::spawn(
                env_prefix::isolated_python(python)
                    // `-B`: compileall writes the listed files' bytecode (py_compile ignores
                    // it), but the modules it imports, the interpreter's own standard library
                    // (outside the cache for a venv), get none.
                    .args(["-B", "-m", "compileall", "-q"])
                    .args(
                        strip
                            .iter()
                            .flat_map(|dir| [std::ffi::OsStr::new("-s"), dir.as_os_str()]),
                    )
                    .args(["-i", "-"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .map_err(io(python))?;
            if let Some(mut stdin) = child.stdin.take() {
                std::io::Write::write_all(&mut stdin, list.as_bytes()).map_err(io(python))?;
            }
            children.push(child);
        }
        // compileall exits 1 for files that do not compile (Python 2 test data in some
        // packages); those are skipped, as pip and conda do.
        for mut child in children {
            child.wait().map_err(io(python))?;
        }
        for (source, key) in &to_compile {
            let Some(pyc) = pyc_path(source, &tag) else {
                continue;
            };
            if pyc.is_file() {
                stats.compiled += 1;
                let stored = store_path(store, key);
                if !stored.is_file() {
                    // Best effort: a store that cannot be written only loses sharing.
                    let _ = link_or_copy(&pyc, &stored);
                }
            }
        }
    }
    Ok(stats)
}

/// The directory `compileall -s` strips from the file names recorded in the bytecode: the
/// environment's one site-packages directory, on Python 3.9+ (where `-s` exists). A `.pyc`
/// records its source's path in every code object (`co_filename`), so the same source
/// compiled in two environments gave two different files: sibling environments built on two
/// agents shared 37% of their bytes in the remote cache rather than about half (issue 25).
/// Stripped, the recorded name is relative to site-packages (`wheel/__init__.py`) and the
/// bytes depend on the source alone. Tracebacks still show real paths: importing from a
/// `.pyc` replaces `co_filename` with the source's path (`_imp._fix_co_filename`).
fn strip_dir<'a>(dirs: &'a [PathBuf], tag: &str) -> Option<&'a PathBuf> {
    let version = tag.strip_prefix("cpython-3")?;
    let minor: u32 = version.parse().ok()?;
    match dirs {
        [dir] if minor >= 9 => Some(dir),
        _ => None,
    }
}

/// Removes store entries no environment links to any more; returns the bytes freed.
#[must_use]
pub fn prune_store(store: &Path) -> u64 {
    let mut freed = 0;
    // Not while a build is linking from the store (it would compile what we remove).
    let Ok(Some(_lock)) =
        env_cache::LockedFile::try_acquire(&store.join(".lock"), env_cache::LockKind::Exclusive)
    else {
        return 0;
    };
    let Ok(shards) = fs_err::read_dir(store) else {
        return 0;
    };
    for shard in shards.flatten() {
        let Ok(entries) = fs_err::read_dir(shard.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            #[cfg(unix)]
            {
                use std::os::unix::fs::MetadataExt;
                if let Ok(metadata) = entry.metadata()
                    && metadata.nlink() == 1
                    && fs_err::remove_file(entry.path()).is_ok()
                {
                    freed += metadata.len();
                }
            }
        }
    }
    freed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn link_stored_links_the_stores_files_and_counts_the_rest() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site-packages");
        let store = dir.path().join("pyc-v1");
        fs_err::create_dir_all(site.join("pkg")).unwrap();
        fs_err::write(site.join("pkg/stored.py"), "X = 1\n").unwrap();
        fs_err::write(site.join("pkg/new.py"), "Y = 2\n").unwrap();
        let tag = "cpython-311";
        // The store has bytecode for `stored.py` only.
        let key = source_key(&site.join("pkg/stored.py"), tag, &mut Vec::new()).unwrap();
        let entry = store_path(&store, &key);
        fs_err::create_dir_all(entry.parent().unwrap()).unwrap();
        fs_err::write(&entry, b"bytecode").unwrap();

        let linked = link_stored(tag, std::slice::from_ref(&site), &store);
        assert_eq!((linked.reused, linked.missing), (1, 1));
        let pyc = site.join("pkg/__pycache__/stored.cpython-311.pyc");
        assert_eq!(
            fs_err::metadata(&pyc).unwrap().ino(),
            fs_err::metadata(&entry).unwrap().ino()
        );
        assert!(!site.join("pkg/__pycache__/new.cpython-311.pyc").exists());
        // Linked files are kept; the miss is still a miss.
        let again = link_stored(tag, std::slice::from_ref(&site), &store);
        assert_eq!((again.reused, again.missing), (0, 1));
    }
}
