//! Downloading an artifact location (the MLflow artifact service, object storage, a local
//! directory)
//! into a staging directory that becomes a cache entry in one rename.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use env_cache::Cache;

use crate::bucket::{EntryInfo, ModelEntry};
use crate::{ModelUri, Reporter, SourceError, SourceSettings, mlflow};

/// How many files are downloaded at once.
const PARALLEL_DOWNLOADS: usize = 4;

/// Where an artifact location is served from: the MLflow artifact service (its base URL and
/// the path under the artifact root), or a local directory.
enum Location {
    Proxied {
        base: String,
        root: String,
    },
    /// `s3://`, `gs://`, `wasbs://`, `abfss://` (see [`crate::object`]).
    Object(ModelUri),
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
        uri if crate::object::is_object(&uri) => Ok(Location::Object(uri)),
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

pub(crate) async fn has_mlmodel(
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
        Location::Object(uri) => Ok(open_prefix(&uri)?
            .list()
            .await?
            .iter()
            .any(|(path, _)| path == "MLmodel")),
        Location::Local(path) => Ok(path.join("MLmodel").is_file()),
    }
}

/// Downloads `location` into a staging directory, writes `source.json` last and renames the
/// staging directory into place.
pub(crate) async fn download_entry(
    cache: &Cache,
    settings: &SourceSettings,
    reporter: &Arc<dyn Reporter>,
    entry: &ModelEntry,
    shown: &str,
    registered: Option<(&str, &str)>,
    location_uri: &str,
) -> Result<(), SourceError> {
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    // The umask's mode, not tempfile's 0700: the directory becomes the entry, which other
    // users of the cache read (issue 23).
    let staging = env_cache::temp_builder("model-", true)
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
            let client = mlflow::Client::new(settings, Arc::clone(reporter))?;
            let files: Vec<RemoteFile> = client
                .list_tree(&base, &root)
                .await?
                .into_iter()
                .map(|f| RemoteFile {
                    path: f.path,
                    size: f.file_size,
                })
                .collect();
            describe_unless_model(&files).map_err(no_model)?;
            refuse_oversized_mlmodel(&files, shown)?;
            download_all(
                &model_dir,
                files,
                reporter,
                shown,
                |relative, dest, progress| {
                    let (client, base) = (client.clone(), base.clone());
                    let remote = format!("{root}/{relative}");
                    async move { client.download(&base, &remote, &dest, &progress).await }
                },
            )
            .await?;
        }
        Location::Object(uri) => {
            let prefix = open_prefix(&uri)?;
            let files: Vec<RemoteFile> = prefix
                .list()
                .await?
                .into_iter()
                .map(|(path, size)| RemoteFile {
                    path,
                    size: Some(size),
                })
                .collect();
            describe_unless_model(&files).map_err(no_model)?;
            refuse_oversized_mlmodel(&files, shown)?;
            download_all(
                &model_dir,
                files,
                reporter,
                shown,
                |relative, dest, progress| {
                    let prefix = prefix.clone();
                    async move { prefix.download(&relative, &dest, &progress).await }
                },
            )
            .await?;
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
    // A model whose MLmodel every command would refuse (too large, not YAML) never becomes a
    // cache entry: the staging directory goes with `staging` (issue 23: a refused 100 MB
    // MLmodel stayed in `models-v1/`).
    env_spec::ModelDir::open(&model_dir)
        .and_then(|model| model.mlmodel())
        .map_err(|source| SourceError::RefusedModel {
            uri: shown.to_string(),
            source,
        })?;
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

fn open_prefix(uri: &ModelUri) -> Result<crate::object::Remote, SourceError> {
    // `Location::Object` is only made for URIs `object::is_object` accepts.
    Ok(crate::object::Remote::open(uri)?.expect("an object storage URI"))
}

/// A file of a remote model: its path relative to the model root, and its size if listed.
struct RemoteFile {
    path: String,
    size: Option<u64>,
}

/// The bytes of one model download, summed over its files and reported as they arrive.
#[derive(Clone)]
pub(crate) struct Progress {
    reporter: Arc<dyn Reporter>,
    id: usize,
    total: Option<u64>,
    done: Arc<AtomicU64>,
}

impl Progress {
    /// `bytes` more arrived.
    pub(crate) fn add(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.reporter
            .on_download_progress(self.id, done, self.total);
    }

    /// A failed attempt's `bytes` will be downloaded again.
    pub(crate) fn take_back(&self, bytes: u64) {
        let done = self.done.fetch_sub(bytes, Ordering::Relaxed) - bytes;
        self.reporter
            .on_download_progress(self.id, done, self.total);
    }
}

/// Reports a download's end when dropped.
struct Complete<'a>(&'a Progress);

impl Drop for Complete<'_> {
    fn drop(&mut self) {
        self.0.reporter.on_download_complete(self.0.id);
    }
}

/// Fetches `files` into `model_dir`, [`PARALLEL_DOWNLOADS`] at a time, with `fetch(relative
/// path, destination, progress)`; the first failure cancels the rest.
async fn download_all<F, Fut>(
    model_dir: &Path,
    files: Vec<RemoteFile>,
    reporter: &Arc<dyn Reporter>,
    shown: &str,
    fetch: F,
) -> Result<(), SourceError>
where
    F: Fn(String, PathBuf, Progress) -> Fut,
    Fut: std::future::Future<Output = Result<u64, SourceError>> + Send + 'static,
{
    let total = files.iter().map(|f| f.size).sum::<Option<u64>>();
    tracing::debug!(
        "Downloading {} files ({} bytes) of `{shown}`",
        files.len(),
        total.map_or_else(|| "?".to_string(), |t| t.to_string())
    );
    let progress = Progress {
        reporter: Arc::clone(reporter),
        id: reporter.on_download_start(shown),
        total,
        done: Arc::new(AtomicU64::new(0)),
    };
    // Reports the end on every path out of here, failures included.
    let _complete = Complete(&progress);
    let mut tasks = tokio::task::JoinSet::new();
    let mut queue = files.into_iter();
    loop {
        while tasks.len() < PARALLEL_DOWNLOADS
            && let Some(file) = queue.next()
        {
            let dest = model_dir.join(&file.path);
            if let Some(parent) = dest.parent() {
                fs_err::create_dir_all(parent).map_err(|source| SourceError::Write {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            tasks.spawn(fetch(file.path, dest, progress.clone()));
        }
        match tasks.join_next().await {
            None => return Ok(()),
            Some(Ok(result)) => {
                result?;
            }
            Some(Err(join)) => {
                return Err(SourceError::Write {
                    path: model_dir.to_path_buf(),
                    source: std::io::Error::other(join),
                });
            }
        }
    }
}

/// Refuses, before downloading anything, a listing whose `MLmodel` is larger than any command
/// reads ([`env_spec::source::MAX_FILE_SIZE`]).
fn refuse_oversized_mlmodel(files: &[RemoteFile], shown: &str) -> Result<(), SourceError> {
    let limit = env_spec::source::MAX_FILE_SIZE;
    match files
        .iter()
        .find(|f| f.path == env_spec::mlmodel::MLMODEL_FILE)
        .and_then(|f| f.size)
    {
        Some(size) if size > limit => Err(SourceError::RefusedModel {
            uri: shown.to_string(),
            source: env_spec::SpecError::TooLarge {
                file: env_spec::mlmodel::MLMODEL_FILE.to_string(),
                size,
                limit,
            },
        }),
        _ => Ok(()),
    }
}

/// `Err` with what is there instead, unless `files` hold an `MLmodel` at the top.
fn describe_unless_model(files: &[RemoteFile]) -> Result<(), String> {
    if files.iter().any(|f| f.path == "MLmodel") {
        return Ok(());
    }
    if files.is_empty() {
        return Err("nothing is there".to_string());
    }
    let names: Vec<&str> = files.iter().take(5).map(|f| f.path.as_str()).collect();
    Err(format!(
        "no `MLmodel` among {} file(s) ({}{})",
        files.len(),
        names.join(", "),
        if files.len() > 5 { ", ..." } else { "" }
    ))
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
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::sync::Mutex;

    use super::*;
    use crate::{SourceSettings, resolve};

    /// Records every progress event.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Reporter for Recorder {
        fn on_download_start(&self, name: &str) -> usize {
            self.0.lock().unwrap().push(format!("start {name}"));
            7
        }
        fn on_download_progress(&self, id: usize, bytes: u64, total: Option<u64>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("{id}: {bytes}/{total:?}"));
        }
        fn on_download_complete(&self, id: usize) {
            self.0.lock().unwrap().push(format!("complete {id}"));
        }
    }

    /// A minimal MLflow artifact service on 127.0.0.1: `root/` holds `files`.
    fn artifact_server(files: &'static [(&'static str, usize)]) -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok() && line.trim() != "" {
                    line.clear();
                }
                let path = request.split(' ').nth(1).unwrap_or_default();
                let body: Vec<u8> = if path.contains("?path=root") {
                    let listing: Vec<_> = files
                        .iter()
                        .map(|(name, size)| serde_json::json!({"path": name, "is_dir": false, "file_size": size}))
                        .collect();
                    serde_json::json!({ "files": listing })
                        .to_string()
                        .into_bytes()
                } else {
                    let name = path.rsplit('/').next().unwrap_or_default();
                    let size = files.iter().find(|(n, _)| *n == name).map_or(0, |f| f.1);
                    // An MLmodel must read as one (a comment pads it): a refused one is
                    // not kept.
                    let mut body = if name == "MLmodel" {
                        b"flavors: {}\n#".to_vec()
                    } else {
                        Vec::new()
                    };
                    body.resize(size, b'x');
                    body
                };
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        port
    }

    #[tokio::test]
    async fn a_model_download_reports_one_total_for_all_its_files() {
        model_download_reports_one_total().await;
    }

    /// [`resolve`] runs on the caller's runtime, whatever its flavor: the library starts no
    /// runtime of its own (that panics inside another, issue 11).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_model_download_works_on_a_multi_thread_runtime() {
        model_download_reports_one_total().await;
    }

    async fn model_download_reports_one_total() {
        const FILES: &[(&str, usize)] =
            &[("MLmodel", 300), ("model.pkl", 200_000), ("conda.yaml", 50)];
        let port = artifact_server(FILES);
        let temp = tempfile::tempdir().unwrap();
        let cache = Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let settings = SourceSettings {
            tracking_uri: Some(format!("http://127.0.0.1:{port}")),
            timeout: std::time::Duration::from_secs(30),
            ..SourceSettings::default()
        };
        let recorder = Arc::new(Recorder::default());
        let resolved = resolve(
            "mlflow-artifacts:/root",
            &settings,
            &cache,
            recorder.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            fs_err::metadata(resolved.dir.join("model.pkl"))
                .unwrap()
                .len(),
            200_000
        );
        let events = recorder.0.lock().unwrap().clone();
        assert_eq!(
            events.first().map(String::as_str),
            Some("start mlflow-artifacts:/root")
        );
        assert_eq!(events.last().map(String::as_str), Some("complete 7"));
        assert_eq!(
            events[events.len() - 2],
            "7: 200350/Some(200350)",
            "{events:#?}"
        );
        let counts: Vec<u64> = events[1..events.len() - 1]
            .iter()
            .map(|e| e[3..].split('/').next().unwrap().parse().unwrap())
            .collect();
        assert!(counts.windows(2).all(|w| w[0] < w[1]), "{events:#?}");
    }
}
