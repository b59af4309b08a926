//! Many models' environments at once (a build agent's `create --jobs N --from models.txt`).
//!
//! Models are deduplicated by key first, so two copies of one model build once; the distinct
//! environments are then built `jobs` at a time as tasks of the caller's runtime, sharing the
//! package and uv caches. A failing build does not stop the others: every outcome is returned.
//!
//! [`ensure_many`] is the one call of a multi-model `create`: it decides each opened model's
//! environment, classifies them (`--dry-run`) or builds them, and returns one typed outcome per
//! model and the warnings to show, grouped as a user wants them; the CLI only renders.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use env_cache::Cache;
use env_source::OpenedModel;
use env_spec::EnvManager;

use crate::build::{BuildWarning, Created};
use crate::ensure::{EnsureError, Plan};
use crate::environment::{BuildSettings, EnvError, EnvRequest, ModelEnvironment};
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

/// One model given to [`ensure_many`], as the caller opened it.
#[derive(Debug)]
pub struct ModelInput {
    /// The model as given (a path or a URI): its row's name when it could not be opened.
    pub given: String,
    /// The opened model (a downloaded one holding its lock, kept until every build is done),
    /// or why it could not be opened.
    pub model: Result<OpenedModel, OpenFailure>,
    /// When opening it started: a failed model's row counts from there.
    pub started: Instant,
}

/// Why the caller could not open a model (an [`env_source::OpenError`], or any error), and
/// whether that is the user's input.
#[derive(Debug)]
pub struct OpenFailure {
    /// The error.
    pub error: Box<dyn std::error::Error + Send + Sync>,
    /// Whether the input caused it (exit code 1) rather than something broken (2).
    pub user_error: bool,
}

/// A model URI that could not be resolved or downloaded, or a directory that is no model:
/// classified by [`env_source::OpenError::is_user_error`]. (Was mapped in the CLI.)
impl From<env_source::OpenError> for OpenFailure {
    fn from(error: env_source::OpenError) -> Self {
        Self {
            user_error: error.is_user_error(),
            error: Box::new(error),
        }
    }
}

/// How a model's outcome counts towards the exit code of a multi-model run: the CLI maps it
/// to its exit status ([`ManyOutcome::worst`] folds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Built, reused, shared or classified.
    Ok,
    /// Failed because of the input (a bad spec, no solution, a missing model): exit code 1.
    UserError,
    /// Failed because something broke (I/O, the network, a bug): exit code 2.
    Broken,
}

impl Severity {
    fn of(user_error: bool) -> Self {
        if user_error {
            Self::UserError
        } else {
            Self::Broken
        }
    }
}

/// What became of one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// Built now.
    #[serde(rename = "built")]
    Built,
    /// Complete in the cache already.
    #[serde(rename = "cached")]
    Cached,
    /// Pulled from the remote cache.
    #[serde(rename = "pulled")]
    Pulled,
    /// Built by another process while we waited for it.
    #[serde(rename = "built by another process")]
    BuiltByOther,
    /// The same key as a model before it: that model's environment.
    #[serde(rename = "shared")]
    Shared,
    /// Could not be opened, decided or built.
    #[serde(rename = "failed")]
    Failed,
    /// `--dry-run`: not in the cache.
    #[serde(rename = "to build")]
    ToBuild,
}

/// The last line of a multi-model `create`'s summary: `3 models: 1 built, 2 cached or shared,
/// 0 failed` (with `--dry-run`: `... 1 to build, ... (dry run)`). (Was counted in the CLI.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    models: usize,
    done: usize,
    failed: usize,
    dry_run: bool,
}

impl Tally {
    /// Counts `rows`: built (or to build, for a dry run), failed, and the rest.
    pub fn of<'a>(rows: impl IntoIterator<Item = &'a ModelOutcome>, dry_run: bool) -> Self {
        let done_outcome = if dry_run {
            Outcome::ToBuild
        } else {
            Outcome::Built
        };
        let mut tally = Self {
            models: 0,
            done: 0,
            failed: 0,
            dry_run,
        };
        for row in rows {
            tally.models += 1;
            tally.done += usize::from(row.outcome == done_outcome);
            tally.failed += usize::from(row.outcome == Outcome::Failed);
        }
        tally
    }
}

impl std::fmt::Display for Tally {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            models,
            done,
            failed,
            dry_run,
        } = *self;
        let rest = models - done - failed;
        if dry_run {
            write!(
                f,
                "{models} models: {done} to build, {rest} cached or shared, {failed} failed (dry run)"
            )
        } else {
            write!(
                f,
                "{models} models: {done} built, {rest} cached or shared, {failed} failed"
            )
        }
    }
}

impl Outcome {
    /// The word a summary shows.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Built => "built",
            Self::Cached => "cached",
            Self::Pulled => "pulled",
            Self::BuiltByOther => "built by another process",
            Self::Shared => "shared",
            Self::Failed => "failed",
            Self::ToBuild => "to build",
        }
    }

    /// Whether this process made the environment now (built or pulled it), which a command
    /// that only uses the environment (`run`, `pack`, `image`) says in a line; a reused one is
    /// not worth one there. (Was the CLI's `matches!` in `print_created`.)
    #[must_use]
    pub fn made_here(self) -> bool {
        matches!(self, Self::Built | Self::Pulled)
    }

    /// What `create --dry-run` says of the first model of a key.
    fn planned(plan: Plan) -> Self {
        match plan {
            Plan::Cached => Self::Cached,
            // Each model's remote cache is not asked: what to build is the upper bound.
            Plan::Pull | Plan::Build => Self::ToBuild,
        }
    }

    /// Where a build's environment came from: a cache hit wins over a remote one, which wins
    /// over another process's build.
    #[must_use]
    pub fn of(created: &Created) -> Self {
        if created.cache_hit {
            Self::Cached
        } else if created.remote_hit {
            Self::Pulled
        } else if created.built_by_other {
            Self::BuiltByOther
        } else {
            Self::Built
        }
    }
}

/// What a build did with the remote cache, as `create` and `lock` say it: where a hit was
/// pulled from and what the pull fetched, or that the environment was pushed.
/// (Was worded in the CLI's `print_build_notes`.)
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteNote {
    /// Pulled from the remote cache: nothing solved or installed.
    Pulled {
        /// The remote's URL (no secrets).
        url: String,
        /// Seconds spent on the remote cache.
        seconds: f64,
        /// What the pull fetched and reused.
        pull: env_store::PullReport,
    },
    /// Built here and pushed.
    Pushed {
        /// The remote's URL (no secrets).
        url: String,
        /// Seconds spent on the remote cache.
        seconds: f64,
    },
}

impl RemoteNote {
    /// The note of `created`, built with the remote cache at `url`; `None` when the build
    /// neither pulled nor pushed.
    #[must_use]
    pub fn of(created: &Created, url: String) -> Option<Self> {
        let seconds = created.timings.remote;
        if created.remote_hit {
            Some(Self::Pulled {
                url,
                seconds,
                pull: created.pull.clone().unwrap_or_default(),
            })
        } else if created.pushed {
            Some(Self::Pushed { url, seconds })
        } else {
            None
        }
    }
}

impl std::fmt::Display for RemoteNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pulled { url, seconds, pull } => write!(
                f,
                "Pulled from the remote cache `{url}` in {seconds:.1}s (nothing solved or installed): {pull}"
            ),
            Self::Pushed { url, seconds } => {
                write!(f, "Pushed to the remote cache `{url}` in {seconds:.1}s")
            }
        }
    }
}

/// Why a model failed.
#[derive(Debug)]
pub enum Failure {
    /// The caller could not open it.
    Open(OpenFailure),
    /// Its environment could not be decided.
    Env(EnvError),
    /// Its environment could not be built ([`EnsureError::Build`]), for every model of its key.
    Build(EnsureError),
}

impl Failure {
    /// The error, for a report.
    #[must_use]
    pub fn error(&self) -> &(dyn std::error::Error + 'static) {
        match self {
            Self::Open(failure) => &*failure.error,
            Self::Env(error) => error,
            Self::Build(error) => error,
        }
    }

    /// Whether the input caused it, or something broke.
    #[must_use]
    pub fn severity(&self) -> Severity {
        Severity::of(match self {
            Self::Open(failure) => failure.user_error,
            Self::Env(error) => error.is_user_error(),
            Self::Build(error) => error.is_user_error(),
        })
    }
}

/// One model's row; serialized, a row of `create --json` (without its error, which the caller
/// renders).
#[derive(Debug, serde::Serialize)]
pub struct ModelOutcome {
    /// The model directory, or the model as given when it could not be opened.
    pub model_dir: String,
    /// The env manager, once decided.
    pub env_manager: Option<EnvManager>,
    /// The key, once decided.
    pub key: Option<String>,
    /// What became of it.
    #[serde(rename = "result")]
    pub outcome: Outcome,
    /// Seconds its build (or its failure) took.
    pub seconds: f64,
    /// What the build did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Created>,
    /// Why it failed ([`Outcome::Failed`]); shared by the models of one key.
    #[serde(skip)]
    pub failure: Option<Arc<Failure>>,
}

impl ModelOutcome {
    /// The row of a model that failed before anything was decided (`given`, after `seconds`),
    /// its error kept by the caller.
    #[must_use]
    pub fn failed(given: String, seconds: f64) -> Self {
        Self {
            model_dir: given,
            env_manager: None,
            key: None,
            outcome: Outcome::Failed,
            seconds,
            created: None,
            failure: None,
        }
    }

    /// How this row counts towards the exit code.
    #[must_use]
    pub fn severity(&self) -> Severity {
        self.failure
            .as_deref()
            .map_or(Severity::Ok, Failure::severity)
    }
}

/// A warning of a multi-model run, as the user should see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManyWarning {
    /// A remote cache's trouble is the same for every model: once.
    RemoteCache(String),
    /// About one environment: with the model that built it.
    Environment {
        /// That model's directory.
        model: PathBuf,
        /// The warning.
        message: String,
    },
}

impl std::fmt::Display for ManyWarning {
    /// The warning's line: a remote cache's as it is, an environment's after the model it is
    /// about (`` `model/`: message ``, as the model's own warnings are shown). (Was the CLI's.)
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::RemoteCache(message) => f.write_str(message),
            Self::Environment { model, message } => {
                write!(f, "`{}`: {message}", model.display())
            }
        }
    }
}

/// What [`ensure_many`] gives.
#[derive(Debug)]
pub struct ManyOutcome {
    /// One row per model given, in input order.
    pub models: Vec<ModelOutcome>,
    /// The builds' warnings, in the order to show them.
    pub warnings: Vec<ManyWarning>,
}

impl ManyOutcome {
    /// The worst row: something broke if anything did, else the input if any failed on it.
    #[must_use]
    pub fn worst(&self) -> Severity {
        self.models
            .iter()
            .map(ModelOutcome::severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    /// How many rows have `outcome`.
    #[must_use]
    pub fn count(&self, outcome: Outcome) -> usize {
        self.models.iter().filter(|m| m.outcome == outcome).count()
    }
}

/// Receives what [`ensure_many`] decides and builds; the CLI prints it.
pub trait ManyReporter: Send + Sync {
    /// A model's environment is decided (its warnings are `env.resolved.warnings`).
    fn on_resolved(&self, env: &ModelEnvironment);
    /// Building starts: `total` distinct environments.
    fn on_start(&self, _total: usize) {}
    /// The progress reporter of one build.
    fn build_reporter(&self, env: &ModelEnvironment) -> Arc<dyn Reporter>;
    /// A build ended.
    fn on_finished(&self, _env: &ModelEnvironment, _result: &Result<Created, SolveError>) {}
}

/// The one call of a multi-model `create`: decides the environment of every opened model
/// under `request`, then either classifies them (`dry_run`: cached, to build, or shared with
/// a model before it) or builds each distinct key once, `jobs` at a time ([`create_many`]).
/// Failing models do not stop the others; only detecting the platform or taking the cache's
/// lock fails the whole run.
pub async fn ensure_many(
    inputs: Vec<ModelInput>,
    request: &EnvRequest,
    cache: &Cache,
    settings: &BuildSettings,
    jobs: usize,
    dry_run: bool,
    reporter: Arc<dyn ManyReporter>,
) -> Result<ManyOutcome, SolveError> {
    let virtual_packages = crate::context::detect_virtual_packages()?;
    let mut models = Vec::with_capacity(inputs.len());
    let mut envs: Vec<Option<ModelEnvironment>> = Vec::with_capacity(inputs.len());
    // Downloaded models' locks, held until every build is done (`cache prune` keeps them).
    let mut model_locks = Vec::new();
    for input in inputs {
        let env = match input.model {
            Ok(opened) => {
                let (model, lock) = opened.into_model();
                model_locks.extend(lock);
                ModelEnvironment::resolve_with(model, request, virtual_packages.clone())
                    .map_err(Failure::Env)
            }
            Err(error) => Err(Failure::Open(error)),
        };
        match env {
            Ok(env) => {
                reporter.on_resolved(&env);
                models.push(ModelOutcome {
                    model_dir: env.root().display().to_string(),
                    env_manager: Some(env.manager),
                    key: Some(env.key.to_string()),
                    // Every decided model is in a group below, which sets it.
                    outcome: Outcome::ToBuild,
                    seconds: 0.0,
                    created: None,
                    failure: None,
                });
                envs.push(Some(env));
            }
            Err(failure) => {
                models.push(failed(input.given, input.started, failure));
                envs.push(None);
            }
        }
    }
    let groups = group_by_key(&envs);
    if dry_run {
        for members in groups {
            for (position, index) in members.into_iter().enumerate() {
                if let Some(env) = &envs[index] {
                    models[index].outcome = if position > 0 {
                        Outcome::Shared
                    } else {
                        Outcome::planned(crate::ensure::plan_of(env, cache, settings)?)
                    };
                }
            }
        }
        return Ok(ManyOutcome {
            models,
            warnings: Vec::new(),
        });
    }
    reporter.on_start(groups.len());
    let envs: Arc<[Option<ModelEnvironment>]> = envs.into();
    let outcomes = create_many(
        envs.clone(),
        jobs,
        cache,
        settings,
        Arc::new({
            let reporter = reporter.clone();
            move |env: &ModelEnvironment| reporter.build_reporter(env)
        }),
        Arc::new({
            let reporter = reporter.clone();
            move |env: &ModelEnvironment, result: &Result<Created, SolveError>| {
                reporter.on_finished(env, result);
            }
        }),
    )
    .await?;
    let warnings = warnings(&envs, &outcomes);
    for outcome in outcomes {
        let Some(env) = envs[outcome.members[0]].as_ref() else {
            continue;
        };
        let (result, created, failure) = match outcome.result {
            Ok(created) => (Outcome::of(&created), Some(created), None),
            Err(source) => (
                Outcome::Failed,
                None,
                Some(Arc::new(Failure::Build(EnsureError::Build {
                    manager: env.manager,
                    model: env.root().to_path_buf(),
                    source,
                }))),
            ),
        };
        for (position, index) in outcome.members.into_iter().enumerate() {
            let row = &mut models[index];
            // The first model of a key built it; the others share that environment.
            row.outcome = if position > 0 && result != Outcome::Failed {
                Outcome::Shared
            } else {
                result
            };
            row.seconds = outcome.seconds;
            row.created.clone_from(&created);
            row.failure.clone_from(&failure);
        }
    }
    drop(model_locks);
    Ok(ManyOutcome { models, warnings })
}

fn failed(model_dir: String, started: Instant, failure: Failure) -> ModelOutcome {
    ModelOutcome {
        failure: Some(Arc::new(failure)),
        ..ModelOutcome::failed(model_dir, started.elapsed().as_secs_f64())
    }
}

/// The builds' warnings: each remote-cache warning once (it is the same for every model),
/// then each environment's own, naming the model that built it.
fn warnings(envs: &[Option<ModelEnvironment>], outcomes: &[GroupOutcome]) -> Vec<ManyWarning> {
    let remote: BTreeSet<&str> = outcomes
        .iter()
        .filter_map(|outcome| outcome.result.as_ref().ok())
        .flat_map(|created| &created.warnings)
        .filter_map(|warning| match warning {
            BuildWarning::RemoteCache(message) => Some(message.as_str()),
            BuildWarning::Environment(_) => None,
        })
        .collect();
    let mut warnings: Vec<ManyWarning> = remote
        .into_iter()
        .map(|message| ManyWarning::RemoteCache(message.to_string()))
        .collect();
    for outcome in outcomes {
        let (Ok(created), Some(env)) = (&outcome.result, envs[outcome.members[0]].as_ref()) else {
            continue;
        };
        for warning in &created.warnings {
            if let BuildWarning::Environment(message) = warning {
                warnings.push(ManyWarning::Environment {
                    model: env.root().to_path_buf(),
                    message: message.clone(),
                });
            }
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use env_cache::{LockKind, LockedFile};

    /// The summary's last line counts what was built (or would be), what failed, and the rest.
    #[test]
    fn the_tally_counts_built_failed_and_the_rest() {
        let row = |outcome| ModelOutcome {
            outcome,
            ..ModelOutcome::failed("m".into(), 0.0)
        };
        let rows = [
            row(Outcome::Built),
            row(Outcome::Cached),
            row(Outcome::Shared),
            row(Outcome::Failed),
            row(Outcome::ToBuild),
        ];
        assert_eq!(
            Tally::of(&rows, false).to_string(),
            "5 models: 1 built, 3 cached or shared, 1 failed"
        );
        assert_eq!(
            Tally::of(&rows, true).to_string(),
            "5 models: 1 to build, 3 cached or shared, 1 failed (dry run)"
        );
        assert_eq!(
            Tally::of(&[], false).to_string(),
            "0 models: 0 built, 0 cached or shared, 0 failed"
        );
    }

    fn created(hits: (bool, bool, bool), warnings: &[BuildWarning]) -> Created {
        Created {
            key: env_spec::EnvKey::parse(&"0".repeat(32)).unwrap(),
            prefix: PathBuf::from("/cache/envs-v1/0"),
            python: PathBuf::from("/cache/envs-v1/0/bin/python"),
            cache_hit: hits.0,
            remote_hit: hits.1,
            built_by_other: hits.2,
            pushed: false,
            timings: crate::build::Timings::default(),
            warnings: warnings.to_vec(),
            bytecode_deferred: false,
            bytecode: None,
            pull: None,
        }
    }

    /// A cache hit wins over a remote one, which wins over another process's build; nothing
    /// of these is a build. (Was the CLI's `match` in `create.rs`.)
    #[test]
    fn a_builds_outcome_says_where_the_environment_came_from() {
        for (hits, expected) in [
            ((true, true, true), Outcome::Cached),
            ((false, true, true), Outcome::Pulled),
            ((false, false, true), Outcome::BuiltByOther),
            ((false, false, false), Outcome::Built),
        ] {
            assert_eq!(Outcome::of(&created(hits, &[])), expected, "{hits:?}");
        }
        // Only a build or a pull of this process is worth a line to `run` and `pack`.
        let made_here = [
            (true, true, true),
            (false, true, true),
            (false, false, true),
            (false, false, false),
        ]
        .map(|hits| Outcome::of(&created(hits, &[])).made_here());
        assert_eq!(made_here, [false, true, false, true]);
        assert_eq!(
            serde_json::to_value(Outcome::BuiltByOther).unwrap(),
            Outcome::BuiltByOther.as_str()
        );
    }

    /// The run's exit class is its worst row's: something broken over a bad input over
    /// success, whichever order the rows come in. (Was the CLI's `ExitStatus::worst` over
    /// statuses it classified itself.)
    #[test]
    fn the_worst_row_decides_the_exit_class() {
        let row = |failure: Option<Failure>| ModelOutcome {
            model_dir: "m".into(),
            env_manager: None,
            key: None,
            outcome: if failure.is_some() {
                Outcome::Failed
            } else {
                Outcome::Built
            },
            seconds: 0.0,
            created: None,
            failure: failure.map(Arc::new),
        };
        let open = |user_error| {
            Failure::Open(OpenFailure {
                error: "no such model".into(),
                user_error,
            })
        };
        let user = || Failure::Env(EnvError::NoMlflowVersion);
        let broken = || {
            Failure::Env(EnvError::Solve(SolveError::Internal {
                message: "bug".into(),
            }))
        };
        let outcome = |rows: Vec<ModelOutcome>| ManyOutcome {
            models: rows,
            warnings: Vec::new(),
        };
        assert_eq!(outcome(vec![]).worst(), Severity::Ok);
        assert_eq!(outcome(vec![row(None)]).worst(), Severity::Ok);
        assert_eq!(
            outcome(vec![row(None), row(Some(user()))]).worst(),
            Severity::UserError
        );
        assert_eq!(
            outcome(vec![row(Some(open(true)))]).worst(),
            Severity::UserError
        );
        for rows in [
            vec![row(Some(broken())), row(Some(user())), row(None)],
            vec![row(None), row(Some(open(true))), row(Some(open(false)))],
        ] {
            let outcome = outcome(rows);
            assert_eq!(outcome.worst(), Severity::Broken);
            assert_eq!(outcome.count(Outcome::Failed), 2);
        }
    }

    /// A remote cache's trouble is shown once however many builds met it, in a stable
    /// order; a group whose model could not be opened has no environment warnings to name.
    #[test]
    fn remote_cache_warnings_are_shown_once() {
        let remote = |text: &str| BuildWarning::RemoteCache(text.to_string());
        let outcomes: Vec<GroupOutcome> = [
            vec![remote("b unreachable"), remote("a denied")],
            vec![
                remote("b unreachable"),
                BuildWarning::Environment("3.11.6".into()),
            ],
        ]
        .into_iter()
        .enumerate()
        .map(|(index, warnings)| GroupOutcome {
            members: vec![index],
            result: Ok(created((false, false, false), &warnings)),
            seconds: 0.0,
        })
        .collect();
        assert_eq!(
            warnings(&[None, None], &outcomes),
            [
                ManyWarning::RemoteCache("a denied".into()),
                ManyWarning::RemoteCache("b unreachable".into()),
            ]
        );
    }

    /// A pull says where from and what it fetched, a push where to; a build that did neither
    /// has no note.
    #[test]
    fn a_remote_note_says_what_the_build_did_with_the_remote() {
        let url = || "s3://envs/ci".to_string();
        let mut built = created((false, false, false), &[]);
        built.timings.remote = 1.5;
        assert_eq!(RemoteNote::of(&built, url()), None);
        built.pushed = true;
        assert_eq!(
            RemoteNote::of(&built, url()).unwrap().to_string(),
            "Pushed to the remote cache `s3://envs/ci` in 1.5s"
        );
        let mut pulled = created((false, true, false), &[]);
        pulled.pull = Some(env_store::PullReport {
            downloaded_bytes: 2048,
            ..env_store::PullReport::default()
        });
        let note = RemoteNote::of(&pulled, url()).unwrap().to_string();
        assert_eq!(
            note,
            format!(
                "Pulled from the remote cache `s3://envs/ci` in 0.0s (nothing solved or installed): {}",
                pulled.pull.as_ref().unwrap()
            )
        );
        assert!(note.contains("2.0 KiB downloaded"), "{note}");
    }

    /// A remote cache's warning reads as it is; an environment's names its model first.
    #[test]
    fn a_warning_names_the_model_it_is_about() {
        assert_eq!(
            ManyWarning::RemoteCache("The remote cache `s3://b` denied access".into()).to_string(),
            "The remote cache `s3://b` denied access"
        );
        assert_eq!(
            ManyWarning::Environment {
                model: "models/a b".into(),
                message: "Python 3.11.6 instead of 3.11.7".into(),
            }
            .to_string(),
            "`models/a b`: Python 3.11.6 instead of 3.11.7"
        );
    }

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
