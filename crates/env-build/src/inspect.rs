//! `inspect`: the environment each of MLflow's env managers would build for a model, keys
//! included, computed the way `create` computes them ([`ModelEnvironment::resolve_with`]).

use env_spec::{EnvManager, ModelDir};

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
}
