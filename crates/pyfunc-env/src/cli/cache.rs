//! The flags of `cache`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueHint};

use super::{EnvArgs, RemoteArgs};

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
        after_help = "Examples:\n  pyfunc-env cache verify                 # every environment: presence and size of each file\n  pyfunc-env cache verify KEY --hash      # one environment, comparing contents too\n  pyfunc-env cache verify --remote KEY --remote-cache-trusted-key \"$(cat ci-1.public)\"\n                                          # a remote entry: signature and every blob's hash\n\nRepair a damaged environment with `pyfunc-env create MODEL --reinstall`."
    )]
    Verify(CacheVerifyArgs),
    /// Write a key pair that signs remote-cache entries (`NAME.secret`, `NAME.public`)
    #[command(
        after_help = "Examples:\n  pyfunc-env cache keygen ci-1 --output /secure/keys\n  pyfunc-env create model/ --remote-cache s3://envs/pyfunc --remote-cache-sign-key /secure/keys/ci-1.secret\n  pyfunc-env run model/ --remote-cache-trusted-key \"$(cat ci-1.public)\" --remote-cache-read-only -- predict -i in.json\n\nThe secret key stays with CI (mode 0600, never overwritten); agents trust the public key,\nthe line printed on stdout. Rotate by name: make `ci-2`, let agents trust both `ci-1` and\n`ci-2`, sign with `ci-2`, then drop `ci-1` from the agents once CI has pushed again."
    )]
    Keygen(CacheKeygenArgs),
}

/// `cache keygen`.
#[derive(Debug, Args)]
pub struct CacheKeygenArgs {
    /// The key's name, recorded in every signature: number it (`ci-1`, then `ci-2`) to rotate
    #[arg(value_name = "NAME")]
    pub name: String,
    /// The directory to write `NAME.secret` and `NAME.public` into
    #[arg(long, short = 'o', value_name = "DIR", default_value = ".", value_hint = ValueHint::DirPath)]
    pub output: PathBuf,
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
    /// Check an entry of the remote cache instead: its signature (with trusted keys) and every
    /// file's hash, downloading but installing nothing
    #[arg(long, requires = "keys")]
    pub remote: bool,
    #[command(flatten)]
    pub remote_args: RemoteArgs,
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
