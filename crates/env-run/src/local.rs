//! `run --env-manager local`: the model runs in an interpreter as it is (MLflow's `local` env
//! manager), so nothing that builds or changes an environment applies. These rules were the
//! CLI's (`commands/run.rs`) before issue 24.

use std::path::{Path, PathBuf};

use crate::check::Interpreter;

/// Why `--env-manager local` refuses a run. Every one is the caller's to fix (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// `predict -r` changes the environment, and there is none.
    #[error(
        "`--pip-requirements-override` changes the environment pyfunc-env builds; `--env-manager local` builds none (as in MLflow)"
    )]
    PipRequirementsOverride,

    /// No `--python`, and no `python3` on `PATH`.
    #[error("No `python3` on PATH; pass `--python`")]
    NoPython3,

    /// `--install-mlflow` adds to the environment, and there is none.
    #[error(
        "`--install-mlflow` adds mlflow to the environment pyfunc-env builds; `--env-manager local` builds none"
    )]
    InstallMlflow,

    /// A flag that changes how an environment is built.
    #[error(
        "`{flag}` changes how an environment is built; `--env-manager local` builds none and runs `--python` as it is"
    )]
    BuildingFlag {
        /// The flag, as the user spells it.
        flag: String,
    },

    /// `--python` without `--env-manager local`.
    #[error("`--python` applies to `--env-manager local`; environments bring their own Python")]
    PythonWithoutLocal,

    /// The command scores or serves, and the interpreter has no mlflow.
    #[error(
        "mlflow is not installed in `{}`, so it cannot {}. Install it there (`{} -m pip install mlflow{}`) or drop `--env-manager local` to use the model's own environment",
        python.display(),
        purpose.verb(),
        python.display(),
        recorded.as_ref().map(|version| format!("=={version}")).unwrap_or_default()
    )]
    MlflowMissing {
        /// The interpreter.
        python: PathBuf,
        /// What the command does.
        purpose: LocalUse,
        /// The mlflow version the model records.
        recorded: Option<String>,
    },
}

impl LocalError {
    /// Every one is the caller's to fix (exit code 1); the method says so where the CLI
    /// classifies errors.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// What the command does with the interpreter's mlflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalUse {
    /// `run -- predict`.
    Score,
    /// `run -- serve`.
    Serve,
}

impl LocalUse {
    fn verb(self) -> &'static str {
        match self {
            Self::Score => "score",
            Self::Serve => "serve",
        }
    }
}

/// What the caller asked of a `--env-manager local` run.
#[derive(Debug, Clone, Default)]
pub struct LocalRequest {
    /// `--python`; `python3` on `PATH` when `None`.
    pub python: Option<PathBuf>,
    /// Whether requirements override the model's own (`predict -r`).
    pub pip_requirements_override: bool,
    /// Whether `--install-mlflow` was given.
    pub install_mlflow: bool,
    /// The flags given that change how an environment is built, as the user spells them, in
    /// the order to report them.
    pub building_flags: Vec<String>,
}

impl LocalRequest {
    /// The interpreter to run the model in, refusing (in this order) requirement overrides,
    /// a missing `python3`, `--install-mlflow` and the first flag that builds an environment.
    pub fn python(&self) -> Result<PathBuf, LocalError> {
        if self.pip_requirements_override {
            return Err(LocalError::PipRequirementsOverride);
        }
        let python = match &self.python {
            Some(python) => python.clone(),
            None => env_prefix::find_on_path("python3").ok_or(LocalError::NoPython3)?,
        };
        if self.install_mlflow {
            return Err(LocalError::InstallMlflow);
        }
        if let Some(flag) = self.building_flags.first() {
            return Err(LocalError::BuildingFlag { flag: flag.clone() });
        }
        Ok(python)
    }
}

/// A run in a built environment refuses `--python` (`python`): the environment brings its own.
pub fn refuse_python(python: Option<&Path>) -> Result<(), LocalError> {
    match python {
        Some(_) => Err(LocalError::PythonWithoutLocal),
        None => Ok(()),
    }
}

/// Scoring and serving need mlflow in the interpreter (`purpose`; `None` for any other
/// command, which needs nothing). `recorded` is the mlflow version the model records, for the
/// hint.
pub fn require_mlflow(
    interpreter: &Interpreter,
    python: &Path,
    purpose: Option<LocalUse>,
    recorded: Option<String>,
) -> Result<(), LocalError> {
    match purpose {
        Some(purpose) if !interpreter.has_mlflow() => Err(LocalError::MlflowMissing {
            python: python.to_path_buf(),
            purpose,
            recorded,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_refuses_what_builds_an_environment_in_order() {
        let python = PathBuf::from("/usr/bin/python3.11");
        let mut request = LocalRequest {
            python: Some(python.clone()),
            pip_requirements_override: true,
            install_mlflow: true,
            building_flags: vec!["--channel".into(), "--uv".into()],
        };
        let message = |request: &LocalRequest| request.python().unwrap_err().to_string();
        assert!(message(&request).starts_with("`--pip-requirements-override`"));
        request.pip_requirements_override = false;
        assert!(message(&request).starts_with("`--install-mlflow`"));
        request.install_mlflow = false;
        assert_eq!(
            message(&request),
            "`--channel` changes how an environment is built; `--env-manager local` builds none and runs `--python` as it is"
        );
        request.building_flags.clear();
        assert_eq!(request.python().unwrap(), python);
    }

    #[test]
    fn scoring_needs_mlflow_and_names_the_recorded_version() {
        let interpreter = |names: &[&str]| Interpreter {
            python_version: "3.11.7".into(),
            executable: "/p/bin/python".into(),
            prefix: "/p".into(),
            markers: std::collections::BTreeMap::new(),
            distributions: names
                .iter()
                .map(|name| ((*name).to_string(), "1".to_string()))
                .collect(),
        };
        let python = Path::new("/p/bin/python");
        let error = require_mlflow(
            &interpreter(&["numpy"]),
            python,
            Some(LocalUse::Serve),
            Some("2.9.2".into()),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "mlflow is not installed in `/p/bin/python`, so it cannot serve. Install it there (`/p/bin/python -m pip install mlflow==2.9.2`) or drop `--env-manager local` to use the model's own environment"
        );
        require_mlflow(&interpreter(&["numpy"]), python, None, None).unwrap();
        require_mlflow(
            &interpreter(&["mlflow-skinny"]),
            python,
            Some(LocalUse::Score),
            None,
        )
        .unwrap();
    }
}
