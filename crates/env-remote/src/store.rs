//! Connecting to the store (one library, `object_store`, for S3, GCS, Azure and a directory),
//! bounded waits, and errors that name the setting to fix.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3ConfigKey as S3Key;
use object_store::gcp::GoogleConfigKey as GcsKey;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientConfigKey, ClientOptions, ObjectStore, RetryConfig};

use crate::{Remote, RemoteError, Scheme};

impl Remote {
    /// A client for the store. Built per operation.
    pub(crate) fn store(&self) -> Result<Arc<dyn ObjectStore>, RemoteError> {
        let client = ClientOptions::new()
            .with_connect_timeout(self.timeout)
            // A whole transfer may take long; stalls are bounded per read instead.
            .with_timeout(Duration::from_secs(3600));
        let retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 2.0,
            },
            max_retries: 2,
            retry_timeout: self.timeout,
        };
        let url = &self.url;
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> = match url.scheme {
            // Set key by key: replacing the client options would drop the endpoint's
            // allow-http setting that `s3_builder` made.
            Scheme::S3 => env_source::s3_builder(&url.bucket)?
                .with_config(
                    S3Key::Client(ClientConfigKey::ConnectTimeout),
                    format!("{}s", self.timeout.as_secs()),
                )
                .with_config(S3Key::Client(ClientConfigKey::Timeout), "3600s")
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            // The same GCS settings as `gs://` model URIs (`STORAGE_EMULATOR_HOST`, key files,
            // application default credentials), set key by key like S3's.
            Scheme::Gs => env_source::gcs_builder(&url.bucket)?
                .with_config(
                    GcsKey::Client(ClientConfigKey::ConnectTimeout),
                    format!("{}s", self.timeout.as_secs()),
                )
                .with_config(GcsKey::Client(ClientConfigKey::Timeout), "3600s")
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            Scheme::Az => object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(&url.bucket)
                .with_client_options(client)
                .with_retry(retry)
                .build()
                .map(|s| Arc::new(s) as Arc<dyn ObjectStore>),
            Scheme::File => {
                let dir = url.dir.clone().unwrap_or_default();
                if !self.read_only {
                    fs_err::create_dir_all(&dir).map_err(crate::io(&dir))?;
                }
                object_store::local::LocalFileSystem::new_with_prefix(&dir)
                    .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }
        };
        built.map_err(|error| self.error("connecting", &error))
    }

    /// `relative` (to the remote's root) as a path in the store.
    pub(crate) fn object(&self, relative: &str) -> ObjectPath {
        if self.url.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.url.prefix))
        }
    }

    /// `path` relative to the remote's root.
    pub(crate) fn relative(&self, path: &ObjectPath) -> String {
        let text = path.as_ref();
        if self.url.prefix.is_empty() {
            text.to_string()
        } else {
            text.strip_prefix(&format!("{}/", self.url.prefix))
                .unwrap_or(text)
                .to_string()
        }
    }

    /// A store error as one of ours: refused credentials and unreachable stores get their own
    /// message, naming what to check. Secrets are masked.
    pub(crate) fn error(&self, what: &str, error: &object_store::Error) -> RemoteError {
        let full = error.to_string();
        let message = short(&full);
        let url = self.url.to_string();
        let what = what.to_string();
        // Classified by type and status, with the model sources' one rule
        // (`env_source::http`), never by the store's words.
        let status = env_source::http::object_store_status(error);
        if status.map(env_source::http::HttpClass::of) == Some(env_source::http::HttpClass::Refused)
        {
            return RemoteError::Credentials {
                url,
                what,
                message,
                help: self.url.credential_settings().to_string(),
                status,
            };
        }
        if env_source::http::object_store_unreachable(error) {
            return RemoteError::Unreachable { url, what, message };
        }
        RemoteError::Store {
            url,
            what,
            message,
            status,
        }
    }

    /// A wait that took longer than [`Remote::timeout`].
    pub(crate) fn timed_out(&self, what: &str) -> RemoteError {
        RemoteError::Unreachable {
            url: self.url.to_string(),
            what: what.to_string(),
            message: format!("no answer within {} s", self.timeout.as_secs()),
        }
    }

    /// `future`, given at most [`Remote::timeout`].
    pub(crate) async fn bounded<T>(
        &self,
        what: &str,
        future: impl Future<Output = Result<T, object_store::Error>>,
    ) -> Result<T, RemoteError> {
        match tokio::time::timeout(self.timeout, future).await {
            Ok(result) => result.map_err(|error| self.error(what, &error)),
            Err(_) => Err(self.timed_out(what)),
        }
    }
}

/// The first line of a store error, at most 300 characters, secrets masked.
fn short(text: &str) -> String {
    let line: String = text
        .split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = env_spec::redact::redact(&line);
    if line.chars().count() > 300 {
        line = line.chars().take(300).collect::<String>() + "...";
    }
    line
}
