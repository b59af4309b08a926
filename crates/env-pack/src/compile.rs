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
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(PackError::PythonFailed {
            python,
            source: CommandFailed {
                message: format!(
                    "py_compile: {}: {}",
                    output.status,
                    stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
                ),
            },
        });
    }
    Ok(())
}
