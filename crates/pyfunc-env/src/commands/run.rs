//! `pyfunc-env run MODEL -- predict | serve | COMMAND`.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use env_run::{Environment, PredictOptions, ServeOptions};

use crate::cli::{EnvManagerArg, RunArgs};
use env_solve::{Bytecode, MlflowUse, Purpose};

use crate::commands::create::{build_settings, ensure, env_request, print_created};
use crate::commands::open_model;
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// `run -- predict` options (MLflow's `mlflow models predict` flags).
#[derive(Debug, Parser)]
#[command(name = "predict", no_binary_name = true, disable_version_flag = true)]
struct PredictCli {
    /// Input file (default: stdin)
    #[arg(short = 'i', long = "input-path")]
    input_path: Option<PathBuf>,
    /// Output file (default: stdout)
    #[arg(short = 'o', long = "output-path")]
    output_path: Option<PathBuf>,
    /// Input format
    #[arg(short = 't', long = "content-type", default_value = "json", value_parser = ["json", "csv", "parquet"])]
    content_type: String,
    /// Inference params as a JSON object, merged into the input's `params`
    #[arg(long)]
    params: Option<String>,
    /// Requirements that replace the model's own, comma-separated (`x==1.0,y==2.0`); they
    /// change the environment, so it gets its own key
    #[arg(
        short = 'r',
        long = "pip-requirements-override",
        value_name = "REQUIREMENTS"
    )]
    pip_requirements_override: Option<String>,
    /// Set an environment variable for the model (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
}

/// MLflow's `KeyValueType`: split at the first `=`.
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "{text:?} is not a valid key value pair, expecting `key=value`"
        )),
    }
}

/// `run -- serve` options (MLflow's `mlflow models serve` flags).
#[derive(Debug, Parser)]
// `-h` is `--host`, as in `mlflow models serve`; help stays available as `--help`.
#[command(
    name = "serve",
    no_binary_name = true,
    disable_version_flag = true,
    disable_help_flag = true
)]
struct ServeCli {
    /// Print help
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Address to bind [default: `MLFLOW_HOST`, else 127.0.0.1, which keeps the server local]
    #[arg(short = 'h', long)]
    host: Option<String>,
    /// Port [default: `MLFLOW_PORT`, else 5000]
    #[arg(short = 'p', long)]
    port: Option<u16>,
    /// Worker processes [default: `MLFLOW_MODELS_WORKERS` (`MLFLOW_WORKERS` for MLflow 1.x
    /// and 2.x before 2.21), else 1]
    #[arg(short = 'w', long)]
    workers: Option<u32>,
    /// Request timeout in seconds [default: `MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`, else 60]
    #[arg(short = 't', long)]
    timeout: Option<u32>,
    /// Set an environment variable for the server (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    env: Vec<(String, String)>,
}

enum Action {
    /// `predict --help`, `serve --help`: the help text, for stdout.
    Help(String),
    /// `predict`, and the input file as given when it does not exist.
    Predict(PredictOptions, Option<PathBuf>),
    Serve(ServeOptions),
    Command(OsString, Vec<OsString>),
}

/// A clap error of `predict`/`serve`: help is not an error (stdout, exit 0); anything else is
/// the caller's to fix.
fn subcommand_error(error: &clap::Error) -> anyhow::Result<Parsed> {
    match error.kind() {
        clap::error::ErrorKind::DisplayHelp => Ok(Parsed {
            action: Action::Help(error.render().to_string()),
            env: Vec::new(),
            pip_requirements_override: Vec::new(),
        }),
        // clap's own `error: ` prefix would double ours.
        _ => {
            let text = error.to_string();
            let text = text.strip_prefix("error: ").unwrap_or(&text).trim_end();
            Err(UserError::new(text).into())
        }
    }
}

/// What follows `--`: the action, and what MLflow's flags add around it.
struct Parsed {
    action: Action,
    /// `--env KEY=VALUE`: set in the model's process.
    env: Vec<(String, String)>,
    /// `predict -r`: requirements replacing the model's own.
    pip_requirements_override: Vec<String>,
}

fn parse_action(command: &[OsString]) -> anyhow::Result<Parsed> {
    let (first, rest) = command
        .split_first()
        .context("No command given after `--`")?;
    let mut env = Vec::new();
    let mut pip_requirements_override = Vec::new();
    let action = match first.to_str() {
        Some("predict") => {
            let cli = match PredictCli::try_parse_from(rest) {
                Ok(cli) => cli,
                Err(error) => return subcommand_error(&error),
            };
            if let Some(params) = &cli.params {
                let value: serde_json::Value = serde_json::from_str(params)
                    .map_err(|e| UserError::new(format!("`--params` is not valid JSON: {e}")))?;
                if !value.is_object() {
                    anyhow::bail!(UserError::new(
                        "`--params` must be a JSON object, e.g. '{\"temperature\": 0.5}'"
                    ));
                }
            }
            // `-i -` is stdin, as no `-i` is.
            let input_path = cli.input_path.filter(|p| p.as_os_str() != "-");
            let missing_input = input_path.clone().filter(|input| !input.is_file());
            env = cli.env;
            if let Some(text) = cli.pip_requirements_override {
                pip_requirements_override = text
                    .split(',')
                    .map(str::trim)
                    .filter(|r| !r.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            Action::Predict(
                PredictOptions {
                    input: input_path.map(|p| std::path::absolute(&p).unwrap_or(p)),
                    output: cli
                        .output_path
                        .map(|p| std::path::absolute(&p).unwrap_or(p)),
                    content_type: cli.content_type,
                    params: cli.params,
                },
                missing_input,
            )
        }
        Some("serve") => {
            let cli = match ServeCli::try_parse_from(rest) {
                Ok(cli) => cli,
                Err(error) => return subcommand_error(&error),
            };
            env = cli.env;
            Action::Serve(ServeOptions {
                host: cli.host,
                port: cli.port,
                workers: cli.workers,
                timeout: cli.timeout,
            })
        }
        _ => Action::Command(first.clone(), rest.to_vec()),
    };
    Ok(Parsed {
        action,
        env,
        pip_requirements_override,
    })
}

/// A missing input file is ours to report, before anything is built; when the model cannot be
/// read either, both problems are named, not only the first one found.
fn check_missing_input(action: &Action, model: &str) -> anyhow::Result<()> {
    let Action::Predict(_, Some(input)) = action else {
        return Ok(());
    };
    let input = format!("Input file `{}` does not exist", input.display());
    // A model URI (`models:/...`) is not opened here: that may need the network.
    let Some(model) = env_source::ModelUri::local_path(model) else {
        return Err(UserError::new(input).into());
    };
    match env_spec::ModelDir::open(&model) {
        Ok(_) => Err(UserError::new(input).into()),
        Err(error) => Err(UserError::new(format!(
            "{input}, and the model at `{}` cannot be read: {}",
            model.display(),
            crate::report::shorten_lines(&error.to_string())
        ))
        .into()),
    }
}

fn find_python3() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("python3"))
        .find(|p| p.is_file())
        .ok_or_else(|| UserError::new("No `python3` on PATH; pass `--python`").into())
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
        if !pip_requirements_override.is_empty() {
            anyhow::bail!(UserError::new(
                "`--pip-requirements-override` changes the environment pyfunc-env builds; `--env-manager local` builds none (as in MLflow)"
            ));
        }
        let python = match &args.python {
            Some(python) => python.clone(),
            None => find_python3()?,
        };
        if args.env.install_mlflow.is_some() {
            anyhow::bail!(UserError::new(
                "`--install-mlflow` adds mlflow to the environment pyfunc-env builds; `--env-manager local` builds none"
            ));
        }
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
        if let Some((flag, _)) = building.iter().find(|(_, given)| *given) {
            anyhow::bail!(UserError::new(format!(
                "`{flag}` changes how an environment is built; `--env-manager local` builds none and runs `--python` as it is"
            )));
        }
        let (model, model_lock) = open_model(&args.model.model, settings, printer)
            .await?
            .into_model();
        let env = Environment::system(&python);
        let interpreter = report_mismatches(&model, &env, printer)?;
        if matches!(action, Action::Predict(..) | Action::Serve(_))
            && !interpreter.distributions.keys().any(|name| {
                name.eq_ignore_ascii_case("mlflow")
                    || name.eq_ignore_ascii_case("mlflow-skinny")
                    || name.eq_ignore_ascii_case("mlflow_skinny")
            })
        {
            let version = model.mlmodel().ok().and_then(|m| m.mlflow_version());
            anyhow::bail!(UserError::new(format!(
                "mlflow is not installed in `{}`, so it cannot {}. Install it there (`{} -m pip install mlflow{}`) or drop `--env-manager local` to use the model's own environment",
                python.display(),
                if matches!(action, Action::Predict(..)) {
                    "score"
                } else {
                    "serve"
                },
                python.display(),
                version.map(|v| format!("=={v}")).unwrap_or_default()
            )));
        }
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
    let bytecode = if args.compile_foreground {
        Bytecode::DuringBuild
    } else {
        Bytecode::InBackground {
            program: std::env::current_exe().unwrap_or_else(|_| "pyfunc-env".into()),
            args: vec![
                "--cache-dir".into(),
                settings.cache_dir.clone().into_os_string(),
                "__compile-bytecode".into(),
            ],
        }
    };
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
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn predict_and_serve_options_are_valid_clap_definitions() {
        PredictCli::command().debug_assert();
        ServeCli::command().debug_assert();
    }

    #[test]
    fn serve_takes_mlflow_short_options() {
        let cli = ServeCli::try_parse_from([
            "-h", "0.0.0.0", "-p", "8080", "-w", "2", "-t", "9", "--env", "A=b=c",
        ])
        .unwrap();
        assert_eq!(
            (cli.host.as_deref(), cli.port, cli.workers, cli.timeout),
            (Some("0.0.0.0"), Some(8080), Some(2), Some(9))
        );
        assert_eq!(cli.env, [("A".to_string(), "b=c".to_string())]);
        // Not given: MLflow's defaults apply inside the environment (its variables, then
        // 127.0.0.1:5000).
        let cli = ServeCli::try_parse_from(Vec::<String>::new()).unwrap();
        assert_eq!((cli.host, cli.port), (None, None));
        assert!(ServeCli::try_parse_from(["--env", "NOEQUALS"]).is_err());
        let help = ServeCli::try_parse_from(["--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }

    fn action(words: &[&str]) -> anyhow::Result<Action> {
        let words: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse_action(&words).map(|parsed| parsed.action)
    }

    #[test]
    fn predict_and_serve_help_is_help_not_an_error() {
        for words in [["predict", "--help"], ["serve", "--help"]] {
            let Ok(Action::Help(text)) = action(&words) else {
                panic!("{words:?} is not help");
            };
            assert!(
                text.starts_with("Usage:") || text.contains("\nUsage:"),
                "{text}"
            );
            assert!(!text.contains("error:"), "{text}");
        }
        // A bad flag stays an error.
        assert!(action(&["predict", "--nosuch"]).is_err());
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

    #[test]
    fn predict_takes_mlflow_overrides_env_and_stdin() {
        let parsed = parse_action(
            &[
                "predict",
                "-i",
                "-",
                "-r",
                "x==1.0, y==2.0",
                "--env",
                "K=v",
                "--env",
                "E=",
            ]
            .map(OsString::from),
        )
        .unwrap();
        let Action::Predict(options, _) = parsed.action else {
            panic!("not predict")
        };
        assert_eq!(options.input, None);
        assert_eq!(parsed.pip_requirements_override, ["x==1.0", "y==2.0"]);
        assert_eq!(
            parsed.env,
            [("K".into(), "v".into()), ("E".into(), String::new())]
        );
    }
}
