//! Bytecode for an archive of an environment (`pack`, an image's environment layer), moved here
//! from env-pack so that one crate drives every compile of `.pyc` files: into the shared store at
//! the end of a build ([`crate::compile`]) and into a staging directory for an archive (here).
//! Never into the cached environment.
//!
//! [`compile_for_archive`]: `compileall` with the environment's own Python, into a staging
//! directory. `PYTHONPYCACHEPREFIX` sends every `.pyc` to a mirror tree under the staging
//! directory (`<staging>/<absolute source dir>/<module>.cpython-3X.pyc`);
//! `PYTHONDONTWRITEBYTECODE` keeps the interpreter's own imports from writing anything
//! (compileall writes regardless). `--invalidation-mode unchecked-hash` makes the files valid
//! whatever mtimes extraction gives the sources: measured in the prototype, workers import
//! scikit-learn in 0.6–0.8 s with them and 1.5–1.9 s without (notes/spark-and-pack.md). `-f`
//! recompiles even where an up-to-date timestamp `.pyc` exists. compileall exits 1 when some
//! file does not compile (Python 2 test data in some packages); those files are skipped, as
//! conda does.
//!
//! [`reuse_for_archive`]: for an archive whose mtimes are kept where it is extracted, the
//! environment's own `.pyc` files, and only the sources without one compiled.
//!
//! It knows nothing of env-pack's plan: the caller passes the environment's library
//! ([`ArchiveLibrary`]) and the archive's sources, and gets back a staging directory and the
//! `.pyc` files to add.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::{BytecodeError, io};

/// An environment's Python library as an archive of it holds it.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveLibrary<'a> {
    /// The environment's root.
    pub root: &'a Path,
    /// Its interpreter (`bin/python3.X`).
    pub python: &'a Path,
    /// `lib/python3.X`, relative to `root`.
    pub stdlib: &'a str,
    /// `3.11`.
    pub python_minor: &'a str,
    /// Where the archive will be extracted, when it is not `root` (a relocation's destination,
    /// absolute, no trailing `/`): the bytecode names the sources there (`co_filename`, what
    /// tracebacks show).
    pub destination: Option<&'a str>,
    /// Where to make the staging directory (the cache's `tmp/`: same filesystem, cleaned up).
    pub staging_dir: &'a Path,
}

/// A file of the archive, as [`reuse_for_archive`] needs it: `(archive path, source)`.
#[derive(Debug, Clone, Copy)]
pub enum ArchiveSource<'a> {
    /// Archived unchanged from the environment.
    File(&'a Path),
    /// Archived with this text (rewritten to name the destination).
    Rewritten(&'a [u8]),
}

/// A `.pyc` file for the archive, from [`reuse_for_archive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchivePyc {
    /// The environment's own timestamp-based `.pyc` of a source archived unchanged, to be
    /// archived with the source mtime in its header replaced by this one (the archive's).
    Retimed(PathBuf, u32),
    /// A file archived as it is: a hash-based `.pyc` of the environment, or one compiled now.
    File(PathBuf),
}

/// What [`reuse_for_archive`] made: the staging directory (held until the archive is written)
/// and every `.pyc` to add, by archive path.
#[derive(Debug)]
pub struct ReusedBytecode {
    /// Holds what was compiled now.
    pub staging: tempfile::TempDir,
    /// `(archive path, file)`, in the order of the sources.
    pub files: Vec<(String, ArchivePyc)>,
}

fn staging(library: &ArchiveLibrary<'_>) -> Result<tempfile::TempDir, BytecodeError> {
    fs_err::create_dir_all(library.staging_dir).map_err(io(library.staging_dir))?;
    tempfile::Builder::new()
        .prefix("pack-")
        .tempdir_in(library.staging_dir)
        .map_err(io(library.staging_dir))
}

/// Compiles the environment's `lib/python3.X` (but what the regex `exclusions` matches) into a
/// new staging directory, returned. With a destination, the bytecode names the sources there,
/// and `rewritten` (archive path and new text of each source the archive rewrites) is compiled
/// from the new text.
pub fn compile_for_archive(
    library: &ArchiveLibrary<'_>,
    exclusions: &str,
    rewritten: &[(&str, &[u8])],
) -> Result<tempfile::TempDir, BytecodeError> {
    let staging = staging(library)?;
    let python = library.python.to_path_buf();
    let lib = library.root.join(library.stdlib);
    tracing::debug!("compileall -x {exclusions}");
    let mut command = env_prefix::isolated_python(&python);
    command.args([
        "-m",
        "compileall",
        "-q",
        "-f",
        "-j0",
        "--invalidation-mode",
        "unchecked-hash",
        "-x",
        exclusions,
    ]);
    if let Some(destination) = library.destination {
        // `-d` (every Python 3) rather than `-s`/`-p` (3.9+).
        command
            .arg("-d")
            .arg(format!("{destination}/{}", library.stdlib));
    }
    let output = command
        .arg(&lib)
        .env("PYTHONPYCACHEPREFIX", staging.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(io(&python))?;
    match output.status.code() {
        Some(0) => {}
        Some(1) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let failed = stdout
                .lines()
                .filter(|l| l.starts_with("*** Error compiling"))
                .count();
            tracing::debug!("compileall could not compile {failed} files (skipped)");
        }
        _ => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(BytecodeError::PythonFailed {
                python,
                message: format!(
                    "compileall: {}: {}",
                    output.status,
                    stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                ),
            });
        }
    }
    if let Some(destination) = library.destination {
        recompile_rewritten(library, destination, rewritten, staging.path())?;
    }
    Ok(staging)
}

/// Compiles the sources under `lib/python3.X` that the archive rewrote (`_sysconfigdata*.py`
/// names the prefix) from their rewritten text, over what compileall wrote for them: their
/// bytecode's constants would name the build path otherwise.
fn recompile_rewritten(
    library: &ArchiveLibrary<'_>,
    destination: &str,
    rewritten: &[(&str, &[u8])],
    staging: &Path,
) -> Result<(), BytecodeError> {
    let stdlib = format!("{}/", library.stdlib);
    let sources = staging.join("rewritten-sources");
    let mut jobs = Vec::new();
    for &(path, bytes) in rewritten {
        let is_python = Path::new(path).extension().is_some_and(|e| e == "py");
        if !(path.starts_with(&stdlib) && is_python) {
            continue;
        }
        let source = sources
            .join(jobs.len().to_string())
            .join(Path::new(path).file_name().unwrap_or_default());
        let dir = source.parent().unwrap_or(&sources);
        fs_err::create_dir_all(dir).map_err(io(dir))?;
        fs_err::write(&source, bytes).map_err(io(&source))?;
        jobs.push(serde_json::json!([
            source.to_string_lossy(),
            library.root.join(path).to_string_lossy(),
            format!("{destination}/{path}"),
        ]));
    }
    if jobs.is_empty() {
        return Ok(());
    }
    tracing::debug!("Compiling {} rewritten sources", jobs.len());
    // `cache_from_source` honours `PYTHONPYCACHEPREFIX`: the same place compileall wrote to.
    let code = [
        "import importlib.util, json, py_compile, sys",
        "mode = py_compile.PycInvalidationMode.UNCHECKED_HASH",
        "for source, original, shown in json.loads(sys.argv[1]):",
        "    cfile = importlib.util.cache_from_source(original)",
        "    py_compile.compile(source, cfile=cfile, dfile=shown, invalidation_mode=mode)",
    ]
    .join("\n");
    let python = library.python.to_path_buf();
    let output = env_prefix::isolated_python(&python)
        .args(["-c", &code])
        .arg(serde_json::Value::Array(jobs).to_string())
        .env("PYTHONPYCACHEPREFIX", staging)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .stdin(Stdio::null())
        .output()
        .map_err(io(&python))?;
    py_compile_result(python, &output)
}

/// `Ok` for a `py_compile` run that succeeded, else its status and last stderr lines.
fn py_compile_result(python: PathBuf, output: &std::process::Output) -> Result<(), BytecodeError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(BytecodeError::PythonFailed {
        python,
        message: format!(
            "py_compile: {}: {}",
            output.status,
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ),
    })
}

/// Bytecode for an archive whose mtimes are kept where it is extracted (an image layer, every
/// entry at `mtime`), without compiling the environment again: `create` already compiled its
/// `site-packages` (timestamp-based `.pyc` files, store-linked: [`crate::store`]). Such a `.pyc`
/// records its source's mtime and size, so for a source archived unchanged it is valid in the
/// archive once its recorded mtime is the archive's: [`ArchivePyc::Retimed`]. A hash-based
/// `.pyc` (a package's own) is valid as it is. Only the sources with neither, and the rewritten
/// ones, are compiled now (unchecked-hash, naming their destination): the standard library of
/// an interpreter packaged without bytecode, a few files at most otherwise. `sources` are the
/// archive's files by archive path; those not under `lib/` or not `.py` are ignored.
pub fn reuse_for_archive(
    library: &ArchiveLibrary<'_>,
    mtime: u64,
    sources: &[(&str, ArchiveSource<'_>)],
) -> Result<ReusedBytecode, BytecodeError> {
    let staging = staging(library)?;
    let tag = format!("cpython-{}", library.python_minor.replace('.', ""));
    let mtime = u32::try_from(mtime & 0xffff_ffff).unwrap_or(0);
    let shown_root = library.destination.map_or_else(
        || library.root.to_string_lossy().into_owned(),
        str::to_string,
    );
    let mut added = Vec::new();
    // (source to read, `.pyc` to write, name shown in tracebacks, archive path of the `.pyc`)
    let mut jobs: Vec<(String, PathBuf, String, String)> = Vec::new();
    for &(path, source) in sources {
        if !(path.starts_with("lib/") && Path::new(path).extension().is_some_and(|e| e == "py")) {
            continue;
        }
        let (dir, file) = path.rsplit_once('/').unwrap_or(("", path));
        let stem = file.strip_suffix(".py").unwrap_or(file);
        let pyc_rel = format!("{dir}/__pycache__/{stem}.{tag}.pyc");
        let source = match source {
            ArchiveSource::File(source) => {
                let pyc = library.root.join(&pyc_rel);
                match valid_pyc(source, &pyc) {
                    Some(PycKind::Timestamp) => {
                        added.push((pyc_rel, ArchivePyc::Retimed(pyc, mtime)));
                        continue;
                    }
                    Some(PycKind::Hash) => {
                        added.push((pyc_rel, ArchivePyc::File(pyc)));
                        continue;
                    }
                    None => source.to_string_lossy().into_owned(),
                }
            }
            ArchiveSource::Rewritten(bytes) => {
                let source = staging
                    .path()
                    .join("rewritten-sources")
                    .join(jobs.len().to_string())
                    .join(file);
                let parent = source.parent().unwrap_or(staging.path());
                fs_err::create_dir_all(parent).map_err(io(parent))?;
                fs_err::write(&source, bytes).map_err(io(&source))?;
                source.to_string_lossy().into_owned()
            }
        };
        let cfile = staging.path().join("pyc").join(&pyc_rel);
        jobs.push((source, cfile, format!("{shown_root}/{path}"), pyc_rel));
    }
    tracing::debug!(
        "Bytecode: {} `.pyc` files of the environment reused, {} sources to compile",
        added.len(),
        jobs.len()
    );
    compile_files(library.python, &jobs)?;
    for (_, cfile, _, pyc_rel) in jobs {
        if cfile.is_file() {
            added.push((pyc_rel, ArchivePyc::File(cfile)));
        }
    }
    Ok(ReusedBytecode {
        staging,
        files: added,
    })
}

enum PycKind {
    /// Records the source's mtime and size, which match.
    Timestamp,
    /// Hash-based.
    Hash,
}

/// Whether `pyc` is bytecode valid for `source` as it is in the environment.
fn valid_pyc(source: &Path, pyc: &Path) -> Option<PycKind> {
    use std::io::Read as _;
    let mut header = [0u8; 16];
    fs_err::File::open(pyc).ok()?.read_exact(&mut header).ok()?;
    // A magic number ends with `\r\n`.
    if header[2..4] != *b"\r\n" {
        return None;
    }
    let word = |at: usize| {
        u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    match word(4) {
        0 => {
            let metadata = fs_err::metadata(source).ok()?;
            let mtime = crate::store::mtime_secs(&metadata)?;
            (u64::from(word(8)) == mtime & 0xffff_ffff
                && u64::from(word(12)) == metadata.len() & 0xffff_ffff)
                .then_some(PycKind::Timestamp)
        }
        1 | 3 => Some(PycKind::Hash),
        _ => None,
    }
}

/// Compiles `jobs` (source, `.pyc`, name shown) with the environment's Python, one process
/// per core on a share each; a source that does not compile (Python 2 test data) is skipped.
fn compile_files(
    python: &Path,
    jobs: &[(String, PathBuf, String, String)],
) -> Result<(), BytecodeError> {
    if jobs.is_empty() {
        return Ok(());
    }
    let code = [
        "import json, py_compile, sys",
        "mode = py_compile.PycInvalidationMode.UNCHECKED_HASH",
        "for source, cfile, shown in json.load(sys.stdin):",
        "    try:",
        "        py_compile.compile(source, cfile=cfile, dfile=shown, doraise=True, invalidation_mode=mode)",
        "    except Exception:",
        "        pass",
    ]
    .join("\n");
    let python = python.to_path_buf();
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .min(jobs.len());
    let mut children = Vec::new();
    for worker in 0..workers {
        let share: Vec<_> = jobs
            .iter()
            .skip(worker)
            .step_by(workers)
            .map(|(source, cfile, shown, _)| {
                serde_json::json!([source, cfile.to_string_lossy(), shown])
            })
            .collect();
        let mut child = env_prefix::isolated_python(&python)
            .args(["-c", &code])
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("PYTHONNOUSERSITE", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io(&python))?;
        if let Some(mut stdin) = child.stdin.take() {
            std::io::Write::write_all(
                &mut stdin,
                serde_json::Value::Array(share).to_string().as_bytes(),
            )
            .map_err(io(&python))?;
        }
        children.push(child);
    }
    for child in children {
        let output = child.wait_with_output().map_err(io(&python))?;
        py_compile_result(python.clone(), &output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.pyc` header (16 bytes, CPython 3.7+): magic, flags, then mtime and size for a
    /// timestamp-based file or the source hash for a hash-based one.
    fn pyc(flags: u32, mtime: u32, size: u32) -> Vec<u8> {
        let mut bytes = vec![0xa7, 0x0d, b'\r', b'\n'];
        bytes.extend(flags.to_le_bytes());
        bytes.extend(mtime.to_le_bytes());
        bytes.extend(size.to_le_bytes());
        bytes.extend(b"code");
        bytes
    }

    fn mtime_of(path: &Path) -> u32 {
        let secs = fs_err::metadata(path)
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        u32::try_from(secs & 0xffff_ffff).unwrap()
    }

    /// The environment's own `.pyc` files go into the archive without running Python: a
    /// timestamp-based one whose recorded mtime and size match its source, retimed to the
    /// archive's mtime; a hash-based one as it is. A stale one (the source changed size) is
    /// not reused: its source is compiled, which needs the environment's Python (missing
    /// here, so the error names it). Files outside `lib/` or not `.py` are not looked at.
    #[test]
    fn an_archive_reuses_the_environments_valid_bytecode_and_compiles_only_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let site = root.path().join("lib/python3.11/site-packages");
        let cache = site.join("__pycache__");
        fs_err::create_dir_all(&cache).unwrap();
        for (name, text) in [
            ("fresh", "x = 1\n"),
            ("hashed", "y = 2\n"),
            ("stale", "z\n"),
        ] {
            fs_err::write(site.join(format!("{name}.py")), text).unwrap();
        }
        let size =
            |name: &str| u32::try_from(fs_err::metadata(site.join(name)).unwrap().len()).unwrap();
        let fresh_mtime = mtime_of(&site.join("fresh.py"));
        fs_err::write(
            cache.join("fresh.cpython-311.pyc"),
            pyc(0, fresh_mtime, size("fresh.py")),
        )
        .unwrap();
        fs_err::write(cache.join("hashed.cpython-311.pyc"), pyc(1, 0, 0)).unwrap();
        fs_err::write(
            cache.join("stale.cpython-311.pyc"),
            pyc(0, mtime_of(&site.join("stale.py")), size("stale.py") + 1),
        )
        .unwrap();
        let python = root.path().join("bin/python3.11");
        let staging_dir = root.path().join("staging");
        let library = ArchiveLibrary {
            root: root.path(),
            python: &python,
            stdlib: "lib/python3.11",
            python_minor: "3.11",
            destination: Some("/opt/env"),
            staging_dir: &staging_dir,
        };
        let file = |name: &str| site.join(name);
        let (fresh, hashed, stale) = (file("fresh.py"), file("hashed.py"), file("stale.py"));
        let sources = [
            (
                "lib/python3.11/site-packages/fresh.py",
                ArchiveSource::File(&fresh),
            ),
            (
                "lib/python3.11/site-packages/hashed.py",
                ArchiveSource::File(&hashed),
            ),
            ("bin/tool.py", ArchiveSource::File(&stale)),
            (
                "lib/python3.11/site-packages/README",
                ArchiveSource::File(&stale),
            ),
        ];
        let reused = reuse_for_archive(&library, 1_700_000_000, &sources).unwrap();
        assert_eq!(
            reused.files,
            vec![
                (
                    "lib/python3.11/site-packages/__pycache__/fresh.cpython-311.pyc".to_string(),
                    ArchivePyc::Retimed(cache.join("fresh.cpython-311.pyc"), 1_700_000_000),
                ),
                (
                    "lib/python3.11/site-packages/__pycache__/hashed.cpython-311.pyc".to_string(),
                    ArchivePyc::File(cache.join("hashed.cpython-311.pyc")),
                ),
            ]
        );
        let stale_source = [(
            "lib/python3.11/site-packages/stale.py",
            ArchiveSource::File(&stale),
        )];
        let error = reuse_for_archive(&library, 1_700_000_000, &stale_source).unwrap_err();
        assert!(
            matches!(&error, BytecodeError::Io { path, .. } if *path == python),
            "{error:?}"
        );
    }
}
