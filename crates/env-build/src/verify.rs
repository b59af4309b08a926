//! `cache verify`: is a built environment still what was installed? The check of one prefix
//! ([`verify`], [`VerifyReport`]) is env-prefix's (`env_prefix::verify`, re-exported here):
//! every file the conda records and the Python distributions' `RECORD`s list, present, same
//! size, and with `hash`, the same sha256.
//!
//! [`verify_cache`] checks environments of a cache the way `cache verify` does: only complete
//! ones, each under its shared lock (so `cache prune` and a `--reinstall` cannot change it
//! meanwhile), and one being built is reported as such rather than checked half-written.

use std::path::{Path, PathBuf};

use env_cache::{Cache, CacheError, EnvEntry, EnvState};

pub use env_prefix::verify::{VerifyReport, verify};

/// Errors of [`verify_cache`].
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum VerifyError {
    /// A key was asked for that names no complete environment (and none being built).
    #[error("No complete environment `{key}` in {}", root.display())]
    NotComplete {
        /// The key asked for.
        key: String,
        /// The cache root.
        root: PathBuf,
    },
    /// The cache or an environment's lock could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] CacheError),
}

impl VerifyError {
    /// Whether the caller can fix it (exit code 1): a key that names no complete environment.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::NotComplete { .. })
    }
}

/// What the environment was first built for (its metadata), to name the repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltFor {
    /// The model directory.
    pub model: String,
    /// `conda` or `virtualenv`.
    pub env_manager: String,
}

/// The verdict on one environment of the cache.
#[derive(Debug, Clone)]
pub struct EnvVerdict {
    /// The key.
    pub key: String,
    /// From its metadata; `None` when unreadable.
    pub built_for: Option<BuiltFor>,
    /// Not checked: another process is building it (check it again once complete).
    pub building: bool,
    /// What was found; empty when `building`. A pulled environment's relocated console
    /// scripts and unchecked-hash bytecode are left out of `changed` (they differ by design).
    pub report: VerifyReport,
}

impl EnvVerdict {
    /// Whether nothing is wrong (an environment being built counts as fine).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.building || self.report.is_ok()
    }
}

/// Verifies the environments of `cache` named by `keys`, or every complete one when `keys` is
/// empty; `hash` also compares contents. Holds the cache's shared lock throughout, and each
/// environment's shared lock while checking it; an environment whose builder holds its lock is
/// returned with [`EnvVerdict::building`] set instead of waiting for it.
pub fn verify_cache(
    cache: &Cache,
    keys: &[String],
    hash: bool,
) -> Result<Vec<EnvVerdict>, VerifyError> {
    let _shared = cache.lock_shared()?;
    // An environment being built is locked exclusively by its builder: say so rather than
    // leave it out silently (or, with `--reinstall`, check a directory being replaced).
    let building =
        |entry: &EnvEntry| -> Result<bool, CacheError> { Ok(entry.try_lock_shared()?.is_none()) };
    let mut envs = Vec::new();
    if keys.is_empty() {
        for entry in cache.envs()? {
            match entry.state() {
                EnvState::Complete(_) => envs.push(entry),
                EnvState::Incomplete if building(&entry)? => envs.push(entry),
                _ => {}
            }
        }
    } else {
        for key in keys {
            let entry = cache.env(key)?;
            let state = entry.state();
            // A key nothing ever built has no lock file: asking for its lock would create one,
            // a leftover `cache prune` then reports as an incomplete environment.
            let never_built = matches!(state, EnvState::Missing) && !entry.lock_path().exists();
            if !matches!(state, EnvState::Complete(_)) && (never_built || !building(&entry)?) {
                return Err(VerifyError::NotComplete {
                    key: key.clone(),
                    root: cache.root().to_path_buf(),
                });
            }
            envs.push(entry);
        }
    }
    let mut verdicts = Vec::new();
    for env in envs {
        let metadata = env.metadata().ok();
        let built_for = metadata.as_ref().map(|m| BuiltFor {
            model: m.model.clone(),
            env_manager: m.env_manager.clone(),
        });
        let Some(_lock) = env.try_lock_shared()? else {
            verdicts.push(EnvVerdict {
                key: env.key().to_string(),
                built_for,
                building: true,
                report: VerifyReport::default(),
            });
            continue;
        };
        let mut report = verify(env.dir(), hash);
        // A pulled environment's console scripts are relocatable trampolines and its bytecode
        // is compiled unchecked-hash (`pack`), so their recorded hashes differ by design.
        if let Some(relocated) = metadata
            .as_ref()
            .and_then(|m| m.extra.get("relocated_scripts").cloned())
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        {
            report
                .changed
                .retain(|path| !differs_by_design(path, &relocated));
        }
        verdicts.push(EnvVerdict {
            key: env.key().to_string(),
            built_for,
            building: false,
            report,
        });
    }
    Ok(verdicts)
}

/// Whether a changed file of a pulled environment is one of its relocated console scripts or
/// its unchecked-hash bytecode.
fn differs_by_design(path: &str, relocated: &[String]) -> bool {
    let path = normalize(path);
    let bytecode =
        path.contains("/__pycache__/") && Path::new(&path).extension().is_some_and(|e| e == "pyc");
    bytecode || relocated.contains(&path)
}

/// `a/b/../c` as `a/c` (RECORD names scripts `site-packages/../../../bin/x`).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_environments_scripts_and_bytecode_differ_by_design() {
        let relocated = vec!["bin/tool".to_string()];
        assert!(differs_by_design(
            "lib/python3.11/site-packages/../../../bin/tool",
            &relocated
        ));
        assert!(differs_by_design(
            "lib/python3.11/site-packages/pkg/__pycache__/m.cpython-311.pyc",
            &relocated
        ));
        assert!(!differs_by_design("bin/other", &relocated));
        assert!(!differs_by_design(
            "lib/python3.11/site-packages/pkg/m.py",
            &relocated
        ));
        assert_eq!(normalize("./a/b/../c//d"), "a/c/d");
    }

    #[test]
    fn a_key_without_a_complete_environment_is_named() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        cache.init().unwrap();
        assert!(verify_cache(&cache, &[], false).unwrap().is_empty());
        // A key nothing built: named, and nothing is left behind for `cache prune` to find.
        let unknown = "fedcba9876543210fedcba9876543210".to_string();
        let error = verify_cache(&cache, std::slice::from_ref(&unknown), false).unwrap_err();
        assert!(matches!(&error, VerifyError::NotComplete { key, .. } if *key == unknown));
        assert!(
            cache.envs().unwrap().is_empty(),
            "{:?}",
            cache.envs().unwrap()
        );
        assert!(!cache.env(&unknown).unwrap().lock_path().exists());
        // A crashed build's leftovers are neither complete nor being built.
        let entry = cache.env("0123456789abcdef0123456789abcdef").unwrap();
        fs_err::create_dir_all(entry.dir()).unwrap();
        assert!(verify_cache(&cache, &[], false).unwrap().is_empty());
        let error = verify_cache(&cache, &[entry.key().to_string()], false).unwrap_err();
        assert!(
            matches!(&error, VerifyError::NotComplete { key, .. } if key == entry.key()),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "No complete environment `{}` in {}",
                entry.key(),
                cache.root().display()
            )
        );
    }
}
