//! The errors of resolving and downloading a model URI, each with its hint.

use std::path::PathBuf;

use env_cache::CacheError;

/// Errors of resolving and downloading a model URI.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum SourceError {
    /// The URI does not parse.
    #[error("Invalid model URI `{uri}`")]
    #[diagnostic(help("{form}"))]
    InvalidUri {
        /// The URI (redacted).
        uri: String,
        /// What the URI should look like.
        form: &'static str,
    },
    /// A scheme nobody handles.
    #[error("Unsupported model URI scheme `{scheme}:` in `{uri}`")]
    #[diagnostic(help(
        "Use a local directory, `file://`, `models:/`, `runs:/`, `mlflow-artifacts:/` or `s3://`"
    ))]
    UnsupportedScheme {
        /// The URI (redacted).
        uri: String,
        /// Its scheme.
        scheme: String,
    },
    /// A form this version does not handle yet.
    #[error("{what} is not supported yet (in `{uri}`)")]
    #[diagnostic(help(
        "Download the model with `mlflow artifacts download -u URI -d DIR` and pass `DIR`"
    ))]
    NotSupportedYet {
        /// The URI (redacted).
        uri: String,
        /// What is not supported.
        what: &'static str,
    },
    /// A server URI is needed and not set.
    #[error("`{uri}` needs an MLflow tracking server, and `MLFLOW_TRACKING_URI` is not set")]
    #[diagnostic(help(
        "Set `MLFLOW_TRACKING_URI=http://HOST:PORT` (and `MLFLOW_REGISTRY_URI` if the registry is elsewhere)"
    ))]
    NoServer {
        /// The model URI (redacted).
        uri: String,
    },
    /// The tracking or registry URI is not an HTTP server.
    #[error("`{uri}` is not an MLflow server URL")]
    #[diagnostic(help(
        "`MLFLOW_TRACKING_URI`/`MLFLOW_REGISTRY_URI` must be `http://` or `https://` URLs of an MLflow server"
    ))]
    InvalidServer {
        /// The server URI (redacted).
        uri: String,
    },
    /// The HTTP client could not be built.
    #[error("Failed to set up the HTTP client")]
    HttpClient(#[source] reqwest::Error),
    /// A certificate file is unusable.
    #[error("Failed to load the certificate `{}`", path.display())]
    #[diagnostic(help(
        "`MLFLOW_TRACKING_SERVER_CERT_PATH` and `MLFLOW_TRACKING_CLIENT_CERT_PATH` take PEM files"
    ))]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server could not be reached.
    #[error("{what} failed after {attempts} attempt(s)")]
    #[diagnostic(help(
        "Check that the MLflow server is running and reachable; `--offline` uses models already downloaded"
    ))]
    Request {
        /// What was asked.
        what: String,
        /// How many tries.
        attempts: u32,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{what}: the server answered {status}{}: {message}", if code.is_empty() { String::new() } else { format!(" {code}") })]
    #[diagnostic(help("{}", server_hint(*status, code)))]
    Server {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// MLflow's error code.
        code: String,
        /// MLflow's message (redacted).
        message: String,
    },
    /// A body broke off or was not the expected JSON.
    #[error("{what}: the connection broke off")]
    Body {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The server's answer is not what MLflow sends.
    #[error("{what}: unexpected answer from the server")]
    Decode {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An object store request failed.
    #[error("{what} failed")]
    #[diagnostic(help("{}", object_store_hint(source)))]
    ObjectStore {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// `AWS_PROFILE` names a profile no shared file has.
    #[error("The AWS profile `{profile}` is not in {files}")]
    #[diagnostic(help(
        "Check `AWS_PROFILE` (profiles are `[NAME]` in the credentials file, `[profile NAME]` in the config file), or set `AWS_SHARED_CREDENTIALS_FILE`/`AWS_CONFIG_FILE`"
    ))]
    AwsProfileNotFound {
        /// The profile.
        profile: String,
        /// The files looked in.
        files: String,
    },
    /// The profile gets its keys in a way not supported here.
    #[error(
        "The AWS profile `{profile}` gets its credentials through `{setting}`, which is not supported"
    )]
    #[diagnostic(help(
        "Export static credentials into the environment: `eval \"$(aws configure export-credentials --profile {profile} --format env)\"`"
    ))]
    AwsProfileUnsupported {
        /// The profile.
        profile: String,
        /// The setting that needs a service (`role_arn`, `sso_session`, ...).
        setting: String,
    },
    /// No version of a model (in a stage).
    #[error("No versions of model `{name}`{} found", stage.as_ref().map(|s| format!(" in stage `{s}`")).unwrap_or_default())]
    #[diagnostic(help("List the versions with `mlflow models` or the MLflow UI"))]
    NoVersions {
        /// Model name.
        name: String,
        /// The stage asked for.
        stage: Option<String>,
    },
    /// Nothing, or no `MLmodel`, at the location.
    #[error("No MLflow model at `{uri}` (resolved to `{location}`): {found}")]
    #[diagnostic(help("Point at the directory that holds `MLmodel`, e.g. `runs:/RUN_ID/model`"))]
    NoModel {
        /// The model URI (redacted).
        uri: String,
        /// Where it resolved to (redacted).
        location: String,
        /// What is there instead.
        found: String,
    },
    /// A listing named a path outside the directory.
    #[error("The artifact server listed an unsafe path `{path}`")]
    UnsafePath {
        /// The path.
        path: String,
    },
    /// Offline and the source is not in the cache.
    #[error("`{uri}` is not in the model cache and `--offline` forbids downloading it")]
    #[diagnostic(help("Run once without `--offline` to download it"))]
    OfflineNotCached {
        /// The model URI (redacted).
        uri: String,
    },
    /// A local file could not be read.
    #[error("Failed to read `{}`", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A local file could not be written.
    #[error("Failed to write `{}`", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The cache failed.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] CacheError),
}

impl SourceError {
    /// Whether the input is at fault (a wrong URI, a missing model: exit 1) rather than
    /// something broken (the network, the disk: exit 2).
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::InvalidUri { .. }
            | Self::UnsupportedScheme { .. }
            | Self::NotSupportedYet { .. }
            | Self::NoServer { .. }
            | Self::InvalidServer { .. }
            | Self::Certificate { .. }
            | Self::AwsProfileNotFound { .. }
            | Self::AwsProfileUnsupported { .. }
            | Self::NoVersions { .. }
            | Self::NoModel { .. }
            | Self::OfflineNotCached { .. } => true,
            Self::Server { status, .. } => (400..500).contains(status),
            Self::ObjectStore { source, .. } => {
                object_store_status(source).is_some_and(|status| (400..500).contains(&status))
            }
            _ => false,
        }
    }
}

/// The HTTP status behind an object store error. `object_store` types 401, 403 and 404 for
/// requests on one object, but a listing's error is `Generic` with the status only in its
/// text (`Server returned non-2xx status code: 403 Forbidden`).
pub(crate) fn object_store_status(error: &object_store::Error) -> Option<u16> {
    match error {
        object_store::Error::NotFound { .. } => Some(404),
        object_store::Error::PermissionDenied { .. } => Some(403),
        object_store::Error::Unauthenticated { .. } => Some(401),
        _ => {
            let mut cause: Option<&dyn std::error::Error> = Some(error);
            while let Some(error) = cause {
                let text = error.to_string();
                if let Some((_, rest)) = text.split_once("status code: ") {
                    return rest.get(..3)?.parse().ok();
                }
                cause = error.source();
            }
            None
        }
    }
}

fn object_store_hint(error: &object_store::Error) -> &'static str {
    match object_store_status(error) {
        Some(404) => {
            "Check the bucket name and the path; with an S3-compatible store, check the endpoint (`AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL`)"
        }
        Some(401 | 403) => {
            "The store refused the credentials: check `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or the keys of the `AWS_PROFILE` profile in `~/.aws/credentials`) and that they may read this bucket"
        }
        _ => {
            "Check the endpoint and the network (`AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` for an S3-compatible store), the bucket and the AWS credentials"
        }
    }
}

fn server_hint(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (401, _) => {
            "The server wants credentials: set `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, or `MLFLOW_TRACKING_TOKEN`"
        }
        (403, _) => {
            "The credentials are valid but not allowed to read this model: ask for READ permission on it"
        }
        (_, "RESOURCE_DOES_NOT_EXIST") | (404, _) => {
            "Check the name, version or run id (names are case-sensitive); list them in the MLflow UI"
        }
        (_, "INVALID_PARAMETER_VALUE") => {
            "Check the name and alias (aliases are set with `MlflowClient().set_registered_model_alias`)"
        }
        _ => "See the MLflow server's log for details",
    }
}
