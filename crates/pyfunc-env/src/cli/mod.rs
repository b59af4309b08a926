//! Command-line interface: clap types only. Doc comments are the help text.
#![expect(
    clippy::doc_markdown,
    reason = "doc comments here are `--help` text, not rustdoc"
)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueHint};
use env_settings::ColorChoice;

use crate::env_vars::EnvVars;
use crate::printer::Verbosity;

/// `--version`: the version, and the commit it was built from when known (see `build.rs`).
pub const VERSION: &str = env!("PYFUNC_ENV_VERSION_STRING");

mod cache;
mod env;
mod model;
mod pack;

pub use cache::*;
pub use env::*;
pub use model::*;
pub use pack::*;

/// Give an MLflow pyfunc model the Python environment it declares, and score it there.
///
/// pyfunc-env reads a saved MLflow model's environment files (`MLmodel`, `conda.yaml`,
/// `python_env.yaml`, `requirements.txt`) exactly as MLflow does, builds that environment in a
/// shared, crash-safe cache, and runs the model inside it.
#[derive(Debug, Parser)]
#[command(name = "pyfunc-env", version = VERSION, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Examples:\n  pyfunc-env deps model/ --format pip     # what mlflow.pyfunc.get_model_dependencies gives\n  pyfunc-env inspect model/               # what the model needs, and from which files",
    after_long_help = format!("Examples:\n  pyfunc-env deps model/ --format pip     # what mlflow.pyfunc.get_model_dependencies gives\n  pyfunc-env inspect model/               # what the model needs, and from which files\n  pyfunc-env run models:/fraud@champion -- predict -i input.json\n\n{}", env_source::model_uris_help())
)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,

    /// Options for every command.
    #[command(flatten)]
    pub global: GlobalArgs,
}

/// Options that apply to every command.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Use more output: `-v` shows why (cache hits, lock waits), `-vv` everything
    #[arg(global = true, short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Use less output: `-q` hides progress and information, `-qq` hides warnings too
    #[arg(global = true, short, long, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// When to use colours
    #[arg(global = true, long, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: env_settings::ColorChoice,

    /// Hide progress bars [env: PYFUNC_ENV_NO_PROGRESS=]
    #[arg(global = true, long, env = EnvVars::PYFUNC_ENV_NO_PROGRESS, value_parser = clap::builder::BoolishValueParser::new(), hide_env = true)]
    pub no_progress: bool,

    /// Never access the network; use only what is cached [env: PYFUNC_ENV_OFFLINE=]
    #[arg(global = true, long, env = EnvVars::PYFUNC_ENV_OFFLINE, value_parser = clap::builder::BoolishValueParser::new(), hide_env = true)]
    pub offline: bool,

    /// Path to the cache directory [env: PYFUNC_ENV_CACHE_DIR=]
    #[arg(global = true, long, env = EnvVars::PYFUNC_ENV_CACHE_DIR, value_hint = ValueHint::DirPath, hide_env = true)]
    pub cache_dir: Option<PathBuf>,

    /// Path to a configuration file (default: `$XDG_CONFIG_HOME/pyfunc-env/config.toml`) [env: PYFUNC_ENV_CONFIG_FILE=]
    #[arg(global = true, long, env = EnvVars::PYFUNC_ENV_CONFIG_FILE, value_hint = ValueHint::FilePath, hide_env = true)]
    pub config_file: Option<PathBuf>,

    /// Print the resolved settings and exit (for tests)
    #[arg(global = true, long, hide = true)]
    pub show_settings: bool,
}

impl GlobalArgs {
    /// Resolves the settings from these flags and the command's remote-cache flags, the
    /// environment and the configuration file (in `env-settings`).
    pub fn settings(
        &self,
        remote: Option<&RemoteArgs>,
    ) -> Result<env_settings::Settings, env_settings::SettingsError> {
        let options = env_settings::Options {
            cache_dir: self.cache_dir.clone(),
            config_file: self.config_file.clone(),
            offline: self.offline,
            no_progress: self.no_progress,
            remote_cache_sign_key: remote.and_then(|r| r.remote_cache_sign_key.clone()),
            remote_cache_trusted_keys: remote
                .map(|r| r.remote_cache_trusted_key.clone())
                .unwrap_or_default(),
            remote_cache_require_signed: remote.is_some_and(|r| r.remote_cache_require_signed),
            color: self.color,
            stderr_is_terminal: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        };
        env_settings::Settings::resolve(&options, |name| std::env::var(name).ok())
    }

    /// How much the CLI says: `-q`, `-qq` or `-v`.
    #[must_use]
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (0, 0) => Verbosity::Normal,
            (0, _) => Verbosity::Verbose,
            (1, _) => Verbosity::Quiet,
            _ => Verbosity::Silent,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the model's dependencies, as `mlflow.pyfunc.get_model_dependencies` gives them
    #[command(
        after_help = "Examples:\n  pyfunc-env deps model/                      # requirements.txt, or conda.yaml's pip list\n  pyfunc-env deps model/ --format conda       # the conda environment file\n  pyfunc-env deps model/ --format json -o spec.json   # the canonical spec and its key"
    )]
    Deps(DepsArgs),
    /// Show what a model needs: flavors, Python, env files per env manager, dependencies, key
    Inspect(InspectArgs),
    /// Build the model's environment in the cache, or reuse it if it is there
    #[command(
        after_help = "Examples:\n  pyfunc-env create model/                          # MLflow's default env manager for the model\n  pyfunc-env create model/ --env-manager conda      # conda.yaml, solved and installed with rattler\n  pyfunc-env create model/ --mirror conda-forge=https://mirror.example/conda-forge\n  pyfunc-env create model/ --json                   # key, prefix, python, cache hit, timings\n  pyfunc-env create model/ --dry-run --json         # the key and prefix create would use; builds nothing\n  ENV=$(pyfunc-env create model/)                   # the prefix is the only line on stdout"
    )]
    Create(CreateArgs),
    /// Run `predict`, `serve` or any command inside the model's environment
    #[command(
        after_help = "Examples:\n  pyfunc-env run model/ -- predict -i input.json            # {\"predictions\": ...} on stdout\n  pyfunc-env run model/ -- predict -i input.csv -t csv -o out.json\n  pyfunc-env run model/ -- serve --port 5000                # MLflow's scoring server\n  pyfunc-env run model/ -- python -c 'import sklearn; print(sklearn.__version__)'\n  pyfunc-env run model/ --env-manager local -- predict -i input.json\n\nThe command's exit code is pyfunc-env's exit code (128+n if signal n killed it).\npredict [-i FILE] [-o FILE] [-t json|csv|parquet] [--params JSON]\nserve [--host 127.0.0.1] [--port 5000] [--workers N] [--timeout S]"
    )]
    Run(RunArgs),
    /// Compare the model's requirements with what an interpreter or environment has installed
    #[command(
        after_help = "Examples:\n  pyfunc-env check model/                        # against python3 on PATH\n  pyfunc-env check model/ --python .venv/bin/python --strict\n  pyfunc-env check model/ --env 0f3c...          # against a cached environment"
    )]
    Check(CheckArgs),
    /// Write a lock file (pixi lock format) of exactly what the model's environment holds
    #[command(
        after_help = "Examples:\n  pyfunc-env lock model/ -o model.lock\n  pyfunc-env create model/ --locked model.lock     # elsewhere: no solve, every hash checked\n\nA `pyfunc-env.lock` inside the model directory is used by create and run automatically."
    )]
    Lock(LockArgs),
    /// Inspect and maintain the cache
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Compile an environment's bytecode through the cache's shared store (started by `run`)
    #[command(name = "__compile-bytecode", hide = true)]
    CompileBytecode {
        /// The environment's prefix.
        prefix: PathBuf,
    },
    /// Write the model's environment as an archive that runs wherever it is extracted (Spark
    /// `--archives`, containers, other machines)
    #[command(
        after_help = "Examples:\n  pyfunc-env pack model/ -o env.tar.gz                  # build if needed, then pack\n  pyfunc-env pack model/ -o env.tar.gz --for spark      # check for Spark, print spark-submit usage\n  pyfunc-env pack model/ -o env.zip --with-model        # zip, with the model under model/\n  pyfunc-env pack model/ -o env.tar.gz --python-source conda   # a virtualenv-mode model\n\nOnly a complete prefix can be packed: a conda-mode environment, or a virtualenv-mode one whose\nPython came from a conda channel (`--python-source conda`). `--no-compile` selects the\nenvironment built without bytecode and adds none to the archive."
    )]
    Pack(PackArgs),
    /// Extract an archive written by `pack` into a new directory and check that its Python runs
    /// there
    #[command(
        after_help = "Examples:\n  pyfunc-env unpack env.tar.gz /opt/envs/model-env\n  /opt/envs/model-env/bin/python -c 'import sklearn'"
    )]
    Unpack(UnpackArgs),
    /// Write an OCI image that serves the model with MLflow's scoring server: the base image,
    /// the environment as one layer (cached by key), the model as another. No Docker daemon
    #[command(
        after_help = "Examples:\n  pyfunc-env image model/ -t registry.example.com/team/model:v1 --push\n  pyfunc-env image models:/churn@champion -t localhost:5000/churn:champion --push --json\n  pyfunc-env image model/ -t model:v1 --output docker-archive:model.tar   # then: podman load -i model.tar\n  pyfunc-env image model/ -t model:v1 --output oci:layout/ --base oci:base-layout/\n\nThe container serves on $PORT (else 8080) as `run -- serve` does, as a non-root user, with a\nread-only root filesystem if wanted (it writes only to /tmp). Only a complete prefix can be\nput in an image: a conda-mode environment, or a virtualenv-mode one with `--python-source conda`."
    )]
    Image(ImageArgs),
    /// Print a shell completion script for bash, zsh, fish, elvish or PowerShell
    #[command(
        after_help = "Install (then open a new shell):\n  bash:        echo 'eval \"$(pyfunc-env completions bash)\"' >> ~/.bashrc\n  zsh:         echo 'eval \"$(pyfunc-env completions zsh)\"' >> ~/.zshrc\n  fish:        pyfunc-env completions fish > ~/.config/fish/completions/pyfunc-env.fish\n  elvish:      echo 'eval (pyfunc-env completions elvish | slurp)' >> ~/.config/elvish/rc.elv\n  PowerShell:  Add-Content $PROFILE 'pyfunc-env completions powershell | Out-String | Invoke-Expression'"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

impl Command {
    /// The command's remote cache flags, if it takes them: the signing and trust flags are
    /// resolved into [`crate::settings::Settings`] with them (flag, then variable, then
    /// configuration file), so every command that builds uses them the same way.
    #[must_use]
    pub fn remote_args(&self) -> Option<&RemoteArgs> {
        match self {
            Self::Create(args) => Some(&args.env.remote),
            Self::Lock(args) => Some(&args.env.remote),
            Self::Run(args) => Some(&args.env.remote),
            Self::Pack(args) => Some(&args.env.remote),
            Self::Image(args) => Some(&args.env.remote),
            Self::Cache(CacheCommand::Push(args)) => Some(&args.env.remote),
            Self::Cache(CacheCommand::List(args)) => Some(&args.remote_args),
            Self::Cache(CacheCommand::Prune(args)) => Some(&args.remote_args),
            Self::Cache(CacheCommand::Verify(args)) => Some(&args.remote_args),
            _ => None,
        }
    }
}
