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
        "Use a local directory, `file://`, `models:/`, `runs:/`, `mlflow-artifacts:/`, `s3://`, `gs://`, `wasbs://` or `abfss://` (`wasb://` and `abfs://` are not MLflow artifact URIs: use the TLS forms)"
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
    #[diagnostic(help("{}", server_hint(*status, code, *credentials)))]
    Server {
        /// What was asked.
        what: String,
        /// HTTP status.
        status: u16,
        /// MLflow's error code.
        code: String,
        /// MLflow's message (redacted).
        message: String,
        /// The credentials the request carried: a 401 after a password was sent is a
        /// wrong password, not a missing one.
        credentials: SentCredentials,
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
    #[diagnostic(help("{}", object_store_hint(source.service, source.status)))]
    ObjectStore {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: StoreFailure,
    },
    /// Google credentials (a key file, `GOOGLE_SERVICE_ACCOUNT_KEY`) that the client cannot
    /// use: not JSON, no private key, or a key that is not PEM-encoded PKCS#8 RSA. Building the
    /// client sends no request, so this is never the network.
    #[error("The Google Cloud Storage client cannot be set up {how}")]
    #[diagnostic(help(
        "Use a service account's JSON key (`gcloud iam service-accounts keys create KEY.json --iam-account ACCOUNT`) or the file `gcloud auth application-default login` writes; or unset `GOOGLE_APPLICATION_CREDENTIALS` to read public buckets anonymously"
    ))]
    GcsCredentials {
        /// Which credentials ("with the credentials file `PATH`").
        how: String,
        /// Why the client refused them.
        source: StoreFailure,
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
    /// A setting has a value that cannot be used.
    #[error("`{name}` is `{value}`: expected {expected}")]
    #[diagnostic(help("Fix or unset `{name}`"))]
    InvalidSetting {
        /// The variable.
        name: &'static str,
        /// Its value (masked if secret).
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A credentials file named by a setting cannot be read.
    #[error("Failed to read the credentials file `{}` (from `{setting}`)", path.display())]
    #[diagnostic(help("Point `{setting}` at a readable JSON key file, or unset it"))]
    CredentialsFile {
        /// The variable that names it.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
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
    /// The store listed an object whose key cannot be a file of the model directory.
    #[error("{what}: the object `{key}` is refused: {reason}")]
    #[diagnostic(help(
        "A model download writes only below its own directory; rename or remove that object (MLflow writes none like it)"
    ))]
    UnsafeKey {
        /// What was asked (``Listing `s3://bucket/prefix` ``).
        what: String,
        /// The key as listed.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// The downloaded model's `MLmodel` cannot be used; nothing of the download is kept.
    #[error("The model at `{uri}` is refused, and nothing of it was kept")]
    RefusedModel {
        /// The model URI (redacted).
        uri: String,
        /// Why.
        #[source]
        source: env_spec::SpecError,
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
    /// The model list (`create --from FILE`) could not be read.
    #[error("Failed to read the model list `{}`", path.display())]
    #[diagnostic(help(
        "`--from` takes a file with one model directory or model URI per line; check the path"
    ))]
    ModelList {
        /// The list.
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
            | Self::InvalidSetting { .. }
            | Self::CredentialsFile { .. }
            | Self::GcsCredentials { .. }
            | Self::NoVersions { .. }
            | Self::NoModel { .. }
            | Self::OfflineNotCached { .. } => true,
            // A list that is not there (or not a file) is a wrong path; a read that fails
            // on a list that is there is the disk's.
            Self::ModelList { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory
            ),
            // One rule for every HTTP answer, the remote cache's included (`crate::http`).
            Self::Server { status, .. } => crate::http::is_user_error(Some(*status)),
            Self::ObjectStore { source, .. } => crate::http::is_user_error(source.status),
            Self::UnsafeKey { .. } => true,
            Self::RefusedModel { source, .. } => source.is_user_error(),
            // Listed one by one, so a new variant has to be classified here: a catch-all
            // would make every new error exit 2 silently.
            Self::HttpClient { .. }
            | Self::Request { .. }
            | Self::Body { .. }
            | Self::Decode { .. }
            | Self::UnsafePath { .. }
            | Self::Read { .. }
            | Self::Write { .. }
            | Self::Cache(_) => false,
        }
    }
}

impl SourceError {
    /// An S3 failure while doing `what`.
    pub(crate) fn object_store(what: impl Into<String>, error: object_store::Error) -> Self {
        Self::object_store_in(Service::S3, what, error)
    }

    /// A failure of `service` while doing `what`.
    pub(crate) fn object_store_in(
        service: Service,
        what: impl Into<String>,
        error: object_store::Error,
    ) -> Self {
        let what = what.into();
        // A key `object_store` cannot take as a path (`..`, `.`, an empty segment) is refused
        // here, by its type: it is neither the endpoint nor the credentials.
        if let object_store::Error::InvalidPath { source } = &error {
            return Self::unsafe_key(what, source);
        }
        Self::ObjectStore {
            what,
            source: StoreFailure::new(service, error),
        }
    }

    fn unsafe_key(what: String, error: &object_store::path::Error) -> Self {
        use object_store::path::Error as PathError;
        let (key, reason) = match error {
            PathError::EmptySegment { path } => (
                path.clone(),
                "it has an empty segment (`//`), which no file path can have".to_string(),
            ),
            PathError::BadSegment { path, source } => (
                path.clone(),
                format!(
                    "{source}: a `.` or `..` segment or a control character could write outside the model directory"
                ),
            ),
            other => (String::new(), other.to_string()),
        };
        Self::UnsafeKey {
            what,
            key: env_spec::redact::redact(&key),
            reason,
        }
    }
}

/// Which credentials a request to an MLflow server carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentCredentials {
    /// None.
    None,
    /// `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`.
    Password,
    /// `MLFLOW_TRACKING_TOKEN`.
    Token,
    /// A user name and password in the tracking URI itself.
    InUri,
}

/// Which object store failed: the hints name its settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// S3 or an S3-compatible store.
    S3,
    /// Google Cloud Storage.
    Gcs,
    /// Azure Blob Storage (and Data Lake Gen2 through it).
    Azure,
}

/// An `object_store` error, told in one line. `object_store` repeats each inner error's text
/// in the outer one, so its chain shows the same S3 response (an XML document) four times;
/// this keeps the innermost cause and, for an S3 error response, its status, code and message.
/// The full error stays available through [`StoreFailure::inner`].
#[derive(Debug)]
pub struct StoreFailure {
    /// The HTTP status, if the store answered.
    pub status: Option<u16>,
    /// The store.
    pub service: Service,
    summary: String,
    inner: object_store::Error,
}

impl StoreFailure {
    pub(crate) fn new(service: Service, inner: object_store::Error) -> Self {
        let mut innermost = inner.to_string();
        let mut cause = std::error::Error::source(&inner);
        while let Some(error) = cause {
            innermost = error.to_string();
            cause = error.source();
        }
        // With no keys anywhere, object_store asks the EC2 instance metadata service; its
        // refusal is not the store's answer and must not read like one. object_store gives no
        // typed trace of this (its credential `Error` and `RetryError` are private types): the
        // endpoint is read from the request line object_store itself formats, never from a
        // server's words. A test below holds the text object_store 0.14 writes.
        if innermost.contains("169.254.169.254") || inner.to_string().contains("169.254.169.254") {
            let summary = match service {
                Service::S3 => {
                    "No AWS credentials found: none in the environment or the profile, and \
                     the instance metadata service (169.254.169.254) gave none"
                }
                Service::Gcs => {
                    "No Google credentials found: no key file in the environment, and the \
                     Compute Engine metadata server (169.254.169.254) gave none"
                }
                Service::Azure => {
                    "No Azure credentials found: no key, SAS token or service principal in the \
                     environment, and the managed identity endpoint (169.254.169.254) gave none"
                }
            };
            return Self {
                status: None,
                service,
                summary: summary.to_string(),
                inner,
            };
        }
        let summary = match innermost.split_once("status code: ") {
            Some((_, rest)) => {
                let (status_line, body) = rest.split_once(": ").unwrap_or((rest, ""));
                // Azure appends `RequestId:...` and `Time:...` lines to its message: the first
                // line is the message.
                let tag = |name: &str| {
                    let start = body.find(&format!("<{name}>"))? + name.len() + 2;
                    let end = body[start..].find(&format!("</{name}>"))? + start;
                    Some(
                        body[start..end]
                            .lines()
                            .next()
                            .unwrap_or_default()
                            .to_string(),
                    )
                };
                match (tag("Code"), tag("Message")) {
                    (Some(code), Some(message)) => {
                        format!("the store answered {status_line} {code}: {message}")
                    }
                    (Some(code), None) => format!("the store answered {status_line} {code}"),
                    _ => format!("the store answered {status_line}"),
                }
            }
            // `ring` rejecting a service account's private key says only `InvalidEncoding`
            // (or another `KeyRejected` word); a damaged key body, a base64 error. Both reach
            // us only as the text of object_store's private gcp credential error: these are
            // ring's and base64's fixed descriptions, not a server's message.
            None if service == Service::Gcs
                && (innermost.starts_with("base64 decode error")
                    || matches!(
                        innermost.as_str(),
                        "InvalidEncoding"
                            | "InvalidComponent"
                            | "UnsupportedAlgorithm"
                            | "WrongAlgorithm"
                    )) =>
            {
                format!(
                    "its private key was rejected ({innermost}): it must be the PEM-encoded PKCS#8 RSA key of a service account's JSON key"
                )
            }
            None => innermost,
        };
        Self {
            status: crate::http::object_store_status(&inner),
            service,
            summary: env_spec::redact::redact(&summary),
            inner,
        }
    }

    /// The error as `object_store` gave it.
    #[must_use]
    pub fn inner(&self) -> &object_store::Error {
        &self.inner
    }
}

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary)
    }
}

impl std::error::Error for StoreFailure {}

fn object_store_hint(service: Service, status: Option<u16>) -> &'static str {
    match (service, status) {
        (Service::S3, Some(404)) => {
            "Check the bucket name and the path; with an S3-compatible store, check the endpoint (`AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL`)"
        }
        (Service::S3, Some(401 | 403)) => {
            "The store refused the credentials: check `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or the keys of the `AWS_PROFILE` profile in `~/.aws/credentials`) and that they may read this bucket"
        }
        (Service::S3, _) => {
            "Check the endpoint and the network (`AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` for an S3-compatible store), and the AWS credentials (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, or `AWS_PROFILE` and `~/.aws/credentials`)"
        }
        (Service::Gcs, Some(404)) => {
            "Check the bucket name and the path (with an emulator, check `STORAGE_EMULATOR_HOST`)"
        }
        (Service::Gcs, Some(401 | 403)) => {
            "The store refused the request: set `GOOGLE_APPLICATION_CREDENTIALS` to a key file of an account that may read this bucket (without credentials, only public buckets can be read)"
        }
        (Service::Gcs, _) => {
            "Check the network and the Google credentials (`GOOGLE_APPLICATION_CREDENTIALS`, or `gcloud auth application-default login`); `STORAGE_EMULATOR_HOST` for an emulator"
        }
        (Service::Azure, Some(404)) => {
            "Check the container, the account and the path (with a connection string, its account and `BlobEndpoint` are used)"
        }
        (Service::Azure, Some(401 | 403)) => {
            "The store refused the credentials: check `AZURE_STORAGE_CONNECTION_STRING` or `AZURE_STORAGE_ACCESS_KEY` (the account's key or SAS token), or the identity's role on the container (Storage Blob Data Reader)"
        }
        (Service::Azure, _) => {
            "Check the network and the Azure credentials: `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_ACCESS_KEY`, or a service principal (`AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_TENANT_ID`)"
        }
    }
}

fn server_hint(status: u16, code: &str, credentials: SentCredentials) -> &'static str {
    match (status, code, credentials) {
        (401, _, SentCredentials::None) => {
            "The server wants credentials: set `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, or `MLFLOW_TRACKING_TOKEN`"
        }
        (401, _, SentCredentials::Password) => {
            "The server refused the user name and password sent: check `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`"
        }
        (401, _, SentCredentials::Token) => {
            "The server refused the token sent: check or renew `MLFLOW_TRACKING_TOKEN`"
        }
        (401, _, SentCredentials::InUri) => {
            "The server refused the user name and password in `MLFLOW_TRACKING_URI`: check them"
        }
        (403, _, SentCredentials::None) => {
            "The server allows no anonymous access to this model: set `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`, or `MLFLOW_TRACKING_TOKEN`"
        }
        (403, _, _) => {
            "The credentials are valid but not allowed to read this model: ask for READ permission on it"
        }
        (408 | 429 | 500..=599, _, _) => {
            "The server is busy or failing; it was retried as `MLFLOW_HTTP_REQUEST_MAX_RETRIES` allows: try again later, or see the MLflow server's log"
        }
        (_, "RESOURCE_DOES_NOT_EXIST", _) | (404, _, _) => {
            "Check the name, version or run id (names are case-sensitive); list them in the MLflow UI"
        }
        (_, "INVALID_PARAMETER_VALUE", _) => {
            "Check the name and alias (aliases are set with `MlflowClient().set_registered_model_alias`)"
        }
        _ => "See the MLflow server's log for details",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose text repeats its source's, as `object_store`'s layers do.
    #[derive(Debug)]
    struct Layer(String, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn generic(innermost: &str) -> object_store::Error {
        let inner = Layer(innermost.to_string(), None);
        let middle = Layer(
            format!("Error performing GET http://h/b - {innermost}"),
            Some(Box::new(inner)),
        );
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(middle),
        }
    }

    #[test]
    fn store_failures_are_one_line_with_the_status() {
        let xml = "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?>\n<Error><Code>SignatureDoesNotMatch</Code><Message>The signature does not match.</Message></Error>";
        let failure = StoreFailure::new(Service::S3, generic(xml));
        assert_eq!(failure.status, Some(403));
        assert_eq!(
            failure.to_string(),
            "the store answered 403 Forbidden SignatureDoesNotMatch: The signature does not match."
        );
        assert!(std::error::Error::source(&failure).is_none());

        let azure = StoreFailure::new(
            Service::Azure,
            generic(
                "Server returned non-2xx status code: 403 Forbidden: <?xml version=\"1.0\"?><Error><Code>AuthorizationFailure</Code><Message>Server failed to authenticate the request.\nRequestId:3685a817\nTime:2026-12-01T01:50:10.110Z</Message></Error>",
            ),
        );
        assert_eq!(
            azure.to_string(),
            "the store answered 403 Forbidden AuthorizationFailure: Server failed to authenticate the request."
        );

        let refused = StoreFailure::new(Service::S3, generic("Connection refused (os error 111)"));
        assert_eq!(refused.status, None);
        assert_eq!(refused.to_string(), "Connection refused (os error 111)");

        let imds = StoreFailure::new(
            Service::S3,
            generic(
                "Error performing PUT http://169.254.169.254/latest/api/token - Server returned non-2xx status code: 403 Forbidden: denied",
            ),
        );
        assert_eq!(imds.status, None);
        assert!(
            imds.to_string().starts_with("No AWS credentials found"),
            "{imds}"
        );
        assert!(
            SourceError::object_store("Listing", generic(xml)).is_user_error(),
            "a 403 is the user's to fix"
        );
        // Transient answers are not: the old code gave 408 and 429 exit 1.
        for status in [
            "408 Request Timeout",
            "429 Too Many Requests",
            "503 Slow Down",
        ] {
            let error = SourceError::object_store(
                "Listing",
                generic(&format!(
                    "Server returned non-2xx status code: {status}: <Error/>"
                )),
            );
            assert!(!error.is_user_error(), "{status}");
        }
    }

    #[test]
    fn an_unsafe_key_is_refused_naming_the_key_not_the_endpoint() {
        for (key, reason) in [
            ("models/iris/a//b.txt", "an empty segment"),
            (
                "models/iris/../up.txt",
                "could write outside the model directory",
            ),
        ] {
            let source = object_store::path::Path::parse(key).unwrap_err();
            let error = SourceError::object_store(
                "Listing `s3://bucket/models/iris`",
                object_store::Error::InvalidPath { source },
            );
            let text = error.to_string();
            assert!(
                text.starts_with(&format!(
                    "Listing `s3://bucket/models/iris`: the object `{key}` is refused: "
                )) && text.contains(reason),
                "{text}"
            );
            let help = miette::Diagnostic::help(&error).unwrap().to_string();
            assert!(
                !help.contains("endpoint") && !help.contains("credentials"),
                "{help}"
            );
            assert!(error.is_user_error());
        }
    }

    #[test]
    fn a_sent_password_refused_is_not_a_missing_one() {
        let server = |credentials| SourceError::Server {
            what: "Looking up".into(),
            status: 401,
            code: String::new(),
            message: "unauthorized".into(),
            credentials,
        };
        let help = |error: &SourceError| miette::Diagnostic::help(error).unwrap().to_string();
        assert!(help(&server(SentCredentials::None)).starts_with("The server wants credentials"));
        assert!(
            help(&server(SentCredentials::Password))
                .starts_with("The server refused the user name and password sent")
        );
        assert!(help(&server(SentCredentials::Token)).contains("`MLFLOW_TRACKING_TOKEN`"));
    }
}
