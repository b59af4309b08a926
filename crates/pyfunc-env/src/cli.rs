//! Command-line interface: clap types only. Doc comments are the help text.
#![expect(
    clippy::doc_markdown,
    reason = "doc comments here are `--help` text, not rustdoc"
)]

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum, ValueHint};

use crate::env_vars::EnvVars;

/// `--version`: the version, and the commit it was built from when known (see `build.rs`).
pub const VERSION: &str = env!("PYFUNC_ENV_VERSION_STRING");

/// Give an MLflow pyfunc model the Python environment it declares, and score it there.
///
/// pyfunc-env reads a saved MLflow model's environment files (`MLmodel`, `conda.yaml`,
/// `python_env.yaml`, `requirements.txt`) exactly as MLflow does, builds that environment in a
/// shared, crash-safe cache, and runs the model inside it.
#[derive(Debug, Parser)]
#[command(name = "pyfunc-env", version = VERSION, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Examples:\n  pyfunc-env deps model/ --format pip     # what mlflow.pyfunc.get_model_dependencies gives\n  pyfunc-env inspect model/               # what the model needs, and from which files",
    after_long_help = format!("Examples:\n  pyfunc-env deps model/ --format pip     # what mlflow.pyfunc.get_model_dependencies gives\n  pyfunc-env inspect model/               # what the model needs, and from which files\n  pyfunc-env run models:/fraud@champion -- predict -i input.json\n\n{}", crate::env_vars::model_uris_help())
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
    pub color: ColorChoice,

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

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and `NO_COLOR` is not set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
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

/// How to build an environment: shared by `create` and `run`.
#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    /// Which of MLflow's env managers to mirror (default: virtualenv when the model has
    /// python_env.yaml or requirements.txt, else conda, as MLflow does)
    #[arg(long, value_enum)]
    pub env_manager: Option<EnvManagerArg>,

    /// Where the Python of a virtualenv environment comes from: a conda channel, an
    /// interpreter on this machine (pyenv, uv, PATH), or auto (conda first, then this machine)
    #[arg(long, value_enum, default_value_t = PythonSourceArg::Auto)]
    pub python_source: PythonSourceArg,

    /// Use this Python version instead of the one the model's files name
    #[arg(long, value_name = "VERSION")]
    pub python_version: Option<String>,

    /// Use this conda channel before the model's (repeatable)
    #[arg(long = "channel", short = 'c', value_name = "CHANNEL")]
    pub channels: Vec<String>,

    /// Use only the channels given with `--channel`, not the model's
    #[arg(long, requires = "channels")]
    pub override_channels: bool,

    /// Fetch a channel from elsewhere: `NAME=URL` or `URL_PREFIX=URL` (repeatable; also
    /// `PYFUNC_ENV_MIRRORS` and `[mirrors]` in the config file)
    #[arg(long = "mirror", value_name = "FROM=TO")]
    pub mirrors: Vec<String>,

    /// The uv binary to install pip packages with [env: PYFUNC_ENV_UV=]
    #[arg(long, value_hint = ValueHint::ExecutablePath)]
    pub uv: Option<PathBuf>,

    /// Do not compile `.pyc` files into the environment
    #[arg(long)]
    pub no_compile: bool,

    /// Only use packages published before this date (`2024-06-01` or RFC 3339), or `model`:
    /// the MLmodel's `utc_time_created`. Exact pins (`pkg==1.2.3`) are exempt
    #[arg(long, value_name = "DATE|model")]
    pub exclude_newer: Option<String>,

    /// Rebuild the environment even if it is complete
    #[arg(long)]
    pub reinstall: bool,

    /// Add mlflow to the environment (default version: the MLmodel's `mlflow_version`)
    #[arg(long, value_name = "VERSION", num_args = 0..=1, default_missing_value = "")]
    pub install_mlflow: Option<String>,

    /// Install exactly what this lock file (from `pyfunc-env lock`) lists, with no solve;
    /// a `pyfunc-env.lock` in the model directory is used without this flag
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub locked: Option<PathBuf>,

    /// Ignore a `pyfunc-env.lock` in the model directory
    #[arg(long, conflicts_with = "locked")]
    pub no_lock: bool,

    /// Build exactly what the model's files and MLflow ask for, without the constraints that
    /// keep an old MLflow's scoring server working with today's packages (`inspect` lists them)
    #[arg(long)]
    pub no_compat_constraints: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,

    /// Requirements that replace the model's own (`run -- predict -r`, MLflow's
    /// `--pip-requirements-override`); not a flag of its own.
    #[arg(skip)]
    pub pip_requirements_override: Vec<String>,
}

/// The remote cache flags: on every command that builds, and on `cache push`/`list`/`prune`.
#[derive(Debug, Args, Clone, Default)]
pub struct RemoteArgs {
    /// A cache of built environments shared by every agent: pulled from before building,
    /// pushed to after (`s3://BUCKET/PREFIX`, `gs://...`, `az://...`, `file:///SHARED/DIR`)
    /// [env: PYFUNC_ENV_REMOTE_CACHE=]
    #[arg(long, value_name = "URL", value_parser = parse_remote_url)]
    pub remote_cache: Option<env_remote::RemoteUrl>,

    /// Pull from the remote cache, never push to it (agents with read-only credentials)
    /// [env: PYFUNC_ENV_REMOTE_CACHE_READ_ONLY=]
    #[arg(long)]
    pub remote_cache_read_only: bool,
}

fn parse_remote_url(text: &str) -> Result<env_remote::RemoteUrl, String> {
    env_remote::RemoteUrl::parse(text).map_err(|error| {
        use miette::Diagnostic as _;
        match error.help() {
            Some(help) => format!("{error}\n  help: {help}"),
            None => error.to_string(),
        }
    })
}

/// `--python-source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PythonSourceArg {
    /// A conda channel first, then this machine.
    Auto,
    /// `python=X.Y.Z` from a conda channel.
    Conda,
    /// An interpreter on this machine.
    System,
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

/// `pyfunc-env cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Print the cache directory
    Dir,
    /// List the environments: key, model, size, created, last used
    List(CacheListArgs),
    /// Remove environments not used recently, or the oldest beyond a size budget
    #[command(
        after_help = "Examples:\n  pyfunc-env cache prune --older-than 30d\n  pyfunc-env cache prune --max-size 50GB"
    )]
    Prune(CachePruneArgs),
    /// Remove everything in the cache
    Clean(CacheCleanArgs),
    /// Upload environments of the local cache to the remote cache (backfill)
    #[command(
        after_help = "Examples:\n  pyfunc-env cache push model/ --remote-cache s3://ci-envs/pyfunc\n  pyfunc-env cache push models/* --env-manager conda\n\nEach model's environment must be complete in the local cache (build it with `create`); the\nbuild flags (`--env-manager`, `--python-source`, ...) select it as they do for `create`."
    )]
    Push(CachePushArgs),
    /// Check that environments still hold every file that was installed
    #[command(
        after_help = "Examples:\n  pyfunc-env cache verify                 # every environment: presence and size of each file\n  pyfunc-env cache verify KEY --hash      # one environment, comparing contents too\n\nRepair a damaged environment with `pyfunc-env create MODEL --reinstall`."
    )]
    Verify(CacheVerifyArgs),
}

/// `cache verify`.
#[derive(Debug, Args)]
pub struct CacheVerifyArgs {
    /// Environments to verify (default: all)
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
    /// Compare file contents (sha256), not only presence and size
    #[arg(long)]
    pub hash: bool,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `cache list`.
#[derive(Debug, Args)]
pub struct CacheListArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// List the remote cache's environments instead
    #[arg(long)]
    pub remote: bool,
    #[command(flatten)]
    pub remote_args: RemoteArgs,
}

/// `cache push`.
#[derive(Debug, Args)]
pub struct CachePushArgs {
    /// Model directories or URIs whose environments to push
    #[arg(value_name = "MODEL", required = true, value_hint = ValueHint::AnyPath)]
    pub models: Vec<String>,
    #[command(flatten)]
    pub env: EnvArgs,
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `cache prune`.
#[derive(Debug, Args)]
pub struct CachePruneArgs {
    /// Remove environments last used longer ago than this (`12h`, `30d`, `2w`)
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Then remove least recently used environments until they fit in this size (`500MB`, `20GiB`)
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Prune the remote cache instead: entries pushed longer ago than `--older-than`, and
    /// archives no entry names
    #[arg(long, requires = "older_than", conflicts_with = "max_size")]
    pub remote: bool,
    #[command(flatten)]
    pub remote_args: RemoteArgs,
}

/// `cache clean`.
#[derive(Debug, Args)]
pub struct CacheCleanArgs {
    /// Do not wait for other pyfunc-env processes to stop using the cache
    #[arg(long)]
    pub force: bool,
}

/// The model argument: a directory or any model URI MLflow's CLI takes.
#[derive(Debug, Args)]
pub struct ModelArg {
    /// The model: a directory holding `MLmodel`, or `models:/NAME/VERSION`, `models:/NAME@ALIAS`,
    /// `runs:/RUN_ID/PATH`, `mlflow-artifacts:/PATH`, `file:///PATH`
    #[arg(value_hint = ValueHint::AnyPath, value_name = "MODEL")]
    pub model: String,
}

/// `--env-manager`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EnvManagerArg {
    /// conda.yaml: conda packages from its channels, then its `pip:` list.
    Conda,
    /// python_env.yaml (or conda.yaml's python) plus pip requirements.
    Virtualenv,
    /// The model's uv.lock if it has one (as MLflow 3's `uv sync --frozen --no-dev`), else the
    /// same environment as `virtualenv`.
    Uv,
    /// No environment: `run` uses an existing interpreter (`--python`) after a mismatch report.
    Local,
}

impl EnvManagerArg {
    /// The spec's env manager; `None` for `local`.
    #[must_use]
    pub fn manager(self) -> Option<env_spec::EnvManager> {
        match self {
            Self::Conda => Some(env_spec::EnvManager::Conda),
            Self::Virtualenv => Some(env_spec::EnvManager::Virtualenv),
            // The virtualenv spec unless the model has a uv.lock (`env_spec::uv_project`).
            Self::Uv => Some(env_spec::EnvManager::Uv),
            Self::Local => None,
        }
    }
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
    pub env_manager: Option<EnvManagerArg>,
}

/// `pyfunc-env inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: ModelArg,
}

/// `pack --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PackFormatArg {
    /// A gzip-compressed tar (Spark, plain `tar -xzf`).
    #[value(name = "tar.gz", alias = "tgz")]
    TarGz,
    /// An uncompressed tar.
    Tar,
    /// A zip with unix modes; symlinks stored as copies.
    Zip,
}

/// `pyfunc-env pack`.
#[derive(Debug, Args)]
pub struct PackArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub env: EnvArgs,
    /// The archive to write
    #[arg(long, short = 'o', value_hint = ValueHint::FilePath, required_unless_present = "cached")]
    pub output: Option<PathBuf>,
    /// Keep the archive in the cache (`packs-v1/`), one per environment, and reuse it when
    /// packed again; with `--json`, print its path (what `pyfunc_env.spark_udf` uses)
    #[arg(long, conflicts_with_all = ["output", "with_model"])]
    pub cached: bool,
    /// The archive format (default: from the output's extension, `.zip`, `.tar`, else tar.gz)
    #[arg(long, value_enum)]
    pub format: Option<PackFormatArg>,
    /// Check the environment for Spark (default version 4.3.0), leave pyspark and py4j out
    /// (Spark brings its own), and print how to submit with the archive
    #[arg(long = "for", value_name = "spark[=VERSION]")]
    pub target: Option<String>,
    /// Include the model directory in the archive, under `model/`
    #[arg(long)]
    pub with_model: bool,
    /// Keep `test` and `tests` directories (left out by default)
    #[arg(long)]
    pub keep_tests: bool,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `pyfunc-env image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    pub model: ModelArg,
    #[command(flatten)]
    pub env: EnvArgs,
    /// The image's name: `registry/repository:tag`
    #[arg(long, short = 't', value_name = "REF")]
    pub tag: String,
    /// The base image: a registry image, `oci:DIR[:TAG]` or `docker-archive:FILE`; it must
    /// provide glibc [default: gcr.io/distroless/cc-debian12]
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
    /// Push the image to the registry named in `--tag` (blobs it lacks, then the manifest)
    #[arg(long)]
    pub push: bool,
    /// Also write the image to `oci:DIR` (an OCI image layout) or `docker-archive:FILE` (what
    /// `docker load` and `podman load` read) (repeatable)
    #[arg(long, short = 'o', value_name = "oci:DIR|docker-archive:FILE")]
    pub output: Vec<String>,
    /// Reach this registry (`host` or `host:port`) over plain HTTP; loopback always is
    /// (repeatable)
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Registry user name [env: PYFUNC_ENV_REGISTRY_USERNAME=]
    #[arg(long, env = crate::EnvVars::PYFUNC_ENV_REGISTRY_USERNAME, hide_env = true, requires = "password")]
    pub username: Option<String>,
    /// Registry password or token [env: PYFUNC_ENV_REGISTRY_PASSWORD=]
    #[arg(long, env = crate::EnvVars::PYFUNC_ENV_REGISTRY_PASSWORD, hide_env_values = true, hide_env = true)]
    pub password: Option<String>,
    /// Print the image digest, its layers and what was uploaded as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// `pyfunc-env unpack`.
#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The archive (`.tar.gz`, `.tar` or `.zip` written by `pyfunc-env pack`)
    #[arg(value_hint = ValueHint::FilePath)]
    pub archive: PathBuf,
    /// The directory to extract into (new or empty)
    #[arg(value_hint = ValueHint::DirPath)]
    pub dir: PathBuf,
    /// Print the result as JSON on stdout
    #[arg(long)]
    pub json: bool,
}
