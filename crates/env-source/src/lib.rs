//! Model URIs to local model directories, with MLflow's meanings.
//!
//! ```text
//! <cache>/models-v1/<key>/         one downloaded model, never modified once there
//!   model/                         the model's files (the directory holding `MLmodel`)
//!   source.json                    what it came from (written before the directory appears)
//! <cache>/models-v1/<key>.lock     the entry's lock; downloaders hold it exclusively, users shared
//! <cache>/models-v1/refs/<id>.json the last resolution of an alias, `latest` or stage
//! ```
//!
//! Guarantees, and why they hold:
//! - **A partial download never becomes a model.** Files are downloaded into a staging
//!   directory under `tmp/` (same filesystem), `source.json` is written last, and the staging
//!   directory is renamed into place in one step. `kill -9` at any moment leaves either no entry
//!   or a complete one; abandoned staging is removed by `cache prune`.
//! - **Keyed by what the content is, not how it was named.** The key is a sha256 over the
//!   resolved immutable source: registry + model name + version, tracking server + run id +
//!   path, or the artifact location. `models:/iris@champion` resolving to version 3 shares the
//!   entry of `models:/iris/3`, so `--offline` works on it afterwards.
//! - **Moving names are resolved online each time.** An alias, `latest` or a stage is looked up
//!   on every use; offline, the last resolution is used with a warning.
//! - **Secrets never reach output.** Tokens and passwords are registered with
//!   [`env_spec::redact`]; every URI in a message or a file goes through it.
#![warn(missing_docs)]

mod mlflow;
mod s3;
mod settings;
mod uri;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use env_cache::{Cache, CacheError, LockKind, LockedFile};
use serde::{Deserialize, Serialize};
use sha2::Digest as _;

pub use s3::MLFLOW_S3_ENDPOINT_URL;
/// The S3 client settings (`AWS_*`, `MLFLOW_S3_ENDPOINT_URL`), for other users of the store.
pub use s3::builder as s3_builder;
pub use settings::{SourceSettings, Vars};
pub use uri::{ModelUri, Selector};

/// The model cache bucket.
pub use env_cache::MODELS_BUCKET;

/// How many files are downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

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
    #[diagnostic(help(
        "Check the bucket and prefix, and the AWS credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`; `AWS_ENDPOINT_URL` or `MLFLOW_S3_ENDPOINT_URL` for an S3-compatible store)"
    ))]
    ObjectStore {
        /// What was asked.
        what: String,
        /// The cause.
        #[source]
        source: object_store::Error,
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
            | Self::NoVersions { .. }
            | Self::NoModel { .. }
            | Self::OfflineNotCached { .. } => true,
            Self::Server { status, .. } => (400..500).contains(status),
            Self::ObjectStore { source, .. } => matches!(
                source,
                object_store::Error::NotFound { .. }
                    | object_store::Error::PermissionDenied { .. }
                    | object_store::Error::Unauthenticated { .. }
            ),
            _ => false,
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

/// What a URI resolved to.
#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    /// The URI as given (redacted).
    pub uri: String,
    /// The local model directory.
    pub dir: PathBuf,
    /// The artifact location it was downloaded from (redacted), if remote.
    pub source: Option<String>,
    /// The registered model's name, for `models:/`.
    pub name: Option<String>,
    /// The version a `models:/` URI resolved to.
    pub version: Option<String>,
    /// Whether the cached copy was used (no download).
    pub cached: bool,
    /// Things the user should know (an offline fallback to the last resolution).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// What `source.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryInfo {
    /// The first URI that downloaded it (redacted).
    pub uri: String,
    /// The artifact location (redacted).
    pub source: String,
    /// Registered model name, if any.
    pub name: Option<String>,
    /// Version, if any.
    pub version: Option<String>,
    /// Unix seconds.
    pub created: u64,
}

/// The last resolution of a moving name (alias, `latest`, stage).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ref {
    uri: String,
    name: String,
    version: String,
    resolved: u64,
}

/// Locks that must live until the process ends: they keep `cache prune` from removing a
/// model directory a command is using.
static HELD: Mutex<Vec<LockedFile>> = Mutex::new(Vec::new());

/// Resolves `text` to a local model directory, downloading it into the cache if needed.
/// Blocking: runs its own small Tokio runtime (the CLI's commands are synchronous).
pub fn resolve_blocking(
    text: &str,
    settings: &SourceSettings,
    cache: &Cache,
) -> Result<Resolved, SourceError> {
    // A plain path needs no runtime, and no cache.
    if let ModelUri::Local(dir) = ModelUri::parse(text)? {
        return Ok(local(text, dir));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| SourceError::Write {
            path: cache.root().to_path_buf(),
            source,
        })?;
    runtime.block_on(resolve(text, settings, cache))
}

fn local(text: &str, dir: PathBuf) -> Resolved {
    Resolved {
        uri: env_spec::redact::redact_url(text),
        dir,
        source: None,
        name: None,
        version: None,
        cached: false,
        warnings: Vec::new(),
    }
}

/// Resolves `text` to a local model directory, downloading it into the cache if needed.
pub async fn resolve(
    text: &str,
    settings: &SourceSettings,
    cache: &Cache,
) -> Result<Resolved, SourceError> {
    let parsed = ModelUri::parse(text)?;
    let shown = env_spec::redact::redact_url(text);
    let server = |uri: Option<&str>| {
        uri.map(|s| s.trim_end_matches('/').to_string())
            .ok_or_else(|| SourceError::NoServer { uri: shown.clone() })
    };
    match parsed {
        ModelUri::Local(dir) => Ok(local(text, dir)),
        ModelUri::S3 { bucket, prefix } => {
            let key = key(&serde_json::json!({
                "kind": "s3",
                "endpoint": s3::endpoint().map(|e| env_spec::redact::redact_url(&e)),
                "bucket": bucket,
                "prefix": prefix,
            }));
            let text = text.to_string();
            fetch_cached(
                cache,
                settings,
                &key,
                &shown,
                None,
                || async move { Ok(text) },
            )
            .await
        }
        ModelUri::Registered {
            name,
            selector,
            path,
        } => {
            let registry = server(settings.registry())?;
            let mut warnings = Vec::new();
            let version = match &selector {
                Selector::Version(version) => version.clone(),
                moving => resolve_moving(settings, cache, &registry, &name, moving, &shown)
                    .await
                    .map(|(version, warning)| {
                        warnings.extend(warning);
                        version
                    })?,
            };
            let key = key(&serde_json::json!({
                "kind": "model-version",
                "registry": env_spec::redact::redact_url(&registry),
                "name": name,
                "version": version,
                "path": path,
            }));
            let registered = Some((name.as_str(), version.as_str()));
            let mut resolved = fetch_cached(cache, settings, &key, &shown, registered, || async {
                let client = mlflow::Client::new(settings)?;
                let location = client.download_uri(&registry, &name, &version).await?;
                Ok(join_uri(&location, &path))
            })
            .await?;
            resolved.name = Some(name);
            resolved.version = Some(version);
            resolved.warnings = warnings;
            Ok(resolved)
        }
        ModelUri::LoggedModel { id } => {
            let tracking = server(settings.tracking_uri.as_deref())?;
            let key = key(&serde_json::json!({
                "kind": "logged-model",
                "tracking": env_spec::redact::redact_url(&tracking),
                "id": id,
            }));
            fetch_cached(cache, settings, &key, &shown, None, || async {
                let client = mlflow::Client::new(settings)?;
                client.logged_model_location(&tracking, &id).await
            })
            .await
        }
        ModelUri::Run { run_id, path } => {
            let tracking = server(settings.tracking_uri.as_deref())?;
            let key = key(&serde_json::json!({
                "kind": "run",
                "tracking": env_spec::redact::redact_url(&tracking),
                "run_id": run_id,
                "path": path,
            }));
            fetch_cached(cache, settings, &key, &shown, None, || async {
                let client = mlflow::Client::new(settings)?;
                let run = client.run(&tracking, &run_id).await?;
                let location = join_uri(&run.artifact_uri, &path);
                // MLflow 3 keeps `log_model` output in a logged model, not the run's
                // artifacts: `runs:/ID/NAME` then means the logged model NAME of that run.
                if !path.is_empty()
                    && !has_mlmodel(&client, settings, &location)
                        .await
                        .unwrap_or(false)
                {
                    let (model, rest) = path.split_once('/').unwrap_or((&path, ""));
                    if let Some(uri) = client.logged_model_of_run(&tracking, &run, model).await? {
                        return Ok(join_uri(&uri, rest));
                    }
                }
                Ok(location)
            })
            .await
        }
        ModelUri::MlflowArtifacts { .. } => {
            let tracking = server(settings.tracking_uri.as_deref())?;
            let key = key(&serde_json::json!({
                "kind": "mlflow-artifacts",
                "tracking": env_spec::redact::redact_url(&tracking),
                "uri": text,
            }));
            let text = text.to_string();
            fetch_cached(
                cache,
                settings,
                &key,
                &shown,
                None,
                || async move { Ok(text) },
            )
            .await
        }
    }
}

/// An alias, `latest` or stage: online, ask the registry and remember the answer; offline (or
/// with the server unreachable), use the last answer with a warning.
async fn resolve_moving(
    settings: &SourceSettings,
    cache: &Cache,
    registry: &str,
    name: &str,
    selector: &Selector,
    shown: &str,
) -> Result<(String, Option<String>), SourceError> {
    let refs = cache.bucket(MODELS_BUCKET)?.join("refs");
    let ref_path = refs.join(format!(
        "{}.json",
        key(&serde_json::json!({
            "registry": env_spec::redact::redact_url(registry),
            "name": name,
            "selector": format!("{selector:?}"),
        }))
    ));
    let last = || -> Option<Ref> { serde_json::from_slice(&fs_err::read(&ref_path).ok()?).ok() };
    if settings.offline {
        return match last() {
            Some(r) => Ok((
                r.version.clone(),
                Some(format!(
                    "Offline: using version {} of `{name}`, what `{shown}` resolved to {} ago",
                    r.version,
                    ago(r.resolved)
                )),
            )),
            None => Err(SourceError::OfflineNotCached {
                uri: shown.to_string(),
            }),
        };
    }
    let client = mlflow::Client::new(settings)?;
    let version = match selector {
        Selector::Alias(alias) => client.version_by_alias(registry, name, alias).await?,
        Selector::Latest => client.latest_version(registry, name, None).await?,
        Selector::Stage(stage) => client.latest_version(registry, name, Some(stage)).await?,
        Selector::Version(version) => version.clone(),
    };
    fs_err::create_dir_all(&refs).map_err(|source| SourceError::Write {
        path: refs.clone(),
        source,
    })?;
    let record = Ref {
        uri: shown.to_string(),
        name: name.to_string(),
        version: version.clone(),
        resolved: env_cache::unix_now(),
    };
    // Serialising a struct of strings cannot fail.
    let bytes = serde_json::to_vec_pretty(&record).expect("a Ref serialises");
    env_cache::write_atomic(&ref_path, &bytes)?;
    Ok((version, None))
}

fn ago(then: u64) -> String {
    let seconds = env_cache::unix_now().saturating_sub(then);
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        7200..172_800 => format!("{} h", seconds / 3600),
        _ => format!("{} days", seconds / 86400),
    }
}

/// A short, stable key for a canonical JSON description of a source.
fn key(value: &serde_json::Value) -> String {
    let digest = sha2::Sha256::digest(value.to_string().as_bytes());
    digest[..16].iter().fold(String::new(), |mut out, byte| {
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{byte:02x}"));
        out
    })
}

/// MLflow's `append_to_uri_path`.
fn join_uri(base: &str, path: &str) -> String {
    if path.is_empty() {
        base.to_string()
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

/// A cached model entry.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    dir: PathBuf,
    lock: PathBuf,
}

impl ModelEntry {
    fn new(bucket: &Path, key: &str) -> Self {
        Self {
            dir: bucket.join(key),
            lock: bucket.join(format!("{key}.lock")),
        }
    }

    /// The entry directory (`model/` and `source.json`).
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The model directory inside it.
    #[must_use]
    pub fn model_dir(&self) -> PathBuf {
        self.dir.join("model")
    }

    /// The lock file beside it.
    #[must_use]
    pub fn lock_path(&self) -> &Path {
        &self.lock
    }

    /// The key.
    #[must_use]
    pub fn key(&self) -> String {
        self.dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// When a command last used it (the lock file's modification time).
    #[must_use]
    pub fn last_used(&self) -> Option<std::time::SystemTime> {
        fs_err::metadata(&self.lock).ok()?.modified().ok()
    }

    /// Takes the entry's lock exclusively if nobody uses it.
    pub fn try_lock_exclusive(&self) -> Result<Option<LockedFile>, CacheError> {
        LockedFile::try_acquire(&self.lock, LockKind::Exclusive)
    }

    /// Removes the entry (hold its lock): renamed into `tmp_dir` first, so an interrupted
    /// removal never leaves something that looks like a model.
    pub fn remove(&self, tmp_dir: &Path) -> Result<(), SourceError> {
        if self.dir.exists() {
            let doomed = tmp_dir.join(format!("removing-model-{}", self.key()));
            let write = |path: &Path| {
                let path = path.to_path_buf();
                move |source| SourceError::Write { path, source }
            };
            fs_err::rename(&self.dir, &doomed).map_err(write(&self.dir))?;
            fs_err::remove_dir_all(&doomed).map_err(write(&doomed))?;
        }
        let _ = fs_err::remove_file(&self.lock);
        Ok(())
    }

    /// What it came from; `None` if incomplete.
    #[must_use]
    pub fn info(&self) -> Option<EntryInfo> {
        serde_json::from_slice(&fs_err::read(self.dir.join("source.json")).ok()?).ok()
    }
}

/// A downloaded model `cache prune` removed (or, in a dry run, would).
#[derive(Debug, Clone)]
pub struct PrunedModel {
    /// The entry's key.
    pub key: String,
    /// The URI it was downloaded for; `None` for an incomplete download.
    pub uri: Option<String>,
    /// Bytes on disk.
    pub size: u64,
}

/// What [`prune_models`] did.
#[derive(Debug, Clone, Default)]
pub struct PruneModelsReport {
    /// Bytes freed.
    pub freed: u64,
    /// Entries kept because another process uses them.
    pub skipped_in_use: usize,
}

/// Removes downloaded models unused for longer than `older_than`, and incomplete downloads,
/// skipping those another process holds. `on_removal` is called before each removal.
pub fn prune_models(
    cache: &Cache,
    older_than: Option<std::time::Duration>,
    dry_run: bool,
    on_removal: &mut dyn FnMut(&PrunedModel),
) -> Result<PruneModelsReport, SourceError> {
    let mut report = PruneModelsReport::default();
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    let now = std::time::SystemTime::now();
    for model in entries(cache) {
        let last_used = model
            .last_used()
            .unwrap_or(std::time::SystemTime::UNIX_EPOCH);
        let info = model.info();
        let incomplete = model.dir().exists() && info.is_none();
        let stale =
            older_than.is_some_and(|age| now.duration_since(last_used).unwrap_or_default() > age);
        if !(stale || incomplete) {
            continue;
        }
        let Some(lock) = model.try_lock_exclusive()? else {
            report.skipped_in_use += 1;
            continue;
        };
        let size = env_cache::disk_usage(model.dir(), &mut std::collections::HashSet::new());
        on_removal(&PrunedModel {
            key: model.key(),
            uri: info.map(|i| i.uri),
            size,
        });
        if !dry_run {
            model.remove(&tmp)?;
        }
        drop(lock);
        report.freed += size;
    }
    Ok(report)
}

/// Every entry of the model cache.
pub fn entries(cache: &Cache) -> Vec<ModelEntry> {
    let bucket = cache.root().join(MODELS_BUCKET);
    let mut keys = std::collections::BTreeSet::new();
    for entry in fs_err::read_dir(&bucket).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = name.strip_suffix(".lock").unwrap_or(&name).to_string();
        if key != "refs" && !key.starts_with('.') {
            keys.insert(key);
        }
    }
    keys.iter()
        .map(|key| ModelEntry::new(&bucket, key))
        .collect()
}

/// A model entry's lock, waiting at most the cache's lock timeout (`PYFUNC_ENV_LOCK_TIMEOUT`)
/// for another process downloading it (or, for a download, using it); the timeout error
/// names the holder.
fn wait_for(cache: &Cache, path: &Path, kind: LockKind) -> Result<LockedFile, CacheError> {
    LockedFile::acquire(
        path,
        kind,
        Some(cache.lock_timeout()),
        std::time::Duration::from_secs(30),
        |waited| {
            tracing::debug!(
                "Waiting for another process holding `{}` ({waited:?})",
                path.display()
            );
        },
    )
}

/// Reuses the entry `key` if complete; else (online) locks it, resolves the artifact location
/// with `locate` and downloads it through staging.
async fn fetch_cached<F, Fut>(
    cache: &Cache,
    settings: &SourceSettings,
    key: &str,
    shown: &str,
    registered: Option<(&str, &str)>,
    locate: F,
) -> Result<Resolved, SourceError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, SourceError>>,
{
    let bucket = cache.bucket(MODELS_BUCKET)?;
    let entry = ModelEntry::new(&bucket, key);
    let found = |entry: &ModelEntry, cached: bool| -> Result<Option<Resolved>, SourceError> {
        let Some(info) = entry.info() else {
            return Ok(None);
        };
        let lock = wait_for(cache, entry.lock_path(), LockKind::Shared)?;
        // The lock file's mtime is the last use (`cache prune --older-than`); a read-only
        // cache records none.
        if let Some(file) = lock.file() {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(lock);
        tracing::debug!("Model cache hit for `{shown}`: {}", entry.dir().display());
        Ok(Some(Resolved {
            uri: shown.to_string(),
            dir: entry.model_dir(),
            source: Some(info.source),
            name: info.name,
            version: info.version,
            cached,
            warnings: Vec::new(),
        }))
    };
    if let Some(resolved) = found(&entry, true)? {
        return Ok(resolved);
    }
    if settings.offline {
        return Err(SourceError::OfflineNotCached {
            uri: shown.to_string(),
        });
    }
    let lock = wait_for(cache, entry.lock_path(), LockKind::Exclusive)?;
    if entry.info().is_none() {
        let location = locate().await?;
        download_entry(cache, settings, &entry, shown, registered, &location).await?;
    }
    drop(lock);
    found(&entry, false)?.ok_or_else(|| SourceError::OfflineNotCached {
        uri: shown.to_string(),
    })
}

/// Where an artifact location is served from: the MLflow artifact service (its base URL and
/// the path under the artifact root), or a local directory.
enum Location {
    Proxied { base: String, root: String },
    S3 { bucket: String, prefix: String },
    Local(PathBuf),
}

fn location(settings: &SourceSettings, uri: &str, shown: &str) -> Result<Location, SourceError> {
    let not_yet = |what| SourceError::NotSupportedYet {
        uri: env_spec::redact::redact_url(uri),
        what,
    };
    match ModelUri::parse(uri)? {
        ModelUri::MlflowArtifacts { netloc, path } => {
            let tracking =
                settings
                    .tracking_uri
                    .as_deref()
                    .ok_or_else(|| SourceError::NoServer {
                        uri: shown.to_string(),
                    })?;
            let mut base = url::Url::parse(tracking).map_err(|_| SourceError::InvalidServer {
                uri: env_spec::redact::redact_url(tracking),
            })?;
            if let Some(netloc) = netloc {
                let (host, port) = match netloc.rsplit_once(':') {
                    Some((host, port)) => (host.to_string(), port.parse::<u16>().ok()),
                    None => (netloc.clone(), None),
                };
                base.set_host(Some(&host))
                    .map_err(|_| SourceError::InvalidServer {
                        uri: netloc.clone(),
                    })?;
                let _ = base.set_port(port);
            }
            Ok(Location::Proxied {
                base: base.as_str().trim_end_matches('/').to_string(),
                root: path,
            })
        }
        ModelUri::Local(path) if path.is_absolute() => Ok(Location::Local(path)),
        ModelUri::S3 { bucket, prefix } => Ok(Location::S3 { bucket, prefix }),
        ModelUri::Local(_) => Err(not_yet("A relative artifact location")),
        _ => {
            if let Some((base, root)) = uri.split_once("/api/2.0/mlflow-artifacts/artifacts/")
                && (base.starts_with("http://") || base.starts_with("https://"))
            {
                return Ok(Location::Proxied {
                    base: base.to_string(),
                    root: root.trim_matches('/').to_string(),
                });
            }
            Err(not_yet("This artifact location"))
        }
    }
}

async fn has_mlmodel(
    client: &mlflow::Client,
    settings: &SourceSettings,
    uri: &str,
) -> Result<bool, SourceError> {
    match location(settings, uri, uri)? {
        Location::Proxied { base, root } => Ok(client
            .list_tree(&base, &root)
            .await?
            .iter()
            .any(|f| f.path == "MLmodel")),
        Location::S3 { bucket, prefix } => Ok(s3::list(&bucket, &prefix)
            .await?
            .iter()
            .any(|(path, _)| path == "MLmodel")),
        Location::Local(path) => Ok(path.join("MLmodel").is_file()),
    }
}

/// Downloads `location` into a staging directory, writes `source.json` last and renames the
/// staging directory into place.
async fn download_entry(
    cache: &Cache,
    settings: &SourceSettings,
    entry: &ModelEntry,
    shown: &str,
    registered: Option<(&str, &str)>,
    location_uri: &str,
) -> Result<(), SourceError> {
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    let staging = tempfile::Builder::new()
        .prefix("model-")
        .tempdir_in(&tmp)
        .map_err(|source| SourceError::Write {
            path: tmp.clone(),
            source,
        })?;
    let model_dir = staging.path().join("model");
    let write = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SourceError::Write { path, source }
    };
    fs_err::create_dir_all(&model_dir).map_err(write(&model_dir))?;
    let shown_location = env_spec::redact::redact_url(location_uri);
    let no_model = |found: String| SourceError::NoModel {
        uri: shown.to_string(),
        location: shown_location.clone(),
        found,
    };
    match location(settings, location_uri, shown)? {
        Location::Proxied { base, root } => {
            let client = mlflow::Client::new(settings)?;
            let files = client.list_tree(&base, &root).await?;
            if !files.iter().any(|f| f.path == "MLmodel") {
                return Err(no_model(describe(&files)));
            }
            let total: u64 = files.iter().filter_map(|f| f.file_size).sum();
            tracing::debug!(
                "Downloading {} files ({total} bytes) of `{shown}`",
                files.len()
            );
            let mut tasks = tokio::task::JoinSet::new();
            let mut queue = files.into_iter();
            loop {
                while tasks.len() < PARALLEL_DOWNLOADS
                    && let Some(file) = queue.next()
                {
                    let client = client.clone();
                    let base = base.clone();
                    let remote = format!("{root}/{}", file.path);
                    let dest = model_dir.join(&file.path);
                    if let Some(parent) = dest.parent() {
                        fs_err::create_dir_all(parent).map_err(write(parent))?;
                    }
                    tasks.spawn(async move { client.download(&base, &remote, &dest).await });
                }
                match tasks.join_next().await {
                    None => break,
                    Some(Ok(result)) => {
                        result?;
                    }
                    Some(Err(join)) => {
                        return Err(SourceError::Write {
                            path: model_dir.clone(),
                            source: std::io::Error::other(join),
                        });
                    }
                }
            }
        }
        Location::S3 { bucket, prefix } => {
            let files = s3::list(&bucket, &prefix).await?;
            if !files.iter().any(|(path, _)| path == "MLmodel") {
                let names: Vec<mlflow::FileInfo> = files
                    .iter()
                    .map(|(path, size)| mlflow::FileInfo {
                        path: path.clone(),
                        is_dir: false,
                        file_size: Some(*size),
                    })
                    .collect();
                return Err(no_model(describe(&names)));
            }
            let mut tasks = tokio::task::JoinSet::new();
            let mut queue = files.into_iter();
            loop {
                while tasks.len() < PARALLEL_DOWNLOADS
                    && let Some((relative, _)) = queue.next()
                {
                    let dest = model_dir.join(&relative);
                    if let Some(parent) = dest.parent() {
                        fs_err::create_dir_all(parent).map_err(write(parent))?;
                    }
                    let (bucket, prefix) = (bucket.clone(), prefix.clone());
                    tasks.spawn(
                        async move { s3::download(&bucket, &prefix, &relative, &dest).await },
                    );
                }
                match tasks.join_next().await {
                    None => break,
                    Some(Ok(result)) => {
                        result?;
                    }
                    Some(Err(join)) => {
                        return Err(SourceError::Write {
                            path: model_dir.clone(),
                            source: std::io::Error::other(join),
                        });
                    }
                }
            }
        }
        Location::Local(path) => {
            if !path.join("MLmodel").is_file() {
                return Err(no_model(if path.is_dir() {
                    "a directory without `MLmodel`".to_string()
                } else {
                    "nothing".to_string()
                }));
            }
            copy_tree(&path, &model_dir)?;
        }
    }
    let info = EntryInfo {
        uri: shown.to_string(),
        source: shown_location.clone(),
        name: registered.map(|(name, _)| name.to_string()),
        version: registered.map(|(_, version)| version.to_string()),
        created: env_cache::unix_now(),
    };
    // Serialising a struct of strings cannot fail.
    let bytes = serde_json::to_vec_pretty(&info).expect("EntryInfo serialises");
    env_cache::write_atomic(&staging.path().join("source.json"), &bytes)?;
    if entry.dir().exists() {
        // Left by something other than us (we hold the lock and it has no source.json).
        fs_err::remove_dir_all(entry.dir()).map_err(write(entry.dir()))?;
    }
    let staged = staging.keep();
    fs_err::rename(&staged, entry.dir()).map_err(write(entry.dir()))?;
    Ok(())
}

fn describe(files: &[mlflow::FileInfo]) -> String {
    if files.is_empty() {
        return "nothing is there".to_string();
    }
    let names: Vec<&str> = files.iter().take(5).map(|f| f.path.as_str()).collect();
    format!(
        "no `MLmodel` among {} file(s) ({}{})",
        files.len(),
        names.join(", "),
        if files.len() > 5 { ", ..." } else { "" }
    )
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), SourceError> {
    for entry in fs_err::read_dir(from).map_err(|source| SourceError::Read {
        path: from.to_path_buf(),
        source,
    })? {
        let entry = entry.map_err(|source| SourceError::Read {
            path: from.to_path_buf(),
            source,
        })?;
        let source_path = entry.path();
        let dest = to.join(entry.file_name());
        if source_path.is_dir() {
            fs_err::create_dir_all(&dest).map_err(|source| SourceError::Write {
                path: dest.clone(),
                source,
            })?;
            copy_tree(&source_path, &dest)?;
        } else {
            fs_err::copy(&source_path, &dest).map_err(|source| SourceError::Write {
                path: dest.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_change_with_every_input() {
        let base = serde_json::json!({"kind": "model-version", "registry": "http://h", "name": "iris", "version": "1", "path": ""});
        let k = key(&base);
        assert_eq!(k.len(), 32);
        for (field, value) in [
            ("registry", "http://g"),
            ("name", "Iris"),
            ("version", "2"),
            ("path", "sub"),
        ] {
            let mut other = base.clone();
            other[field] = serde_json::json!(value);
            assert_ne!(key(&other), k, "{field}");
        }
    }

    #[test]
    fn offline_without_cache_is_a_clear_error() {
        let temp = tempfile::tempdir().unwrap();
        let cache = Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let settings = SourceSettings {
            tracking_uri: Some("http://127.0.0.1:9".into()),
            offline: true,
            ..SourceSettings::default()
        };
        for uri in ["models:/iris/1", "models:/iris@champion", "runs:/abc/model"] {
            let error = resolve_blocking(uri, &settings, &cache).unwrap_err();
            assert!(
                matches!(error, SourceError::OfflineNotCached { .. }),
                "{uri}: {error:?}"
            );
        }
        let error =
            resolve_blocking("models:/iris/1", &SourceSettings::default(), &cache).unwrap_err();
        assert!(matches!(error, SourceError::NoServer { .. }), "{error:?}");
    }
}
