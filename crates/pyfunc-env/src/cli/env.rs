//! The flags that decide and build an environment, shared by `create`, `lock`, `run`, `pack`,
//! `image` and `cache push`.

use std::path::PathBuf;

use clap::{Args, ValueHint};

/// How to build an environment: shared by `create` and `run`.
#[derive(Debug, Args, Clone)]
pub struct EnvArgs {
    /// Which of MLflow's env managers to mirror (default: virtualenv when the model has
    /// python_env.yaml or requirements.txt, else conda, as MLflow does)
    #[arg(long, value_enum)]
    pub env_manager: Option<env_spec::EnvManagerChoice>,

    /// Where the Python of a virtualenv environment comes from: a conda channel, an
    /// interpreter on this machine (pyenv, uv, PATH), or auto (conda first, then this machine)
    #[arg(long, value_enum, default_value_t = env_build::PythonSource::Auto)]
    pub python_source: env_build::PythonSource,

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
#[expect(
    clippy::struct_field_names,
    reason = "the fields are the flags' names (`--remote-cache-*`), as clap derives them"
)]
pub struct RemoteArgs {
    /// A cache of built environments shared by every agent: pulled from before building,
    /// pushed to after (`s3://BUCKET/PREFIX`, `gs://...`, `az://...`, `file:///SHARED/DIR`)
    /// [env: PYFUNC_ENV_REMOTE_CACHE=]
    #[arg(long, value_name = "URL", value_parser = with_help(env_remote::RemoteUrl::parse))]
    pub remote_cache: Option<env_remote::RemoteUrl>,

    /// Pull from the remote cache, never push to it (agents with read-only credentials)
    /// [env: PYFUNC_ENV_REMOTE_CACHE_READ_ONLY=]
    #[arg(long)]
    pub remote_cache_read_only: bool,

    /// Sign what is pushed with this secret key file (`cache keygen`; CI holds it)
    /// [env: PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY=]
    #[arg(long, value_name = "FILE", value_hint = ValueHint::FilePath)]
    pub remote_cache_sign_key: Option<PathBuf>,

    /// Pull only entries signed by this public key, `NAME:BASE64` (repeat to trust several,
    /// as during a key rotation); others are a miss [env:
    /// PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS=, separated by whitespace]
    #[arg(long, value_name = "NAME:BASE64", value_parser = with_help(env_remote::PublicKey::parse))]
    pub remote_cache_trusted_key: Vec<env_remote::PublicKey>,

    /// With trusted keys, an entry without a valid signature is an error, not a miss
    /// (production agents) [env: PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED=]
    #[arg(long)]
    pub remote_cache_require_signed: bool,
}

/// A value parser from a library's parse function: clap shows its error and the error's help.
fn with_help<T: 'static, E: miette::Diagnostic + 'static>(
    parse: fn(&str) -> Result<T, E>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        parse(text).map_err(|error| match error.help() {
            Some(help) => format!("{error}\n  help: {help}"),
            None => error.to_string(),
        })
    }
}

/// The model argument: a directory or any model URI MLflow's CLI takes.
#[derive(Debug, Args)]
pub struct ModelArg {
    /// The model: a directory holding `MLmodel`, or `models:/NAME/VERSION`, `models:/NAME@ALIAS`,
    /// `runs:/RUN_ID/PATH`, `mlflow-artifacts:/PATH`, `file:///PATH`
    #[arg(value_hint = ValueHint::AnyPath, value_name = "MODEL")]
    pub model: String,
}
