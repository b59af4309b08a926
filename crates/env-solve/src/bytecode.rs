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

use crate::error::{SolveError, io};

/// What [`compile`] did.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    /// `.pyc` files taken from the store.
    pub reused: usize,
    /// `.py` files compiled now.
    pub compiled: usize,
}

/// The interpreter's `sys.implementation.cache_tag` (`cpython-311`).
fn cache_tag(python: &Path) -> Result<String, SolveError> {
    let output = env_cache::child::output(env_prefix::isolated_python(python).args([
        "-I",
        "-B",
        "-c",
        "import sys; print(sys.implementation.cache_tag)",
    ]))
    .map_err(io(python))?;
    let tag = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || tag.is_empty() {
        return Err(SolveError::Internal {
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

fn source_key(path: &Path, tag: &str) -> Option<String> {
    let metadata = fs_err::metadata(path).ok()?;
    let mtime = metadata
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    let mut file = fs_err::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    // The `.pyc` header holds the mtime as 32 bits.
    Some(format!(
        "{}-{}-{}-{tag}",
        env_spec::spec::hex(&hasher.finalize()),
        metadata.len(),
        mtime & 0xffff_ffff
    ))
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
) -> Result<Stats, SolveError> {
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
    let mut stats = Stats::default();
    let mut to_compile: Vec<(PathBuf, String)> = Vec::new();
    for source in sources {
        let Some(pyc) = pyc_path(&source, &tag) else {
            continue;
        };
        // A package may ship its own `.pyc` (it is then one of its recorded files); keep it.
        if pyc.exists() {
            continue;
        }
        let Some(key) = source_key(&source, &tag) else {
            continue;
        };
        let stored = store_path(store, &key);
        if stored.is_file() && link_or_copy(&stored, &pyc).is_ok() {
            stats.reused += 1;
        } else {
            to_compile.push((source, key));
        }
    }
    if !to_compile.is_empty() {
        // `compileall -i` compiles a file list on one core; run one per core on a share each.
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(to_compile.len());
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
                    .args(["-B", "-m", "compileall", "-q", "-i", "-"])
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
