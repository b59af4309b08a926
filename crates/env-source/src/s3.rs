//! `s3://` through the Arrow project's `object_store` (no hand-written signing): standard AWS
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, web identity, ECS) plus MLflow's `MLFLOW_S3_ENDPOINT_URL` for
//! S3-compatible stores. Retries with backoff are `object_store`'s own.

use std::path::Path;

use object_store::ObjectStore as _;
use object_store::ObjectStoreExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;

use crate::SourceError;

/// MLflow's name for an S3-compatible endpoint.
pub const MLFLOW_S3_ENDPOINT_URL: &str = "MLFLOW_S3_ENDPOINT_URL";

/// The endpoint in use (for the cache key and messages): `AWS_ENDPOINT_URL_S3`,
/// `AWS_ENDPOINT_URL`, `AWS_ENDPOINT`, else `MLFLOW_S3_ENDPOINT_URL`; `None` for AWS itself.
pub(crate) fn endpoint() -> Option<String> {
    [
        "AWS_ENDPOINT_URL_S3",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT",
        MLFLOW_S3_ENDPOINT_URL,
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()))
}

/// The configured client for `bucket`, not yet built: the model-URI downloads and the remote
/// environment cache (`env-remote`) connect the same way, from the same settings.
pub fn builder(bucket: &str) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = endpoint() {
        // S3-compatible stores (MinIO, SeaweedFS) want path-style requests; plain HTTP is
        // allowed only when the endpoint says so.
        builder = builder
            .with_endpoint(&endpoint)
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if std::env::var("AWS_REGION").is_err() && std::env::var("AWS_DEFAULT_REGION").is_err() {
        builder = builder.with_region("us-east-1");
    }
    builder
}

fn store(bucket: &str) -> Result<object_store::aws::AmazonS3, SourceError> {
    builder(bucket)
        .build()
        .map_err(|source| SourceError::ObjectStore {
            what: format!("Connecting to bucket `{bucket}`"),
            source,
        })
}

/// Every object under `prefix`, as paths relative to it, with sizes.
pub(crate) async fn list(bucket: &str, prefix: &str) -> Result<Vec<(String, u64)>, SourceError> {
    let store = store(bucket)?;
    let root = ObjectPath::from(prefix);
    let mut files = Vec::new();
    let mut pending = vec![root.clone()];
    while let Some(dir) = pending.pop() {
        let listing = store
            .list_with_delimiter(Some(&dir))
            .await
            .map_err(|source| SourceError::ObjectStore {
                what: format!("Listing `s3://{bucket}/{dir}`"),
                source,
            })?;
        pending.extend(listing.common_prefixes);
        for object in listing.objects {
            let relative: Vec<String> = object
                .location
                .prefix_match(&root)
                .into_iter()
                .flatten()
                .map(|part| part.as_ref().to_string())
                .collect();
            if relative.is_empty() || relative.iter().any(|p| p == ".." || p == ".") {
                continue;
            }
            files.push((relative.join("/"), object.size));
        }
    }
    files.sort();
    Ok(files)
}

/// Downloads `s3://bucket/prefix/relative` to `dest`.
pub(crate) async fn download(
    bucket: &str,
    prefix: &str,
    relative: &str,
    dest: &Path,
) -> Result<u64, SourceError> {
    let store = store(bucket)?;
    let location = if prefix.is_empty() {
        ObjectPath::from(relative)
    } else {
        ObjectPath::from(format!("{prefix}/{relative}"))
    };
    let what = format!("Downloading `s3://{bucket}/{location}`");
    let bytes = store
        .get(&location)
        .await
        .map_err(|source| SourceError::ObjectStore {
            what: what.clone(),
            source,
        })?
        .bytes()
        .await
        .map_err(|source| SourceError::ObjectStore { what, source })?;
    fs_err::write(dest, &bytes).map_err(|source| SourceError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    Ok(bytes.len() as u64)
}
