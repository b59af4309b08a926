//! A model argument opened: a directory as it is, or a model URI downloaded once into
//! `models-v1/` (while the cache's shared lock is held, as for everything staged in `tmp/`:
//! `cache prune` removes `tmp/` only when nobody holds it, issue 23). The opened model holds
//! the downloaded model's lock for as long as it lives, so `cache prune` keeps it. This was
//! the CLI's (`commands/mod.rs`) before issue 24.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use env_cache::{Cache, LockedFile};
use env_spec::ModelDir;

use crate::{ModelUri, Reporter, Resolved, SourceError, SourceSettings, SourceWarning};

/// A model opened from a command line.
#[derive(Debug)]
pub struct OpenedModel {
    /// The model directory.
    pub model: ModelDir,
    /// What a model URI resolved to (with its lock); `None` for a directory given as such.
    pub source: Option<Resolved>,
}

impl OpenedModel {
    /// The model, and the downloaded model's lock to hold while it is used (and to pass on to
    /// a process that uses it after us); `None` for a local directory.
    #[must_use]
    pub fn into_model(self) -> (ModelDir, Option<Arc<LockedFile>>) {
        (self.model, self.source.and_then(|source| source.lock))
    }

    /// The downloaded model's lock file, for a process that goes on using the model after us
    /// (`run` execs its command with it open); `None` for a local directory.
    #[must_use]
    pub fn lock_file(&self) -> Option<&std::fs::File> {
        self.source.as_ref()?.lock.as_deref()?.file()
    }
}

/// What opening a model did that the user should be told, in the order to tell it (the CLI
/// words and colours each).
#[derive(Debug)]
pub enum OpenNotice<'a> {
    /// Something to warn about (offline, the last resolution of a moving name was used).
    Warning(&'a SourceWarning),
    /// The model URI was downloaded now, not found in the cache.
    Downloaded(&'a Resolved),
    /// The directory given is an MLflow 3 logged-model directory: the model is in its
    /// `artifacts/` subdirectory, this path.
    ArtifactsSubdir(&'a Path),
}

impl OpenedModel {
    /// What to tell the user about how the model was opened: the download's warnings, the
    /// download itself unless the cached copy was used, and a model found under `artifacts/`.
    #[must_use]
    pub fn notices(&self) -> Vec<OpenNotice<'_>> {
        let mut notices = Vec::new();
        if let Some(resolved) = &self.source {
            notices.extend(resolved.warnings.iter().map(OpenNotice::Warning));
            if !resolved.cached {
                notices.push(OpenNotice::Downloaded(resolved));
            }
        }
        if self.model.artifacts_subdir {
            notices.push(OpenNotice::ArtifactsSubdir(self.model.root()));
        }
        notices
    }
}

/// A model directory given as such: nothing downloaded, no lock to hold.
impl From<ModelDir> for OpenedModel {
    fn from(model: ModelDir) -> Self {
        Self {
            model,
            source: None,
        }
    }
}

/// Why a model could not be opened.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum OpenError {
    /// The model URI could not be resolved or downloaded.
    #[error("Failed to get the model `{shown}`")]
    Get {
        /// The URI, its secrets masked.
        shown: String,
        /// The cause.
        #[source]
        source: SourceError,
    },
    /// The cache could not be opened or locked for the download.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),
    /// The directory is not a model MLflow can read.
    #[error("Failed to read the model at `{}`", path.display())]
    Read {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: env_spec::SpecError,
    },
}

impl OpenError {
    /// Whether the input caused it (a bad URI, a missing model, a store's 4xx: exit code 1)
    /// rather than something broken (the network, the disk: 2).
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Get { source, .. } => source.is_user_error(),
            Self::Read { source, .. } => source.is_user_error(),
            Self::Cache(_) => false,
        }
    }
}

/// Opens `model`: a directory (or a `file:` URI naming one) as it is; any other model URI is
/// resolved and downloaded into `cache` unless already there. `vars` reads the environment
/// (the stores' and MLflow's settings); `reporter(shown)` gives the download's reporter.
pub async fn open_model(
    model: &OsStr,
    vars: impl Fn(&str) -> Option<String>,
    offline: bool,
    cache: &Cache,
    reporter: impl FnOnce(&str) -> Arc<dyn Reporter>,
) -> Result<OpenedModel, OpenError> {
    let (path, source) = match model.to_str() {
        // A non-UTF-8 argument can only be a local path.
        None => (PathBuf::from(model), None),
        Some(text) => match ModelUri::local_path(text) {
            // A directory, or a `file:` URI naming one (decoded: never the URI text as a path).
            Some(path) => (path, None),
            None => {
                let resolved = download(text, vars, offline, cache, reporter).await?;
                (resolved.dir.clone(), Some(resolved))
            }
        },
    };
    let model = ModelDir::open(&path).map_err(|source| OpenError::Read { path, source })?;
    Ok(OpenedModel { model, source })
}

async fn download(
    text: &str,
    vars: impl Fn(&str) -> Option<String>,
    offline: bool,
    cache: &Cache,
    reporter: impl FnOnce(&str) -> Arc<dyn Reporter>,
) -> Result<Resolved, OpenError> {
    let shown = env_spec::redact::redact_url(text);
    let settings = SourceSettings::from_env(vars, offline).map_err(|source| OpenError::Get {
        shown: shown.clone(),
        source,
    })?;
    let _cache_lock = {
        let cache = cache.clone();
        // Waits while `cache clean` or `cache prune` holds the cache: off the runtime.
        tokio::task::spawn_blocking(move || {
            cache.init()?;
            cache.lock_shared()
        })
        .await
        .map_err(|error| env_cache::CacheError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(error),
        })??
    };
    crate::resolve(text, &settings, cache, reporter(&shown))
        .await
        .map_err(|source| OpenError::Get { shown, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nothing(_: &str) -> Arc<dyn Reporter> {
        panic!("a local model is not downloaded")
    }

    /// A directory (or a `file:` URI naming one) is opened as it is: no cache is created or
    /// locked, no reporter asked for, no lock held.
    #[tokio::test]
    async fn a_local_model_is_opened_without_the_cache() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("model");
        fs_err::create_dir_all(&model).unwrap();
        fs_err::write(model.join("MLmodel"), "flavors: {}\n").unwrap();
        let cache = Cache::new(root.path().join("cache"));
        let uri = url::Url::from_file_path(&model).unwrap().to_string();
        for given in [model.as_os_str().to_owned(), uri.into()] {
            let opened = open_model(&given, |_| None, true, &cache, nothing)
                .await
                .unwrap();
            assert_eq!(opened.model.root(), model);
            assert!(opened.into_model().1.is_none());
        }
        assert!(!cache.root().exists());
    }

    /// A directory given as such says nothing; an MLflow 3 logged-model directory says where
    /// the model is; a download says its warnings, then that it downloaded, unless the cached
    /// copy was used.
    #[test]
    fn notices_say_what_was_downloaded_and_where_the_model_is() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("model");
        fs_err::create_dir_all(&model).unwrap();
        fs_err::write(model.join("MLmodel"), "flavors: {}\n").unwrap();
        let logged = root.path().join("m-1");
        fs_err::create_dir_all(logged.join("artifacts")).unwrap();
        fs_err::write(logged.join("artifacts/MLmodel"), "flavors: {}\n").unwrap();
        let plain = OpenedModel::from(ModelDir::open(&model).unwrap());
        assert!(plain.notices().is_empty());
        let artifacts = OpenedModel::from(ModelDir::open(&logged).unwrap());
        let inner = logged.join("artifacts").canonicalize().unwrap();
        assert!(
            matches!(artifacts.notices().as_slice(), [OpenNotice::ArtifactsSubdir(path)] if *path == inner),
            "{:?}",
            artifacts.notices()
        );
        let resolved = |cached| Resolved {
            uri: "models:/m@champion".into(),
            dir: model.clone(),
            source: None,
            name: Some("m".into()),
            version: Some("3".into()),
            cached,
            warnings: vec![SourceWarning::OfflineLastResolution {
                name: "m".into(),
                uri: "models:/m@champion".into(),
                version: "3".into(),
                age_seconds: 60,
            }],
            lock: None,
        };
        for cached in [false, true] {
            let opened = OpenedModel {
                model: ModelDir::open(&model).unwrap(),
                source: Some(resolved(cached)),
            };
            let notices = opened.notices();
            let warned = |warning: &SourceWarning| warning.to_string().starts_with("Offline:");
            let said = match notices.as_slice() {
                [
                    OpenNotice::Warning(warning),
                    OpenNotice::Downloaded(resolved),
                ] => warned(warning) && !resolved.cached,
                [OpenNotice::Warning(warning)] => warned(warning) && cached,
                _ => false,
            };
            assert!(said, "cached: {cached}, {notices:?}");
        }
    }

    /// A directory that is no model and a URI that does not parse are the user's to fix;
    /// a cache that cannot be made is something broken.
    #[tokio::test]
    async fn a_missing_model_is_the_users_error_and_a_broken_cache_is_not() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        let missing = root.path().join("no-model");
        for given in [missing.as_os_str(), OsStr::new("models:/")] {
            let quiet = |_: &str| Arc::new(crate::NoReporter) as Arc<dyn Reporter>;
            let error = open_model(given, |_| None, true, &cache, quiet)
                .await
                .unwrap_err();
            assert!(error.is_user_error(), "{error:?}");
        }
        let io = std::io::Error::other("disk gone");
        let broken = OpenError::Cache(env_cache::CacheError::Io {
            path: PathBuf::new(),
            source: io,
        });
        assert!(!broken.is_user_error());
    }
}
