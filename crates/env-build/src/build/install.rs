//! The build itself, at the final path under the environment's lock: the conda layer (or a
//! virtualenv), then the pip requirements with uv, then bytecode.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use env_cache::{Cache, EnvEntry, Metadata};
use env_spec::{EnvManager, PipSet};
use rattler_conda_types::RepoDataRecord;

use crate::context::{BuildOptions, PythonSource, current_platform};
use crate::error::SolveError;
use crate::reporter::Reporter;
use env_conda::conda::{self, CondaContext};
use env_uv::PipInstall;

use super::provision::{provision_python, python_version_of};
use super::{
    Built, CreateRequest, Timings, conda_layer, installed_distributions, off_runtime, python_of,
    secs, site_packages, uv_cache_dir,
};
use env_bytecode::{compile_environment, link_environment};

pub(super) async fn build(
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
            EnvManager::Virtualenv | EnvManager::Uv => {
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
    if let (None, Some(project)) = (request.locked, &spec.uv_project) {
        // MLflow's `uv sync --frozen --no-dev` from the model's uv.lock (`env_uv::uv_lock`).
        let uv = request.uv.find(cache, request.offline).await?;
        let uv_cache = uv_cache_dir(cache, request)?;
        let scratch = cache.bucket(env_cache::TMP_DIR)?;
        let version = spec.python.clone().ok_or(SolveError::NoPythonVersion)?;
        reporter.on_phase("Installing the packages of uv.lock with uv");
        let t = Instant::now();
        let (project, python, offline) = (project.clone(), python.clone(), request.offline);
        let reporter = crate::reporter::uv_lines(&reporter);
        off_runtime(move || {
            env_uv::uv_lock::install(
                &uv, &project, &python, &version, &uv_cache, &scratch, offline, &reporter,
            )
            .map_err(SolveError::from)
        })
        .await?;
        timings.pip_install = secs(t.elapsed());
    }
    if request.locked.is_none() && (!spec.build.is_empty() || !spec.pip.is_empty()) {
        let uv = request.uv.find(cache, request.offline).await?;
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
            let (uv, reporter) = (uv.clone(), crate::reporter::uv_lines(&reporter));
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
                    .map_err(SolveError::from)
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
            .map_err(SolveError::from)
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
    let python_version = {
        let python = python.clone();
        off_runtime(move || Ok(python_version_of(&python))).await?
    };
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
    locked: &env_lock::LockedEnv,
    prefix: &Path,
    reporter: &Arc<dyn Reporter>,
) -> Result<(Vec<RepoDataRecord>, Timings), SolveError> {
    let mut timings = Timings::default();
    let mut records = locked.conda.clone();
    env_lock::apply_mirrors(&mut records, &request.channels.mirrors);
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
        conda::install(
            &ctx,
            prefix,
            records.clone(),
            Vec::new(),
            crate::reporter::conda_progress(reporter),
        )
        .await?;
        timings.conda_install = secs(t.elapsed());
    }
    if !locked.pypi.is_empty() {
        let uv = request.uv.find(cache, request.offline).await?;
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
        env_lock::fetch_files(&locked.pypi, files.path(), request.offline).await?;
        let text = env_lock::requirements_text(&locked.pypi);
        let python = python_of(prefix);
        let (files_dir, offline, reporter) = (
            files.path().to_path_buf(),
            request.offline,
            crate::reporter::uv_lines(reporter),
        );
        off_runtime(move || {
            uv.pip_install_locked(
                &python, &text, &files_dir, &uv_cache, &scratch, offline, &reporter,
            )
            .map_err(SolveError::from)
        })
        .await?;
        drop(files);
        timings.pip_install = secs(t.elapsed());
    }
    Ok((records, timings))
}
