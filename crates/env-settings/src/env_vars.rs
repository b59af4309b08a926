//! Every environment variable pyfunc-env reads, in one place (`docs/reference/cli.md` lists
//! them from the doc comments here).

/// Environment variable names.
pub struct EnvVars;

impl EnvVars {
    /// Path to the cache directory.
    pub const PYFUNC_ENV_CACHE_DIR: &'static str = "PYFUNC_ENV_CACHE_DIR";
    /// Never access the network (`1`, `true`).
    pub const PYFUNC_ENV_OFFLINE: &'static str = "PYFUNC_ENV_OFFLINE";
    /// Hide progress bars.
    pub const PYFUNC_ENV_NO_PROGRESS: &'static str = "PYFUNC_ENV_NO_PROGRESS";
    /// Path to the configuration file.
    pub const PYFUNC_ENV_CONFIG_FILE: &'static str = "PYFUNC_ENV_CONFIG_FILE";
    /// Path to the `uv` binary to use.
    pub const PYFUNC_ENV_UV: &'static str = "PYFUNC_ENV_UV";
    /// uv's cache directory, instead of `uv-v1/` inside the cache (e.g. to share one uv cache
    /// between several cache roots).
    pub const PYFUNC_ENV_UV_CACHE_DIR: &'static str = "PYFUNC_ENV_UV_CACHE_DIR";
    /// Channel mirrors, `name-or-url=url` pairs separated by whitespace or commas.
    pub const PYFUNC_ENV_MIRRORS: &'static str = "PYFUNC_ENV_MIRRORS";
    /// Seconds to wait for a lock held by another process.
    pub const PYFUNC_ENV_LOCK_TIMEOUT: &'static str = "PYFUNC_ENV_LOCK_TIMEOUT";
    /// A shared cache of built environments: `s3://bucket/prefix`, `gs://...`, `az://...` or
    /// `file:///shared/dir`.
    pub const PYFUNC_ENV_REMOTE_CACHE: &'static str = "PYFUNC_ENV_REMOTE_CACHE";
    /// `1`: pull from the remote cache, never push to it.
    pub const PYFUNC_ENV_REMOTE_CACHE_READ_ONLY: &'static str = "PYFUNC_ENV_REMOTE_CACHE_READ_ONLY";
    /// A secret key file (`cache keygen`): sign what is pushed to the remote cache.
    pub const PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY: &'static str = "PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY";
    /// Public keys (`NAME:BASE64`, separated by whitespace): pull only entries one of them
    /// signed.
    pub const PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS: &'static str =
        "PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS";
    /// `1`: an entry without a valid signature by a trusted key is an error, not a miss.
    pub const PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED: &'static str =
        "PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED";
    /// Seconds each remote-cache request (and each stalled transfer) may take (default 15).
    pub const PYFUNC_ENV_REMOTE_CACHE_TIMEOUT: &'static str = "PYFUNC_ENV_REMOTE_CACHE_TIMEOUT";
    /// `run`: compile bytecode before the model starts on a cache miss (`1`), not in the
    /// background.
    pub const PYFUNC_ENV_COMPILE_FOREGROUND: &'static str = "PYFUNC_ENV_COMPILE_FOREGROUND";
    /// `image --push`: the registry user name (with `PYFUNC_ENV_REGISTRY_PASSWORD`).
    pub const PYFUNC_ENV_REGISTRY_USERNAME: &'static str = "PYFUNC_ENV_REGISTRY_USERNAME";
    /// `image --push`: the registry password or token.
    pub const PYFUNC_ENV_REGISTRY_PASSWORD: &'static str = "PYFUNC_ENV_REGISTRY_PASSWORD";
    /// The auth file podman, skopeo and buildah read first; `image` reads it too.
    pub const REGISTRY_AUTH_FILE: &'static str = "REGISTRY_AUTH_FILE";
    /// Where podman keeps its auth file (`$XDG_RUNTIME_DIR/containers/auth.json`).
    pub const XDG_RUNTIME_DIR: &'static str = "XDG_RUNTIME_DIR";
    /// Docker's configuration directory (`config.json`, default `~/.docker`).
    pub const DOCKER_CONFIG: &'static str = "DOCKER_CONFIG";
    /// Disable colours (<https://no-color.org>).
    pub const NO_COLOR: &'static str = "NO_COLOR";
    /// Force colours even when stderr is not a terminal.
    pub const FORCE_COLOR: &'static str = "FORCE_COLOR";
    /// Tracing filter, overrides `-v`.
    pub const RUST_LOG: &'static str = "RUST_LOG";
    /// Base of the default cache directory.
    pub const XDG_CACHE_HOME: &'static str = "XDG_CACHE_HOME";
    /// Base of the default configuration file.
    pub const XDG_CONFIG_HOME: &'static str = "XDG_CONFIG_HOME";
    /// The user's home directory.
    pub const HOME: &'static str = "HOME";
    /// The mtime `pack` gives every archive entry (seconds since the epoch), as in
    /// <https://reproducible-builds.org/specs/source-date-epoch/>.
    pub const SOURCE_DATE_EPOCH: &'static str = "SOURCE_DATE_EPOCH";
    /// The Spark driver's Python, which `pack --for spark` compares with the archive's.
    pub const PYSPARK_DRIVER_PYTHON: &'static str = "PYSPARK_DRIVER_PYTHON";

    // Where model URIs (`models:/`, `runs:/`, `mlflow-artifacts:/`, `s3://`) come from, under
    // MLflow's and AWS's own names; read by `env_source`, listed here so `--help` shows them.
    /// The MLflow tracking server (`http(s)://HOST:PORT[/PREFIX]`).
    pub const MLFLOW_TRACKING_URI: &'static str = env_source::Vars::MLFLOW_TRACKING_URI;
    /// The model registry, if not the tracking server.
    pub const MLFLOW_REGISTRY_URI: &'static str = env_source::Vars::MLFLOW_REGISTRY_URI;
    /// Bearer token for the MLflow server.
    pub const MLFLOW_TRACKING_TOKEN: &'static str = env_source::Vars::MLFLOW_TRACKING_TOKEN;
    /// Basic-auth user name for the MLflow server.
    pub const MLFLOW_TRACKING_USERNAME: &'static str = env_source::Vars::MLFLOW_TRACKING_USERNAME;
    /// Basic-auth password for the MLflow server.
    pub const MLFLOW_TRACKING_PASSWORD: &'static str = env_source::Vars::MLFLOW_TRACKING_PASSWORD;
    /// `true`: do not verify the MLflow server's TLS certificate.
    pub const MLFLOW_TRACKING_INSECURE_TLS: &'static str =
        env_source::Vars::MLFLOW_TRACKING_INSECURE_TLS;
    /// CA bundle (PEM) to verify the MLflow server with.
    pub const MLFLOW_TRACKING_SERVER_CERT_PATH: &'static str =
        env_source::Vars::MLFLOW_TRACKING_SERVER_CERT_PATH;
    /// Client certificate and key (PEM) for mutual TLS.
    pub const MLFLOW_TRACKING_CLIENT_CERT_PATH: &'static str =
        env_source::Vars::MLFLOW_TRACKING_CLIENT_CERT_PATH;
    /// Retries of a failed request to the MLflow server (7).
    pub const MLFLOW_HTTP_REQUEST_MAX_RETRIES: &'static str =
        env_source::Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES;
    /// Backoff factor in seconds (2): waits of factor x 2^n, at most 120 s.
    pub const MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR: &'static str =
        env_source::Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR;
    /// Timeout of one request in seconds (120).
    pub const MLFLOW_HTTP_REQUEST_TIMEOUT: &'static str =
        env_source::Vars::MLFLOW_HTTP_REQUEST_TIMEOUT;
    /// An S3-compatible endpoint, as MLflow names it (wins over `AWS_ENDPOINT_URL`).
    pub const MLFLOW_S3_ENDPOINT_URL: &'static str = env_source::MLFLOW_S3_ENDPOINT_URL;
    /// S3 access key id.
    pub const AWS_ACCESS_KEY_ID: &'static str = env_source::AwsVars::AWS_ACCESS_KEY_ID;
    /// S3 secret access key.
    pub const AWS_SECRET_ACCESS_KEY: &'static str = env_source::AwsVars::AWS_SECRET_ACCESS_KEY;
    /// S3 session token.
    pub const AWS_SESSION_TOKEN: &'static str = env_source::AwsVars::AWS_SESSION_TOKEN;
    /// S3 region (else the profile's, else `us-east-1`).
    pub const AWS_REGION: &'static str = env_source::AwsVars::AWS_REGION;
    /// An S3-compatible endpoint (`AWS_ENDPOINT_URL_S3` for S3 only).
    pub const AWS_ENDPOINT_URL: &'static str = env_source::AwsVars::AWS_ENDPOINT_URL;
    /// The profile in `~/.aws/credentials` and `~/.aws/config` (else `default`).
    pub const AWS_PROFILE: &'static str = env_source::AwsVars::AWS_PROFILE;
    /// The shared credentials file (`~/.aws/credentials`).
    pub const AWS_SHARED_CREDENTIALS_FILE: &'static str =
        env_source::AwsVars::AWS_SHARED_CREDENTIALS_FILE;
    /// The shared config file (`~/.aws/config`).
    pub const AWS_CONFIG_FILE: &'static str = env_source::AwsVars::AWS_CONFIG_FILE;
    /// A Google service account or application default credentials file, for `gs://`.
    pub const GOOGLE_APPLICATION_CREDENTIALS: &'static str =
        env_source::GcsVars::GOOGLE_APPLICATION_CREDENTIALS;
    /// A GCS emulator, `HOST:PORT` (the `google-cloud-storage` library's name).
    pub const STORAGE_EMULATOR_HOST: &'static str = env_source::GcsVars::STORAGE_EMULATOR_HOST;
    /// MLflow's GCS request timeout in seconds (`-1`: none).
    pub const MLFLOW_GCS_DEFAULT_TIMEOUT: &'static str =
        env_source::GcsVars::MLFLOW_GCS_DEFAULT_TIMEOUT;
    /// An Azure storage connection string, for `wasbs://` and `abfss://`.
    pub const AZURE_STORAGE_CONNECTION_STRING: &'static str =
        env_source::AzureVars::AZURE_STORAGE_CONNECTION_STRING;
    /// The Azure storage account key of the URI's account.
    pub const AZURE_STORAGE_ACCESS_KEY: &'static str =
        env_source::AzureVars::AZURE_STORAGE_ACCESS_KEY;
}
