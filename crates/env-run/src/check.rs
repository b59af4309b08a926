//! The dependency-mismatch report: `mlflow.pyfunc.load_model`'s warning, as data.
//!
//! MLflow's rules (`mlflow.utils.requirements_utils._check_requirement_satisfied`): each line
//! of the model's `requirements.txt` that parses as a PEP 508 requirement (others — paths,
//! URLs, options — are skipped) and whose marker holds is checked against the installed
//! distributions; a missing distribution or a version outside the specifiers is a mismatch; a
//! development release of mlflow always passes; `databricks-feature-lookup` and
//! `databricks-agents` are ignored. `packaging` excludes pre-releases from a specifier set
//! unless a specifier names one, and so do we. The Python version differs when major.minor
//! differ.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, Requirement, VersionOrUrl};
use serde::{Deserialize, Serialize};

use crate::RunError;

/// What an interpreter has.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Interpreter {
    /// `major.minor.patch`.
    pub python_version: String,
    /// `sys.executable`.
    pub executable: String,
    /// `sys.prefix`.
    pub prefix: String,
    /// PEP 508 marker values.
    pub markers: BTreeMap<String, String>,
    /// Installed distributions: name as in its metadata -> version.
    pub distributions: BTreeMap<String, String>,
}

impl Interpreter {
    /// Whether mlflow is installed here (`mlflow` or `mlflow-skinny`, however the
    /// distribution spells its name): scoring and serving need it.
    #[must_use]
    pub fn has_mlflow(&self) -> bool {
        self.distributions.keys().any(|name| {
            name.eq_ignore_ascii_case("mlflow")
                || name.eq_ignore_ascii_case("mlflow-skinny")
                || name.eq_ignore_ascii_case("mlflow_skinny")
        })
    }
}

/// Runs `python` to learn its version, markers and installed distributions.
pub fn inspect_interpreter(python: &Path) -> Result<Interpreter, RunError> {
    let output = env_prefix::isolated_python(python)
        .args(["-I", "-c", include_str!("scripts/inspect.py")])
        .output()
        .map_err(|e| RunError::Inspect {
            python: python.to_path_buf(),
            message: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(RunError::Inspect {
            python: python.to_path_buf(),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    serde_json::from_slice(&output.stdout).map_err(|e| RunError::Inspect {
        python: python.to_path_buf(),
        message: e.to_string(),
    })
}

/// One unmet requirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    /// The package.
    pub package: String,
    /// What is installed (`None`: not installed).
    pub installed: Option<String>,
    /// The requirement line.
    pub requirement: String,
}

impl std::fmt::Display for Mismatch {
    /// MLflow's `_MismatchedPackageInfo.__str__`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.installed.as_deref().unwrap_or("uninstalled");
        write!(
            f,
            "{} (current: {current}, required: {})",
            self.package, self.requirement
        )
    }
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The interpreter checked.
    pub python: PathBuf,
    /// Its version.
    pub python_version: String,
    /// The Python version the model was saved with (MLmodel), if known.
    pub model_python_version: Option<String>,
    /// Whether major.minor differ.
    pub python_mismatch: bool,
    /// Requirements checked.
    pub checked: usize,
    /// Requirements not met.
    pub mismatches: Vec<Mismatch>,
}

impl CheckReport {
    /// Whether anything differs.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty() && !self.python_mismatch
    }
}

const IGNORED: &[&str] = &["databricks-feature-lookup", "databricks-agents"];

fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !dash {
                out.push('-');
            }
            dash = true;
        } else {
            out.push(c.to_ascii_lowercase());
            dash = false;
        }
    }
    out
}

fn marker_environment(interpreter: &Interpreter) -> Option<MarkerEnvironment> {
    let get = |key: &str| interpreter.markers.get(key).map_or("", String::as_str);
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: get("implementation_name"),
        implementation_version: get("implementation_version"),
        os_name: get("os_name"),
        platform_machine: get("platform_machine"),
        platform_python_implementation: get("platform_python_implementation"),
        platform_release: get("platform_release"),
        platform_system: get("platform_system"),
        platform_version: get("platform_version"),
        python_full_version: get("python_full_version"),
        python_version: get("python_version"),
        sys_platform: get("sys_platform"),
    })
    .ok()
}

fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim().split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Checks `requirements` (the lines of the model's `requirements.txt`, as MLflow parses them)
/// against `interpreter`.
#[must_use]
pub fn check(
    requirements: &[String],
    model_python_version: Option<&str>,
    interpreter: &Interpreter,
    python: &Path,
) -> CheckReport {
    let installed: BTreeMap<String, &String> = interpreter
        .distributions
        .iter()
        .map(|(name, version)| (normalize(name), version))
        .collect();
    let markers = marker_environment(interpreter);
    let mut mismatches = Vec::new();
    let mut checked = 0;
    for line in requirements {
        let Ok(requirement) = Requirement::<pep508_rs::VerbatimUrl>::from_str(line) else {
            continue;
        };
        if let Some(markers) = &markers
            && !requirement.marker.evaluate(markers, &[])
        {
            continue;
        }
        let name = requirement.name.to_string();
        if IGNORED.contains(&name.as_str()) {
            continue;
        }
        checked += 1;
        let Some(version) = installed.get(&normalize(&name)) else {
            mismatches.push(Mismatch {
                package: name,
                installed: None,
                requirement: line.clone(),
            });
            continue;
        };
        if name == "mlflow"
            && requirement.extras.iter().any(|e| e.as_ref() == "gateway")
            && !installed.contains_key("fastapi")
        {
            mismatches.push(Mismatch {
                package: "mlflow[gateway]".into(),
                installed: None,
                requirement: line.clone(),
            });
            continue;
        }
        let Ok(parsed) = pep508_rs::pep440_rs::Version::from_str(version) else {
            continue;
        };
        if name == "mlflow" && parsed.is_dev() {
            continue;
        }
        if let Some(VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url
            && !specifiers.is_empty()
        {
            let allows_pre = specifiers.iter().any(|s| s.version().any_prerelease());
            let contained =
                specifiers.contains(&parsed) && (allows_pre || !parsed.any_prerelease());
            if !contained {
                mismatches.push(Mismatch {
                    package: name,
                    installed: Some((*version).clone()),
                    requirement: line.clone(),
                });
            }
        }
    }
    let python_mismatch = model_python_version
        .and_then(major_minor)
        .zip(major_minor(&interpreter.python_version))
        .is_some_and(|(a, b)| a != b);
    CheckReport {
        python: python.to_path_buf(),
        python_version: interpreter.python_version.clone(),
        model_python_version: model_python_version.map(str::to_string),
        python_mismatch,
        checked,
        mismatches,
    }
}

/// The interpreter [`check_model`] compares a model's requirements with.
#[derive(Debug, Clone, Copy)]
pub enum CheckPython<'a> {
    /// This interpreter (`--python`).
    Path(&'a Path),
    /// The `bin/python` of a complete environment of the cache (`--env KEY`).
    Cached {
        /// The cache.
        cache: &'a env_cache::Cache,
        /// The environment's key.
        key: &'a env_spec::EnvKey,
    },
    /// The first `python3` on `PATH`.
    OnPath,
}

/// Errors of [`check_model`].
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum CheckError {
    /// `--env KEY` names no complete environment.
    #[error("No complete environment `{key}` in {}", root.display())]
    NotComplete {
        /// The key.
        key: String,
        /// The cache root.
        root: PathBuf,
    },
    /// No interpreter was named and `PATH` has no `python3`.
    #[error("No `python3` on PATH; pass `--python` or `--env`")]
    NoPython3,
    /// The model's `requirements.txt` could not be read.
    #[error("Failed to read the model's requirements")]
    Requirements {
        /// The cause.
        #[source]
        source: env_spec::SpecError,
    },
    /// The model's `MLmodel` could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Model(env_spec::SpecError),
    /// The interpreter could not be inspected.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Inspect(RunError),
    /// The cache could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(env_cache::CacheError),
}

impl CheckError {
    /// Whether the caller can fix it (exit code 1): a key with no complete environment, no
    /// interpreter to check, or the model's own files; not an interpreter that fails to run or a
    /// cache that cannot be read.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::NotComplete { .. } | Self::NoPython3 => true,
            Self::Requirements { source } | Self::Model(source) => source.is_user_error(),
            Self::Inspect(_) | Self::Cache(_) => false,
        }
    }
}

/// `check`: the model's `requirements.txt` and `MLmodel` Python version against what `python`
/// has installed, by MLflow's rules ([`check`]).
pub fn check_model(
    model: &env_spec::ModelDir,
    python: CheckPython<'_>,
) -> Result<CheckReport, CheckError> {
    let python = match python {
        CheckPython::Path(python) => python.to_path_buf(),
        CheckPython::Cached { cache, key } => {
            let entry = cache.env(key.as_str()).map_err(CheckError::Cache)?;
            if !matches!(entry.state(), env_cache::EnvState::Complete(_)) {
                return Err(CheckError::NotComplete {
                    key: key.to_string(),
                    root: cache.root().to_path_buf(),
                });
            }
            entry.dir().join("bin").join("python")
        }
        CheckPython::OnPath => env_prefix::find_on_path("python3").ok_or(CheckError::NoPython3)?,
    };
    let requirements: Vec<String> = model
        .requirements_file("requirements.txt")
        .transpose()
        .map_err(|source| CheckError::Requirements { source })?
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.req_str)
        .collect();
    let interpreter = inspect_interpreter(&python).map_err(CheckError::Inspect)?;
    let python_version = model.mlmodel().map_err(CheckError::Model)?.python_version();
    Ok(check(
        &requirements,
        python_version.as_deref(),
        &interpreter,
        &python,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interpreter(dists: &[(&str, &str)]) -> Interpreter {
        Interpreter {
            python_version: "3.11.7".into(),
            executable: "/x/bin/python".into(),
            prefix: "/x".into(),
            markers: BTreeMap::from(
                [
                    ("implementation_name", "cpython"),
                    ("implementation_version", "3.11.7"),
                    ("os_name", "posix"),
                    ("platform_machine", "x86_64"),
                    ("platform_python_implementation", "CPython"),
                    ("platform_release", "6.1"),
                    ("platform_system", "Linux"),
                    ("platform_version", "#1"),
                    ("python_full_version", "3.11.7"),
                    ("python_version", "3.11"),
                    ("sys_platform", "linux"),
                ]
                .map(|(a, b)| (a.to_string(), b.to_string())),
            ),
            distributions: dists
                .iter()
                .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
                .collect(),
        }
    }

    #[test]
    fn mlflow_skinny_is_mlflow_however_it_is_spelt() {
        for name in ["mlflow", "MLflow", "mlflow-skinny", "mlflow_skinny"] {
            assert!(interpreter(&[(name, "2.9.2")]).has_mlflow(), "{name}");
        }
        assert!(!interpreter(&[("mlflow-tracing", "3.0"), ("numpy", "1")]).has_mlflow());
    }

    #[test]
    fn mlflow_rules() {
        let interp = interpreter(&[
            ("scikit-learn", "1.3.2"),
            ("mlflow", "2.10.0.dev0"),
            ("NumPy", "2.0.0rc1"),
            ("pandas", "2.1.0"),
        ]);
        let requirements: Vec<String> = [
            "scikit_learn==1.3.2",
            "mlflow==2.9.2",
            "numpy>=1.20",
            "pandas<2",
            "missing-package",
            "pywin32==306 ; sys_platform == 'win32'",
            "./local.whl",
            "--extra-index-url https://x",
            "databricks-agents==1.0",
        ]
        .map(String::from)
        .to_vec();
        let report = check(
            &requirements,
            Some("3.8.5"),
            &interp,
            Path::new("/x/bin/python"),
        );
        let text: Vec<String> = report.mismatches.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "numpy (current: 2.0.0rc1, required: numpy>=1.20)",
                "pandas (current: 2.1.0, required: pandas<2)",
                "missing-package (current: uninstalled, required: missing-package)",
            ]
        );
        assert!(report.python_mismatch);
        assert_eq!(report.checked, 5);
    }
}
