//! Pack-time bytecode: `compileall` with the environment's own Python, into a staging
//! directory, never into the cached environment.
//!
//! `PYTHONPYCACHEPREFIX` sends every `.pyc` to a mirror tree under the staging directory
//! (`<staging>/<absolute source dir>/<module>.cpython-3X.pyc`); `PYTHONDONTWRITEBYTECODE`
//! keeps the interpreter's own imports from writing anything (compileall writes regardless).
//! `--invalidation-mode unchecked-hash` makes the files valid whatever mtimes extraction gives
//! the sources: measured in the prototype, workers import scikit-learn in 0.6–0.8 s with them
//! and 1.5–1.9 s without (notes/spark-and-pack.md). `-f` recompiles even where an up-to-date
//! timestamp `.pyc` exists. compileall exits 1 when some file does not compile (Python 2 test
//! data in some packages); those files are skipped, as conda does.

use std::process::Stdio;

use crate::relocate::Relocation;
use crate::scan::{Environment, Plan, Source, compile_exclusions};
use crate::{CommandFailed, PackError, PackOptions, io};

/// Compiles the environment's `lib/python3.X` into a new staging directory, returned. With
/// `relocation`, the bytecode names the sources at the destination (`co_filename`, what
/// tracebacks show), and the sources `plan` rewrote are compiled from their new text.
pub(crate) fn compile(
    environment: &Environment,
    options: &PackOptions,
    relocation: Option<&Relocation>,
    plan: &Plan,
) -> Result<tempfile::TempDir, PackError> {
    fs_err::create_dir_all(&options.staging_dir).map_err(io(&options.staging_dir))?;
    let staging = tempfile::Builder::new()
        .prefix("pack-")
        .tempdir_in(&options.staging_dir)
        .map_err(io(&options.staging_dir))?;
    let python = environment.python();
    let lib = environment.root.join(&environment.stdlib);
    let exclusions = compile_exclusions(environment, options);
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
        &exclusions,
    ]);
    if let Some(relocation) = relocation {
        // `-d` (every Python 3) rather than `-s`/`-p` (3.9+).
        command
            .arg("-d")
            .arg(format!("{}/{}", relocation.to, environment.stdlib));
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
            return Err(PackError::PythonFailed {
                python,
                source: CommandFailed {
                    message: format!(
                        "compileall: {}: {}",
                        output.status,
                        stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                    ),
                },
            });
        }
    }
    if let Some(relocation) = relocation {
        recompile_rewritten(environment, relocation, plan, staging.path())?;
    }
    Ok(staging)
}

/// Compiles the sources under `lib/python3.X` that `plan` rewrote (`_sysconfigdata*.py`
/// names the prefix) from their rewritten text, over what compileall wrote for them: their
/// bytecode's constants would name the build path otherwise.
fn recompile_rewritten(
    environment: &Environment,
    relocation: &Relocation,
    plan: &Plan,
    staging: &std::path::Path,
) -> Result<(), PackError> {
    let stdlib = format!("{}/", environment.stdlib);
    let sources = staging.join("rewritten-sources");
    let mut jobs = Vec::new();
    for item in &plan.items {
        let Source::Bytes(bytes) = &item.source else {
            continue;
        };
        let is_python = std::path::Path::new(&item.path)
            .extension()
            .is_some_and(|e| e == "py");
        if !(item.path.starts_with(&stdlib) && is_python) {
            continue;
        }
        let source = sources.join(jobs.len().to_string()).join(
            std::path::Path::new(&item.path)
                .file_name()
                .unwrap_or_default(),
        );
        let dir = source.parent().unwrap_or(&sources);
        fs_err::create_dir_all(dir).map_err(io(dir))?;
        fs_err::write(&source, bytes).map_err(io(&source))?;
        jobs.push(serde_json::json!([
            source.to_string_lossy(),
            environment.root.join(&item.path).to_string_lossy(),
            format!("{}/{}", relocation.to, item.path),
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
    let python = environment.python();
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
fn py_compile_result(
    python: std::path::PathBuf,
    output: &std::process::Output,
) -> Result<(), PackError> {
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(PackError::PythonFailed {
        python,
        source: CommandFailed {
            message: format!(
                "py_compile: {}: {}",
                output.status,
                stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            ),
        },
    })
}

/// Bytecode for an archive whose mtimes are kept where it is extracted (an image layer, every
/// entry at `options.mtime`), without compiling the environment again: `create` already
/// compiled its `site-packages` (timestamp-based `.pyc` files, store-linked; `bytecode.rs` in
/// `env-solve`). Such a `.pyc` records its source's mtime and size, so for a source archived
/// unchanged it is valid in the archive once its recorded mtime is the archive's:
/// [`Source::Pyc`]. A hash-based `.pyc` (a package's own) is valid as it is. Only the sources
/// with neither, and those `plan` rewrote, are compiled now (unchecked-hash, naming their
/// destination): the standard library of an interpreter packaged without bytecode, a few
/// files at most otherwise. Returns the staging directory of what was compiled.
pub(crate) fn reuse(
    environment: &Environment,
    options: &PackOptions,
    relocation: Option<&Relocation>,
    plan: &mut Plan,
) -> Result<tempfile::TempDir, PackError> {
    fs_err::create_dir_all(&options.staging_dir).map_err(io(&options.staging_dir))?;
    let staging = tempfile::Builder::new()
        .prefix("pack-")
        .tempdir_in(&options.staging_dir)
        .map_err(io(&options.staging_dir))?;
    let tag = format!("cpython-{}", environment.python_minor.replace('.', ""));
    let mtime = u32::try_from(options.mtime & 0xffff_ffff).unwrap_or(0);
    let shown_root = relocation.map_or_else(
        || environment.root.to_string_lossy().into_owned(),
        |r| r.to.clone(),
    );
    let mut added = Vec::new();
    // (source to read, `.pyc` to write, name shown in tracebacks, archive path of the `.pyc`)
    let mut jobs: Vec<(String, std::path::PathBuf, String, String)> = Vec::new();
    for item in &plan.items {
        if !(item.path.starts_with("lib/")
            && std::path::Path::new(&item.path)
                .extension()
                .is_some_and(|e| e == "py"))
        {
            continue;
        }
        let (dir, file) = item.path.rsplit_once('/').unwrap_or(("", &item.path));
        let stem = file.strip_suffix(".py").unwrap_or(file);
        let pyc_rel = format!("{dir}/__pycache__/{stem}.{tag}.pyc");
        let source = match &item.source {
            Source::File(source) => {
                let pyc = environment.root.join(&pyc_rel);
                match valid_pyc(source, &pyc) {
                    Some(PycKind::Timestamp) => {
                        added.push((pyc_rel, Source::Pyc(pyc, mtime)));
                        continue;
                    }
                    Some(PycKind::Hash) => {
                        added.push((pyc_rel, Source::File(pyc)));
                        continue;
                    }
                    None => source.to_string_lossy().into_owned(),
                }
            }
            Source::Bytes(bytes) => {
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
            Source::Dir | Source::Symlink(_) | Source::Pyc(..) => continue,
        };
        let cfile = staging.path().join("pyc").join(&pyc_rel);
        jobs.push((
            source,
            cfile,
            format!("{shown_root}/{}", item.path),
            pyc_rel,
        ));
    }
    tracing::debug!(
        "Bytecode: {} `.pyc` files of the environment reused, {} sources to compile",
        added.len(),
        jobs.len()
    );
    compile_files(environment, &jobs)?;
    for (_, cfile, _, pyc_rel) in jobs {
        if cfile.is_file() {
            added.push((pyc_rel, Source::File(cfile)));
        }
    }
    let mut dirs = std::collections::BTreeSet::new();
    for (path, source) in added {
        if let Some((dir, _)) = path.rsplit_once('/') {
            dirs.insert(dir.to_string());
        }
        plan.items.push(crate::scan::Item {
            path,
            mode: 0o644,
            source,
        });
        plan.bytecode_files += 1;
    }
    for path in dirs {
        plan.items.push(crate::scan::Item {
            path,
            mode: 0o755,
            source: Source::Dir,
        });
    }
    Ok(staging)
}

enum PycKind {
    /// Records the source's mtime and size, which match.
    Timestamp,
    /// Hash-based.
    Hash,
}

/// Whether `pyc` is bytecode valid for `source` as it is in the environment.
fn valid_pyc(source: &std::path::Path, pyc: &std::path::Path) -> Option<PycKind> {
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
            let mtime = metadata
                .modified()
                .ok()?
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?
                .as_secs();
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
    environment: &Environment,
    jobs: &[(String, std::path::PathBuf, String, String)],
) -> Result<(), PackError> {
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
    let python = environment.python();
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
