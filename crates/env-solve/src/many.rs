//! Many models' environments at once (a build agent's `create --jobs N --from models.txt`).
//!
//! Models are deduplicated by key first, so two copies of one model build once; the distinct
//! environments are then built `jobs` at a time on threads of their own, sharing the package and
//! uv caches. A failing build does not stop the others: every outcome is returned.

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

/// Builds (or reuses) the environment of every model in `envs` (`None`: a model that could not
/// be read, skipped), each distinct key once, at most `jobs` at a time. The caller holds the
/// cache's shared lock. `reporter` gives each build its progress reporter; `on_finished` is
/// called as each build ends (for an overall progress bar). Outcomes come back in the order of
/// their first member.
pub fn create_many(
    envs: &[Option<ModelEnvironment>],
    jobs: usize,
    cache: &Cache,
    settings: &BuildSettings,
    reporter: &(dyn Fn(&ModelEnvironment) -> Arc<dyn Reporter> + Sync),
    on_finished: &(dyn Fn(&ModelEnvironment, &Result<Created, SolveError>) + Sync),
) -> Vec<GroupOutcome> {
    let groups = group_by_key(envs);
    let workers = jobs.clamp(1, groups.len().max(1));
    let queue: Mutex<VecDeque<Vec<usize>>> = Mutex::new(groups.into());
    let outcomes: Mutex<Vec<GroupOutcome>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
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
                    let result = env.build_blocking(cache, settings, false, reporter(env));
                    on_finished(env, &result);
                    outcomes
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(GroupOutcome {
                            members,
                            result,
                            seconds: start.elapsed().as_secs_f64(),
                        });
                }
            });
        }
    });
    let mut outcomes = outcomes
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    outcomes.sort_by_key(|outcome| outcome.members[0]);
    outcomes
}
