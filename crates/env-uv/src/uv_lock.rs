//! Installs a model's `uv.lock` the way MLflow 3.17's `--env-manager uv` does (issue 23).
//!
//! MLflow copies `uv.lock`, `pyproject.toml` (or writes a minimal one pinning `requires-python`
//! to the exact Python) and `.python-version` into the environment directory and runs
//! `uv sync --frozen --no-dev` there with `UV_PROJECT_ENVIRONMENT` set to it
//! (`env_spec::uv_project`). Here the same three files go into a scratch project directory and
//! the pinned uv runs the same selection in two steps:
//!
//! 1. `uv export --frozen --no-dev --format pylock.toml`: the lock's packages for the project's
//!    default groups minus `dev` and no extras (what `uv sync --no-dev` selects: `[tool.uv]
//!    default-groups` is honoured, other groups and extras are not), each with its exact file
//!    URLs, hashes, index and markers; no resolution (`--frozen`).
//! 2. `uv pip install --python <prefix>/bin/python -r pylock.toml`: uv evaluates the markers for
//!    this interpreter and platform and installs exactly those files, hashes checked.
//!
//! Why not `uv sync` itself: it needs the prefix to be a uv-recognised virtualenv and would
//! replace one that is not (a conda-provided Python is a plain prefix), and it would write its
//! project files into the environment. Splitting at the pylock keeps the prefix layout of every
//! other environment and installs the same distributions. A project that is itself a package
//! (`[build-system]`, `source = { editable = "." }` in the lock) is exported as a directory
//! requirement on the scratch project, which holds no source: the build fails as MLflow's
//! `uv sync` does (the project's own code is never in the model directory).
//!
//! Index credentials are never in the lock (uv strips them) nor in uv's arguments: uv reads
//! them from `.netrc`. MLflow also suggests uv's per-index `UV_INDEX_<NAME>_*` variables; those
//! are not in [`crate::uv::UV_PASSED_VARIABLES`] yet (issue 23, with the credentials-to-env work).

use std::path::Path;
use std::sync::Arc;

use env_spec::UvProject;
use env_spec::uv_project::{PYPROJECT_FILE, PYTHON_VERSION_FILE, UV_LOCK_FILE};

use env_spec::redact::redact;

use crate::uv::{Uv, run_streaming};
use crate::{Reporter, UvError, io};

/// The pylock file `uv export` writes (uv insists on this name pattern).
const PYLOCK_FILE: &str = "pylock.toml";

/// Installs `project`'s locked packages into the environment of `python` (whose version is
/// `python_version`, used for MLflow's minimal pyproject when the model has none).
#[expect(clippy::too_many_arguments, reason = "one uv installation's settings")]
pub fn install(
    uv: &Uv,
    project: &UvProject,
    python: &Path,
    python_version: &str,
    cache_dir: &Path,
    scratch: &Path,
    offline: bool,
    reporter: &Arc<dyn Reporter>,
) -> Result<(), UvError> {
    let dir = tempfile::Builder::new()
        .prefix("uv-project-")
        .tempdir_in(scratch)
        .map_err(io(scratch))?;
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs_err::write(&path, text).map_err(io(&path))
    };
    write(UV_LOCK_FILE, &project.lock.text)?;
    write(PYPROJECT_FILE, &project.pyproject_text(python_version))?;
    if let Some(file) = &project.python_version_file {
        write(PYTHON_VERSION_FILE, &file.text)?;
    }
    let mut export = uv.command(cache_dir, offline);
    export
        .args([
            "export",
            "--frozen",
            "--no-dev",
            "--format",
            "pylock.toml",
            "--no-header",
            "--output-file",
            PYLOCK_FILE,
        ])
        .current_dir(dir.path());
    tracing::debug!("Running {}", redact(&format!("{export:?}")));
    let (status, stderr) = run_streaming(&mut export, reporter).map_err(io(&uv.path))?;
    if !status.success() {
        return Err(UvError::pip_failed(
            "packages of uv.lock (uv export)",
            status.code(),
            redact(stderr.trim_end()),
            offline,
        ));
    }
    let mut command = uv.command(cache_dir, offline);
    command
        .args(["pip", "install", "--python"])
        .arg(python)
        // uv 0.13 calls installing from a pylock.toml a preview feature and warns otherwise.
        .args(["--preview-features", "pylock", "-r", PYLOCK_FILE])
        .current_dir(dir.path());
    tracing::debug!("Running {}", redact(&format!("{command:?}")));
    let (status, stderr) = run_streaming(&mut command, reporter).map_err(io(&uv.path))?;
    if status.success() {
        return Ok(());
    }
    // The lock's own project, installed from the scratch directory: a package whose source
    // the model does not have.
    let own = project
        .packages
        .iter()
        .find(|p| matches!(p.source.as_str(), "editable ." | "directory ."));
    if let Some(own) = own
        && crate::uv_stderr::failed_to_build(&stderr, &own.name)
    {
        return Err(UvError::UvProjectNotInModel {
            project: own.name.clone(),
            stderr: redact(stderr.trim_end()),
        });
    }
    Err(UvError::pip_failed(
        "packages of uv.lock",
        status.code(),
        redact(stderr.trim_end()),
        offline,
    ))
}
