//! What follows `run MODEL --`: `predict` and `serve` with MLflow's own flags (`mlflow models
//! predict`, `mlflow models serve`), or any command.

use std::ffi::OsString;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use env_run::{Launch, PredictOptions, ServeOptions};

use crate::report::UserError;

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

pub(super) enum Action {
    /// `predict --help`, `serve --help`: the help text, for stdout.
    Help(String),
    /// `predict`, `serve` or a command.
    Launch(Launch),
}

/// A clap error of `predict`/`serve`: help is not an error (stdout, exit 0); anything else is
/// the caller's to fix.
fn subcommand_error(error: &clap::Error) -> anyhow::Result<Parsed> {
    match error.kind() {
        clap::error::ErrorKind::DisplayHelp => Ok(Parsed {
            action: Action::Help(error.render().to_string()),
            env: Vec::new(),
            pip_requirements_override: Vec::new(),
            input: None,
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
pub(super) struct Parsed {
    pub(super) action: Action,
    /// `--env KEY=VALUE`: set in the model's process.
    pub(super) env: Vec<(String, String)>,
    /// `predict -r`: requirements replacing the model's own.
    pub(super) pip_requirements_override: Vec<String>,
    /// `predict -i` as given (`env_run::input::check_input` checks it).
    pub(super) input: Option<PathBuf>,
}

pub(super) fn parse_action(command: &[OsString]) -> anyhow::Result<Parsed> {
    let (first, rest) = command
        .split_first()
        .context("No command given after `--`")?;
    let mut env = Vec::new();
    let mut pip_requirements_override = Vec::new();
    let mut input = None;
    let launch = match first.to_str() {
        Some("predict") => {
            let cli = match PredictCli::try_parse_from(rest) {
                Ok(cli) => cli,
                Err(error) => return subcommand_error(&error),
            };
            if let Some(params) = &cli.params {
                env_run::input::check_params(params)?;
            }
            env = cli.env;
            if let Some(text) = cli.pip_requirements_override {
                pip_requirements_override = env_run::input::split_requirements(&text);
            }
            let options = PredictOptions::from_flags(
                cli.input_path.as_deref(),
                cli.output_path,
                cli.content_type,
                cli.params,
            );
            input = cli.input_path;
            Launch::Predict(options)
        }
        Some("serve") => {
            let cli = match ServeCli::try_parse_from(rest) {
                Ok(cli) => cli,
                Err(error) => return subcommand_error(&error),
            };
            env = cli.env;
            Launch::Serve(ServeOptions {
                host: cli.host,
                port: cli.port,
                workers: cli.workers,
                timeout: cli.timeout,
            })
        }
        _ => Launch::Command(first.clone(), rest.to_vec()),
    };
    Ok(Parsed {
        action: Action::Launch(launch),
        env,
        pip_requirements_override,
        input,
    })
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
        let Action::Launch(Launch::Predict(options)) = parsed.action else {
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
