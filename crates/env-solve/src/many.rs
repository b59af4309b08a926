//! Many models' environments at once (a build agent's `create --jobs N --from models.txt`).
//!
//! Models are deduplicated by key first, so two copies of one model build once; the distinct
//! environments are then built `jobs` at a time as tasks of the caller's runtime, sharing the
//! package and uv caches. A failing build does not stop the others: every outcome is returned.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use env_cache::Cache;

use crate::build::Created;
use crate::environment::{BuildSettings, ModelEnvironment};
use crate::error::SolveError;
use crate::reporter::Reporter;

/// The outcome of one distinct environment.
#[derive(Debug)]
pub struct GroupOutcome {
    /// Indices (into the models given) of the models with this key, in input order: the first
    /// one built it, the others share it.
    pub members: Vec<usize>,
    /// What the build gave.
    pub result: Result<Created, SolveError>,
    /// How long the build took, in seconds.
    pub seconds: f64,
}

/// Groups the models that have an environment by key, in key order; each group lists indices
/// into `envs` in input order.
#[must_use]
pub fn group_by_key(envs: &[Option<ModelEnvironment>]) -> Vec<Vec<usize>> {
    let mut by_key: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, env) in envs.iter().enumerate() {
        if let Some(env) = env {
            by_key.entry(env.key.as_str()).or_default().push(index);
        }
    }
    by_key.into_values().collect()
}

/// Gives each build its progress reporter.
pub type ReporterFor = dyn Fn(&ModelEnvironment) -> Arc<dyn Reporter> + Send + Sync;

/// Called as each build ends.
pub type OnFinished = dyn Fn(&ModelEnvironment, &Result<Created, SolveError>) + Send + Sync;

/// Builds (or reuses) the environment of every model in `envs` (`None`: a model that could not
/// be read, skipped), each distinct key once, at most `jobs` at a time, as tasks on the
/// caller's runtime (so builds run on its worker threads in parallel). The cache is
/// initialised and its shared lock held for the whole run (waiting, off the runtime, while
/// `cache clean` or `cache prune` holds it); only failing to take that lock is an error.
/// `reporter` gives each build its progress reporter; `on_finished` is called as each build
/// ends (for an overall progress bar). Outcomes come back in the order of their first member.
pub async fn create_many(
    envs: Arc<[Option<ModelEnvironment>]>,
    jobs: usize,
    cache: &Cache,
    settings: &BuildSettings,
    reporter: Arc<ReporterFor>,
    on_finished: Arc<OnFinished>,
) -> Result<Vec<GroupOutcome>, SolveError> {
    let _cache_lock = crate::build::hold_cache(cache).await?;
    let groups = group_by_key(&envs);
    let workers = jobs.clamp(1, groups.len().max(1));
    let queue: Arc<Mutex<VecDeque<Vec<usize>>>> = Arc::new(Mutex::new(groups.into()));
    // `workers` tasks, each taking the next distinct environment until none is left: at most
    // `jobs` builds at a time, and a slow build does not hold the others back.
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (envs, queue, cache, settings) =
            (envs.clone(), queue.clone(), cache.clone(), settings.clone());
        let (reporter, on_finished) = (reporter.clone(), on_finished.clone());
        tasks.spawn(async move {
            let mut outcomes = Vec::new();
            loop {
                let Some(members) = queue
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .pop_front()
                else {
                    break;
                };
                let Some(env) = envs[members[0]].as_ref() else {
                    continue;
                };
                let start = Instant::now();
                let result = env.build(&cache, &settings, false, reporter(env)).await;
                on_finished(env, &result);
                outcomes.push(GroupOutcome {
                    members,
                    result,
                    seconds: start.elapsed().as_secs_f64(),
                });
            }
            outcomes
        });
    }
    let mut outcomes = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(mut done) => outcomes.append(&mut done),
            // A build panicked: the same as when it ran on a thread of its own.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("A build task was cancelled: {error}"),
        }
    }
    outcomes.sort_by_key(|outcome| outcome.members[0]);
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use env_cache::{LockKind, LockedFile};

    use super::*;

    /// `create_many` holds the cache's shared lock itself: while `cache clean` (here, this
    /// test) holds the cache exclusively, it waits, and fails at the lock timeout instead of
    /// building into a cache being removed.
    #[tokio::test]
    async fn it_takes_the_caches_shared_lock_and_waits_for_an_exclusive_holder() {
        let root = tempfile::tempdir().unwrap();
        let cache =
            Cache::new(root.path().join("cache")).with_lock_timeout(Duration::from_millis(300));
        cache.init().unwrap();
        let clean = LockedFile::acquire_blocking(&cache.lock_path(), LockKind::Exclusive).unwrap();
        let settings = BuildSettings::default();
        let run = || {
            create_many(
                Vec::new().into(),
                2,
                &cache,
                &settings,
                Arc::new(|_: &ModelEnvironment| -> Arc<dyn Reporter> {
                    Arc::new(crate::reporter::NoReporter)
                }),
                Arc::new(|_: &ModelEnvironment, _: &Result<Created, SolveError>| {}),
            )
        };
        let error = run().await.unwrap_err();
        assert!(matches!(error, SolveError::Cache(_)), "{error:?}");
        drop(clean);
        assert!(run().await.unwrap().is_empty());
    }
}
