//! The flags of the model commands: `create`, `lock`, `run`, `check`, `deps`, `inspect`.

use std::path::PathBuf;

use clap::{Args, ValueEnum, ValueHint};

use super::{EnvArgs, ModelArg};

/// `pyfunc-env lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub env: EnvArgs,
    /// Where to write the lock (default: stdout)
    #[arg(long, short = 'o', value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
}

/// `pyfunc-env run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub env: EnvArgs,
    /// With `--env-manager local`: the interpreter to run with (default: `python3` on PATH)
    #[arg(long, value_hint = ValueHint::ExecutablePath)]
    pub python: Option<PathBuf>,
    /// On a cache miss, compile bytecode before the command starts instead of in the
    /// background (for images and CI steps that snapshot the cache right after)
    #[arg(long, env = crate::EnvVars::PYFUNC_ENV_COMPILE_FOREGROUND, value_parser = clap::builder::FalseyValueParser::new())]
    pub compile_foreground: bool,
    /// `predict ...`, `serve ...`, or any command and its arguments
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<std::ffi::OsString>,
}

/// `pyfunc-env check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// The interpreter to check (default: `python3` on PATH)
    #[arg(long, value_hint = ValueHint::ExecutablePath, conflicts_with = "env")]
    pub python: Option<PathBuf>,
    /// A cached environment to check, by key (see `pyfunc-env cache list`)
    #[arg(long, value_name = "KEY")]
    pub env: Option<String>,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// Exit with 1 when anything differs
    #[arg(long)]
    pub strict: bool,
}

/// `pyfunc-env create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Model directories (one or more; their environments are deduplicated by key)
    #[arg(value_name = "MODEL_DIR", value_hint = ValueHint::DirPath, required_unless_present = "from")]
    pub models: Vec<PathBuf>,
    /// Also build the models listed in this file, one directory per line (`#` at the start of a
    /// line or after whitespace starts a comment)
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub from: Option<PathBuf>,
    /// How many environments to build at once
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    #[command(flatten)]
    pub env: EnvArgs,
    /// Print the result as JSON on stdout (key, prefix, python, cache hit, timings)
    #[arg(long)]
    pub json: bool,
    /// Build nothing: print each model's environment key and prefix, and whether it is cached
    #[arg(long)]
    pub dry_run: bool,
}

/// `deps --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DepsFormat {
    /// pip requirements: `requirements.txt`, or the `pip:` list of the conda file.
    Pip,
    /// The conda environment file named by the MLmodel.
    Conda,
    /// The canonical environment spec with its key (schema: README, "deps --format json").
    Json,
}

/// `pyfunc-env deps`.
#[derive(Debug, Args)]
pub struct DepsArgs {
    #[command(flatten)]
    pub model: ModelArg,
    /// What to print
    #[arg(long, short = 'f', value_enum, default_value_t = DepsFormat::Pip)]
    pub format: DepsFormat,
    /// Write to this file instead of stdout
    #[arg(long, short = 'o', value_hint = ValueHint::FilePath)]
    pub output: Option<PathBuf>,
    /// The env manager whose spec `--format json` shows (default: MLflow's choice for the model)
    #[arg(long, value_enum)]
    pub env_manager: Option<env_spec::EnvManagerChoice>,
}

/// `pyfunc-env inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArg,
}
