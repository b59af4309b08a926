//! Model URIs to local model directories, with MLflow's meanings: `models:/`, `runs:/`,
//! `mlflow-artifacts:/`, local paths, and object storage (`s3://`, `gs://`, `wasbs://`,
//! `abfss://`) through `object_store`.
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

mod azure;
mod bucket;
mod download;
mod error;
mod gcs;
pub mod http;
pub mod listing;
mod mlflow;
mod object;
mod open;
mod resolve;
mod s3;
mod settings;
mod uri;
mod vars;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

pub use azure::{AzureAuth, AzureConfig, AzureService, AzureUri, AzureVars};
pub use bucket::{
    EntryInfo, ModelEntry, ModelState, ModelSummary, PruneModelsReport, PrunedModel, entries,
    list_models, prune_models,
};
pub use error::{SentCredentials, Service, SourceError, StoreFailure};
pub use gcs::{GcsConfig, GcsCredentials, GcsVars, gcs_builder};
pub use open::{OpenError, OpenNotice, OpenedModel, open_model};
pub use resolve::resolve;
pub use s3::{AwsConfig, AwsVars, MLFLOW_S3_ENDPOINT_URL, s3_builder, s3_store};
pub use settings::{SourceSettings, Vars};
pub use uri::{ModelUri, Selector, parse_model_list, read_model_list};
pub use vars::{MODEL_URI_VARS, model_uris_help};

/// The model cache bucket.
pub use env_cache::MODELS_BUCKET;

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
    pub warnings: Vec<SourceWarning>,
    /// The downloaded model's shared lock: `cache prune` keeps the model while it is held.
    /// Whoever uses the model keeps this value (or a clone) alive, and passes the file on to
    /// a process that goes on using the model (`run` execs the command with it open).
    #[serde(skip)]
    pub lock: Option<Arc<env_cache::LockedFile>>,
}

/// What the URI is, in one line: `` `models:/iris/1` (version 1) from `s3://b/m` `` (the
/// version when a `models:/` URI resolved to one, the artifact location when it differs).
impl std::fmt::Display for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}`", self.uri)?;
        if let Some(version) = &self.version {
            write!(f, " (version {version})")?;
        }
        match self.source.as_deref() {
            Some(source) if source != self.uri => write!(f, " from `{source}`"),
            _ => Ok(()),
        }
    }
}

/// Something the user should know about how a model URI was resolved; its `Display` is the
/// line to show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceWarning {
    /// Offline, a moving name (an alias, `latest`, a stage) was resolved to what it resolved
    /// to last time online.
    #[error(
        "Offline: using version {version} of `{name}`, what `{uri}` resolved to {} ago",
        ago(*age_seconds)
    )]
    OfflineLastResolution {
        /// The registered model.
        name: String,
        /// The URI as given (redacted).
        uri: String,
        /// The version used.
        version: String,
        /// How long ago it was resolved online, in seconds.
        age_seconds: u64,
    },
}

/// `42 s`, `3 min`, `5 h`, `2 days`.
fn ago(seconds: u64) -> String {
    match seconds {
        0..120 => format!("{seconds} s"),
        120..7200 => format!("{} min", seconds / 60),
        7200..172_800 => format!("{} h", seconds / 3600),
        _ => format!("{} days", seconds / 86400),
    }
}

/// Receives the progress of model downloads; the CLI draws it (libraries never print).
/// One download is one model: all its files, fetched in parallel, count towards one total.
pub trait Reporter: Send + Sync {
    /// A download of `name` (the URI as given, redacted) started; returns an id for the
    /// other calls.
    fn on_download_start(&self, _name: &str) -> usize {
        0
    }
    /// Bytes downloaded so far, of `total` if the listing said.
    fn on_download_progress(&self, _id: usize, _bytes: u64, _total: Option<u64>) {}
    /// The download finished (or failed).
    fn on_download_complete(&self, _id: usize) {}
    /// Something the user should hear about now, not at the end: a request failed and is
    /// being retried (how many more times, and which setting shortens it).
    fn on_warning(&self, _message: &str) {}
}

/// Reports nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {}

fn local(text: &str, dir: PathBuf) -> Resolved {
    Resolved {
        uri: env_spec::redact::redact_url(text),
        dir,
        source: None,
        name: None,
        version: None,
        cached: false,
        warnings: Vec::new(),
        lock: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offline fallback's line names the version, the model, the URI and the age, in the
    /// unit that reads best. (Was built as text in `resolve.rs`.)
    #[test]
    fn the_offline_fallback_warning_reads_as_before() {
        let warning = |age_seconds| SourceWarning::OfflineLastResolution {
            name: "iris".into(),
            uri: "models:/iris@champion".into(),
            version: "3".into(),
            age_seconds,
        };
        assert_eq!(
            warning(42).to_string(),
            "Offline: using version 3 of `iris`, what `models:/iris@champion` resolved to 42 s ago"
        );
        for (age, shown) in [(600, "10 min"), (3 * 3600, "3 h"), (3 * 86400, "3 days")] {
            assert!(warning(age).to_string().ends_with(&format!(" {shown} ago")));
        }
    }

    /// A resolved URI reads as the CLI's `Downloaded ...` line showed it (was built from the
    /// fields in the CLI's `commands/mod.rs`): the version when there is one, the artifact
    /// location only when it is not the URI itself.
    #[test]
    fn a_resolved_uri_names_its_version_and_where_it_came_from() {
        let mut resolved = local("models:/iris/1", PathBuf::from("/m"));
        assert_eq!(resolved.to_string(), "`models:/iris/1`");
        resolved.version = Some("1".into());
        resolved.source = Some("s3://bucket/1/artifacts".into());
        assert_eq!(
            resolved.to_string(),
            "`models:/iris/1` (version 1) from `s3://bucket/1/artifacts`"
        );
        resolved.version = None;
        resolved.source = Some("models:/iris/1".into());
        assert_eq!(resolved.to_string(), "`models:/iris/1`");
    }
}
