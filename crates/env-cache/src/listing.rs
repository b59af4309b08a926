//! `cache list`: what each environment of the cache is, read without waiting for anyone.

use std::collections::HashSet;
use std::time::SystemTime;

use crate::{Cache, CacheError, EnvState};

/// The state of a listed environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListedState {
    /// Complete and usable.
    Complete,
    /// Incomplete, and its lock is held: a build is running.
    Building,
    /// Incomplete, and nobody holds it: a crashed build's leftover (`cache prune` removes it).
    Incomplete,
}

/// One environment of the cache, as `cache list` shows it.
#[derive(Debug, Clone)]
pub struct EnvSummary {
    /// The key.
    pub key: String,
    /// Complete, being built, or a leftover.
    pub state: ListedState,
    /// From the metadata (absent until a build completes): `conda` or `virtualenv`.
    pub env_manager: Option<String>,
    /// From the metadata: the model directory it was first built for.
    pub model: Option<String>,
    /// From the metadata: its Python version.
    pub python_version: Option<String>,
    /// Bytes on disk, each hard-linked file counted once within the environment.
    pub size: u64,
    /// From the metadata: when it was built (seconds since the Unix epoch).
    pub created: Option<u64>,
    /// When it was last used.
    pub last_used: Option<SystemTime>,
    /// Whether another process holds its lock (a build, a running model).
    pub in_use: bool,
}

impl Cache {
    /// Every environment directory of the cache, in key order; whether one is in use is found
    /// by trying its lock exclusively without waiting (and releasing it at once).
    pub fn list_envs(&self) -> Result<Vec<EnvSummary>, CacheError> {
        let mut summaries = Vec::new();
        for env in self.envs()? {
            let complete = match env.state() {
                EnvState::Complete(_) => true,
                EnvState::Incomplete => false,
                // A lock file whose environment was removed.
                EnvState::Missing => continue,
            };
            let metadata = env.metadata().ok();
            let in_use = env.try_lock_exclusive()?.is_none();
            summaries.push(EnvSummary {
                key: env.key().to_string(),
                state: if complete {
                    ListedState::Complete
                } else if in_use {
                    ListedState::Building
                } else {
                    ListedState::Incomplete
                },
                env_manager: metadata.as_ref().map(|m| m.env_manager.clone()),
                model: metadata.as_ref().map(|m| m.model.clone()),
                python_version: metadata.as_ref().and_then(|m| m.python_version.clone()),
                size: crate::disk_usage(env.dir(), &mut HashSet::new()),
                created: metadata.as_ref().map(|m| m.created),
                last_used: env.last_used(),
                in_use,
            });
        }
        Ok(summaries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_building_and_leftover_environments() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        cache.init().unwrap();
        let tmp = cache.bucket(crate::TMP_DIR).unwrap();
        let complete = cache.env("a").unwrap();
        let lock = complete.lock_exclusive(|_, _| {}).unwrap();
        complete.begin_build(&tmp).unwrap();
        fs_err::write(complete.dir().join("file"), "12345").unwrap();
        let metadata: crate::Metadata = serde_json::from_value(serde_json::json!({
            "key": "a", "tool_version": "0", "created": 7, "build_seconds": 0.0,
            "env_manager": "conda", "model": "m", "python": null, "python_version": "3.11.7",
            "spec": null, "conda_packages": [], "pip_packages": [],
        }))
        .unwrap();
        complete.finish_build(&metadata).unwrap();
        drop(lock);
        let building = cache.env("b").unwrap();
        let _building = building.lock_exclusive(|_, _| {}).unwrap();
        building.begin_build(&tmp).unwrap();
        fs_err::create_dir_all(cache.env("c").unwrap().dir()).unwrap();
        // A lock file without its environment is not listed.
        cache.env("d").unwrap().touch();

        let listed = cache.list_envs().unwrap();
        let states: Vec<_> = listed.iter().map(|e| (e.key.as_str(), e.state)).collect();
        assert_eq!(
            states,
            [
                ("a", ListedState::Complete),
                ("b", ListedState::Building),
                ("c", ListedState::Incomplete)
            ]
        );
        let a = &listed[0];
        assert_eq!(a.env_manager.as_deref(), Some("conda"));
        assert_eq!(a.python_version.as_deref(), Some("3.11.7"));
        assert_eq!(a.created, Some(7));
        assert!(a.size >= 5 && !a.in_use && a.last_used.is_some());
        assert!(listed[1].in_use && listed[1].env_manager.is_none());
    }
}
