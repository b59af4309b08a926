//! The uv project files MLflow 3 logs next to a model, and what `--env-manager uv` restores
//! from them (issue 23).
//!
//! MLflow 3.17's `pyfunc.save_model`, run inside a uv project (a directory with both `uv.lock`
//! and `pyproject.toml`; `MLFLOW_UV_AUTO_DETECT`, `MLFLOW_LOG_UV_FILES`), copies `uv.lock`,
//! `pyproject.toml` and `.python-version` into the model directory
//! (`mlflow/utils/uv_utils.py: copy_uv_project_files`). Only the `uv` env manager uses them:
//! `_create_virtualenv` (`mlflow/utils/virtualenv.py`) checks for `uv.lock` alone
//! (`has_uv_lock_artifact`), makes the venv with `uv venv --python=<python_env.yaml's python>`,
//! copies `uv.lock`, `pyproject.toml` (or writes a minimal one pinning `requires-python` to
//! that exact Python) and `.python-version` into the environment directory, and runs
//! `uv sync --frozen --no-dev` there instead of installing `requirements.txt`. `virtualenv` and
//! `conda` ignore these files.
//!
//! The key covers the exact text of the three files, as MLflow hands them to uv: a comment
//! change in `pyproject.toml` changes the key although uv would install the same thing. That is
//! deliberate: deciding which parts of a pyproject uv reads (`[tool.uv]` settings, groups,
//! sources) would be a second implementation of uv's project model, and a wrongly shared key
//! is worse than a rebuild.

use serde::Serialize;

use crate::error::SpecError;
use crate::source::ModelFs;
use crate::spec::sha256_hex;

/// `uv.lock` in the model directory.
pub const UV_LOCK_FILE: &str = "uv.lock";
/// `pyproject.toml` in the model directory.
pub const PYPROJECT_FILE: &str = "pyproject.toml";
/// `.python-version` in the model directory.
pub const PYTHON_VERSION_FILE: &str = ".python-version";

/// One file of the project: its exact text (not serialised) and its sha256 (in the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProjectFile {
    /// The text, as uv will read it.
    #[serde(skip)]
    pub text: String,
    /// sha256 of the text.
    pub sha256: String,
}

impl ProjectFile {
    fn new(text: String) -> Self {
        let sha256 = sha256_hex(text.as_bytes());
        Self { text, sha256 }
    }
}

/// One `[[package]]` of `uv.lock`: what `deps`, `inspect` and `lock` show as the origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedPackage {
    /// The name, as the lock spells it.
    pub name: String,
    /// The version; absent for a virtual or dynamic project entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Where uv takes it from: `registry <url>`, `editable .`, `virtual .`, `git <url>`,
    /// `url <url>`, `path <path>`, `directory <path>`.
    pub source: String,
}

/// The uv project of a model (`uv.lock`, `pyproject.toml`, `.python-version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UvProject {
    /// `uv.lock`.
    pub lock: ProjectFile,
    /// `pyproject.toml`; `None` when the model has none (MLflow writes a minimal one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pyproject: Option<ProjectFile>,
    /// `.python-version`, when the model has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_version_file: Option<ProjectFile>,
    /// The lock's packages and their sources, for `deps --format json` (derived from `lock`,
    /// so they add nothing to the key).
    pub packages: Vec<LockedPackage>,
}

impl UvProject {
    /// Reads the model's uv project, or `None` when it has no `uv.lock` (what MLflow's
    /// `has_uv_lock_artifact` checks: `pyproject.toml` alone does not count).
    pub fn read(fs: &ModelFs) -> Result<Option<Self>, SpecError> {
        let Some(lock) = fs.read_optional(UV_LOCK_FILE)? else {
            return Ok(None);
        };
        let packages = parse_lock(&lock.text).map_err(|message| SpecError::UvLock {
            file: UV_LOCK_FILE.to_string(),
            message,
        })?;
        let pyproject = fs.read_optional(PYPROJECT_FILE)?;
        if let Some(file) = &pyproject {
            toml::from_str::<toml::Table>(&file.text).map_err(|err| SpecError::UvLock {
                file: PYPROJECT_FILE.to_string(),
                message: err.message().to_string(),
            })?;
        }
        let python_version_file = fs.read_optional(PYTHON_VERSION_FILE)?;
        Ok(Some(Self {
            lock: ProjectFile::new(lock.text),
            pyproject: pyproject.map(|f| ProjectFile::new(f.text)),
            python_version_file: python_version_file.map(|f| ProjectFile::new(f.text)),
            packages,
        }))
    }

    /// The `pyproject.toml` uv is given: the model's, or MLflow's minimal one
    /// (`create_uv_sync_pyproject`) pinning `requires-python` to `python`.
    #[must_use]
    pub fn pyproject_text(&self, python: &str) -> String {
        match &self.pyproject {
            Some(file) => file.text.clone(),
            None => minimal_pyproject(python),
        }
    }

    /// The distinct registries (indexes) the lock names, in order of first appearance.
    #[must_use]
    pub fn registries(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for package in &self.packages {
            if let Some(url) = package.source.strip_prefix("registry ")
                && !out.contains(&url)
            {
                out.push(url);
            }
        }
        out
    }
}

/// MLflow 3.17.2's `create_uv_sync_pyproject(dest, python_version)`, byte for byte.
#[must_use]
pub fn minimal_pyproject(python: &str) -> String {
    format!(
        "[project]\nname = \"mlflow-model-env\"\nversion = \"0.0.0\"\nrequires-python = \"=={python}\"\ndependencies = []\n\n[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n"
    )
}

/// The `[[package]]` entries of a `uv.lock`, or what is wrong with it.
fn parse_lock(text: &str) -> Result<Vec<LockedPackage>, String> {
    let table: toml::Table = toml::from_str(text).map_err(|err| err.message().to_string())?;
    if !table.contains_key("version") {
        return Err("no `version` at the top: this is not a uv lock file".into());
    }
    let Some(packages) = table.get("package") else {
        return Ok(Vec::new());
    };
    let packages = packages
        .as_array()
        .ok_or("`package` is not an array of tables")?;
    packages
        .iter()
        .map(|package| {
            let name = package
                .get("name")
                .and_then(toml::Value::as_str)
                .ok_or("a `[[package]]` without a `name`")?;
            let version = package
                .get("version")
                .and_then(toml::Value::as_str)
                .map(str::to_string);
            let source = package
                .get("source")
                .and_then(toml::Value::as_table)
                .and_then(|source| source.iter().next())
                .map_or_else(
                    || "unknown".to_string(),
                    |(kind, value)| match value.as_str() {
                        Some(value) => format!("{kind} {}", crate::redact::redact_url(value)),
                        None => kind.clone(),
                    },
                );
            Ok(LockedPackage {
                name: name.to_string(),
                version,
                source,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"version = 1
revision = 3
requires-python = "==3.11.*"

[[package]]
name = "demo"
version = "0.1.0"
source = { virtual = "." }
dependencies = [{ name = "six" }]

[[package]]
name = "six"
version = "1.17.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "helper"
version = "0.1.0"
source = { registry = "http://user:secret@127.0.0.1:9/simple" }
"#;

    #[test]
    fn lock_packages_and_their_sources() {
        let packages = parse_lock(LOCK).unwrap();
        let shown: Vec<String> = packages
            .iter()
            .map(|p| format!("{} {:?} {}", p.name, p.version, p.source))
            .collect();
        assert_eq!(
            shown,
            [
                "demo Some(\"0.1.0\") virtual .",
                "six Some(\"1.17.0\") registry https://pypi.org/simple",
                "helper Some(\"0.1.0\") registry http://user:****@127.0.0.1:9/simple",
            ]
        );
    }

    #[test]
    fn not_a_lock() {
        assert!(parse_lock("[project]\nname = 'x'\n").is_err());
        assert!(parse_lock("version = [").is_err());
    }

    #[test]
    fn minimal_pyproject_is_mlflows() {
        assert_eq!(
            minimal_pyproject("3.11.7"),
            "[project]\nname = \"mlflow-model-env\"\nversion = \"0.0.0\"\nrequires-python = \"==3.11.7\"\ndependencies = []\n\n[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n"
        );
    }
}
