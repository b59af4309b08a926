//! `pyfunc-env run MODEL -- predict | serve | COMMAND`.

mod action;

use env_run::LocalRunError;
use env_run::local::LocalRequest;

use action::{Action, Parsed, parse_action};

use crate::cli::RunArgs;
use env_build::Bytecode;

use crate::commands::open_model;
use crate::environment::{build_settings, ensure, env_request, print_created, request_flags};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

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
        input,
    } = parse_action(&args.command)?;
    let launch = match action {
        Action::Help(text) => {
            printer.data(text)?;
            return Ok(ExitStatus::Success);
        }
        Action::Launch(launch) => launch,
    };
    // Before anything is built.
    env_run::input::check_input(input.as_deref(), &args.model.model)?;
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
        let opened = open_model(&args.model.model, settings, printer).await?;
        let local = env_run::prepare_local(&python, &opened.model, &launch, &extra_env).map_err(
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
        let code = env_run::exec(command, &Vec::from_iter(opened.lock_file()))?;
        return Ok(ExitStatus::External(u8::try_from(code).unwrap_or(1)));
    }
    env_run::local::refuse_python(args.python.as_deref())?;
    let mut request = env_request(&args.env, settings)?;
    request.pip_requirements_override = pip_requirements_override;
    let opened = open_model(&args.model.model, settings, printer).await?;
    let bytecode = Bytecode::for_use(args.compile_foreground, &settings.cache_dir);
    // The model's, the cache's and the environment's locks, held while the model runs and
    // passed on to it: no prune, clean or rebuild meanwhile.
    let ready = ensure(
        opened,
        &request,
        &build_settings(&args.env, settings),
        &launch.purpose(bytecode),
        settings,
        printer,
    )
    .await?;
    print_created(&ready.env, &ready.created, printer);
    // The error names the program and where `PATH` starts; no context layer to add. On Unix
    // this returns only on failure; else the model's exit code is ours.
    let code = env_run::exec_in(&ready, &launch, &extra_env)?;
    Ok(ExitStatus::External(u8::try_from(code).unwrap_or(1)))
}
