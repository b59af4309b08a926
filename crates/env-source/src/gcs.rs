//! `gs://` through `object_store`, with the settings MLflow's `GCSArtifactRepository` honours.
//!
//! MLflow builds `google.cloud.storage.Client()`, which finds credentials the way
//! `google.auth.default()` does, and falls back to an anonymous client when there are none
//! (`DefaultCredentialsError`). Here, in the same order:
//! 1. `STORAGE_EMULATOR_HOST` (read by the `google-cloud-storage` library itself, so MLflow
//!    honours it): requests go to that host, unauthenticated, as that library does;
//! 2. a service account key from `GOOGLE_SERVICE_ACCOUNT_KEY` (JSON) or `GOOGLE_SERVICE_ACCOUNT`
//!    (a file), `object_store`'s own names;
//! 3. `GOOGLE_APPLICATION_CREDENTIALS` (a service account or `gcloud auth
//!    application-default login` file), else `~/.config/gcloud/application_default_credentials.json`;
//! 4. on Google Compute Engine (the metadata server), its service account;
//! 5. else anonymous, as MLflow's fallback: public buckets work, private ones answer 401/403.
//!
//! Timeouts: `MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT`, else `MLFLOW_GCS_DEFAULT_TIMEOUT`
//! (seconds; `-1` means none), bound each request, as in MLflow. Retries with backoff on 5xx
//! and broken connections are `object_store`'s own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::gcp::{
    GcpCredential, GoogleCloudStorage, GoogleCloudStorageBuilder, GoogleConfigKey,
};
use object_store::{ClientOptions, StaticCredentialProvider};

use crate::SourceError;

/// The variables read for `gs://` (documented in the CLI's help).
pub struct GcsVars;

impl GcsVars {
    /// A service account or authorized-user credentials file (Google's standard name).
    pub const GOOGLE_APPLICATION_CREDENTIALS: &'static str = "GOOGLE_APPLICATION_CREDENTIALS";
    /// A service account key file (`object_store`'s name).
    pub const GOOGLE_SERVICE_ACCOUNT: &'static str = "GOOGLE_SERVICE_ACCOUNT";
    /// A service account key, as JSON (`object_store`'s name).
    pub const GOOGLE_SERVICE_ACCOUNT_KEY: &'static str = "GOOGLE_SERVICE_ACCOUNT_KEY";
    /// `HOST:PORT` or a URL of a GCS emulator (the `google-cloud-storage` library's name).
    pub const STORAGE_EMULATOR_HOST: &'static str = "STORAGE_EMULATOR_HOST";
    /// MLflow's GCS request timeout in seconds (`-1`: none).
    pub const MLFLOW_GCS_DEFAULT_TIMEOUT: &'static str = "MLFLOW_GCS_DEFAULT_TIMEOUT";
    /// MLflow's artifact transfer timeout in seconds; wins over the GCS one.
    pub const MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT: &'static str =
        "MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT";
}

/// How the client proves who it is. `Debug` never shows a key.
#[derive(Clone, PartialEq, Eq)]
pub enum GcsCredentials {
    /// No credentials (an emulator, or MLflow's anonymous fallback).
    Anonymous,
    /// A service account key given as JSON in `GOOGLE_SERVICE_ACCOUNT_KEY`.
    ServiceAccountKey(String),
    /// A service account key file (`GOOGLE_SERVICE_ACCOUNT`).
    ServiceAccountFile(PathBuf),
    /// An application default credentials file.
    ApplicationDefault(PathBuf),
    /// The Compute Engine metadata server.
    Metadata,
}

impl GcsCredentials {
    /// How requests are made, for messages ("with the credentials file ...").
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Anonymous => "without credentials".to_string(),
            Self::ServiceAccountKey(_) => {
                format!("with the key in `{}`", GcsVars::GOOGLE_SERVICE_ACCOUNT_KEY)
            }
            Self::ServiceAccountFile(path) => format!("with the key file `{}`", path.display()),
            Self::ApplicationDefault(path) => {
                format!("with the credentials file `{}`", path.display())
            }
            Self::Metadata => "with the Compute Engine service account".to_string(),
        }
    }
}

impl std::fmt::Debug for GcsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Anonymous => f.write_str("Anonymous"),
            Self::ServiceAccountKey(_) => {
                write!(f, "ServiceAccountKey({})", env_spec::redact::MASK)
            }
            Self::ServiceAccountFile(path) => {
                f.debug_tuple("ServiceAccountFile").field(path).finish()
            }
            Self::ApplicationDefault(path) => {
                f.debug_tuple("ApplicationDefault").field(path).finish()
            }
            Self::Metadata => f.write_str("Metadata"),
        }
    }
}

/// Where `gs://` requests go and with which identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsConfig {
    /// The storage API's base URL (`None`: Google's).
    pub base_url: Option<String>,
    /// The identity.
    pub credentials: GcsCredentials,
    /// Per-request timeout: `None` for `object_store`'s default, `Some(None)` for none.
    pub timeout: Option<Option<Duration>>,
}

impl GcsConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, SourceError> {
        Self::from_vars(|name| std::env::var(name).ok(), on_compute_engine())
    }

    /// Reads the settings through `get`; `on_gce` says whether a metadata server is there.
    pub fn from_vars(
        get: impl Fn(&str) -> Option<String>,
        on_gce: bool,
    ) -> Result<Self, SourceError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let timeout = match get(GcsVars::MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT)
            .map(|v| (GcsVars::MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT, v))
            .or_else(|| {
                get(GcsVars::MLFLOW_GCS_DEFAULT_TIMEOUT)
                    .map(|v| (GcsVars::MLFLOW_GCS_DEFAULT_TIMEOUT, v))
            }) {
            None => None,
            Some((name, value)) => match value.trim().parse::<i64>() {
                Ok(-1) => Some(None),
                Ok(seconds) if seconds > 0 => {
                    Some(Some(Duration::from_secs(seconds.unsigned_abs())))
                }
                _ => {
                    return Err(SourceError::InvalidSetting {
                        name,
                        value,
                        expected: "a number of seconds, or -1 for no timeout",
                    });
                }
            },
        };
        if let Some(host) = get(GcsVars::STORAGE_EMULATOR_HOST) {
            let host = host.trim_end_matches('/');
            let base_url = if host.contains("://") {
                host.to_string()
            } else {
                format!("http://{host}")
            };
            return Ok(Self {
                base_url: Some(base_url),
                credentials: GcsCredentials::Anonymous,
                timeout,
            });
        }
        let base_url = get("GOOGLE_BASE_URL");
        let home = get("HOME").map(PathBuf::from);
        let credentials = if let Some(key) = get(GcsVars::GOOGLE_SERVICE_ACCOUNT_KEY) {
            register_key_secrets(&key);
            GcsCredentials::ServiceAccountKey(key)
        } else if let Some(path) =
            get(GcsVars::GOOGLE_SERVICE_ACCOUNT).or_else(|| get("GOOGLE_SERVICE_ACCOUNT_PATH"))
        {
            let path = PathBuf::from(path);
            register_file_secrets(&path, GcsVars::GOOGLE_SERVICE_ACCOUNT)?;
            GcsCredentials::ServiceAccountFile(path)
        } else if let Some(path) = get(GcsVars::GOOGLE_APPLICATION_CREDENTIALS) {
            let path = PathBuf::from(path);
            register_file_secrets(&path, GcsVars::GOOGLE_APPLICATION_CREDENTIALS)?;
            GcsCredentials::ApplicationDefault(path)
        } else if let Some(path) = home
            .map(|home| home.join(".config/gcloud/application_default_credentials.json"))
            .filter(|path| path.is_file())
        {
            register_file_secrets(&path, GcsVars::GOOGLE_APPLICATION_CREDENTIALS)?;
            GcsCredentials::ApplicationDefault(path)
        } else if on_gce {
            GcsCredentials::Metadata
        } else {
            GcsCredentials::Anonymous
        };
        Ok(Self {
            base_url,
            credentials,
            timeout,
        })
    }

    /// The configured, not yet built client for `bucket`.
    #[must_use]
    pub fn builder(&self, bucket: &str) -> GoogleCloudStorageBuilder {
        // Starts empty rather than `from_env`: every `GOOGLE_*` setting that matters is read
        // above, so what is used is what `Debug` shows and the tests check.
        let mut builder = GoogleCloudStorageBuilder::new().with_bucket_name(bucket);
        if let Some(base_url) = &self.base_url {
            builder = builder.with_config(GoogleConfigKey::BaseUrl, base_url);
        }
        let mut options = ClientOptions::new();
        if self
            .base_url
            .as_deref()
            .is_some_and(|url| url.starts_with("http://"))
        {
            options = options.with_allow_http(true);
        }
        match self.timeout {
            Some(Some(timeout)) => options = options.with_timeout(timeout),
            Some(None) => options = options.with_timeout_disabled(),
            None => {}
        }
        builder = builder.with_client_options(options);
        match &self.credentials {
            // Reads skip signing; object_store 0.14 still asks the credential provider for
            // uploads (`Request::send` ignores `skip_signature`), so give it an empty token
            // rather than let it reach for the metadata server (seen with the remote cache on
            // fake-gcs-server).
            GcsCredentials::Anonymous => builder.with_skip_signature(true).with_credentials(
                Arc::new(StaticCredentialProvider::new(GcpCredential {
                    bearer: String::new(),
                })),
            ),
            GcsCredentials::ServiceAccountKey(key) => builder.with_service_account_key(key),
            GcsCredentials::ServiceAccountFile(path) => {
                builder.with_service_account_path(path.to_string_lossy())
            }
            GcsCredentials::ApplicationDefault(path) => {
                builder.with_application_credentials(path.to_string_lossy())
            }
            GcsCredentials::Metadata => builder,
        }
    }

    /// A client for `bucket`.
    pub fn store(&self, bucket: &str) -> Result<GoogleCloudStorage, SourceError> {
        self.builder(bucket).build().map_err(|source| {
            if matches!(
                self.credentials,
                GcsCredentials::ServiceAccountKey(_)
                    | GcsCredentials::ServiceAccountFile(_)
                    | GcsCredentials::ApplicationDefault(_)
            ) {
                // Building reads and parses the credentials and sends nothing: their fault.
                return SourceError::GcsCredentials {
                    how: self.credentials.describe(),
                    source: crate::error::StoreFailure::new(crate::error::Service::Gcs, source),
                };
            }
            SourceError::object_store_in(
                crate::error::Service::Gcs,
                format!(
                    "Connecting to bucket `gs://{bucket}` {}",
                    self.credentials.describe()
                ),
                source,
            )
        })
    }

    /// What identifies the store in the cache key: the API's base URL.
    pub(crate) fn endpoint(&self) -> Option<&str> {
        self.base_url.as_deref()
    }
}

/// The configured, not yet built client for `gs://bucket` (see the module docs), for users that
/// add settings of their own (the remote environment cache's timeouts and retries).
pub fn gcs_builder(bucket: &str) -> Result<GoogleCloudStorageBuilder, SourceError> {
    Ok(GcsConfig::from_env()?.builder(bucket))
}

/// What `google.auth` checks on Linux when the metadata server is slow to answer: the DMI
/// product name of a Compute Engine VM. `GCE_METADATA_HOST` says so too.
fn on_compute_engine() -> bool {
    std::env::var_os("GCE_METADATA_HOST").is_some()
        || fs_err::read_to_string("/sys/class/dmi/id/product_name")
            .is_ok_and(|name| name.contains("Google"))
}

/// Registers the secrets of a credentials file (a service account's private key, an
/// authorized user's refresh token and client secret) so no message can show them.
fn register_file_secrets(path: &Path, setting: &'static str) -> Result<(), SourceError> {
    match fs_err::read_to_string(path) {
        Ok(text) => {
            register_key_secrets(&text);
            Ok(())
        }
        Err(source) => Err(SourceError::CredentialsFile {
            setting,
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn register_key_secrets(json: &str) {
    env_spec::redact::register_secret(json);
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(json) {
        for name in ["private_key", "refresh_token", "client_secret"] {
            if let Some(serde_json::Value::String(secret)) = fields.get(name) {
                env_spec::redact::register_secret(secret);
                // The key's base64 body, in case a message quotes it without the PEM lines.
                for line in secret.lines().filter(|l| l.len() >= 40) {
                    env_spec::redact::register_secret(line);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)], on_gce: bool) -> Result<GcsConfig, SourceError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        GcsConfig::from_vars(
            |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            on_gce,
        )
    }

    #[test]
    fn the_emulator_host_wins_and_is_anonymous() {
        let emulator = config(
            &[
                ("STORAGE_EMULATOR_HOST", "127.0.0.1:4443"),
                ("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent.json"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(emulator.base_url.as_deref(), Some("http://127.0.0.1:4443"));
        assert_eq!(emulator.credentials, GcsCredentials::Anonymous);
        let https = config(&[("STORAGE_EMULATOR_HOST", "https://gcs.test/")], false).unwrap();
        assert_eq!(https.base_url.as_deref(), Some("https://gcs.test"));
    }

    #[test]
    fn credentials_in_google_auth_order_then_anonymous() {
        let home = tempfile::tempdir().unwrap();
        let adc = home
            .path()
            .join(".config/gcloud/application_default_credentials.json");
        fs_err::create_dir_all(adc.parent().unwrap()).unwrap();
        fs_err::write(
            &adc,
            r#"{"type": "authorized_user", "client_id": "id", "client_secret": "adc-client-secret", "refresh_token": "adc-refresh-token-0123"}"#,
        )
        .unwrap();
        let home_text = home.path().to_str().unwrap();
        let key_file = home.path().join("sa.json");
        fs_err::write(
            &key_file,
            r#"{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n", "client_email": "a@b.iam"}"#,
        )
        .unwrap();
        let key_text = key_file.to_str().unwrap();

        let from_env = config(
            &[
                ("HOME", home_text),
                ("GOOGLE_APPLICATION_CREDENTIALS", key_text),
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            from_env.credentials,
            GcsCredentials::ApplicationDefault(key_file.clone())
        );
        // Its private key is never shown, even quoted by another library.
        assert_eq!(
            env_spec::redact::redact(
                "bad key MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7 here"
            ),
            "bad key **** here"
        );
        let service_account = config(
            &[
                ("HOME", home_text),
                ("GOOGLE_SERVICE_ACCOUNT", key_text),
                ("GOOGLE_APPLICATION_CREDENTIALS", "/elsewhere.json"),
            ],
            true,
        )
        .unwrap();
        assert_eq!(
            service_account.credentials,
            GcsCredentials::ServiceAccountFile(key_file.clone())
        );
        let gcloud = config(&[("HOME", home_text)], true).unwrap();
        assert_eq!(gcloud.credentials, GcsCredentials::ApplicationDefault(adc));
        assert_eq!(
            env_spec::redact::redact("token adc-refresh-token-0123 refused"),
            "token **** refused"
        );
        let empty = tempfile::tempdir().unwrap();
        let empty_text = empty.path().to_str().unwrap();
        assert_eq!(
            config(&[("HOME", empty_text)], true).unwrap().credentials,
            GcsCredentials::Metadata
        );
        assert_eq!(
            config(&[("HOME", empty_text)], false).unwrap().credentials,
            GcsCredentials::Anonymous,
            "MLflow's fallback: an anonymous client"
        );
        let missing = config(
            &[("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")],
            false,
        )
        .unwrap_err();
        assert!(
            matches!(missing, SourceError::CredentialsFile { setting, .. } if setting == "GOOGLE_APPLICATION_CREDENTIALS"),
            "{missing:?}"
        );
    }

    #[test]
    fn mlflow_timeouts() {
        assert_eq!(config(&[], false).unwrap().timeout, None);
        assert_eq!(
            config(&[("MLFLOW_GCS_DEFAULT_TIMEOUT", "30")], false)
                .unwrap()
                .timeout,
            Some(Some(Duration::from_secs(30)))
        );
        assert_eq!(
            config(
                &[
                    ("MLFLOW_GCS_DEFAULT_TIMEOUT", "30"),
                    ("MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT", "-1")
                ],
                false
            )
            .unwrap()
            .timeout,
            Some(None)
        );
        assert!(matches!(
            config(&[("MLFLOW_GCS_DEFAULT_TIMEOUT", "soon")], false).unwrap_err(),
            SourceError::InvalidSetting { .. }
        ));
    }
}
