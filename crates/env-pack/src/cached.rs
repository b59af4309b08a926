//! Archives kept in the cache, one per environment and packing options, so a caller that packs
//! the same environment again (every `pyfunc_env.spark_udf` call for a model) gets the archive
//! written the first time instead of spending 15 s and 150 MB on an identical copy.
//!
//! Guarantees: the archive is complete when its name exists ([`crate::pack`] writes a
//! temporary file and renames it), its report (`<name>.json`) is written after it, so an archive
//! without a report is packed again; packing is deterministic, so two processes packing the same
//! environment at once write the same bytes and either rename wins. The environment is
//! immutable once built, so its key and the options name the archive's content.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Format, PackError, PackOptions, PackReport, io};

/// An archive in the cache.
#[derive(Debug, Clone, Serialize)]
pub struct CachedArchive {
    /// The archive.
    pub path: PathBuf,
    /// Whether it was already there (not packed by this call).
    pub reused: bool,
    /// What the archive holds.
    #[serde(flatten)]
    pub summary: Summary,
    /// The full report when this call packed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<PackReport>,
}

impl CachedArchive {
    /// The `pack --cached --json` document: what a Spark driver (`pyfunc_env.spark_udf`) reads
    /// to ship the archive of the environment `key` at `prefix` and the model directory
    /// `model` beside it.
    #[must_use]
    pub fn document(&self, key: &str, prefix: &Path, model: &Path) -> serde_json::Value {
        serde_json::json!({
            "archive": self.path,
            "reused": self.reused,
            "key": key,
            "prefix": prefix,
            "model": model,
            "python": self.summary.python,
            "python_minor": self.summary.python_minor,
            "archive_bytes": self.summary.archive_bytes,
            "warnings": self.summary.warnings,
        })
    }
}

/// What a cached archive holds, kept beside it as `<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The archive's Python version (`3.11.7`).
    pub python: String,
    /// Its `major.minor`.
    pub python_minor: String,
    /// The archive's size in bytes.
    pub archive_bytes: u64,
    /// Files in it.
    pub files: u64,
    /// Warnings of the packing.
    pub warnings: Vec<String>,
}
/// The archive's file name for the environment `key` under `options`: the key, then what the
/// options change (`spark` when distributions are left out for Spark, `tests`, `nopyc`), then
/// the format's extension. A model is never part of a cached archive.
#[must_use]
pub fn cached_name(key: &str, options: &PackOptions) -> String {
    let mut name = format!("pyfunc-env-{key}");
    if !options.exclude_distributions.is_empty() {
        let mut excluded = options.exclude_distributions.clone();
        excluded.sort();
        name.push('-');
        name.push_str(&excluded.join("+"));
    }
    if options.keep_tests {
        name.push_str("-tests");
    }
    if !options.compile {
        name.push_str("-nopyc");
    }
    if options.full_prefix {
        name.push_str("-full");
    }
    let extension = match options.format {
        Format::TarGz => "tar.gz",
        Format::Tar => "tar",
        Format::Zip => "zip",
        Format::TarZst => "tar.zst",
    };
    format!("{name}.{extension}")
}

/// [`pack_cached_blocking`] into `cache`'s `packs-v1/`, on the caller's runtime's blocking
/// pool: the call `pack --cached` makes. (The bucket, the blocking task and its copies of the
/// arguments were the CLI's.)
///
/// # Errors
/// As [`pack_cached_blocking`], [`PackError::Cache`] if the bucket cannot be made, or
/// [`PackError::Task`] if the blocking task panicked.
pub async fn pack_cached(
    prefix: &Path,
    key: &str,
    cache: &env_cache::Cache,
    options: &PackOptions,
) -> Result<CachedArchive, PackError> {
    let (prefix, key, dir, options) = (
        prefix.to_path_buf(),
        key.to_string(),
        cache.bucket(env_cache::PACKS_BUCKET)?,
        options.clone(),
    );
    crate::spawn_blocking("pack", move || {
        pack_cached_blocking(&prefix, &key, &dir, &options)
    })
    .await
}

/// Packs the environment at `prefix` (whose key is `key`) into `dir` unless an archive of it
/// under the same options is already there. `options.model` must be `None`: the model changes
/// more often than its environment and is shipped on its own.
///
/// # Errors
/// Packing failed, or the archive's report could not be written.
pub fn pack_cached_blocking(
    prefix: &Path,
    key: &str,
    dir: &Path,
    options: &PackOptions,
) -> Result<CachedArchive, PackError> {
    debug_assert!(options.model.is_none(), "a cached archive holds no model");
    let path = dir.join(cached_name(key, options));
    let report_path = path.with_file_name(format!(
        "{}.json",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    ));
    if path.is_file()
        && let Ok(text) = fs_err::read_to_string(&report_path)
        && let Ok(summary) = serde_json::from_str::<Summary>(&text)
    {
        tracing::debug!("Reusing the packed archive `{}`", path.display());
        return Ok(CachedArchive {
            path,
            reused: true,
            summary,
            report: None,
        });
    }
    fs_err::create_dir_all(dir).map_err(io(dir))?;
    let report = crate::pack(prefix, &path, options)?;
    let summary = Summary {
        python: report.python.clone(),
        python_minor: report.python_minor.clone(),
        archive_bytes: report.archive_bytes,
        files: report.files,
        warnings: report.warnings.clone(),
    };
    let text = serde_json::to_string_pretty(&summary).map_err(|source| PackError::Io {
        path: report_path.clone(),
        source: source.into(),
    })?;
    let temporary = report_path.with_extension(format!("json.{}.tmp", std::process::id()));
    fs_err::write(&temporary, text).map_err(io(&temporary))?;
    fs_err::rename(&temporary, &report_path).map_err(io(&report_path))?;
    Ok(CachedArchive {
        path,
        reused: false,
        summary,
        report: Some(report),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pack --cached`'s one call finds the archive in the cache's `packs-v1/` (there already,
    /// with its report, so nothing is packed), and a cache that cannot be opened is the
    /// cache's error.
    #[tokio::test]
    async fn the_archive_lives_in_the_caches_packs_bucket() {
        let root = tempfile::tempdir().unwrap();
        let cache = env_cache::Cache::new(root.path().join("cache"));
        let options = crate::policy::PackPolicy::new(None, None, Some("spark"), true, false, None)
            .unwrap()
            .options(None, root.path().join("tmp"));
        let dir = root.path().join("cache").join(env_cache::PACKS_BUCKET);
        let path = dir.join(cached_name("k", &options));
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(&path, "archive").unwrap();
        let summary = r#"{"python": "3.11.7", "python_minor": "3.11", "archive_bytes": 7, "files": 1, "warnings": []}"#;
        fs_err::write(
            path.with_file_name(format!("{}.json", cached_name("k", &options))),
            summary,
        )
        .unwrap();
        let cached = pack_cached(Path::new("/no/such/prefix"), "k", &cache, &options)
            .await
            .unwrap();
        assert!(cached.reused);
        assert_eq!(cached.path, path);
        assert_eq!(cached.summary.python_minor, "3.11");
        let file = root.path().join("file");
        fs_err::write(&file, "").unwrap();
        let error = pack_cached(
            Path::new("/no/such/prefix"),
            "k",
            &env_cache::Cache::new(&file),
            &options,
        )
        .await
        .unwrap_err();
        assert!(matches!(error, PackError::Cache(_)), "{error:?}");
    }
}
