//! Models in object storage (`s3://`, `gs://`, `wasbs://`, `abfss://`): one listing and one
//! streaming download for every store `object_store` speaks, and what identifies a prefix in
//! the cache key. Each store's settings live in its own module ([`crate::s3`],
//! [`crate::gcs`], [`crate::azure`]).

use std::path::Path;
use std::sync::Arc;

use futures_util::StreamExt as _;
use object_store::ObjectStore;
use object_store::ObjectStoreExt as _;
use object_store::path::Path as ObjectPath;
use tokio::io::AsyncWriteExt as _;

use crate::azure::AzureConfig;
use crate::download::Progress;
use crate::error::Service;
use crate::gcs::GcsConfig;
use crate::{ModelUri, SourceError, s3};

/// A prefix in a store, connected.
#[derive(Clone)]
pub(crate) struct Remote {
    store: Arc<dyn ObjectStore>,
    service: Service,
    /// `s3://bucket`, `gs://bucket`, `wasbs://container@account...`: for messages.
    root: String,
    prefix: String,
}

/// Whether `uri` names a prefix in object storage.
pub(crate) fn is_object(uri: &ModelUri) -> bool {
    matches!(
        uri,
        ModelUri::S3 { .. } | ModelUri::Gcs { .. } | ModelUri::Azure(_)
    )
}

/// What the cached copy of `uri` is keyed by: the store's endpoint, the bucket or container,
/// and the prefix. `None` if `uri` is not in object storage.
pub(crate) fn identity(uri: &ModelUri) -> Result<Option<serde_json::Value>, SourceError> {
    let endpoint = |e: Option<&str>| e.map(env_spec::redact::redact_url);
    Ok(Some(match uri {
        ModelUri::S3 { bucket, prefix } => serde_json::json!({
            "kind": "s3",
            "endpoint": endpoint(s3::endpoint().as_deref()),
            "bucket": bucket,
            "prefix": prefix,
        }),
        ModelUri::Gcs { bucket, prefix } => serde_json::json!({
            "kind": "gcs",
            "endpoint": endpoint(GcsConfig::from_env()?.endpoint()),
            "bucket": bucket,
            "prefix": prefix,
        }),
        ModelUri::Azure(azure) => {
            let config = AzureConfig::from_env(azure)?;
            serde_json::json!({
                "kind": "azure",
                "endpoint": endpoint(Some(&config.endpoint)),
                "container": config.container,
                "prefix": azure.prefix,
            })
        }
        _ => return Ok(None),
    }))
}

impl Remote {
    /// Connects to the store `uri` names. `None` if `uri` is not in object storage.
    pub(crate) fn open(uri: &ModelUri) -> Result<Option<Self>, SourceError> {
        let (store, service, root, prefix): (Arc<dyn ObjectStore>, _, _, _) = match uri {
            ModelUri::S3 { bucket, prefix } => (
                Arc::new(s3::s3_store(bucket)?),
                Service::S3,
                format!("s3://{bucket}"),
                prefix,
            ),
            ModelUri::Gcs { bucket, prefix } => (
                Arc::new(GcsConfig::from_env()?.store(bucket)?),
                Service::Gcs,
                format!("gs://{bucket}"),
                prefix,
            ),
            ModelUri::Azure(azure) => (
                Arc::new(AzureConfig::from_env(azure)?.store()?),
                Service::Azure,
                azure.root(),
                &azure.prefix,
            ),
            _ => return Ok(None),
        };
        Ok(Some(Self {
            store,
            service,
            root,
            prefix: prefix.clone(),
        }))
    }

    fn shown(&self, path: &str) -> String {
        if path.is_empty() {
            self.root.clone()
        } else {
            format!("{}/{path}", self.root)
        }
    }

    /// The prefix as a store path, taken as written: `ObjectPath::from` would percent-encode
    /// `%`, `#`, `?`, `*` and others, naming a different key than MLflow's client asks for.
    fn root(&self) -> ObjectPath {
        ObjectPath::parse(&self.prefix).unwrap_or_else(|_| ObjectPath::from(self.prefix.as_str()))
    }

    /// Every object under the prefix, as paths relative to it (the keys as the store has
    /// them, not encoded), with sizes. Zero-byte folder markers (`prefix/sub/`, what the S3
    /// console's "Create folder" makes) are skipped, as MLflow's `_file_is_directory_marker`
    /// does.
    pub(crate) async fn list(&self) -> Result<Vec<(String, u64)>, SourceError> {
        let root = self.root();
        let mut files = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let listing = self
                .store
                .list_with_delimiter(Some(&dir))
                .await
                .map_err(|source| {
                    SourceError::object_store_in(
                        self.service,
                        format!("Listing `{}`", self.shown(dir.as_ref())),
                        source,
                    )
                })?;
            pending.extend(listing.common_prefixes);
            for object in listing.objects {
                // `dir/` itself, listed under `dir/`: `Path::parse` dropped its trailing `/`.
                if object.location == dir && object.size == 0 {
                    continue;
                }
                let key = object.location.as_ref();
                let relative = if root.is_root() {
                    Some(key)
                } else {
                    key.strip_prefix(root.as_ref())
                        .and_then(|rest| rest.strip_prefix('/'))
                };
                let Some(relative) = relative.filter(|r| !r.is_empty()) else {
                    return Err(SourceError::UnsafeKey {
                        what: format!("Listing `{}`", self.shown(dir.as_ref())),
                        key: env_spec::redact::redact(key),
                        reason: "it is not below the prefix listed (a non-empty object named like the folder itself)".to_string(),
                    });
                };
                files.push((relative.to_string(), object.size));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Downloads `relative` (to the prefix) to `dest`, streaming; a body that breaks off gives
    /// its bytes back to `progress`.
    pub(crate) async fn download(
        &self,
        relative: &str,
        dest: &Path,
        progress: &Progress,
    ) -> Result<u64, SourceError> {
        // `relative` is a key as listed: parsed, never encoded again (`h#x.txt` must not be
        // asked for as `h%23x.txt`). The listing parsed it already, so this cannot fail.
        let root = self.root();
        let key = if root.is_root() {
            relative.to_string()
        } else {
            format!("{}/{relative}", root.as_ref())
        };
        let location = ObjectPath::parse(&key).map_err(|source| {
            SourceError::object_store_in(
                self.service,
                format!("Downloading `{}`", self.shown(&key)),
                object_store::Error::InvalidPath { source },
            )
        })?;
        let what = format!("Downloading `{}`", self.shown(location.as_ref()));
        let failed = |source| SourceError::object_store_in(self.service, what.clone(), source);
        let io = |source| SourceError::Write {
            path: dest.to_path_buf(),
            source,
        };
        let mut stream = self
            .store
            .get(&location)
            .await
            .map_err(failed)?
            .into_stream();
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        let mut written = 0;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(source) => {
                    progress.take_back(written);
                    return Err(failed(source));
                }
            };
            file.write_all(&chunk).await.map_err(io)?;
            written += chunk.len() as u64;
            progress.add(chunk.len() as u64);
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        Ok(written)
    }
}
