//! Content-addressed blobs in the cache (`images-v1/blobs/sha256/<hex>`), written through a
//! hashing writer and renamed into place only when complete, so a blob file's name is always
//! the digest of its content.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::{ImageError, io};

/// A writer that hashes and counts what passes through it.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    /// The inner writer, `sha256:<hex>` and the byte count.
    pub(crate) fn finish(self) -> (W, String, u64) {
        let digest = format!("sha256:{}", hex(&self.hasher.finalize()));
        (self.inner, digest, self.bytes)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// The blob directory of the cache.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// The store of `cache` (its `images-v1/`), the cache initialised first if it is new.
    /// (The CLI made these three calls.)
    ///
    /// # Errors
    /// The cache or the store's directories cannot be created.
    pub fn open(cache: &env_cache::Cache) -> Result<Self, ImageError> {
        cache.init()?;
        Self::new(&cache.bucket(env_cache::IMAGES_BUCKET)?)
    }

    /// A store rooted at `root` (the cache's `images-v1/`).
    pub fn new(root: &Path) -> Result<Self, ImageError> {
        let store = Self {
            root: root.to_path_buf(),
        };
        let blobs = store.blob_dir();
        fs_err::create_dir_all(&blobs).map_err(io(&blobs))?;
        let records = store.record_dir();
        fs_err::create_dir_all(&records).map_err(io(&records))?;
        Ok(store)
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// A directory for temporary files (same filesystem as the blobs).
    pub(crate) fn staging_dir(&self) -> PathBuf {
        self.blob_dir()
    }

    /// Where environment-layer records live (one JSON file per environment key and variant).
    pub(crate) fn record_dir(&self) -> PathBuf {
        self.root.join("env-layers")
    }

    /// The file of blob `digest` (`sha256:<hex>`), present or not.
    #[must_use]
    pub fn path(&self, digest: &str) -> PathBuf {
        self.blob_dir()
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    }

    /// Whether the blob is present.
    #[must_use]
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    /// A temporary file in the store (same filesystem: renamed into place when complete).
    pub(crate) fn temp(&self) -> Result<tempfile::NamedTempFile, ImageError> {
        let dir = self.blob_dir();
        tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io(&dir))
    }

    /// Moves a completed temporary file to its digest's name.
    pub(crate) fn persist(
        &self,
        temp: tempfile::NamedTempFile,
        digest: &str,
    ) -> Result<PathBuf, ImageError> {
        let path = self.path(digest);
        temp.as_file().sync_all().map_err(io(&path))?;
        temp.persist(&path).map_err(|e| ImageError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(path)
    }

    /// Writes `bytes` as a blob; returns its digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = sha256_digest(bytes);
        if !self.has(&digest) {
            let mut temp = self.temp()?;
            temp.write_all(bytes).map_err(io(temp.path()))?;
            self.persist(temp, &digest)?;
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new cache is initialised, and the store lives in its `images-v1/`.
    #[test]
    fn the_store_of_a_new_cache_is_its_images_bucket() {
        let root = tempfile::tempdir().unwrap();
        let cache = env_cache::Cache::new(root.path().join("cache"));
        let store = BlobStore::open(&cache).unwrap();
        assert!(root.path().join("cache/CACHEDIR.TAG").is_file());
        let images = cache.bucket(env_cache::IMAGES_BUCKET).unwrap();
        assert_eq!(store.root, images);
        assert!(images.join("blobs/sha256").is_dir());
        // A cache root that is a file is the cache's error, as it was.
        let file = root.path().join("file");
        fs_err::write(&file, "").unwrap();
        let error = BlobStore::open(&env_cache::Cache::new(&file)).unwrap_err();
        assert!(matches!(error, ImageError::Cache(_)), "{error:?}");
    }
}
