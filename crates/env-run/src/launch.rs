//! What `run MODEL -- ...` starts in an environment, as one value: MLflow's scoring
//! (`predict`), its server (`serve`), or any command, each with the variables `--env KEY=VALUE`
//! sets. Building the process and, for `--env-manager local`, the checks MLflow's `local` env
//! manager makes were the CLI's (`commands/run/`) before issue 24.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

#[cfg(doc)]
use crate::local::LocalRequest;
use crate::local::{LocalError, LocalUse};
use crate::{CheckReport, Environment, PredictOptions, RunError, ServeOptions};

/// What to start.
#[derive(Debug, Clone)]
pub enum Launch {
    /// `predict`: score an input with the environment's mlflow.
    Predict(PredictOptions),
    /// `serve`: MLflow's scoring server.
    Serve(ServeOptions),
    /// Any program, with its arguments.
    Command(OsString, Vec<OsString>),
}

impl Launch {
    /// What the launch needs of the interpreter's mlflow: scoring, serving, or nothing.
    #[must_use]
    pub fn mlflow_use(&self) -> Option<LocalUse> {
        match self {
            Self::Predict(_) => Some(LocalUse::Score),
            Self::Serve(_) => Some(LocalUse::Serve),
            Self::Command(..) => None,
        }
    }

    /// What the launch ensures its environment for ([`env_build::ModelEnvironment::ensure`]):
    /// to use it, with mlflow checked when it scores or serves, the bytecode compiled as
    /// `bytecode` says. (Was mapped in the CLI's `commands/run/`.)
    #[must_use]
    pub fn purpose(&self, bytecode: env_build::Bytecode) -> env_build::Purpose {
        let mlflow = self.mlflow_use().map(|usage| match usage {
            LocalUse::Score => env_build::MlflowUse::Score,
            LocalUse::Serve => env_build::MlflowUse::Serve,
        });
        env_build::Purpose::Use { bytecode, mlflow }
    }

    /// The process for the model at `model_root` in `env`, with `vars` set in it.
    #[must_use]
    pub fn command(
        &self,
        env: &Environment,
        model_root: &Path,
        vars: &[(String, String)],
    ) -> Command {
        let mut command = match self {
            Self::Predict(options) => crate::predict_command(env, model_root, options),
            Self::Serve(options) => crate::serve_command(env, model_root, options),
            Self::Command(program, args) => env.command(program, args),
        };
        command.envs(vars.iter().map(|(key, value)| (key, value)));
        command
    }
}

/// Replaces this process with `launch` in the environment `ensure` made ready, with `vars` set
/// in it, handing the process every lock `ensured` holds ([`env_build::Ensured::lock_files`]:
/// the cache's, the environment's and a downloaded model's), so `cache prune` and `cache
/// clean` leave all three alone until the process, not only this one, has exited. Returns
/// only on failure (on Unix), else the command's exit code.
pub fn exec_in(
    ensured: &env_build::Ensured,
    launch: &Launch,
    vars: &[(String, String)],
) -> Result<i32, RunError> {
    let env = Environment::from_prefix(&ensured.created.prefix, ensured.env.variables());
    let command = launch.command(&env, ensured.env.root(), vars);
    crate::exec(command, &ensured.lock_files())
}

/// A `--env-manager local` run: MLflow's dependency-mismatch report (what
/// `mlflow.pyfunc.load_model` would warn about), to show first, then the process
/// ([`LocalRun::into_command`]) for [`crate::exec`].
#[derive(Debug)]
pub struct LocalRun {
    /// The model's requirements against what the interpreter has.
    pub report: CheckReport,
    command: Command,
    missing_mlflow: Option<LocalError>,
}

impl LocalRun {
    /// The process, in the interpreter as it is; an error if it scores or serves and the
    /// interpreter has no mlflow.
    pub fn into_command(self) -> Result<Command, LocalError> {
        match self.missing_mlflow {
            Some(error) => Err(error),
            None => Ok(self.command),
        }
    }
}

/// Why a `--env-manager local` run cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum LocalRunError {
    /// The model's `requirements.txt` cannot be read.
    #[error(transparent)]
    Spec(#[from] env_spec::SpecError),
    /// The interpreter cannot be inspected.
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Prepares `launch` of `model` in `python` (what [`LocalRequest::python`] chose), as
/// MLflow's `local` env manager runs it: the model's requirements checked against the
/// interpreter, and mlflow required for scoring and serving.
pub fn prepare_local(
    python: &Path,
    model: &env_spec::ModelDir,
    launch: &Launch,
    vars: &[(String, String)],
) -> Result<LocalRun, LocalRunError> {
    let env = Environment::system(python);
    let requirements: Vec<String> = model
        .requirements_file("requirements.txt")
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.req_str)
        .collect();
    let interpreter = crate::inspect_interpreter(&env.python)?;
    let mlmodel = model.mlmodel().ok();
    let python_version = mlmodel.as_ref().and_then(env_spec::MlModel::python_version);
    let report = crate::check(
        &requirements,
        python_version.as_deref(),
        &interpreter,
        &env.python,
    );
    let missing_mlflow = crate::local::require_mlflow(
        &interpreter,
        python,
        launch.mlflow_use(),
        mlmodel.and_then(|m| m.mlflow_version()),
    )
    .err();
    Ok(LocalRun {
        report,
        command: launch.command(&env, model.root(), vars),
        missing_mlflow,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_runs_in_the_environment_with_the_given_variables() {
        let env = Environment::system(Path::new("/usr/bin/python3"));
        let launch = Launch::Command("echo".into(), vec!["hi".into()]);
        assert_eq!(launch.mlflow_use(), None);
        let command = launch.command(
            &env,
            Path::new("/models/m"),
            &[("K".to_string(), "v".to_string())],
        );
        assert_eq!(command.get_program(), "echo");
        assert!(
            command
                .get_envs()
                .any(|(key, value)| key == "K" && value == Some("v".as_ref())),
            "{command:?}"
        );
        let predict = Launch::Predict(PredictOptions::default());
        assert_eq!(predict.mlflow_use(), Some(LocalUse::Score));
        let command = predict.command(&env, Path::new("/models/m"), &[]);
        assert_eq!(command.get_program(), "/usr/bin/python3");
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args[2], "/models/m", "{args:?}");
        let serve = Launch::Serve(ServeOptions::default());
        assert_eq!(serve.mlflow_use(), Some(LocalUse::Serve));
        // The environment is ensured for use, mlflow checked only to score or serve.
        let purposes = [&launch, &predict, &serve]
            .map(|launch| launch.purpose(env_build::Bytecode::DuringBuild));
        let mlflow = purposes.map(|purpose| match purpose {
            env_build::Purpose::Use { mlflow, .. } => mlflow,
            other => panic!("{other:?}"),
        });
        let (score, serve) = (env_build::MlflowUse::Score, env_build::MlflowUse::Serve);
        assert_eq!(mlflow, [None, Some(score), Some(serve)]);
    }

    /// The interpreter's packages are checked against the model's requirements, and scoring
    /// needs mlflow where any other command does not (the test runner's `python3` has none).
    #[test]
    fn a_local_run_reports_mismatches_and_needs_mlflow_only_to_score() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("MLmodel"), "flavors: {}\n").unwrap();
        fs_err::write(dir.path().join("requirements.txt"), "nosuchpackage==1.0\n").unwrap();
        let model = env_spec::ModelDir::open(dir.path()).unwrap();
        let python = crate::find_on_path("python3").expect("python3 on PATH");
        let vars = [("K".to_string(), "v".to_string())];
        let local = prepare_local(
            &python,
            &model,
            &Launch::Predict(PredictOptions::default()),
            &vars,
        )
        .unwrap();
        assert_eq!(local.report.checked, 1);
        assert_eq!(local.report.mismatches[0].package, "nosuchpackage");
        assert_eq!(local.report.mismatches[0].installed, None);
        let error = local.into_command().unwrap_err();
        assert!(
            matches!(
                error,
                LocalError::MlflowMissing {
                    purpose: LocalUse::Score,
                    ..
                }
            ),
            "{error:?}"
        );
        let launch = Launch::Command("true".into(), Vec::new());
        let local = prepare_local(&python, &model, &launch, &vars).unwrap();
        assert_eq!(local.into_command().unwrap().get_program(), "true");
    }
}
