//! The flags of `pack`, `image` and `unpack`.

use std::path::PathBuf;

use clap::{Args, ValueHint};

use super::{EnvArgs, ModelArg};

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
    pub format: Option<env_pack::Format>,
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
    /// How the environment and model layers are compressed: `gzip` (every runtime) or `zstd`
    /// (smaller and faster; containerd 1.5+, Docker 23+, podman and CRI-O)
    #[arg(long, value_enum, default_value_t = env_image::Compression::Gzip)]
    pub compression: env_image::Compression,
    /// Reach this registry (`host` or `host:port`) over plain HTTP; loopback always is
    /// (repeatable)
    #[arg(long, value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Registry user name [env: PYFUNC_ENV_REGISTRY_USERNAME=]
    #[arg(long, env = crate::EnvVars::PYFUNC_ENV_REGISTRY_USERNAME, hide_env = true)]
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
