//! The `--help` section on model URIs; the variables themselves are [`EnvVars`], in
//! `env-settings`.

pub use env_settings::EnvVars;

/// The variables model URIs read, with what they mean, for `--help`.
const MODEL_SOURCE_VARS: [(&str, &str); 25] = [
    (
        EnvVars::MLFLOW_TRACKING_URI,
        "the MLflow tracking server, http(s)://HOST:PORT[/PREFIX]",
    ),
    (
        EnvVars::MLFLOW_REGISTRY_URI,
        "the model registry, if not the tracking server",
    ),
    (EnvVars::MLFLOW_TRACKING_TOKEN, "bearer token"),
    (EnvVars::MLFLOW_TRACKING_USERNAME, "basic-auth user"),
    (EnvVars::MLFLOW_TRACKING_PASSWORD, "basic-auth password"),
    (
        EnvVars::MLFLOW_TRACKING_INSECURE_TLS,
        "`true`: do not verify the server's certificate",
    ),
    (
        EnvVars::MLFLOW_TRACKING_SERVER_CERT_PATH,
        "CA bundle (PEM) for the server",
    ),
    (
        EnvVars::MLFLOW_TRACKING_CLIENT_CERT_PATH,
        "client certificate and key (PEM)",
    ),
    (
        EnvVars::MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        "retries on errors, 429 and 5xx (7)",
    ),
    (
        EnvVars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        "backoff factor in s (2)",
    ),
    (
        EnvVars::MLFLOW_HTTP_REQUEST_TIMEOUT,
        "request timeout in s (120)",
    ),
    (
        EnvVars::MLFLOW_S3_ENDPOINT_URL,
        "S3-compatible endpoint (wins over AWS_ENDPOINT_URL)",
    ),
    (
        EnvVars::AWS_ACCESS_KEY_ID,
        "S3 access key (else the profile's)",
    ),
    (
        EnvVars::AWS_SECRET_ACCESS_KEY,
        "S3 secret key (else the profile's)",
    ),
    (EnvVars::AWS_SESSION_TOKEN, "S3 session token"),
    (
        EnvVars::AWS_REGION,
        "S3 region (else the profile's, else us-east-1)",
    ),
    (
        EnvVars::AWS_ENDPOINT_URL,
        "S3-compatible endpoint (else the profile's endpoint_url)",
    ),
    (
        EnvVars::AWS_PROFILE,
        "profile in ~/.aws/credentials and ~/.aws/config (default)",
    ),
    (
        EnvVars::AWS_SHARED_CREDENTIALS_FILE,
        "credentials file (~/.aws/credentials)",
    ),
    (EnvVars::AWS_CONFIG_FILE, "config file (~/.aws/config)"),
    (
        EnvVars::GOOGLE_APPLICATION_CREDENTIALS,
        "gs:// key file (else gcloud's, the VM's, or anonymous)",
    ),
    (
        EnvVars::STORAGE_EMULATOR_HOST,
        "gs:// emulator HOST:PORT (no credentials sent)",
    ),
    (
        EnvVars::MLFLOW_GCS_DEFAULT_TIMEOUT,
        "gs:// request timeout in s (-1: none)",
    ),
    (
        EnvVars::AZURE_STORAGE_CONNECTION_STRING,
        "wasbs://, abfss:// connection string (wins)",
    ),
    (
        EnvVars::AZURE_STORAGE_ACCESS_KEY,
        "account key (else AZURE_CLIENT_ID/SECRET/TENANT_ID, ...)",
    ),
];

/// The `--help` section on model URIs and the variables they read.
#[must_use]
pub fn model_uris_help() -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "Model URIs (any MODEL argument): a directory, file://, models:/NAME/VERSION, \
         models:/NAME@ALIAS,\n  models:/NAME/latest, models:/NAME/STAGE, runs:/RUN_ID/PATH, \
         mlflow-artifacts:/PATH,\n  s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, \
         wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH,\n  \
         abfss://FILESYSTEM@ACCOUNT.dfs.core.windows.net/PATH\n\nModel URI settings:\n",
    );
    for (name, meaning) in MODEL_SOURCE_VARS {
        let _ = writeln!(text, "  {name:<36} {meaning}");
    }
    text
}
