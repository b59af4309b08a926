//! The variables model URIs read (MLflow's, AWS's, Google's and Azure's own names), with a
//! one-line meaning each: the list the CLI's `--help` shows, kept next to the code that reads
//! them.

/// Every variable model URIs read, with what it means, in the order `--help` lists them.
pub const MODEL_URI_VARS: [(&str, &str); 25] = [
    (
        crate::Vars::MLFLOW_TRACKING_URI,
        "the MLflow tracking server, http(s)://HOST:PORT[/PREFIX]",
    ),
    (
        crate::Vars::MLFLOW_REGISTRY_URI,
        "the model registry, if not the tracking server",
    ),
    (crate::Vars::MLFLOW_TRACKING_TOKEN, "bearer token"),
    (crate::Vars::MLFLOW_TRACKING_USERNAME, "basic-auth user"),
    (crate::Vars::MLFLOW_TRACKING_PASSWORD, "basic-auth password"),
    (
        crate::Vars::MLFLOW_TRACKING_INSECURE_TLS,
        "`true`: do not verify the server's certificate",
    ),
    (
        crate::Vars::MLFLOW_TRACKING_SERVER_CERT_PATH,
        "CA bundle (PEM) for the server",
    ),
    (
        crate::Vars::MLFLOW_TRACKING_CLIENT_CERT_PATH,
        "client certificate and key (PEM)",
    ),
    (
        crate::Vars::MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        "retries on errors, 429 and 5xx (7)",
    ),
    (
        crate::Vars::MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR,
        "backoff factor in s (2)",
    ),
    (
        crate::Vars::MLFLOW_HTTP_REQUEST_TIMEOUT,
        "request timeout in s (120)",
    ),
    (
        crate::MLFLOW_S3_ENDPOINT_URL,
        "S3-compatible endpoint (wins over AWS_ENDPOINT_URL)",
    ),
    (
        crate::AwsVars::AWS_ACCESS_KEY_ID,
        "S3 access key (else the profile's)",
    ),
    (
        crate::AwsVars::AWS_SECRET_ACCESS_KEY,
        "S3 secret key (else the profile's)",
    ),
    (crate::AwsVars::AWS_SESSION_TOKEN, "S3 session token"),
    (
        crate::AwsVars::AWS_REGION,
        "S3 region (else the profile's, else us-east-1)",
    ),
    (
        crate::AwsVars::AWS_ENDPOINT_URL,
        "S3-compatible endpoint (else the profile's endpoint_url)",
    ),
    (
        crate::AwsVars::AWS_PROFILE,
        "profile in ~/.aws/credentials and ~/.aws/config (default)",
    ),
    (
        crate::AwsVars::AWS_SHARED_CREDENTIALS_FILE,
        "credentials file (~/.aws/credentials)",
    ),
    (
        crate::AwsVars::AWS_CONFIG_FILE,
        "config file (~/.aws/config)",
    ),
    (
        crate::GcsVars::GOOGLE_APPLICATION_CREDENTIALS,
        "gs:// key file (else gcloud's, the VM's, or anonymous)",
    ),
    (
        crate::GcsVars::STORAGE_EMULATOR_HOST,
        "gs:// emulator HOST:PORT (no credentials sent)",
    ),
    (
        crate::GcsVars::MLFLOW_GCS_DEFAULT_TIMEOUT,
        "gs:// request timeout in s (-1: none)",
    ),
    (
        crate::AzureVars::AZURE_STORAGE_CONNECTION_STRING,
        "wasbs://, abfss:// connection string (wins)",
    ),
    (
        crate::AzureVars::AZURE_STORAGE_ACCESS_KEY,
        "account key (else AZURE_CLIENT_ID/SECRET/TENANT_ID, ...)",
    ),
];

/// The model URIs this crate reads and the variables they read, as the CLI's `--help` shows
/// them (one `NAME  meaning` line per variable of [`MODEL_URI_VARS`]).
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
    for (name, meaning) in MODEL_URI_VARS {
        let _ = writeln!(text, "  {name:<36} {meaning}");
    }
    text
}

#[cfg(test)]
mod tests {
    /// Every variable is listed once, on its own line with its meaning, after every URI form
    /// `crate::ModelUri` parses.
    #[test]
    fn the_help_names_every_uri_form_and_variable() {
        let help = super::model_uris_help();
        for form in [
            "models:/NAME@ALIAS",
            "runs:/",
            "mlflow-artifacts:/",
            "s3://",
            "gs://",
        ] {
            assert!(help.contains(form), "{form} missing from {help}");
        }
        for (name, meaning) in super::MODEL_URI_VARS {
            let lines: Vec<_> = help.lines().filter(|l| l.contains(name)).collect();
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with(&format!("  {name} ")) && l.ends_with(meaning)),
                "{name}: {lines:?}"
            );
        }
    }
}
