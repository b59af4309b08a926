//! `pyfunc-env run MODEL -- predict | serve | COMMAND`.

mod action;

#[cfg(test)]
use std::ffi::OsString;

use env_run::local::{LocalRequest, LocalUse};
use env_run::{Environment, LocalRunError};

use action::{Action, Parsed, parse_action};

use crate::cli::RunArgs;
use env_build::{Bytecode, MlflowUse, Purpose};

use crate::commands::open_model;
use crate::environment::{build_settings, ensure, env_request, print_created, request_flags};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// A missing input file is reported before anything is built ([`env_run::input::check_input`]).
fn check_missing_input(missing_input: Option<&std::path::Path>, model: &str) -> anyhow::Result<()> {
    let Some(input) = missing_input else {
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
        missing_input,
    } = parse_action(&args.command)?;
    let launch = match action {
        Action::Help(text) => {
            printer.data(text)?;
            return Ok(ExitStatus::Success);
        }
        Action::Launch(launch) => launch,
    };
    check_missing_input(missing_input.as_deref(), &args.model.model)?;
    if args.env.env_manager == Some(env_spec::EnvManagerChoice::Local) {
        let flags = request_flags(&args.env, settings);
        // The request's rules are checked before the model is opened (a download may need
        // the network).
        let python = LocalRequest {
            python: args.python.clone(),
            pip_requirements_override: !pip_requirements_override.is_empty(),
            install_mlflow: flags.install_mlflow.is_some(),
            building_flags: flags.building_flags(args.env.reinstall),
        }
        .python()?;
        let (model, model_lock) = open_model(&args.model.model, settings, printer)
            .await?
            .into_model();
        let local = env_run::prepare_local(&python, &model, &launch, &extra_env).map_err(
            // Each library error as itself, so the report shows its snippet and hint.
            |error| match error {
                LocalRunError::Spec(error) => anyhow::Error::new(error),
                LocalRunError::Run(error) => anyhow::Error::new(error),
            },
        )?;
        for warning in local.report.mlflow_warnings() {
            printer.warn(warning);
        }
        let command = local.into_command()?;
        // The model's lock goes on with the command: `cache prune` keeps a downloaded model
        // while it runs from it.
        let inherit: Vec<&std::fs::File> = model_lock.iter().filter_map(|l| l.file()).collect();
        return exec(command, &inherit);
    }
    env_run::local::refuse_python(args.python.as_deref())?;
    let mut request = env_request(&args.env, settings)?;
    request.pip_requirements_override = pip_requirements_override;
    let (model, model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    let bytecode = Bytecode::for_use(args.compile_foreground, &settings.cache_dir);
    let mlflow = launch.mlflow_use().map(|usage| match usage {
        LocalUse::Score => MlflowUse::Score,
        LocalUse::Serve => MlflowUse::Serve,
    });
    // Held while the model runs, and passed on to it: no prune or rebuild meanwhile.
    let ready = ensure(
        model,
        &request,
        &build_settings(&args.env, settings),
        &Purpose::Use { bytecode, mlflow },
        settings,
        printer,
    )
    .await?;
    let env = &ready.env;
    print_created(env, &ready.created, printer);
    let environment = Environment::from_prefix(&ready.created.prefix, env.variables());
    let command = launch.command(&environment, env.root(), &extra_env);
    // The environment's locks and the downloaded model's go on with the command: `cache
    // prune` removes neither while it runs.
    let mut inherit = ready.lock_files();
    inherit.extend(model_lock.iter().filter_map(|l| l.file()));
    exec(command, &inherit)
}

/// Replaces this process with `command` ([`env_run::exec`]); the model's exit code is ours.
fn exec(command: std::process::Command, inherit: &[&std::fs::File]) -> anyhow::Result<ExitStatus> {
    // The error names the program and where `PATH` starts; no context layer to add.
    let code = env_run::exec(command, inherit)?;
    Ok(ExitStatus::External(u8::try_from(code).unwrap_or(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn missing_input(words: &[&str]) -> Option<std::path::PathBuf> {
        let words: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse_action(&words).unwrap().missing_input
    }

    #[test]
    fn a_missing_input_and_a_missing_model_are_both_reported() {
        let dir = tempfile::tempdir().unwrap();
        let predict = missing_input(&["predict", "-i", "nosuch.json"]);
        let predict = predict.as_deref();
        let missing_model = dir.path().join("no-model");
        let text = check_missing_input(predict, missing_model.to_str().unwrap())
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
        let text = check_missing_input(predict, model.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(text, "Input file `nosuch.json` does not exist");
        // A model URI is not fetched to report a missing input.
        let text = check_missing_input(predict, "models:/iris@champion")
            .unwrap_err()
            .to_string();
        assert_eq!(text, "Input file `nosuch.json` does not exist");
    }
}
