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

use crate::scan::{Environment, compile_exclusions};
use crate::{CommandFailed, PackError, PackOptions, io};

/// Compiles the environment's `lib/python3.X` into a new staging directory, returned.
pub(crate) fn compile(
    environment: &Environment,
    options: &PackOptions,
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
    let output = env_prefix::isolated_python(&python)
        .args([
            "-m",
            "compileall",
            "-q",
            "-f",
            "-j0",
            "--invalidation-mode",
            "unchecked-hash",
            "-x",
            &exclusions,
        ])
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
    Ok(staging)
}
