//! The prefix being packed: its Python, its standard library and its installed distributions.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::{PackError, io};

/// An environment prefix that passed the basic checks.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// The prefix as given (absolute).
    pub root: PathBuf,
    /// The prefix with symlinks resolved.
    pub canonical: PathBuf,
    /// `3.11`.
    pub python_minor: String,
    /// `3.11.7`.
    pub python_version: String,
    /// `lib/python3.11`.
    pub stdlib: String,
    /// The installed Python distributions (`*.dist-info` in site-packages), sorted by name.
    pub distributions: Vec<Distribution>,
}

impl Environment {
    /// `bin/python3.X`.
    #[must_use]
    pub fn python(&self) -> PathBuf {
        self.root
            .join("bin")
            .join(format!("python{}", self.python_minor))
    }

    /// The installed version of a distribution (name compared normalised: `scikit_learn` is
    /// `scikit-learn`).
    #[must_use]
    pub fn version_of(&self, name: &str) -> Option<&str> {
        let name = normalize(name);
        self.distributions
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.version.as_str())
    }
}

/// An installed distribution.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Distribution {
    /// The normalised name (`scikit-learn`).
    pub name: String,
    /// The version.
    pub version: String,
}

pub(crate) use env_prefix::normalize;

/// Checks that `prefix` is one complete, self-contained Python prefix and describes it.
pub fn inspect(prefix: &Path) -> Result<Environment, PackError> {
    let root = std::path::absolute(prefix).map_err(io(prefix))?;
    let canonical = fs_err::canonicalize(&root).map_err(io(&root))?;
    let venv_cfg = root.join("pyvenv.cfg");
    if venv_cfg.is_file() {
        let text = fs_err::read_to_string(&venv_cfg).map_err(io(&venv_cfg))?;
        let home = text
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once('=')?;
                (key.trim() == "home").then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        return Err(PackError::SystemVirtualenv { prefix: root, home });
    }
    let lib = root.join("lib");
    let mut minors: Vec<String> = fs_err::read_dir(&lib)
        .map(|read| {
            read.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let minor = name.strip_prefix("python")?.to_string();
                    (minor.starts_with("3.")
                        && e.path().join("os.py").is_file()
                        && minor[2..].chars().all(|c| c.is_ascii_digit()))
                    .then_some(minor)
                })
                .collect()
        })
        .unwrap_or_default();
    minors.sort();
    let Some(minor) = minors.pop() else {
        return Err(PackError::NotAnEnvironment { prefix: root });
    };
    let python = root.join("bin").join(format!("python{minor}"));
    if fs_err::symlink_metadata(&python).is_err() {
        return Err(PackError::NotAnEnvironment { prefix: root });
    }
    let resolved = fs_err::canonicalize(&python).map_err(io(&python))?;
    if !resolved.starts_with(&canonical) {
        return Err(PackError::PythonOutside {
            python,
            target: resolved,
        });
    }
    let python_version = run_python(
        &python,
        "import sys; print('%d.%d.%d' % sys.version_info[:3])",
    )?;
    let stdlib = format!("lib/python{minor}");
    let distributions = distributions(&root.join(&stdlib).join("site-packages"));
    Ok(Environment {
        root,
        canonical,
        python_minor: minor,
        python_version,
        stdlib,
        distributions,
    })
}

/// Runs `python -c code` in isolation from the caller's Python settings; its stdout, trimmed.
pub(crate) fn run_python(python: &Path, code: &str) -> Result<String, PackError> {
    let output = env_prefix::isolated_python(python)
        .args(["-c", code])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .output()
        .map_err(io(python))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(PackError::PythonFailed {
            python: python.to_path_buf(),
            source: crate::CommandFailed {
                message: format!(
                    "{}: {}",
                    output.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            },
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn distributions(site_packages: &Path) -> Vec<Distribution> {
    let mut out: Vec<Distribution> = env_prefix::distributions(site_packages)
        .into_iter()
        .map(|d| Distribution {
            name: d.normalized,
            version: d.version,
        })
        .collect();
    out.sort();
    out
}
