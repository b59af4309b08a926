//! The MLflow REST API, as MLflow's own client calls it: registry lookups
//! (`model-versions/get-download-uri`, `registered-models/alias`,
//! `registered-models/get-latest-versions`), runs (`runs/get`), logged models, and the
//! proxied artifact service (`mlflow-artifacts/artifacts` listing and download).
//!
//! Every request is retried as MLflow's client retries it: on connection errors and on
//! MLflow's transient answers (408, 429, 500, 502, 503, 504), with its backoff
//! (`MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`), waiting what a
//! 413, 429 or 503 answer's `Retry-After` asks (urllib3's `respect_retry_after_header`), at
//! most [`MAX_RETRY_AFTER`]. The first failure is reported at once through
//! [`Reporter::on_warning`]: MLflow's budget is minutes, and a silent spinner for minutes
//! looks like a hang (issue 23).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncWriteExt as _;

use crate::download::Progress;
use crate::{Reporter, SourceError, SourceSettings};

const ARTIFACTS_ROOT: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// MLflow's `_TRANSIENT_FAILURE_RESPONSE_CODES` (`mlflow/utils/request_utils.py`).
const RETRIED_STATUSES: [u16; 6] = [408, 429, 500, 502, 503, 504];

/// urllib3's `Retry.RETRY_AFTER_STATUS_CODES`: answers whose `Retry-After` is waited for.
const RETRY_AFTER_STATUSES: [u16; 3] = [413, 429, 503];

/// The longest `Retry-After` waited for: MLflow's longest backoff. urllib3 waits whatever
/// the server says; a server (or a proxy) saying a day must not hang a build for a day.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

/// An HTTP client with MLflow's credentials and TLS settings.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    settings: SourceSettings,
    reporter: Arc<dyn Reporter>,
    /// Whether a retry was reported: once per client, not once per file of a model.
    warned: Arc<AtomicBool>,
}

/// One entry of an artifact listing.
#[derive(Debug, Deserialize)]
pub(crate) struct FileInfo {
    pub path: String,
    #[serde(default)]
    pub is_dir: bool,
    #[serde(default, deserialize_with = "size")]
    pub file_size: Option<u64>,
}

fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    // MLflow sends sizes as JSON numbers or (protobuf int64) as strings.
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    })
}

#[derive(Debug, Deserialize)]
struct MlflowErrorBody {
    #[serde(default)]
    error_code: String,
    #[serde(default)]
    message: String,
}

impl Client {
    pub(crate) fn new(
        settings: &SourceSettings,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Self, SourceError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("pyfunc-env/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(settings.timeout);
        if settings.insecure_tls {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        if let Some(path) = &settings.server_cert_path {
            let pem = fs_err::read(path).map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                SourceError::Certificate {
                    path: path.clone(),
                    source,
                }
            })?;
            for certificate in certificates {
                builder = builder.tls_certs_merge([certificate]);
            }
        }
        if let Some(path) = &settings.client_cert_path {
            let pem = fs_err::read(path).map_err(|source| SourceError::Read {
                path: path.clone(),
                source,
            })?;
            let identity =
                reqwest::Identity::from_pem(&pem).map_err(|source| SourceError::Certificate {
                    path: path.clone(),
                    source,
                })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(SourceError::HttpClient)?;
        Ok(Self {
            http,
            settings: settings.clone(),
            reporter,
            warned: Arc::new(AtomicBool::new(false)),
        })
    }

    fn authorize(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if let Some(token) = &self.settings.token {
            request.bearer_auth(token)
        } else if let Some(user) = &self.settings.username {
            request.basic_auth(user, self.settings.password.as_deref())
        } else {
            request
        }
    }

    /// Sends the request built by `make`, retrying transient failures; returns a 2xx response.
    async fn send(
        &self,
        what: &str,
        make: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SourceError> {
        let mut attempt = 0;
        loop {
            let result = self.authorize(make(&self.http)).send().await;
            let (retry, retry_after) = match &result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = RETRY_AFTER_STATUSES
                        .contains(&status)
                        .then(|| retry_after(response.headers()))
                        .flatten();
                    (
                        RETRIED_STATUSES.contains(&status) || retry_after.is_some(),
                        retry_after,
                    )
                }
                Err(error) => (
                    error.is_connect() || error.is_timeout() || error.is_request(),
                    None,
                ),
            };
            if retry && attempt < self.settings.max_retries {
                let wait = retry_wait(retry_after, self.settings.backoff_factor, attempt);
                tracing::debug!("{what}: retrying in {wait:?} (attempt {})", attempt + 1);
                if !self.warned.swap(true, Ordering::Relaxed) {
                    self.reporter
                        .on_warning(&self.retry_notice(what, &result, attempt));
                }
                tokio::time::sleep(wait).await;
                attempt += 1;
                continue;
            }
            let response = result.map_err(|source| SourceError::Request {
                what: what.to_string(),
                attempts: attempt + 1,
                source: redact_error(source),
            })?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let body = response.text().await.unwrap_or_default();
            let (code, message) = match serde_json::from_str::<MlflowErrorBody>(&body) {
                Ok(e) if !e.message.is_empty() => (e.error_code, e.message),
                _ => (String::new(), body.chars().take(300).collect()),
            };
            return Err(SourceError::Server {
                what: what.to_string(),
                status: status.as_u16(),
                code,
                message: env_spec::redact::redact(message.trim()),
                credentials: self.settings.credentials(),
            });
        }
    }

    /// What the first failure of a request says: what failed and why, how many tries are
    /// left and how long they may wait, and the settings that shorten it.
    fn retry_notice(
        &self,
        what: &str,
        result: &Result<reqwest::Response, reqwest::Error>,
        attempt: u32,
    ) -> String {
        let cause = match result {
            Ok(response) => format!("the server answered {}", response.status()),
            Err(error) => {
                let mut innermost: &dyn std::error::Error = error;
                while let Some(source) = innermost.source() {
                    innermost = source;
                }
                env_spec::redact::redact(&innermost.to_string())
            }
        };
        let left = self.settings.max_retries - attempt;
        let waits: Duration = (attempt..self.settings.max_retries)
            .map(|n| backoff(self.settings.backoff_factor, n))
            .sum();
        format!(
            "{what} failed ({cause}); retrying {left} more time(s), waiting up to {} in all besides each try's timeout of {} s (`MLFLOW_HTTP_REQUEST_MAX_RETRIES={}`: set it lower, 0 for no retries, to give up sooner; `MLFLOW_HTTP_REQUEST_TIMEOUT` bounds each try)",
            human(waits),
            self.settings.timeout.as_secs(),
            self.settings.max_retries,
        )
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        base: &str,
        endpoint: &str,
        query: &[(&str, &str)],
        what: &str,
    ) -> Result<T, SourceError> {
        let mut url = api_url(base, endpoint)?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self.send(what, |http| http.get(url.clone())).await?;
        decode(response, what).await
    }

    /// `model-versions/get-download-uri`.
    pub(crate) async fn download_uri(
        &self,
        registry: &str,
        name: &str,
        version: &str,
    ) -> Result<String, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            artifact_uri: String,
        }
        let body: Body = self
            .get_json(
                registry,
                "/api/2.0/mlflow/model-versions/get-download-uri",
                &[("name", name), ("version", version)],
                &format!("Looking up version {version} of model `{name}`"),
            )
            .await?;
        Ok(body.artifact_uri)
    }

    /// `registered-models/alias`: the version an alias points at.
    pub(crate) async fn version_by_alias(
        &self,
        registry: &str,
        name: &str,
        alias: &str,
    ) -> Result<String, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            model_version: Version,
        }
        let body: Body = self
            .get_json(
                registry,
                "/api/2.0/mlflow/registered-models/alias",
                &[("name", name), ("alias", alias)],
                &format!("Looking up alias `{alias}` of model `{name}`"),
            )
            .await?;
        Ok(body.model_version.version)
    }

    /// `registered-models/get-latest-versions`, then the highest version (MLflow's
    /// `_get_latest_model_version`).
    pub(crate) async fn latest_version(
        &self,
        registry: &str,
        name: &str,
        stage: Option<&str>,
    ) -> Result<String, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            model_versions: Vec<Version>,
        }
        let what = match stage {
            Some(stage) => format!("Looking up the latest `{stage}` version of model `{name}`"),
            None => format!("Looking up the latest version of model `{name}`"),
        };
        let url = api_url(
            registry,
            "/api/2.0/mlflow/registered-models/get-latest-versions",
        )?;
        let mut request = serde_json::json!({ "name": name });
        if let Some(stage) = stage {
            request["stages"] = serde_json::json!([stage]);
        }
        let response = self
            .send(&what, |http| http.post(url.clone()).json(&request))
            .await?;
        let body: Body = decode(response, &what).await?;
        body.model_versions
            .iter()
            .filter_map(|v| v.version.parse::<u64>().ok())
            .max()
            .map(|v| v.to_string())
            .ok_or_else(|| SourceError::NoVersions {
                name: name.to_string(),
                stage: stage.map(str::to_string),
            })
    }

    /// `runs/get`: the run's artifact root and experiment.
    pub(crate) async fn run(&self, tracking: &str, run_id: &str) -> Result<RunInfo, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            run: Run,
        }
        #[derive(Deserialize)]
        struct Run {
            info: RunInfo,
        }
        let body: Body = self
            .get_json(
                tracking,
                "/api/2.0/mlflow/runs/get",
                &[("run_id", run_id)],
                &format!("Looking up run `{run_id}`"),
            )
            .await?;
        Ok(body.run.info)
    }

    /// `logged-models/ID`: a logged model's artifact location.
    pub(crate) async fn logged_model_location(
        &self,
        tracking: &str,
        id: &str,
    ) -> Result<String, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            model: Model,
        }
        #[derive(Deserialize)]
        struct Model {
            info: Info,
        }
        #[derive(Deserialize)]
        struct Info {
            artifact_uri: String,
        }
        let body: Body = self
            .get_json(
                tracking,
                &format!("/api/2.0/mlflow/logged-models/{id}"),
                &[],
                &format!("Looking up logged model `{id}`"),
            )
            .await?;
        Ok(body.model.info.artifact_uri)
    }

    /// `logged-models/search`: the logged model named `name` that run `run_id` produced
    /// (MLflow 3's `RunsArtifactRepository._get_logged_model_artifact_repo`).
    pub(crate) async fn logged_model_of_run(
        &self,
        tracking: &str,
        run: &RunInfo,
        name: &str,
    ) -> Result<Option<String>, SourceError> {
        #[derive(Deserialize)]
        struct Body {
            #[serde(default)]
            models: Vec<Model>,
            #[serde(default)]
            next_page_token: Option<String>,
        }
        #[derive(Deserialize)]
        struct Model {
            info: Info,
        }
        #[derive(Deserialize)]
        struct Info {
            artifact_uri: String,
            #[serde(default)]
            source_run_id: Option<String>,
        }
        let what = format!("Looking for logged model `{name}` of run `{}`", run.run_id);
        let url = api_url(tracking, "/api/2.0/mlflow/logged-models/search")?;
        let mut page_token: Option<String> = None;
        loop {
            let mut request = serde_json::json!({
                "experiment_ids": [run.experiment_id],
                "filter": format!("name = '{}'", name.replace('\'', "\\'")),
            });
            if let Some(token) = &page_token {
                request["page_token"] = serde_json::json!(token);
            }
            let response = self
                .send(&what, |http| http.post(url.clone()).json(&request))
                .await?;
            let body: Body = decode(response, &what).await?;
            if let Some(model) = body
                .models
                .into_iter()
                .find(|m| m.info.source_run_id.as_deref() == Some(run.run_id.as_str()))
            {
                return Ok(Some(model.info.artifact_uri));
            }
            match body.next_page_token.filter(|t| !t.is_empty()) {
                Some(token) => page_token = Some(token),
                None => return Ok(None),
            }
        }
    }

    /// Lists `root` on an artifact server (`base` is the server's URL up to the path
    /// prefix); paths are relative to `root`, recursively. Empty if nothing is there.
    pub(crate) async fn list_tree(
        &self,
        base: &str,
        root: &str,
    ) -> Result<Vec<FileInfo>, SourceError> {
        let url = api_url(base, ARTIFACTS_ROOT)?;
        let mut files = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let full = if dir.is_empty() {
                root.to_string()
            } else {
                format!("{root}/{dir}")
            };
            let what = format!("Listing artifacts under `{full}`");
            let mut listing = url.clone();
            listing.query_pairs_mut().append_pair("path", &full);
            let response = self.send(&what, |http| http.get(listing.clone())).await?;
            let body: Listing = decode(response, &what).await?;
            for mut file in body.files {
                // The server answers with paths relative to the directory listed; refuse any
                // that would escape it (MLflow's `validate_path_is_safe`).
                let name = file.path.rsplit('/').next().unwrap_or_default().to_string();
                if name.is_empty() || name == "." || name == ".." || name.contains('\\') {
                    return Err(SourceError::UnsafePath {
                        path: file.path.clone(),
                    });
                }
                file.path = if dir.is_empty() {
                    name
                } else {
                    format!("{dir}/{name}")
                };
                if file.is_dir {
                    pending.push(file.path.clone());
                } else {
                    files.push(file);
                }
            }
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// Downloads one artifact to `dest`, streaming, retrying the whole file on transient
    /// failures (a connection reset mid-body included).
    pub(crate) async fn download(
        &self,
        base: &str,
        remote: &str,
        dest: &Path,
        progress: &Progress,
    ) -> Result<u64, SourceError> {
        let url = api_url(base, &format!("{ARTIFACTS_ROOT}/{remote}"))?;
        let what = format!("Downloading `{remote}`");
        let mut attempt = 0;
        loop {
            let mut written = 0;
            let result = self
                .download_once(&what, &url, dest, progress, &mut written)
                .await;
            match result {
                Err(SourceError::Body { source, .. }) if attempt < self.settings.max_retries => {
                    tracing::debug!("{what}: {source}; retrying");
                    progress.take_back(written);
                    tokio::time::sleep(backoff(self.settings.backoff_factor, attempt)).await;
                    attempt += 1;
                }
                Err(error) => {
                    progress.take_back(written);
                    return Err(error);
                }
                Ok(()) => return Ok(written),
            }
        }
    }

    async fn download_once(
        &self,
        what: &str,
        url: &url::Url,
        dest: &Path,
        progress: &Progress,
        written: &mut u64,
    ) -> Result<(), SourceError> {
        let mut response = self.send(what, |http| http.get(url.clone())).await?;
        let io = |source| SourceError::Write {
            path: dest.to_path_buf(),
            source,
        };
        let mut file = tokio::fs::File::create(dest).await.map_err(io)?;
        loop {
            let chunk = response.chunk().await.map_err(|source| SourceError::Body {
                what: what.to_string(),
                source: redact_error(source),
            })?;
            let Some(chunk) = chunk else { break };
            file.write_all(&chunk).await.map_err(io)?;
            *written += chunk.len() as u64;
            progress.add(chunk.len() as u64);
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        Ok(())
    }
}

#[derive(Deserialize)]
struct Listing {
    #[serde(default)]
    files: Vec<FileInfo>,
}

/// A run's info from `runs/get`.
#[derive(Debug, Deserialize)]
pub(crate) struct RunInfo {
    pub run_id: String,
    #[serde(default)]
    pub experiment_id: String,
    pub artifact_uri: String,
}

#[derive(Deserialize)]
struct Version {
    version: String,
}

async fn decode<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &str,
) -> Result<T, SourceError> {
    let bytes = response.bytes().await.map_err(|source| SourceError::Body {
        what: what.to_string(),
        source: redact_error(source),
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SourceError::Decode {
        what: what.to_string(),
        source,
    })
}

/// MLflow's wait before retry `attempt` (0-based): factor × 2^attempt, at most 120 s.
fn backoff(factor: Duration, attempt: u32) -> Duration {
    factor
        .checked_mul(2u32.saturating_pow(attempt))
        .unwrap_or(Duration::MAX)
        .min(Duration::from_secs(120))
}

/// The wait before retry `attempt`: what `Retry-After` asked, at most [`MAX_RETRY_AFTER`],
/// else MLflow's backoff.
fn retry_wait(retry_after: Option<Duration>, factor: Duration, attempt: u32) -> Duration {
    retry_after.map_or_else(
        || backoff(factor, attempt),
        |asked| asked.min(MAX_RETRY_AFTER),
    )
}

/// `1 min 30 s`, `45 s`.
fn human(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match (seconds / 60, seconds % 60) {
        (0, seconds) => format!("{seconds} s"),
        (minutes, 0) => format!("{minutes} min"),
        (minutes, seconds) => format!("{minutes} min {seconds} s"),
    }
}

/// A `Retry-After` header: seconds, or an HTTP date (RFC 9110), as the wait from now.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = when.duration_since(jiff::Timestamp::now());
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// `base` (the tracking URI, maybe with a path prefix) joined with an absolute API path.
pub(crate) fn api_url(base: &str, endpoint: &str) -> Result<url::Url, SourceError> {
    let invalid = || SourceError::InvalidServer {
        uri: env_spec::redact::redact_url(base),
    };
    let mut url = url::Url::parse(base).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid());
    }
    // Credentials in the URI are sent as basic auth by reqwest; keep them out of the path.
    let path = format!("{}{}", url.path().trim_end_matches('/'), endpoint);
    url.set_path(&path);
    url.set_query(None);
    Ok(url)
}

/// A reqwest error without the URL's credentials.
fn redact_error(error: reqwest::Error) -> reqwest::Error {
    error.without_url()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_urls_keep_the_tracking_prefix() {
        assert_eq!(
            api_url("http://h:5000", "/api/2.0/mlflow/runs/get")
                .unwrap()
                .as_str(),
            "http://h:5000/api/2.0/mlflow/runs/get"
        );
        assert_eq!(
            api_url("https://h/mlflow/", "/api/2.0/mlflow/runs/get")
                .unwrap()
                .as_str(),
            "https://h/mlflow/api/2.0/mlflow/runs/get"
        );
        assert!(api_url("sqlite:///mlflow.db", "/x").is_err());
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        let header = |value: &str| {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert(
                reqwest::header::RETRY_AFTER,
                reqwest::header::HeaderValue::from_str(value).unwrap(),
            );
            retry_after(&headers)
        };
        assert_eq!(header("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            header("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past: retry now"
        );
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        let text = jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(&later)
            .unwrap();
        let wait = header(&text).unwrap();
        assert!(wait > Duration::from_secs(3000), "{text}: {wait:?}");
        assert_eq!(header("soon"), None);
        // Honoured, bounded, and the backoff otherwise.
        let factor = Duration::from_secs(2);
        assert_eq!(
            retry_wait(Some(Duration::from_secs(7)), factor, 0),
            Duration::from_secs(7)
        );
        assert_eq!(
            retry_wait(Some(Duration::from_secs(86_400)), factor, 0),
            MAX_RETRY_AFTER
        );
        assert_eq!(retry_wait(None, factor, 1), Duration::from_secs(4));
        assert_eq!(human(Duration::from_secs(246)), "4 min 6 s");
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let factor = Duration::from_secs(2);
        assert_eq!(backoff(factor, 0), Duration::from_secs(2));
        assert_eq!(backoff(factor, 2), Duration::from_secs(8));
        assert_eq!(backoff(factor, 9), Duration::from_secs(120));
    }
}
