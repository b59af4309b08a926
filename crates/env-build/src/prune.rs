//! `cache prune`: which environments, buckets and staging leftovers to remove, and removing
//! them safely.
//!
//! - Environments are removed only under their own exclusive lock, taken without waiting: one
//!   in use (a model running from it, a build) is kept and counted.
//! - Unknown buckets (`envs-v0/`, another layout version's) are removed only under the cache's
//!   exclusive lock, taken without waiting: an older binary may be running a model from one,
//!   and it holds only the cache's shared lock, knowing nothing of our per-environment locks.
//! - Staging in `tmp/` is a killed process's leftover when nobody else holds the cache (every
//!   command that stages there holds its shared lock), or when older than [`STAGING_MAX_AGE`].
//! - Then bytecode no environment links to any more.
//! - Then downloaded models (`models-v1/`, env-source) unused for longer than
//!   [`PrunePolicy::older_than`], and incomplete downloads; one in use is kept and counted.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use env_cache::units::human_size;
use env_cache::{Cache, EnvState, KNOWN_BUCKETS, LockKind, LockedFile};

use crate::error::{SolveError, io};

/// Staging entries older than this are leftovers of killed processes: nothing stages for hours.
pub const STAGING_MAX_AGE: Duration = Duration::from_secs(6 * 3600);

/// What to prune.
#[derive(Debug, Clone, Default)]
pub struct PrunePolicy {
    /// Remove environments last used longer ago than this.
    pub older_than: Option<Duration>,
    /// Then remove least recently used environments until the rest fit in this many bytes.
    pub max_size: Option<u64>,
    /// Say what would be removed; remove nothing.
    pub dry_run: bool,
}

/// Why an environment is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A build that never completed (killed, or failed without cleaning up).
    Incomplete,
    /// Not used for longer than [`PrunePolicy::older_than`].
    Unused,
    /// The oldest beyond [`PrunePolicy::max_size`].
    LeastRecentlyUsed,
}

/// One thing removed (or, in a dry run, that would be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// An environment.
    Environment {
        /// Its key.
        key: String,
        /// Why.
        reason: Reason,
        /// Bytes on disk.
        size: u64,
    },
    /// A bucket this version does not know.
    UnknownBucket {
        /// The directory name.
        name: String,
    },
    /// A packed archive (`packs-v1/`, `pack --cached`) whose environment is gone.
    Archive {
        /// The archive's file name.
        name: String,
        /// Bytes on disk (with its report).
        size: u64,
    },
    /// Abandoned staging under `tmp/`.
    Staging {
        /// The entry's name.
        name: String,
        /// Bytes on disk.
        size: u64,
    },
    /// A downloaded model (`models-v1/`).
    Model(env_source::PrunedModel),
}

impl std::fmt::Display for Removal {
    /// What it is, for `Removed …` or `Would remove …`: ``unused environment KEY (12.0 MiB)``,
    /// ``unknown cache bucket `envs-v0` ``.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Environment { key, reason, size } => {
                let reason = match reason {
                    Reason::Incomplete => "incomplete",
                    Reason::Unused => "unused",
                    Reason::LeastRecentlyUsed => "least recently used",
                };
                write!(f, "{reason} environment {key} ({})", human_size(*size))
            }
            Self::UnknownBucket { name } => write!(f, "unknown cache bucket `{name}`"),
            Self::Archive { name, size } => write!(
                f,
                "packed archive `packs-v1/{name}` of a removed environment ({})",
                human_size(*size)
            ),
            Self::Staging { name, size } => {
                write!(f, "abandoned staging `tmp/{name}` ({})", human_size(*size))
            }
            Self::Model(model) => std::fmt::Display::fmt(model, f),
        }
    }
}

/// What `prune` did.
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Environments removed.
    pub removed: usize,
    /// Bytes freed (environments, staging, archives, stores and downloaded models).
    pub freed: u64,
    /// Environments kept because another process uses them.
    pub skipped_in_use: usize,
    /// Downloaded models kept because another process uses them.
    pub models_skipped_in_use: usize,
    /// Unknown buckets kept because another process holds the cache.
    pub unknown_buckets_kept: Vec<String>,
}

/// Prunes `cache` under `policy` (environments, staging, archives, stores, unknown buckets, then
/// downloaded models), calling `on_removal` before each removal. The caller must not hold the
/// cache's lock: this takes the shared one, and the exclusive one for unknown buckets.
pub fn prune(
    cache: &Cache,
    policy: &PrunePolicy,
    on_removal: &mut dyn FnMut(&Removal),
) -> Result<PruneReport, SolveError> {
    let mut report = PruneReport::default();
    let shared = cache.lock_shared()?;
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    let now = SystemTime::now();
    let mut remaining: Vec<(SystemTime, u64, env_cache::EnvEntry)> = Vec::new();
    for env in cache.envs()? {
        let last_used = env.last_used().unwrap_or(SystemTime::UNIX_EPOCH);
        let size = env_cache::disk_usage(env.dir(), &mut HashSet::new());
        let stale = policy
            .older_than
            .is_some_and(|age| now.duration_since(last_used).unwrap_or_default() > age);
        let incomplete = !matches!(env.state(), EnvState::Complete(_));
        if !(stale || incomplete) {
            remaining.push((last_used, size, env));
            continue;
        }
        let Some(lock) = lock_for_removal(&env, policy.dry_run)? else {
            report.skipped_in_use += 1;
            continue;
        };
        on_removal(&Removal::Environment {
            key: env.key().to_string(),
            reason: if incomplete {
                Reason::Incomplete
            } else {
                Reason::Unused
            },
            size,
        });
        if !policy.dry_run {
            env.remove(&tmp)?;
        }
        drop(lock);
        report.removed += 1;
        report.freed += size;
    }
    if let Some(budget) = policy.max_size {
        remaining.sort_by_key(|(used, _, _)| *used);
        let mut total: u64 = remaining.iter().map(|(_, size, _)| size).sum();
        for (_, size, env) in &remaining {
            if total <= budget {
                break;
            }
            let Some(lock) = lock_for_removal(env, policy.dry_run)? else {
                report.skipped_in_use += 1;
                continue;
            };
            on_removal(&Removal::Environment {
                key: env.key().to_string(),
                reason: Reason::LeastRecentlyUsed,
                size: *size,
            });
            if !policy.dry_run {
                env.remove(&tmp)?;
            }
            drop(lock);
            total -= size;
            report.removed += 1;
            report.freed += size;
        }
    }
    if !policy.dry_run {
        // Bytecode that no environment links to any more (not while a compiler fills it).
        stop_compilers(&cache.root().join(env_cache::PYC_BUCKET).join(".lock"));
        report.freed += env_bytecode::prune_store(&cache.root().join(env_cache::PYC_BUCKET));
    }
    // With the whole cache to ourselves (no other command holds its shared lock, and every
    // command that stages in `tmp/` holds it), everything in `tmp/` is a killed process's
    // leftover (a killed pull's partial archive, issue 23), as are buckets of other layout
    // versions. Otherwise only staging older than any live process's is removed.
    drop(shared);
    let exclusive = LockedFile::try_acquire(&cache.lock_path(), LockKind::Exclusive)?;
    let max_age = if exclusive.is_some() {
        Duration::ZERO
    } else {
        STAGING_MAX_AGE
    };
    remove_staging(&tmp, max_age, policy.dry_run, &mut report, on_removal);
    let unknown = unknown_buckets(cache);
    if exclusive.is_some() && !policy.dry_run {
        // Store files no remaining environment's manifest names (only sharing for later
        // pulls is lost: environments hold their own links), then the bytecode only the store
        // held. Not while anyone holds the cache: pulls link from the store.
        let mut keep = HashSet::new();
        for env in cache.envs()? {
            if let Some(manifest) = env_store::Manifest::saved(env.dir()) {
                keep.extend(
                    manifest
                        .blobs()
                        .into_iter()
                        .filter_map(|e| e.sha256.clone()),
                );
            }
        }
        report.freed += env_store::sweep(&cache.root().join(env_cache::STORE_BUCKET), &keep);
        report.freed += env_bytecode::prune_store(&cache.root().join(env_cache::PYC_BUCKET));
    }
    if exclusive.is_some() {
        remove_orphan_archives(cache, policy.dry_run, &mut report, on_removal)?;
    }
    if exclusive.is_some() {
        for name in unknown {
            on_removal(&Removal::UnknownBucket { name: name.clone() });
            if !policy.dry_run {
                let path = cache.root().join(&name);
                fs_err::remove_dir_all(&path).map_err(io(&path))?;
            }
        }
    } else {
        report.unknown_buckets_kept = unknown;
    }
    drop(exclusive);
    // Downloaded models have no size budget: only age and incompleteness remove one.
    let models = env_source::prune_models(cache, policy.older_than, policy.dry_run, &mut |m| {
        on_removal(&Removal::Model(m.clone()));
    })?;
    report.models_skipped_in_use = models.skipped_in_use;
    report.freed += models.freed;
    Ok(report)
}

/// Removes the entries of `tmp` older than `max_age` (all of them for zero).
fn remove_staging(
    tmp: &std::path::Path,
    max_age: Duration,
    dry_run: bool,
    report: &mut PruneReport,
    on_removal: &mut dyn FnMut(&Removal),
) {
    let now = SystemTime::now();
    let Ok(entries) = fs_err::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .unwrap_or_default();
        if age < max_age {
            continue;
        }
        let size = env_cache::disk_usage(&entry.path(), &mut HashSet::new());
        on_removal(&Removal::Staging {
            name: entry.file_name().to_string_lossy().into_owned(),
            size,
        });
        if !dry_run {
            let removed = if entry.path().is_dir() {
                fs_err::remove_dir_all(entry.path())
            } else {
                fs_err::remove_file(entry.path())
            };
            if removed.is_ok() {
                report.freed += size;
            }
        }
    }
}

/// The exclusive lock of an environment to remove. A lock held only by background bytecode
/// compilers is taken after stopping them (they compile what is being removed); one held by a
/// running model or a build is not. A dry run stops nothing.
fn lock_for_removal(
    env: &env_cache::EnvEntry,
    dry_run: bool,
) -> Result<Option<LockedFile>, SolveError> {
    if let Some(lock) = env.try_lock_exclusive()? {
        return Ok(Some(lock));
    }
    if !dry_run && stop_compilers(env.lock_path()) > 0 {
        return Ok(env.try_lock_exclusive()?);
    }
    Ok(None)
}

/// `cache clean`: removes everything in the cache but its marker files and lock, and returns
/// the bytes freed. Background bytecode compilers are stopped first (their work is about to be
/// deleted, and they hold their environment's lock and, once started, the cache's). Unless
/// `force`, the cache's lock is taken exclusively, waiting at most the cache's lock timeout for
/// the commands that use it; `on_wait` is called when it is busy (with zero) and then every 30 s.
pub fn clean(
    cache: &Cache,
    force: bool,
    on_wait: &mut dyn FnMut(Duration),
) -> Result<u64, SolveError> {
    for env in cache.envs()? {
        stop_compilers(env.lock_path());
    }
    stop_compilers(&cache.lock_path());
    let lock = if force {
        None
    } else {
        Some(LockedFile::acquire(
            &cache.lock_path(),
            LockKind::Exclusive,
            Some(cache.lock_timeout()),
            Duration::from_secs(30),
            on_wait,
        )?)
    };
    let mut freed = 0;
    let mut seen = HashSet::new();
    let root = cache.root();
    for entry in fs_err::read_dir(root).map_err(io(root))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "CACHEDIR.TAG" | ".gitignore" | ".lock") {
            continue;
        }
        let path = entry.path();
        freed += env_cache::disk_usage(&path, &mut seen);
        if path.is_dir() {
            fs_err::remove_dir_all(&path).map_err(io(&path))?;
        } else {
            fs_err::remove_file(&path).map_err(io(&path))?;
        }
    }
    drop(lock);
    Ok(freed)
}

/// Stops the background bytecode compilers (`pyfunc-env __compile-bytecode`) holding `lock`.
pub fn stop_compilers(lock: &std::path::Path) -> usize {
    let stopped =
        env_cache::child::stop(lock, |holder| holder.command.contains("__compile-bytecode"));
    for holder in &stopped {
        tracing::debug!("Stopped the background bytecode compiler {holder}");
    }
    stopped.len()
}

/// Directories in the cache root that this version does not use.
fn unknown_buckets(cache: &Cache) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(cache.root()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && !KNOWN_BUCKETS.contains(&name.as_str()))
        .collect();
    names.sort();
    names
}

/// Archives in `packs-v1/` (`pyfunc-env-KEY[-OPTIONS].EXT`, named by `env_pack::cached_name`
/// (env-build does not depend on env-pack), and its `.json` report) whose
/// environment `KEY` is no longer in the cache: nothing can reuse them, since a rebuilt
/// environment is packed again. Only with the cache to ourselves (a `pack --cached` may be
/// writing one), like the store's sweep.
fn remove_orphan_archives(
    cache: &Cache,
    dry_run: bool,
    report: &mut PruneReport,
    on_removal: &mut dyn FnMut(&Removal),
) -> Result<(), SolveError> {
    let dir = cache.root().join(env_cache::PACKS_BUCKET);
    let Ok(entries) = fs_err::read_dir(&dir) else {
        return Ok(());
    };
    let keys: HashSet<String> = cache
        .envs()?
        .iter()
        .filter_map(|env| env.dir().file_name()?.to_str().map(str::to_string))
        .collect();
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in &names {
        let Some(key) = name
            .strip_prefix("pyfunc-env-")
            .and_then(|rest| rest.get(..32))
            .filter(|key| key.bytes().all(|b| b.is_ascii_hexdigit()))
        else {
            continue;
        };
        if keys.contains(key) || is_report(name) {
            continue;
        }
        let path = dir.join(name);
        let report_path = dir.join(format!("{name}.json"));
        let size = [&path, &report_path]
            .iter()
            .filter_map(|p| fs_err::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        on_removal(&Removal::Archive {
            name: name.clone(),
            size,
        });
        if !dry_run {
            for file in [&path, &report_path] {
                if let Err(error) = fs_err::remove_file(file)
                    && error.kind() != std::io::ErrorKind::NotFound
                {
                    return Err(io(file)(error));
                }
            }
            report.freed += size;
        }
    }
    // Reports left without their archive (an archive removed by hand).
    for name in names.iter().filter(|n| is_report(n)) {
        let archive = dir.join(name.trim_end_matches(".json"));
        if !archive.exists() && !dry_run {
            let _ = fs_err::remove_file(dir.join(name));
        }
    }
    Ok(())
}

/// An archive's `.json` report (we write the name, always lower case).
fn is_report(name: &str) -> bool {
    std::path::Path::new(name)
        .extension()
        .is_some_and(|extension| extension == "json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removal_says_what_it_is_and_its_size() {
        let environment = |reason| Removal::Environment {
            key: "abc".into(),
            reason,
            size: 2048,
        };
        assert_eq!(
            environment(Reason::Incomplete).to_string(),
            "incomplete environment abc (2.0 KiB)"
        );
        assert_eq!(
            environment(Reason::Unused).to_string(),
            "unused environment abc (2.0 KiB)"
        );
        assert_eq!(
            environment(Reason::LeastRecentlyUsed).to_string(),
            "least recently used environment abc (2.0 KiB)"
        );
        let bucket = Removal::UnknownBucket {
            name: "envs-v0".into(),
        };
        assert_eq!(bucket.to_string(), "unknown cache bucket `envs-v0`");
        let archive = Removal::Archive {
            name: "k.tar.gz".into(),
            size: 1,
        };
        assert_eq!(
            archive.to_string(),
            "packed archive `packs-v1/k.tar.gz` of a removed environment (1 B)"
        );
        let staging = Removal::Staging {
            name: "x".into(),
            size: 1,
        };
        assert_eq!(staging.to_string(), "abandoned staging `tmp/x` (1 B)");
    }

    /// Downloaded models are pruned by the same call (the CLI made a second one before issue
    /// 24): an incomplete download goes, its bytes counted; one another process holds stays,
    /// counted apart from environments.
    #[test]
    fn downloaded_models_are_pruned_with_the_environments() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        cache.init().unwrap();
        let models = cache.bucket(env_source::MODELS_BUCKET).unwrap();
        for key in ["left", "held"] {
            fs_err::create_dir_all(models.join(key).join("model")).unwrap();
            fs_err::write(models.join(key).join("model/MLmodel"), "1234").unwrap();
            fs_err::write(models.join(format!("{key}.lock")), "").unwrap();
        }
        let other =
            LockedFile::acquire_blocking(&models.join("held.lock"), LockKind::Shared).unwrap();
        let mut removals = Vec::new();
        let report = prune(&cache, &PrunePolicy::default(), &mut |r| {
            removals.push(r.to_string());
        })
        .unwrap();
        assert_eq!(
            removals,
            ["downloaded model (incomplete) left (4 B)"],
            "{removals:?}"
        );
        assert!(!models.join("left").exists());
        assert!(models.join("held").exists());
        assert_eq!(report.models_skipped_in_use, 1);
        assert_eq!(report.skipped_in_use, 0);
        assert_eq!(report.freed, 4);
        drop(other);
    }

    #[test]
    fn clean_keeps_only_the_markers_and_waits_for_users_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache")).with_lock_timeout(Duration::ZERO);
        cache.init().unwrap();
        fs_err::create_dir_all(cache.root().join("envs-v1/abc/bin")).unwrap();
        fs_err::write(cache.root().join("envs-v1/abc/bin/python"), "12345").unwrap();
        fs_err::create_dir_all(cache.root().join("tools-v1")).unwrap();
        fs_err::write(cache.root().join("tools-v1/uv"), "678").unwrap();
        fs_err::write(cache.root().join("stray"), "").unwrap();
        let user = LockedFile::acquire_blocking(&cache.lock_path(), LockKind::Shared).unwrap();
        let mut waits = 0;
        assert!(clean(&cache, false, &mut |_| waits += 1).is_err());
        assert_eq!(waits, 1);
        assert!(cache.root().join("stray").exists());
        assert_eq!(clean(&cache, true, &mut |_| waits += 1).unwrap(), 8);
        drop(user);
        let mut left: Vec<String> = fs_err::read_dir(cache.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".gitignore", ".lock", "CACHEDIR.TAG"]);
        assert_eq!(clean(&cache, false, &mut |_| waits += 1).unwrap(), 0);
        assert_eq!(waits, 1);
    }

    #[test]
    fn unknown_buckets_are_kept_while_another_process_holds_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        cache.init().unwrap();
        let old = cache.root().join("envs-v0");
        fs_err::create_dir_all(old.join("model-running")).unwrap();
        // An older binary running a model from `envs-v0/` holds the cache's shared lock.
        let other = LockedFile::acquire_blocking(&cache.lock_path(), LockKind::Shared).unwrap();
        let mut removals = Vec::new();
        let report = prune(&cache, &PrunePolicy::default(), &mut |r| {
            removals.push(r.clone());
        })
        .unwrap();
        assert!(old.is_dir(), "an unknown bucket in use was removed");
        assert_eq!(report.unknown_buckets_kept, ["envs-v0"]);
        assert!(removals.is_empty(), "{removals:?}");
        // Once it is gone, the bucket goes.
        drop(other);
        let report = prune(&cache, &PrunePolicy::default(), &mut |r| {
            removals.push(r.clone());
        })
        .unwrap();
        assert!(!old.exists());
        assert!(report.unknown_buckets_kept.is_empty());
        assert_eq!(
            removals,
            [Removal::UnknownBucket {
                name: "envs-v0".into()
            }]
        );
    }

    #[test]
    fn staging_is_removed_when_nobody_else_holds_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        cache.init().unwrap();
        let tmp = cache.bucket(env_cache::TMP_DIR).unwrap();
        // What a pull killed a minute ago leaves: its download and its half-unpacked staging.
        fs_err::write(tmp.join(".tmp-pull-abc123"), "partial").unwrap();
        fs_err::create_dir_all(tmp.join("key-pull-xyz/env/lib")).unwrap();
        // While another command holds the cache, recent staging may be its own: kept.
        let other = LockedFile::acquire_blocking(&cache.lock_path(), LockKind::Shared).unwrap();
        prune(&cache, &PrunePolicy::default(), &mut |_| {}).unwrap();
        assert!(tmp.join(".tmp-pull-abc123").exists());
        assert!(tmp.join("key-pull-xyz").exists());
        drop(other);
        let mut removals = Vec::new();
        prune(&cache, &PrunePolicy::default(), &mut |r| {
            removals.push(r.clone());
        })
        .unwrap();
        let left: Vec<_> = fs_err::read_dir(&tmp).unwrap().flatten().collect();
        assert!(left.is_empty(), "{left:?}");
        assert_eq!(removals.len(), 2, "{removals:?}");
    }

    /// The file store and the bytecode store it holds links into: a stored file no
    /// environment's manifest names goes, and so does bytecode that only the store still held
    /// (issue 25); nothing goes while another command holds the cache.
    #[cfg(unix)]
    #[test]
    fn store_files_no_environment_names_are_removed_with_the_bytecode_they_held() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        cache.init().unwrap();
        let sha = "ab".repeat(32);
        let stored = cache
            .bucket(env_cache::STORE_BUCKET)
            .unwrap()
            .join(&sha[..2])
            .join(&sha);
        fs_err::create_dir_all(stored.parent().unwrap()).unwrap();
        let pyc = cache
            .bucket(env_cache::PYC_BUCKET)
            .unwrap()
            .join("cd")
            .join("cdef.pyc");
        fs_err::create_dir_all(pyc.parent().unwrap()).unwrap();
        fs_err::write(&pyc, "bytecode").unwrap();
        fs_err::hard_link(&pyc, &stored).unwrap();
        let other = LockedFile::acquire_blocking(&cache.lock_path(), LockKind::Shared).unwrap();
        prune(&cache, &PrunePolicy::default(), &mut |_| {}).unwrap();
        assert!(
            stored.exists() && pyc.exists(),
            "removed while the cache was in use"
        );
        drop(other);
        let report = prune(&cache, &PrunePolicy::default(), &mut |_| {}).unwrap();
        assert!(!stored.exists(), "a store file no manifest names stayed");
        assert!(!pyc.exists(), "bytecode only the store held stayed");
        assert_eq!(report.freed, 8);
    }
}
