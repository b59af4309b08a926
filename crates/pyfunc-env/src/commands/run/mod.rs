//! `pyfunc-env run MODEL -- predict | serve | COMMAND`.

mod action;

#[cfg(test)]
use std::ffi::OsString;

use env_run::Environment;
use env_run::local::{LocalRequest, LocalUse};

use action::{Action, Parsed, parse_action};

use crate::cli::{EnvManagerArg, RunArgs};
use env_solve::{Bytecode, MlflowUse, Purpose};

use crate::commands::open_model;
use crate::environment::{build_settings, ensure, env_request, print_created};
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// A missing input file is reported before anything is built ([`env_run::input::check_input`]).
fn check_missing_input(action: &Action, model: &str) -> anyhow::Result<()> {
    let Action::Predict(_, Some(input)) = action else {
        return Ok(());
    };
    // A model URI (`models:/...`) is not opened here: that may need the network.
    let model = env_source::ModelUri::local_path(model);
    env_run::input::check_input(Some(input), model.as_deref())?;
    Ok(())
}

/// Runs `run`. On Unix this does not return on success: the process becomes the command.
pub async fn run(
    args: &RunArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let Parsed {
        action,
        env: extra_env,
        pip_requirements_override,
    } = parse_action(&args.command)?;
    if let Action::Help(text) = &action {
        printer.data(text)?;
        return Ok(ExitStatus::Success);
    }
    check_missing_input(&action, &args.model.model)?;
    if args.env.env_manager == Some(EnvManagerArg::Local) {
        let env_flags = &args.env;
        let building = [
            ("--python-version", env_flags.python_version.is_some()),
            ("--channel", !env_flags.channels.is_empty()),
            ("--mirror", !env_flags.mirrors.is_empty()),
            ("--no-compile", env_flags.no_compile),
            ("--reinstall", env_flags.reinstall),
            ("--exclude-newer", env_flags.exclude_newer.is_some()),
            ("--locked", env_flags.locked.is_some()),
            ("--uv", env_flags.uv.is_some()),
            ("--no-compat-constraints", env_flags.no_compat_constraints),
            (
                "--python-source",
                env_flags.python_source != crate::cli::PythonSourceArg::Auto,
            ),
        ];
        let python = LocalRequest {
            python: args.python.clone(),
            pip_requirements_override: !pip_requirements_override.is_empty(),
            install_mlflow: env_flags.install_mlflow.is_some(),
            building_flags: building
                .iter()
                .filter(|(_, given)| *given)
                .map(|(flag, _)| (*flag).to_string())
                .collect(),
        }
        .python()?;
        let (model, model_lock) = open_model(&args.model.model, settings, printer)
            .await?
            .into_model();
        let env = Environment::system(&python);
        let interpreter = report_mismatches(&model, &env, printer)?;
        let purpose = match action {
            Action::Predict(..) => Some(LocalUse::Score),
            Action::Serve(_) => Some(LocalUse::Serve),
            Action::Command(..) | Action::Help(_) => None,
        };
        env_run::local::require_mlflow(
            &interpreter,
            &python,
            purpose,
            model.mlmodel().ok().and_then(|m| m.mlflow_version()),
        )?;
        let mut command = build(&action, &env, model.root());
        command.envs(extra_env);
        // The model's lock goes on with the command: `cache prune` keeps a downloaded model
        // while it runs from it.
        let inherit: Vec<&std::fs::File> = model_lock.iter().filter_map(|l| l.file()).collect();
        return exec(command, &inherit, printer);
    }
    if args.python.is_some() {
        anyhow::bail!(UserError::new(
            "`--python` applies to `--env-manager local`; environments bring their own Python"
        ));
    }
    let env_args = if pip_requirements_override.is_empty() {
        std::borrow::Cow::Borrowed(&args.env)
    } else {
        let mut env_args = args.env.clone();
        env_args.pip_requirements_override = pip_requirements_override;
        std::borrow::Cow::Owned(env_args)
    };
    let request = env_request(&env_args, settings)?;
    let (model, model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let bytecode = Bytecode::for_use(args.compile_foreground, &settings.cache_dir);
    let mlflow = match action {
        Action::Predict(..) => Some(MlflowUse::Score),
        Action::Serve(_) => Some(MlflowUse::Serve),
        Action::Command(..) | Action::Help(_) => None,
    };
    // Held while the model runs, and passed on to it: no prune or rebuild meanwhile.
    let ready = ensure(
        model,
        &request,
        &build_settings(&env_args, settings),
        &Purpose::Use { bytecode, mlflow },
        settings,
        printer,
    )
    .await?;
    let env = &ready.env;
    print_created(env, &ready.created, printer);
    let environment = Environment::from_prefix(&ready.created.prefix, env.variables());
    let mut command = build(&action, &environment, env.root());
    command.envs(extra_env);
    // The environment's locks and the downloaded model's go on with the command: `cache
    // prune` removes neither while it runs.
    let mut inherit = ready.lock_files();
    inherit.extend(model_lock.iter().filter_map(|l| l.file()));
    exec(command, &inherit, printer)
}

fn build(
    action: &Action,
    env: &Environment,
    model_root: &std::path::Path,
) -> std::process::Command {
    match action {
        Action::Predict(options, _) => env_run::predict_command(env, model_root, options),
        Action::Serve(options) => env_run::serve_command(env, model_root, options),
        Action::Command(program, args) => env.command(program, args),
        Action::Help(_) => unreachable!("help is printed before anything is built"),
    }
}

fn exec(
    command: std::process::Command,
    inherit: &[&std::fs::File],
    _printer: Printer,
) -> anyhow::Result<ExitStatus> {
    // The error names the program and where `PATH` starts; no context layer to add.
    match env_run::exec(command, inherit) {
        Ok(code) => Ok(ExitStatus::External(u8::try_from(code).unwrap_or(1))),
        Err(err) => Err(anyhow::Error::new(err)),
    }
}

/// Prints MLflow's dependency-mismatch warning for `--env-manager local`; returns what the
/// interpreter has.
fn report_mismatches(
    model: &env_spec::ModelDir,
    env: &Environment,
    printer: Printer,
) -> anyhow::Result<env_run::Interpreter> {
    let requirements: Vec<String> = model
        .requirements_file("requirements.txt")
        .transpose()?
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.req_str)
        .collect();
    let interpreter = env_run::inspect_interpreter(&env.python)?;
    let python_version = model.mlmodel().ok().and_then(|m| m.python_version());
    let report = env_run::check(
        &requirements,
        python_version.as_deref(),
        &interpreter,
        &env.python,
    );
    crate::commands::check::warn(&report, printer);
    Ok(interpreter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(words: &[&str]) -> anyhow::Result<Action> {
        let words: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse_action(&words).map(|parsed| parsed.action)
    }

    #[test]
    fn a_missing_input_and_a_missing_model_are_both_reported() {
        let dir = tempfile::tempdir().unwrap();
        let predict = action(&["predict", "-i", "nosuch.json"]).unwrap();
        let missing_model = dir.path().join("no-model");
        let text = check_missing_input(&predict, missing_model.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("Input file `nosuch.json` does not exist"),
            "{text}"
        );
        assert!(text.contains("no-model"), "{text}");
        // With the model there, only the input is named, as before.
        let model = dir.path().join("model");
        fs_err::create_dir_all(&model).unwrap();
        fs_err::write(model.join("MLmodel"), "flavors: {}\n").unwrap();
        let text = check_missing_input(&predict, model.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(text, "Input file `nosuch.json` does not exist");
        // A model URI is not fetched to report a missing input.
        let text = check_missing_input(&predict, "models:/iris@champion")
            .unwrap_err()
            .to_string();
        assert_eq!(text, "Input file `nosuch.json` does not exist");
    }
}
