//! `create`: an environment for a spec, built once, reused after.
//!
//! The protocol (see `env-cache` for why it is safe): a complete environment is a cache hit
//! that neither solves nor installs. Otherwise take the environment's exclusive lock (waiting
//! for another builder), look again (the other builder may have finished it), wipe whatever a
//! crashed build left, build at the final path, write the metadata and then the fingerprint.
//! On failure the half-built directory is removed before the lock is released.

mod install;
mod provision;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use env_cache::{Cache, EnvEntry, EnvState, Metadata};
use env_spec::{EnvKey, EnvSpec};
use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord};
use serde::Serialize;

use crate::context::{BuildOptions, current_platform};
use crate::error::SolveError;
use crate::reporter::Reporter;
use env_conda::ChannelSettings;
use env_conda::conda::{self, CondaContext};

pub use env_bytecode::{compile_environment, compile_in_background, link_environment};

/// What `pyfunc-env __compile-bytecode PREFIX` runs: [`env_bytecode::compile_in_this_process`],
/// its error a [`SolveError`] as every other command's (so the CLI renders it the same way).
pub fn compile_in_this_process(
    cache: &env_cache::Cache,
    prefix: &Path,
) -> Result<env_bytecode::Stats, SolveError> {
    Ok(env_bytecode::compile_in_this_process(cache, prefix)?)
}
use install::build;

/// Everything `create` needs besides the cache.
pub struct CreateRequest<'a> {
    /// The model directory (for relative requirement paths and the metadata).
    pub model_root: &'a Path,
    /// The spec, with effective channels applied.
    pub spec: &'a EnvSpec,
    /// Its key.
    pub key: &'a EnvKey,
    /// Build options (part of the key).
    pub options: &'a BuildOptions,
    /// Channels and mirrors.
    pub channels: &'a ChannelSettings,
    /// No network.
    pub offline: bool,
    /// The machine's virtual packages.
    pub virtual_packages: &'a [GenericVirtualPackage],
    /// `--uv`, and the uv it (or `PATH`) gives, looked up once.
    pub uv: &'a env_uv::UvProbe,
    /// uv's cache directory (default: the cache's `uv-v1/`).
    pub uv_cache_dir: Option<&'a Path>,
    /// Rebuild even if complete (`--reinstall`).
    pub reinstall: bool,
    /// Install exactly this lock instead of solving (`--locked`).
    pub locked: Option<&'a env_lock::LockedEnv>,
    /// Leave bytecode compilation to the caller ([`Created::bytecode_deferred`]), so a model
    /// can start as soon as its packages are installed (`run` on a cache miss).
    pub defer_bytecode: bool,
    /// A remote cache to pull from before building and push to after ([`crate::remote`]).
    pub remote: Option<&'a Arc<dyn crate::remote::RemoteCache>>,
}

/// Time spent in each step, in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Waiting for another process's lock.
    pub wait: f64,
    /// Repodata and solve.
    pub solve: f64,
    /// Linking conda packages.
    pub conda_install: f64,
    /// uv steps.
    pub pip_install: f64,
    /// Bytecode compilation.
    pub compile: f64,
    /// The remote cache: download and unpack on a hit, pack and upload after a build.
    pub remote: f64,
    /// Everything.
    pub total: f64,
}

/// The result of `create`.
#[derive(Debug, Clone, Serialize)]
pub struct Created {
    /// The key.
    pub key: EnvKey,
    /// The environment directory.
    pub prefix: PathBuf,
    /// Its Python.
    pub python: PathBuf,
    /// True when nothing was built.
    pub cache_hit: bool,
    /// True when another process built it while we waited.
    pub built_by_other: bool,
    /// True when it came from the remote cache: nothing was solved or installed.
    pub remote_hit: bool,
    /// True when this call uploaded it to the remote cache.
    pub pushed: bool,
    /// Step timings.
    pub timings: Timings,
    /// Things the user should know (a Python patch version that differs from the request, a
    /// remote cache that could not be used).
    pub warnings: Vec<BuildWarning>,
    /// Bytecode is still to be compiled ([`compile_in_background`]): compilation was deferred
    /// and the store lacked some of it (what it had is linked already).
    pub bytecode_deferred: bool,
    /// What bytecode compilation did, when it ran in this call.
    pub bytecode: Option<env_bytecode::Stats>,
    /// On a remote hit, what the pull took from local caches and what it downloaded (the
    /// remote's report, as recorded in the environment's metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<env_store::PullReport>,
}

/// Something the user should know about a build, by what it is about: a multi-model `create`
/// shows a remote cache's trouble once, and every other warning with its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildWarning {
    /// The remote cache could not be used (pull or push); the build went on locally.
    RemoteCache(String),
    /// About this environment (a Python patch version that differs from the request).
    Environment(String),
}

impl BuildWarning {
    /// The warning's text.
    #[must_use]
    pub fn message(&self) -> &str {
        match self {
            Self::RemoteCache(message) | Self::Environment(message) => message,
        }
    }
}

impl std::fmt::Display for BuildWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

/// As its text: `create --json` lists warnings as strings.
impl Serialize for BuildWarning {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.message())
    }
}

fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

pub use env_prefix::{python_of, site_packages};

tokio::task_local! {
    /// The locks of the build this task runs, which every child it starts inherits
    /// ([`env_cache::child::inherit_in_children`]). Task-local rather than thread-local: one
    /// runtime runs every build of the process (`create --jobs 2` runs two at once), and a
    /// task moves between the runtime's threads at each `.await`, so a thread's list would
    /// pass one build's lock to another's children, or lose it.
    static BUILD_LOCKS: env_cache::child::Inherited;
}

/// What children started now must inherit: the locks of the build this task runs, or outside
/// a build, this thread's ([`env_cache::child::inherited`]).
fn inherited() -> env_cache::child::Inherited {
    BUILD_LOCKS
        .try_with(Clone::clone)
        .unwrap_or_else(|_| env_cache::child::inherited())
}

/// Runs blocking work (a process, file work) on Tokio's blocking pool, so the runtime's
/// threads stay free; this works on any runtime the caller chooses, current-thread too (unlike
/// `block_in_place`). The children the work starts inherit the locks of the build it belongs to
/// as if started by the build itself.
pub async fn spawn_blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    let inherited = inherited();
    tokio::task::spawn_blocking(move || {
        let _inherit = inherited.enter();
        work()
    })
    .await
}

/// [`spawn_blocking`] for work that fails with a [`SolveError`].
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SolveError> + Send + 'static,
) -> Result<T, SolveError> {
    spawn_blocking(work)
        .await
        .map_err(|e| SolveError::Internal {
            message: e.to_string(),
        })?
}

/// Initialises the cache and takes its shared lock, waiting off the runtime while `cache clean`
/// or `cache prune` holds it exclusively. Every command that uses the cache (builds, pulls,
/// downloads, packs, pushes) holds the returned lock for as long as it does, so those two wait
/// instead of deleting under it.
pub async fn hold_cache(cache: &env_cache::Cache) -> Result<env_cache::LockedFile, SolveError> {
    let cache = cache.clone();
    off_runtime(move || {
        cache.init()?;
        Ok(cache.lock_shared()?)
    })
    .await
}

fn hit(
    env: &EnvEntry,
    key: &EnvKey,
    start: Instant,
    wait: Duration,
    built_by_other: bool,
) -> Created {
    env.touch();
    Created {
        key: key.clone(),
        prefix: env.dir().to_path_buf(),
        python: python_of(env.dir()),
        cache_hit: !built_by_other,
        built_by_other,
        remote_hit: false,
        pushed: false,
        timings: Timings {
            wait: secs(wait),
            total: secs(start.elapsed()),
            ..Timings::default()
        },
        warnings: Vec::new(),
        bytecode_deferred: false,
        bytecode: None,
        pull: None,
    }
}

/// Who holds an environment's lock, for wait messages: a process running in the
/// environment (a model), another build, or unknown.
fn describe_holders(env: &EnvEntry, holders: &[env_cache::child::Holder]) -> String {
    if holders.is_empty() {
        return "held by another process".to_string();
    }
    let described: Vec<String> = holders
        .iter()
        .take(3)
        .map(|holder| {
            let exe = fs_err::read_link(format!("/proc/{}/exe", holder.pid)).ok();
            if exe.is_some_and(|exe| exe.starts_with(env.dir())) {
                format!("in use by a process running in it, {holder}")
            } else {
                format!("held by {holder}")
            }
        })
        .collect();
    described.join("; ")
}

/// What [`build`] made, before the environment is marked complete.
struct Built {
    timings: Timings,
    metadata: Metadata,
    warnings: Vec<String>,
    bytecode: Option<env_bytecode::Stats>,
    /// Sources the store had no bytecode for are left to compile ([`compile_in_background`]).
    bytecode_deferred: bool,
}

/// Builds (or reuses) the environment for `request.spec`.
pub async fn create(
    cache: &Cache,
    request: &CreateRequest<'_>,
    reporter: Arc<dyn Reporter>,
) -> Result<Created, SolveError> {
    let start = Instant::now();
    let env = cache.env(request.key.as_str())?;
    if !request.reinstall && matches!(env.state(), EnvState::Complete(_)) {
        tracing::debug!("Cache hit: {}", env.dir().display());
        return Ok(hit(&env, request.key, start, Duration::ZERO, false));
    }
    let wait_start = Instant::now();
    let lock = {
        let env = env.clone();
        let reporter = reporter.clone();
        let key = request.key.to_string();
        off_runtime(move || {
            Ok(env.lock_exclusive(|waited, holders| {
                let what = describe_holders(&env, holders);
                if waited.is_zero() {
                    tracing::debug!("Waiting for the lock on environment `{key}`: {what}");
                }
                reporter.on_wait(&format!("environment {key} is locked: {what}"));
            })?)
        })
        .await?
    };
    let wait = wait_start.elapsed();
    // Every process this build starts keeps the lock open: no rebuild can begin while any of
    // them (or a build backend they started) still runs. Only while the lock is held: it is
    // closed after this scope.
    let locks = match lock.file() {
        Some(file) => inherited().with(file),
        None => inherited(),
    };
    let mut remote_warnings = Vec::new();
    let outcome = BUILD_LOCKS
        .scope(
            locks,
            under_lock(cache, &env, request, &reporter, &mut remote_warnings),
        )
        .await;
    drop(lock);
    match outcome {
        Ok(UnderLock::BuiltByOther) => {
            tracing::debug!(
                "Built by another process while we waited: {}",
                env.dir().display()
            );
            Ok(hit(&env, request.key, start, wait, true))
        }
        Ok(UnderLock::Pulled { seconds }) => {
            reporter.on_finish();
            let mut created = hit(&env, request.key, start, wait, false);
            (created.cache_hit, created.remote_hit) = (false, true);
            created.timings.remote = seconds;
            created.pull = env.metadata().ok().and_then(|m| {
                serde_json::from_value(m.extra.get("remote")?.get("pull")?.clone()).ok()
            });
            Ok(created)
        }
        Ok(UnderLock::Built(built)) => {
            let Built {
                mut timings,
                metadata: _,
                warnings,
                mut bytecode,
                mut bytecode_deferred,
            } = *built;
            let mut warnings: Vec<BuildWarning> = warnings
                .into_iter()
                .map(BuildWarning::Environment)
                .chain(remote_warnings.drain(..).map(BuildWarning::RemoteCache))
                .collect();
            let mut pushed = crate::remote::Pushed::default();
            if let Some(remote) = request.remote {
                // The push saves the environment's manifest and uploads its files: with the
                // bytecode still to compile in the background, both lacked it, and every agent
                // that pulled the environment compiled it again (issue 25). A push already
                // makes the command wait for the upload; it waits for the compiler too.
                if bytecode_deferred && remote.accepts_pushes() {
                    let t = Instant::now();
                    let (store_cache, prefix) = (cache.clone(), env.dir().to_path_buf());
                    match off_runtime(move || compile_in_this_process(&store_cache, &prefix)).await
                    {
                        Ok(stats) => {
                            let before = bytecode.unwrap_or_default();
                            bytecode = Some(env_bytecode::Stats {
                                reused: before.reused + stats.reused,
                                compiled: before.compiled + stats.compiled,
                            });
                            bytecode_deferred = false;
                        }
                        Err(error) => {
                            tracing::debug!("Bytecode before the push failed: {error}");
                        }
                    }
                    timings.compile += secs(t.elapsed());
                }
                let t = Instant::now();
                let compile = request.options.compile_bytecode;
                pushed = crate::remote::push(
                    remote,
                    cache,
                    &env,
                    request.model_root,
                    compile,
                    &reporter,
                )
                .await;
                warnings.extend(pushed.warning.map(BuildWarning::RemoteCache));
                timings.remote = secs(t.elapsed());
            }
            reporter.on_finish();
            timings.wait = secs(wait);
            timings.total = secs(start.elapsed());
            Ok(Created {
                key: request.key.clone(),
                prefix: env.dir().to_path_buf(),
                python: python_of(env.dir()),
                cache_hit: false,
                built_by_other: false,
                remote_hit: false,
                pushed: pushed.pushed,
                timings,
                warnings,
                bytecode_deferred,
                bytecode,
                pull: None,
            })
        }
        Err(err) => {
            reporter.on_finish();
            Err(err)
        }
    }
}

/// What [`under_lock`] did.
enum UnderLock {
    /// Another process completed the environment while we waited for its lock.
    BuiltByOther,
    /// Pulled from the remote cache, complete.
    Pulled { seconds: f64 },
    /// Built here and marked complete.
    Built(Box<Built>),
}

/// The part of [`create`] done holding the environment's exclusive lock: look again, pull from
/// the remote, or build and mark complete. On a failed build nothing half-built is left.
async fn under_lock(
    cache: &Cache,
    env: &EnvEntry,
    request: &CreateRequest<'_>,
    reporter: &Arc<dyn Reporter>,
    remote_warnings: &mut Vec<String>,
) -> Result<UnderLock, SolveError> {
    if !request.reinstall && matches!(env.state(), EnvState::Complete(_)) {
        return Ok(UnderLock::BuiltByOther);
    }
    if let Some(remote) = request.remote.filter(|_| !request.reinstall) {
        let compile = request.options.compile_bytecode;
        // A pull takes what uv's cache holds; without one it downloads everything.
        let uv_cache = uv_cache_dir(cache, request).ok();
        let pulled = crate::remote::pull(
            remote,
            cache,
            env,
            request.model_root,
            compile,
            uv_cache.as_deref(),
            reporter,
        );
        match pulled.await {
            crate::remote::Pulled::Hit { seconds } => return Ok(UnderLock::Pulled { seconds }),
            crate::remote::Pulled::Miss => {}
            crate::remote::Pulled::Failed { warning } => remote_warnings.push(warning),
            crate::remote::Pulled::Refused { message, help } => {
                return Err(SolveError::RemoteUntrusted { message, help });
            }
        }
    }
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    if matches!(env.state(), EnvState::Incomplete) {
        tracing::debug!(
            "Wiping an incomplete environment left by a crashed build: {}",
            env.dir().display()
        );
    }
    env.begin_build(&tmp)?;
    match build(cache, env, request, reporter.clone()).await {
        Ok(built) => {
            env.finish_build(&built.metadata)?;
            Ok(UnderLock::Built(Box::new(built)))
        }
        Err(err) => {
            // Leave nothing half-built behind; the lock is still ours.
            if let Err(cleanup) = env.remove_dir(&tmp) {
                tracing::warn!("Failed to remove the incomplete environment: {cleanup}");
            }
            Err(err)
        }
    }
}

/// Every `*.dist-info` in site-packages: name, version and installer, for the metadata.
#[must_use]
pub fn installed_distributions(site_packages: &Path) -> Vec<serde_json::Value> {
    env_prefix::distributions(site_packages)
        .into_iter()
        .map(|d| serde_json::json!({ "name": d.name, "version": d.version, "installer": d.installer }))
        .collect()
}

/// Solves `specs` against `channel_names` (with the run's channel settings) and installs the
/// result into `prefix`.
async fn conda_layer(
    cache: &Cache,
    request: &CreateRequest<'_>,
    prefix: &Path,
    channel_names: &[String],
    specs: &[String],
    timings: &mut Timings,
    reporter: &Arc<dyn Reporter>,
) -> Result<Vec<RepoDataRecord>, SolveError> {
    let specs = conda::parse_specs(specs)?;
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let channels = request.channels.resolve(channel_names, &cwd)?;
    let ctx = CondaContext {
        channels: &channels,
        platform: current_platform()?,
        virtual_packages: request.virtual_packages,
        repodata_cache: cache.bucket(env_cache::REPODATA_BUCKET)?,
        package_cache: cache.bucket(env_cache::PKGS_BUCKET)?,
        offline: request.offline,
        exclude_newer: request.options.exclude_newer.as_deref(),
    };
    reporter.on_phase("Solving conda packages");
    let t = Instant::now();
    let records = conda::solve(&ctx, &specs).await?;
    timings.solve += secs(t.elapsed());
    reporter.on_phase("Installing conda packages");
    let t = Instant::now();
    conda::install(
        &ctx,
        prefix,
        records.clone(),
        specs,
        crate::reporter::conda_progress(reporter),
    )
    .await?;
    timings.conda_install += secs(t.elapsed());
    Ok(records)
}

fn uv_cache_dir(cache: &Cache, request: &CreateRequest<'_>) -> Result<PathBuf, SolveError> {
    match request.uv_cache_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(cache.bucket(env_cache::UV_BUCKET)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The files a child started by the current task's blocking work has open (`ls -l` of the
    /// shell's descriptors, which it inherited).
    async fn open_in_child() -> String {
        let output = spawn_blocking(|| {
            env_cache::child::output(
                std::process::Command::new("sh")
                    .arg("-c")
                    .arg("ls -l /proc/$$/fd/"),
            )
            .unwrap()
        })
        .await
        .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[tokio::test]
    async fn two_builds_on_one_thread_pass_on_only_their_own_locks() {
        // `create --jobs 2` runs its builds as tasks of one runtime; here both run on one
        // thread, interleaved. A per-thread list of locks (what a build used before it was a
        // task) would pass each build's lock to the other's children too.
        let dir = tempfile::tempdir().unwrap();
        let a = fs_err::File::create(dir.path().join("a.lock")).unwrap();
        let b = fs_err::File::create(dir.path().join("b.lock")).unwrap();
        let build = |file: &fs_err::File| {
            let locks = env_cache::child::Inherited::default().with(file.file());
            BUILD_LOCKS.scope(locks, async {
                // The other build enters its scope meanwhile, on this thread.
                tokio::task::yield_now().await;
                open_in_child().await
            })
        };
        let (seen_by_a, seen_by_b) = tokio::join!(build(&a), build(&b));
        assert!(
            seen_by_a.contains("a.lock") && !seen_by_a.contains("b.lock"),
            "{seen_by_a}"
        );
        assert!(
            seen_by_b.contains("b.lock") && !seen_by_b.contains("a.lock"),
            "{seen_by_b}"
        );
        // Outside a build, children inherit no lock.
        let seen = open_in_child().await;
        assert!(!seen.contains(".lock"), "{seen}");
    }
}
