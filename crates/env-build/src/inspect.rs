//! `inspect`: the environment each of MLflow's env managers would build for a model, keys
//! included, computed the way `create` computes them ([`ModelEnvironment::resolve_with`]).

use std::path::PathBuf;

use env_spec::{EnvManager, ModelDir, Warning};

use crate::{EnvError, EnvRequest, ModelEnvironment, SolveError};

/// The env managers `inspect` shows, in its order; `uv` follows when the model has a `uv.lock`
/// (without one it builds the virtualenv environment).
pub const MANAGERS: [EnvManager; 2] = [EnvManager::Virtualenv, EnvManager::Conda];

/// One env manager's environment, or why it cannot be built.
pub type ManagerEnvironment = (EnvManager, Result<ModelEnvironment, EnvError>);

/// For each of [`MANAGERS`], the environment `create --env-manager MANAGER` would build with
/// `request` (whose `manager` is replaced), or why it cannot be built. The machine's virtual
/// packages are detected once; failing to detect them is the only error.
pub fn environments_by_manager(
    model: &ModelDir,
    request: &EnvRequest,
) -> Result<Vec<ManagerEnvironment>, SolveError> {
    let virtual_packages = crate::context::detect_virtual_packages()?;
    let mut managers = MANAGERS.to_vec();
    if model.fs().is_file(env_spec::uv_project::UV_LOCK_FILE) {
        managers.push(EnvManager::Uv);
    }
    Ok(managers
        .into_iter()
        .map(|manager| {
            let request = EnvRequest {
                manager: Some(manager),
                ..request.clone()
            };
            let environment =
                ModelEnvironment::resolve_with(model.clone(), &request, virtual_packages.clone());
            (manager, environment)
        })
        .collect())
}

/// What `inspect` shows of a model's environments: each env manager's, as `create
/// --env-manager MANAGER` with default flags would build it, and which one is the default.
#[derive(Debug)]
pub struct Inspection {
    /// The model's default env manager (`create` without `--env-manager`).
    pub default: EnvManager,
    /// Per [`environments_by_manager`].
    pub environments: Vec<ManagerEnvironment>,
}

impl Inspection {
    /// `model`'s environments under default flags; `uv` is the uv binary the settings name.
    ///
    /// # Errors
    /// The machine's virtual packages cannot be detected.
    pub fn of(model: &ModelDir, uv: Option<PathBuf>) -> Result<Self, SolveError> {
        let request = EnvRequest {
            uv,
            ..EnvRequest::default()
        };
        Ok(Self {
            default: model.default_env_manager(),
            environments: environments_by_manager(model, &request)?,
        })
    }

    /// The warnings of the environments that resolve, each once, in order.
    #[must_use]
    pub fn warnings(&self) -> Vec<&Warning> {
        let mut warnings: Vec<&Warning> = Vec::new();
        for (_, environment) in &self.environments {
            for warning in environment.iter().flat_map(|env| &env.resolved.warnings) {
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
            }
        }
        warnings
    }

    /// Why the default env manager's environment cannot be built, if it cannot: then the model
    /// is bad input, however well the other managers do.
    #[must_use]
    pub fn into_default_error(self) -> Option<DefaultUnbuildable> {
        let default = self.default;
        self.environments
            .into_iter()
            .find_map(|(manager, environment)| environment.err().filter(|_| manager == default))
            .map(|error| DefaultUnbuildable {
                manager: default,
                error,
            })
    }
}

/// The model's own error in `error`: the spec's, without the layer that names the model and
/// manager (which `inspect` shows next to it already).
#[must_use]
pub fn model_error(error: &EnvError) -> &(dyn std::error::Error + 'static) {
    match error {
        EnvError::Spec { source, .. } => source,
        other => other,
    }
}

/// The model's default environment cannot be built (`inspect` still shows the others).
#[derive(Debug)]
pub struct DefaultUnbuildable {
    /// The default env manager.
    pub manager: EnvManager,
    /// Why (its cause is [`model_error`] of it).
    pub error: EnvError,
}

impl std::fmt::Display for DefaultUnbuildable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "The model's default ({}) environment cannot be built",
            self.manager
        )
    }
}

impl std::error::Error for DefaultUnbuildable {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(model_error(&self.error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_manager_gets_its_own_environment_and_errors_stay_per_manager() {
        let dir = tempfile::tempdir().unwrap();
        // A conda.yaml only: the conda environment resolves; virtualenv derives its spec from
        // the conda file's pip list, and a malformed python_env.yaml fails only virtualenv.
        fs_err::write(
            dir.path().join("MLmodel"),
            "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: m\n",
        )
        .unwrap();
        fs_err::write(
            dir.path().join("conda.yaml"),
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n- pip\n",
        )
        .unwrap();
        fs_err::write(
            dir.path().join("python_env.yaml"),
            "python: [not, a, version]\n",
        )
        .unwrap();
        let model = ModelDir::open(dir.path()).unwrap();
        let environments = environments_by_manager(&model, &EnvRequest::default()).unwrap();
        let managers: Vec<EnvManager> = environments.iter().map(|(m, _)| *m).collect();
        assert_eq!(managers, MANAGERS);
        let (_, virtualenv) = &environments[0];
        assert!(virtualenv.is_err(), "{virtualenv:?}");
        let (_, conda) = &environments[1];
        let conda = conda.as_ref().unwrap();
        assert_eq!(conda.manager, EnvManager::Conda);
        // The same key `create --env-manager conda` computes.
        let request = EnvRequest {
            manager: Some(EnvManager::Conda),
            ..EnvRequest::default()
        };
        assert_eq!(
            ModelEnvironment::resolve(model.clone(), &request)
                .unwrap()
                .key,
            conda.key
        );
    }

    #[test]
    fn a_shared_warning_counts_once_and_the_default_managers_error_is_the_models() {
        let dir = tempfile::tempdir().unwrap();
        // `python_version: 3.10` (a YAML float) warns in both environments.
        fs_err::write(
            dir.path().join("MLmodel"),
            "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: m\n    python_version: 3.10\n",
        )
        .unwrap();
        fs_err::write(
            dir.path().join("conda.yaml"),
            "channels: [conda-forge]\ndependencies:\n- python=3.10.13\n- pip\n",
        )
        .unwrap();
        let python_env = dir.path().join("python_env.yaml");
        fs_err::write(&python_env, "python: 3.10.13\ndependencies: [numpy]\n").unwrap();
        let model = ModelDir::open(dir.path()).unwrap();
        let inspection = Inspection::of(&model, None).unwrap();
        assert_eq!(inspection.default, EnvManager::Virtualenv);
        assert!(inspection.environments.iter().all(|(_, env)| env.is_ok()));
        let warnings = inspection.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(inspection.into_default_error().is_none());

        fs_err::write(&python_env, "python: [not, a, version]\n").unwrap();
        let model = ModelDir::open(dir.path()).unwrap();
        let error = Inspection::of(&model, None)
            .unwrap()
            .into_default_error()
            .unwrap();
        assert_eq!(
            error.to_string(),
            "The model's default (virtualenv) environment cannot be built"
        );
        let cause = std::error::Error::source(&error).unwrap();
        assert!(
            cause.downcast_ref::<env_spec::SpecError>().is_some(),
            "{cause}"
        );
    }
}
