//! `create`: an environment for a spec, built once, reused after.
//!
//! The protocol (see `env-cache` for why it is safe): a complete environment is a cache hit
//! that neither solves nor installs. Otherwise take the environment's exclusive lock (waiting
//! for another builder), look again (the other builder may have finished it), wipe whatever a
//! crashed build left, build at the final path, write the metadata and then the fingerprint.
//! On failure the half-built directory is removed before the lock is released.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use env_cache::{Cache, EnvEntry, EnvState, Metadata};
use env_spec::{EnvKey, EnvManager, EnvSpec, PipSet};
use rattler_conda_types::{GenericVirtualPackage, RepoDataRecord};
use serde::Serialize;

use crate::channels::ChannelSettings;
use crate::conda::{self, CondaContext};
use crate::context::{BuildOptions, PythonSource, current_platform};
use crate::error::SolveError;
use crate::reporter::Reporter;
use crate::uv::{PipInstall, Uv};

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
    /// `--uv`.
    pub uv: Option<&'a Path>,
    /// uv's cache directory (default: the cache's `uv-v1/`).
    pub uv_cache_dir: Option<&'a Path>,
    /// Rebuild even if complete (`--reinstall`).
    pub reinstall: bool,
    /// Install exactly this lock instead of solving (`--locked`).
    pub locked: Option<&'a crate::lock::LockedEnv>,
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
    /// Things the user should know (a Python patch version that differs from the request).
    pub warnings: Vec<String>,
    /// Bytecode is still to be compiled ([`compile_in_background`]): compilation was deferred
    /// and the store lacked some of it (what it had is linked already).
    pub bytecode_deferred: bool,
    /// What bytecode compilation did, when it ran in this call.
    pub bytecode: Option<crate::bytecode::Stats>,
}

fn secs(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

pub use env_prefix::{python_of, site_packages};

/// Runs blocking work (a uv process, the bytecode compiler) on Tokio's blocking pool, so the
/// runtime's threads stay free. Unlike `block_in_place`, this works on a current-thread
/// runtime too: the build is a public async function, and its callers choose the runtime.
/// The children it starts inherit the build's lock as if started here
/// ([`env_cache::child::inherit_in_children`] is per thread).
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SolveError> + Send + 'static,
) -> Result<T, SolveError> {
    let inherited = env_cache::child::inherited();
    tokio::task::spawn_blocking(move || {
        let _inherit = inherited.enter();
        work()
    })
    .await
    .map_err(|e| SolveError::Internal {
        message: e.to_string(),
    })?
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
    bytecode: Option<crate::bytecode::Stats>,
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
    // them (or a build backend they started) still runs.
    let _inherit = lock.file().map(env_cache::child::inherit_in_children);
    if !request.reinstall && matches!(env.state(), EnvState::Complete(_)) {
        tracing::debug!(
            "Built by another process while we waited: {}",
            env.dir().display()
        );
        return Ok(hit(&env, request.key, start, wait, true));
    }
    let mut remote_warnings = Vec::new();
    if let Some(remote) = request.remote.filter(|_| !request.reinstall) {
        let compile = request.options.compile_bytecode;
        match crate::remote::pull(remote, cache, &env, request.model_root, compile, &reporter).await
        {
            crate::remote::Pulled::Hit { seconds } => {
                drop(lock);
                reporter.on_finish();
                let mut created = hit(&env, request.key, start, wait, false);
                (created.cache_hit, created.remote_hit) = (false, true);
                created.timings.remote = seconds;
                return Ok(created);
            }
            crate::remote::Pulled::Miss => {}
            crate::remote::Pulled::Failed { warning } => remote_warnings.push(warning),
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
    let result = build(cache, &env, request, reporter.clone()).await;
    match result {
        Ok(Built {
            mut timings,
            metadata,
            mut warnings,
            bytecode,
            bytecode_deferred,
        }) => {
            env.finish_build(&metadata)?;
            drop(lock);
            warnings.append(&mut remote_warnings);
            let mut pushed = crate::remote::Pushed::default();
            if let Some(remote) = request.remote {
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
                warnings.extend(pushed.warning);
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
            })
        }
        Err(err) => {
            // Leave nothing half-built behind; the lock is still ours.
            if let Err(cleanup) = env.remove_dir(&tmp) {
                tracing::warn!("Failed to remove the incomplete environment: {cleanup}");
            }
            drop(lock);
            reporter.on_finish();
            Err(err)
        }
    }
}

async fn build(
    cache: &Cache,
    env: &EnvEntry,
    request: &CreateRequest<'_>,
    reporter: Arc<dyn Reporter>,
) -> Result<Built, SolveError> {
    let prefix = env.dir().to_path_buf();
    let spec = request.spec;
    let mut timings = Timings::default();
    let started = env_cache::unix_now();
    let build_start = Instant::now();
    let conda_records: Vec<RepoDataRecord>;

    let mut warnings = Vec::new();
    if let Some(locked) = request.locked {
        let (records, timings_locked) =
            build_locked(cache, request, locked, &prefix, &reporter).await?;
        conda_records = records;
        timings.conda_install = timings_locked.conda_install;
        timings.pip_install = timings_locked.pip_install;
    } else {
        match spec.env_manager {
            EnvManager::Conda => {
                let layer = spec.conda.as_ref().ok_or_else(|| SolveError::Internal {
                    message: "conda-mode spec without a conda layer".into(),
                })?;
                conda_records = conda_layer(
                    cache,
                    request,
                    &prefix,
                    &layer.channels,
                    &layer.specs,
                    &mut timings,
                    &reporter,
                )
                .await?;
            }
            EnvManager::Virtualenv => {
                let version = spec.python.as_deref().ok_or(SolveError::NoPythonVersion)?;
                let provisioned =
                    provision_python(cache, request, &prefix, version, &mut timings, &reporter)
                        .await?;
                conda_records = provisioned.records;
                warnings.extend(provisioned.warnings);
            }
        }
    }

    let python = python_of(&prefix);
    if !python.exists() {
        return Err(SolveError::NoPythonInEnvironment {
            prefix: prefix.clone(),
        });
    }
    if request.locked.is_none() && (!spec.build.is_empty() || !spec.pip.is_empty()) {
        let uv = Uv::find(request.uv, cache, request.offline).await?;
        let uv_cache = uv_cache_dir(cache, request)?;
        let scratch = cache.bucket(env_cache::TMP_DIR)?;
        let t = Instant::now();
        let install_step = |step: &'static str, set: &PipSet| {
            // Compatibility constraints bound packages the model leaves open; as constraints
            // they install nothing themselves (`env_spec::compat`).
            let mut set = set.clone();
            set.constraints.extend(
                spec.compat_constraints
                    .iter()
                    .map(env_spec::compat::CompatConstraint::requirement),
            );
            reporter.on_phase(&format!("Installing {step} with uv"));
            let (uv, reporter) = (uv.clone(), reporter.clone());
            let (python, model_root) = (python.clone(), request.model_root.to_path_buf());
            let (uv_cache, scratch) = (uv_cache.clone(), scratch.clone());
            let (offline, exclude_newer) = (request.offline, request.options.exclude_newer.clone());
            // uv runs as a child process, on the blocking pool.
            off_runtime(move || {
                let install = PipInstall {
                    python: &python,
                    set: &set,
                    model_root: &model_root,
                    cache_dir: &uv_cache,
                    scratch: &scratch,
                    offline,
                    exclude_newer: exclude_newer.as_deref(),
                    step,
                };
                uv.pip_install(&install, &reporter)
            })
        };
        let joint_installed = match joint_install(&spec.build, &spec.pip) {
            Some(joint) => {
                match install_step("build dependencies and pip requirements", &joint).await {
                    Ok(()) => true,
                    Err(err) => {
                        tracing::debug!(
                            "Installing build dependencies and requirements in one uv call failed, installing them one after the other: {err}"
                        );
                        false
                    }
                }
            }
            None => false,
        };
        if !joint_installed {
            for (step, set) in [
                ("build dependencies", &spec.build),
                ("pip requirements", &spec.pip),
            ] {
                if !set.is_empty() {
                    install_step(step, set).await?;
                }
            }
        }
        timings.pip_install = secs(t.elapsed());
    }
    let mut bytecode = None;
    if request.options.compile_bytecode && !request.defer_bytecode {
        reporter.on_phase("Compiling bytecode");
        let t = Instant::now();
        let (cache, prefix, reporter) = (cache.clone(), prefix.clone(), reporter.clone());
        let stats = off_runtime(move || {
            compile_environment(&cache, &prefix, &mut || {
                reporter.on_phase("Compiling bytecode (waiting for another process's compiler)");
            })
        })
        .await?;
        tracing::debug!(
            "Bytecode: {} reused from the store, {} compiled",
            stats.reused,
            stats.compiled
        );
        timings.compile = secs(t.elapsed());
        bytecode = Some(stats);
    }
    // Deferred: what the store already has is linked now, before the model starts (cheap, and
    // the first predict then imports from bytecode); only the misses are left to compile.
    let mut bytecode_deferred = false;
    if request.options.compile_bytecode && request.defer_bytecode {
        reporter.on_phase("Linking bytecode from the store");
        let t = Instant::now();
        let linked = link_environment(cache, &prefix)?;
        tracing::debug!(
            "Bytecode: {} linked from the store, {} left to compile",
            linked.reused,
            linked.missing
        );
        timings.compile = secs(t.elapsed());
        bytecode_deferred = linked.missing > 0;
    }
    let site_packages = site_packages(&prefix);
    let python_version = python_version_of(&python);
    let metadata = Metadata {
        key: request.key.to_string(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created: started,
        build_seconds: secs(build_start.elapsed()),
        env_manager: spec.env_manager.to_string(),
        model: request.model_root.display().to_string(),
        python: Some("bin/python".to_string()),
        python_version,
        spec: serde_json::to_value(spec).unwrap_or_default(),
        conda_packages: conda_records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.package_record.name.as_normalized(),
                    "version": r.package_record.version.to_string(),
                    "build": r.package_record.build,
                    "channel": r.channel.as_deref().map(crate::redact::redact_url),
                    "url": crate::redact::redact_url(r.url.as_str()),
                    "sha256": r.package_record.sha256.map(|d| env_spec::spec::hex(&d)),
                })
            })
            .collect(),
        pip_packages: site_packages
            .map(|dir| installed_distributions(&dir))
            .unwrap_or_default(),
        extra: serde_json::Map::new(),
    };
    Ok(Built {
        timings,
        metadata,
        warnings,
        bytecode,
        bytecode_deferred,
    })
}

/// The build dependencies and the requirements as one uv call, when it installs what MLflow's
/// two calls in a row (build dependencies, then requirements) would. That is when every build
/// dependency is an exact pin and they share the requirements' index options and have no
/// constraints of their own: the first call installs exactly the pinned versions, which the
/// second keeps, unless the requirements conflict with a pin, and then the joint resolve fails
/// and the caller installs in two calls after all. One call saves a uv start, an interpreter
/// query and a resolve: 0.3-0.5 s of the scikit-learn fixture's cold path
/// (`benches/bench_cold.py`, where both ways install the same 90 distributions, file for file).
fn joint_install(build: &PipSet, pip: &PipSet) -> Option<PipSet> {
    let joinable = !build.is_empty()
        && !pip.is_empty()
        && build.constraints.is_empty()
        && build.index == pip.index
        && build
            .requirements
            .iter()
            .all(|requirement| requirement.exact_pin().is_some());
    joinable.then(|| PipSet {
        requirements: build
            .requirements
            .iter()
            .chain(&pip.requirements)
            .cloned()
            .collect(),
        constraints: pip.constraints.clone(),
        index: pip.index.clone(),
    })
}

/// Installs a lock: its conda records without a solve (hashes checked by the installer), or
/// for a virtualenv environment without conda records a venv from this machine's Python, then
/// exactly the locked Python distributions with `--no-deps --require-hashes`.
async fn build_locked(
    cache: &Cache,
    request: &CreateRequest<'_>,
    locked: &crate::lock::LockedEnv,
    prefix: &Path,
    reporter: &Arc<dyn Reporter>,
) -> Result<(Vec<RepoDataRecord>, Timings), SolveError> {
    let mut timings = Timings::default();
    let mut records = locked.conda.clone();
    crate::lock::apply_mirrors(&mut records, &request.channels.mirrors);
    if records.is_empty() {
        let version = request
            .spec
            .python
            .as_deref()
            .ok_or(SolveError::NoPythonVersion)?;
        let options = BuildOptions {
            python_source: PythonSource::System,
            ..request.options.clone()
        };
        let system = CreateRequest {
            options: &options,
            locked: None,
            remote: None,
            ..*request
        };
        provision_python(cache, &system, prefix, version, &mut timings, reporter).await?;
    } else {
        let ctx = CondaContext {
            channels: &[],
            platform: current_platform()?,
            virtual_packages: request.virtual_packages,
            repodata_cache: cache.bucket(env_cache::REPODATA_BUCKET)?,
            package_cache: cache.bucket(env_cache::PKGS_BUCKET)?,
            offline: request.offline,
            exclude_newer: None,
        };
        reporter.on_phase("Installing locked conda packages");
        let t = Instant::now();
        conda::install(&ctx, prefix, records.clone(), Vec::new(), reporter.clone()).await?;
        timings.conda_install = secs(t.elapsed());
    }
    if !locked.pypi.is_empty() {
        let uv = Uv::find(request.uv, cache, request.offline).await?;
        let uv_cache = uv_cache_dir(cache, request)?;
        let scratch = cache.bucket(env_cache::TMP_DIR)?;
        reporter.on_phase("Installing locked Python packages with uv");
        let t = Instant::now();
        let files = tempfile::Builder::new()
            .prefix("locked-files-")
            .tempdir_in(&scratch)
            .map_err(|source| SolveError::Io {
                path: scratch.clone(),
                source,
            })?;
        crate::lock::fetch_files(&locked.pypi, files.path(), request.offline).await?;
        let text = crate::lock::requirements_text(&locked.pypi);
        let python = python_of(prefix);
        let (files_dir, offline, reporter) = (
            files.path().to_path_buf(),
            request.offline,
            reporter.clone(),
        );
        off_runtime(move || {
            uv.pip_install_locked(
                &python, &text, &files_dir, &uv_cache, &scratch, offline, &reporter,
            )
        })
        .await?;
        drop(files);
        timings.pip_install = secs(t.elapsed());
    }
    Ok((records, timings))
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
    conda::install(&ctx, prefix, records.clone(), specs, reporter.clone()).await?;
    timings.conda_install += secs(t.elapsed());
    Ok(records)
}

struct Provisioned {
    records: Vec<RepoDataRecord>,
    warnings: Vec<String>,
}

/// Puts the requested Python into `prefix`: from a conda channel with rattler, or from an
/// interpreter on this machine with `uv venv`. The exact version if anything has it; else the
/// same minor version with a warning naming both; never another minor version.
async fn provision_python(
    cache: &Cache,
    request: &CreateRequest<'_>,
    prefix: &Path,
    version: &str,
    timings: &mut Timings,
    reporter: &Arc<dyn Reporter>,
) -> Result<Provisioned, SolveError> {
    let (major, minor, patch) =
        crate::python::parse_version(version).ok_or_else(|| SolveError::InvalidPythonVersion {
            version: version.to_string(),
        })?;
    let minor_spec = format!("python {major}.{minor}.*");
    let exact_spec = match patch {
        Some(patch) => format!("python {major}.{minor}.{patch}.*"),
        None => minor_spec.clone(),
    };
    let channel_names = request.channels.effective(&[]);
    let order: &[(&str, bool)] = match request.options.python_source {
        PythonSource::Conda => &[("conda", true), ("conda", false)],
        PythonSource::System => &[("system", true), ("system", false)],
        PythonSource::Auto => &[
            ("conda", true),
            ("system", true),
            ("conda", false),
            ("system", false),
        ],
    };
    let mut attempts: Vec<String> = Vec::new();
    for (source, exact) in order {
        if patch.is_none() && !exact {
            continue;
        }
        if *source == "conda" {
            let spec = if *exact { &exact_spec } else { &minor_spec };
            match conda_layer(
                cache,
                request,
                prefix,
                &channel_names,
                std::slice::from_ref(spec),
                timings,
                reporter,
            )
            .await
            {
                Ok(records) => {
                    let got = records
                        .iter()
                        .find(|r| r.package_record.name.as_normalized() == "python")
                        .map(|r| r.package_record.version.to_string())
                        .unwrap_or_default();
                    let mut warnings = Vec::new();
                    if !exact {
                        warnings.push(format!("Python {version} is not available; using Python {got} from conda (same minor version)"));
                    }
                    return Ok(Provisioned { records, warnings });
                }
                Err(
                    err @ (SolveError::Install { .. }
                    | SolveError::Cache(_)
                    | SolveError::Io { .. }),
                ) => return Err(err),
                Err(err) => {
                    let err = crate::error::chain(&err);
                    tracing::debug!("Python from conda (`{spec}`) is not available: {err}");
                    attempts.push(format!("conda `{spec}`: {err}"));
                }
            }
        } else {
            let candidates = crate::python::find(version);
            let chosen = candidates.into_iter().find(|i| {
                !exact || crate::python::parse_version(&i.version).and_then(|v| v.2) == patch
            });
            let Some(interpreter) = chosen else {
                attempts.push(format!(
                    "this machine: no Python {}",
                    if *exact {
                        version.to_string()
                    } else {
                        format!("{major}.{minor}.x")
                    }
                ));
                continue;
            };
            reporter.on_phase(&format!(
                "Creating a virtualenv from {} ({})",
                interpreter.path.display(),
                interpreter.source
            ));
            let t = Instant::now();
            let uv = Uv::find(request.uv, cache, request.offline).await?;
            let uv_cache = uv_cache_dir(cache, request)?;
            let (interpreter_path, target, reporter) = (
                interpreter.path.clone(),
                prefix.to_path_buf(),
                reporter.clone(),
            );
            off_runtime(move || uv.venv(&interpreter_path, &target, &uv_cache, &reporter)).await?;
            timings.conda_install += secs(t.elapsed());
            let mut warnings = Vec::new();
            if !exact {
                warnings.push(format!(
                    "Python {version} is not available; using Python {} from {} (same minor version)",
                    interpreter.version,
                    interpreter.path.display()
                ));
            }
            return Ok(Provisioned {
                records: Vec::new(),
                warnings,
            });
        }
    }
    Err(SolveError::PythonUnavailable {
        version: version.to_string(),
        attempts: attempts.join("\n"),
    })
}

fn uv_cache_dir(cache: &Cache, request: &CreateRequest<'_>) -> Result<PathBuf, SolveError> {
    match request.uv_cache_dir {
        Some(dir) => Ok(dir.to_path_buf()),
        None => Ok(cache.bucket(env_cache::UV_BUCKET)?),
    }
}

/// Runs `command` (which compiles an environment's bytecode, e.g. `pyfunc-env
/// __compile-bytecode PREFIX`) in a detached, low-priority process (`nice -n 19`), for a
/// [`Created::bytecode_deferred`] environment: the model starts at once, and later runs find
/// `.pyc` files even under `PYTHONDONTWRITEBYTECODE=1`. Python writes and replaces `.pyc` files
/// atomically, so a reader never sees half a file; files missing meanwhile are compiled in
/// memory, as without bytecode. `keep` is a lock file the compiler holds (its descriptor is
/// inherited), so `cache prune` leaves the environment alone until it is done.
pub fn compile_in_background(
    program: &Path,
    args: &[std::ffi::OsString],
    keep: Option<&std::fs::File>,
) -> std::io::Result<u32> {
    let nice = ["/usr/bin/nice", "/bin/nice"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    // Idle I/O class too, where `ionice` exists: the compiler must not slow a build agent.
    let ionice = ["/usr/bin/ionice", "/bin/ionice"]
        .into_iter()
        .find(|p| Path::new(p).is_file());
    // `sh` forks the compiler into the background, prints its pid and exits at once, so the
    // compiler is re-parented to init and never left a zombie of the model process we become.
    let script = r#"("$@" >/dev/null 2>&1 </dev/null & echo $!)"#;
    let mut command = std::process::Command::new("/bin/sh");
    command.arg("-c").arg(script).arg("sh");
    if let Some(nice) = nice {
        command.args([nice, "-n", "19"]);
    }
    if let Some(ionice) = ionice {
        command.args([ionice, "-c", "3"]);
    }
    command
        .arg(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    if let Some(keep) = keep {
        env_prefix::keep_open_across_exec(keep);
    }
    let output = command.output()?;
    Ok(String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// What `pyfunc-env __compile-bytecode PREFIX` runs: [`compile_environment`] holding the
/// environment's lock shared, and passing it on to the compiler processes, so `cache prune`
/// and a rebuild wait until the last of them has exited.
pub fn compile_in_this_process(
    cache: &Cache,
    prefix: &Path,
) -> Result<crate::bytecode::Stats, SolveError> {
    let key = prefix
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let entry = cache.env(&key)?;
    // Never wait: a builder or `cache clean`/`prune` holding the lock exclusively means the
    // environment is going away (or being replaced), and there is nothing left to do.
    let Some(lock) = entry.try_lock_shared()? else {
        return Ok(crate::bytecode::Stats::default());
    };
    if !matches!(entry.state(), env_cache::EnvState::Complete(_)) {
        return Ok(crate::bytecode::Stats::default());
    }
    let _inherit = lock.file().map(env_cache::child::inherit_in_children);
    compile_environment(cache, prefix, &mut || {})
}

/// Compiles the bytecode of the environment at `prefix` through the cache's store: at the end
/// of a build, or later by `pyfunc-env __compile-bytecode`. `on_wait` as in
/// [`crate::bytecode::compile`].
pub fn compile_environment(
    cache: &Cache,
    prefix: &Path,
    on_wait: &mut dyn FnMut(),
) -> Result<crate::bytecode::Stats, SolveError> {
    let store = cache.bucket(env_cache::PYC_BUCKET)?;
    let dirs: Vec<PathBuf> = site_packages(prefix).into_iter().collect();
    crate::bytecode::compile(
        &python_of(prefix),
        &dirs,
        &store,
        cache.lock_timeout(),
        on_wait,
    )
}

/// Links the bytecode the cache's store already has into the environment at `prefix`
/// ([`crate::bytecode::link_stored`]); compiles nothing.
pub fn link_environment(
    cache: &Cache,
    prefix: &Path,
) -> Result<crate::bytecode::Linked, SolveError> {
    let store = cache.bucket(env_cache::PYC_BUCKET)?;
    let tag = crate::bytecode::cache_tag(&python_of(prefix))?;
    let dirs: Vec<PathBuf> = site_packages(prefix).into_iter().collect();
    Ok(crate::bytecode::link_stored(&tag, &dirs, &store))
}

fn python_version_of(python: &Path) -> Option<String> {
    let output = env_cache::child::output(env_prefix::isolated_python(python).args([
        "-c",
        "import sys; print('.'.join(map(str, sys.version_info[:3])))",
    ]))
    .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Every `*.dist-info` in site-packages: name, version and installer, for the metadata.
#[must_use]
pub fn installed_distributions(site_packages: &Path) -> Vec<serde_json::Value> {
    env_prefix::distributions(site_packages)
        .into_iter()
        .map(|d| serde_json::json!({ "name": d.name, "version": d.version, "installer": d.installer }))
        .collect()
}
