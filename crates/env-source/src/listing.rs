//! `cache list`: the environments and downloaded models of a local cache, as the rows
//! `cache list --json` prints (one array, told apart by `kind`, so readers of the environment
//! rows written before models were cached keep working).

use std::path::PathBuf;
use std::time::SystemTime;

use env_cache::{Cache, CacheError, EnvSummary, ListedState};
use serde::Serialize;

use crate::{ModelState, ModelSummary, list_models};

/// A row of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct EnvRow {
    /// `environment` (rows of downloaded models say `model`).
    pub kind: &'static str,
    /// The key.
    pub key: String,
    /// `complete`, `building` (another process holds it) or `incomplete`.
    pub state: &'static str,
    /// `conda` or `virtualenv`, once built.
    pub env_manager: Option<String>,
    /// The model directory it was first built for.
    pub model: Option<String>,
    /// Its Python version.
    pub python: Option<String>,
    /// Bytes on disk.
    pub size: u64,
    /// When it was built (seconds since the Unix epoch).
    pub created: Option<u64>,
    /// When it was last used (seconds since the Unix epoch).
    pub last_used: Option<u64>,
    /// Whether another process holds it.
    pub in_use: bool,
}

impl From<EnvSummary> for EnvRow {
    fn from(env: EnvSummary) -> Self {
        Self {
            kind: "environment",
            key: env.key,
            state: match env.state {
                ListedState::Complete => "complete",
                ListedState::Building => "building",
                ListedState::Incomplete => "incomplete",
            },
            env_manager: env.env_manager,
            model: env.model,
            python: env.python_version,
            size: env.size,
            created: env.created,
            last_used: unix(env.last_used),
            in_use: env.in_use,
        }
    }
}

/// A row of a downloaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelRow {
    /// `model`.
    pub kind: &'static str,
    /// The entry's key.
    pub key: String,
    /// `complete`, `downloading` (another process holds it) or `incomplete`.
    pub state: &'static str,
    /// The URI it was first downloaded for (`None` until complete).
    pub uri: Option<String>,
    /// The artifact location.
    pub source: Option<String>,
    /// The registered name (for `models:/`).
    pub name: Option<String>,
    /// The registered version (for `models:/`).
    pub version: Option<String>,
    /// The model directory inside the entry.
    pub dir: PathBuf,
    /// Bytes on disk.
    pub size: u64,
    /// When it was downloaded (seconds since the Unix epoch).
    pub created: Option<u64>,
    /// When a command last used it (seconds since the Unix epoch).
    pub last_used: Option<u64>,
    /// Whether another process holds it.
    pub in_use: bool,
}

impl From<ModelSummary> for ModelRow {
    fn from(model: ModelSummary) -> Self {
        let info = model.info;
        Self {
            kind: "model",
            key: model.key,
            state: match model.state {
                ModelState::Complete => "complete",
                ModelState::Downloading => "downloading",
                ModelState::Incomplete => "incomplete",
            },
            created: info.as_ref().map(|i| i.created),
            uri: info.as_ref().map(|i| i.uri.clone()),
            source: info.as_ref().map(|i| i.source.clone()),
            name: info.as_ref().and_then(|i| i.name.clone()),
            version: info.and_then(|i| i.version),
            dir: model.model_dir,
            size: model.size,
            last_used: unix(model.last_used),
            in_use: model.in_use,
        }
    }
}

/// Everything `cache list` shows of a local cache.
#[derive(Debug, Clone)]
pub struct CacheListing {
    /// The environments, in key order.
    pub envs: Vec<EnvRow>,
    /// The downloaded models, in key order.
    pub models: Vec<ModelRow>,
}

impl CacheListing {
    /// Reads the cache's environments and downloaded models without waiting for anyone.
    ///
    /// # Errors
    /// The cache cannot be read.
    pub fn read(cache: &Cache) -> Result<Self, CacheError> {
        Ok(Self {
            envs: cache.list_envs()?.into_iter().map(EnvRow::from).collect(),
            models: list_models(cache)?
                .into_iter()
                .map(ModelRow::from)
                .collect(),
        })
    }

    /// The downloaded models the table shows, each with the URI it was downloaded for: those
    /// complete. Incomplete downloads (a download running, or a leftover `cache prune`
    /// removes) are only in `--json`.
    pub fn downloaded(&self) -> impl Iterator<Item = (&ModelRow, &str)> {
        self.models
            .iter()
            .filter_map(|model| Some((model, model.uri.as_deref()?)))
    }

    /// Whether the table has nothing to show: no environment and no downloaded model.
    #[must_use]
    pub fn nothing_to_show(&self) -> bool {
        self.envs.is_empty() && self.downloaded().next().is_none()
    }

    /// The `cache list --json` document: the environments, then the models.
    ///
    /// # Errors
    /// Never in practice (the rows are plain data); serde's error type says otherwise.
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        let mut all: Vec<serde_json::Value> = self
            .envs
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()?;
        for model in &self.models {
            all.push(serde_json::to_value(model)?);
        }
        Ok(serde_json::Value::Array(all))
    }
}

/// Seconds since the Unix epoch.
fn unix(time: Option<SystemTime>) -> Option<u64> {
    time?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(key: &str, uri: Option<&str>) -> ModelRow {
        ModelRow {
            kind: "model",
            key: key.into(),
            state: if uri.is_some() {
                "complete"
            } else {
                "incomplete"
            },
            uri: uri.map(str::to_string),
            source: None,
            name: None,
            version: None,
            dir: PathBuf::new(),
            size: 0,
            created: None,
            last_used: None,
            in_use: false,
        }
    }

    /// The table shows complete downloads only; a listing of nothing but a leftover download
    /// shows nothing (`--json` keeps every row).
    #[test]
    fn the_table_shows_complete_downloads_only() {
        let listing = CacheListing {
            envs: Vec::new(),
            models: vec![model("a", Some("models:/m/1")), model("b", None)],
        };
        let shown: Vec<_> = listing
            .downloaded()
            .map(|(m, uri)| (&*m.key, uri))
            .collect();
        assert_eq!(shown, [("a", "models:/m/1")]);
        assert!(!listing.nothing_to_show());
        let leftover = CacheListing {
            envs: Vec::new(),
            models: vec![model("b", None)],
        };
        assert!(leftover.nothing_to_show());
        assert_eq!(leftover.to_json().unwrap().as_array().unwrap().len(), 1);
    }
}
