//! Builds the whole test channel into a directory and indexes it with `rattler_index`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use fs_err as fs;
use rattler_index::{IndexFsConfig, PackageRevisionAssignment};

use crate::package::BuiltPackage;
use crate::{python, tiny, wheel};

/// Where the builder finds its inputs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// `$PYENV_ROOT`: CPython `X.Y.Z` is read from `<pyenv_root>/versions/X.Y.Z`.
    pub pyenv_root: PathBuf,
    /// Where downloaded wheels are cached, shared between builds.
    pub wheel_cache: PathBuf,
}

impl BuildOptions {
    /// `$PYENV_ROOT` (else `pyenv root`, else `~/.pyenv`) and a wheel cache under
    /// [`crate::target_dir`].
    pub fn discover() -> Result<Self> {
        Ok(Self {
            pyenv_root: pyenv_root()?,
            wheel_cache: crate::target_dir().join("env-test").join("wheels"),
        })
    }

    /// The interpreter that runs `pip download`: the pinned CPython 3.11, which pyenv installs
    /// with pip.
    pub(crate) fn download_python(&self) -> Result<PathBuf> {
        let dir = python::install_dir(&self.pyenv_root, python::PYTHON_VERSIONS[1])?;
        Ok(dir.join("bin").join("python3"))
    }
}

/// The pyenv root: `$PYENV_ROOT`, else the output of `pyenv root`, else `~/.pyenv`.
pub fn pyenv_root() -> Result<PathBuf> {
    if let Some(root) = std::env::var_os("PYENV_ROOT").filter(|root| !root.is_empty()) {
        return Ok(PathBuf::from(root));
    }
    if let Ok(output) = Command::new("pyenv").arg("root").output()
        && output.status.success()
    {
        let root = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if !root.is_empty() {
            return Ok(PathBuf::from(root));
        }
    }
    let home = std::env::var_os("HOME").context("Neither `PYENV_ROOT` nor `HOME` is set")?;
    Ok(PathBuf::from(home).join(".pyenv"))
}

/// What [`build_channel`] produced.
#[derive(Debug, Clone)]
pub struct ChannelSummary {
    /// Every package, in build order.
    pub packages: Vec<BuiltPackage>,
    /// Wall time of the whole build.
    pub elapsed: Duration,
}

/// Builds the test channel into `out_dir` (created if missing; it should be empty): `linux-64/`
/// and `noarch/` with their `repodata.json`.
///
/// This takes tens of seconds; use [`crate::test_channel`] in tests, which builds it once.
pub fn build_channel(out_dir: &Path, options: &BuildOptions) -> Result<ChannelSummary> {
    let start = Instant::now();
    fs::create_dir_all(out_dir.join("linux-64"))?;
    fs::create_dir_all(out_dir.join("noarch"))?;
    let out_dir = fs::canonicalize(out_dir)?;

    let wheel_paths = wheel::fetch(&options.wheel_cache, &options.download_python()?)
        .context("Failed to fetch the pinned wheels")?;

    // Staging lives next to the channel (same file system) and goes away before indexing;
    // `rattler_index` skips names that are not subdirs anyway.
    let work = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&out_dir)?;
    let work_dir = work.path();

    // Largest first, so the two workers finish together.
    let mut jobs: Vec<Box<dyn FnOnce() -> Result<Vec<BuiltPackage>> + Send + '_>> = Vec::new();
    for version in python::PYTHON_VERSIONS {
        let pyenv_root = &options.pyenv_root;
        let out_dir = &out_dir;
        jobs.push(Box::new(move || {
            Ok(vec![python::build(pyenv_root, version, work_dir, out_dir)?])
        }));
    }
    for (pin, path) in wheel::PINNED_WHEELS.iter().zip(&wheel_paths) {
        let out_dir = &out_dir;
        jobs.push(Box::new(move || {
            Ok(vec![wheel::build(pin, path, work_dir, out_dir)?])
        }));
    }
    jobs.push(Box::new(|| tiny::build_all(work_dir, &out_dir)));
    let packages = run_jobs(jobs)?;
    work.close()?;

    index(&out_dir)?;
    Ok(ChannelSummary {
        packages,
        elapsed: start.elapsed(),
    })
}

/// Runs `jobs` on as many threads as there are cores and returns their results in job order.
fn run_jobs<'a>(
    jobs: Vec<Box<dyn FnOnce() -> Result<Vec<BuiltPackage>> + Send + 'a>>,
) -> Result<Vec<BuiltPackage>> {
    let count = jobs.len();
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let results = Mutex::new((0..count).map(|_| None).collect::<Vec<_>>());
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(count) {
            scope.spawn(|| {
                loop {
                    // A poisoned lock means another worker panicked; the scope re-raises that.
                    let Some((index, job)) = queue.lock().ok().and_then(|mut queue| queue.next())
                    else {
                        break;
                    };
                    let result = job();
                    let failed = result.is_err();
                    if let Ok(mut results) = results.lock() {
                        results[index] = Some(result);
                    }
                    if failed {
                        // Skip what is left; the first error is reported.
                        if let Ok(mut queue) = queue.lock() {
                            queue.by_ref().for_each(drop);
                        }
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow!("A channel build worker panicked"))?;
    let mut packages = Vec::new();
    for result in results.into_iter().flatten() {
        packages.extend(result?);
    }
    Ok(packages)
}

/// Writes `repodata.json` for every subdir of `channel_dir` with `rattler_index::index_fs`.
pub fn index(channel_dir: &Path) -> Result<()> {
    let channel = channel_dir.to_path_buf();
    // `index_fs` is async. Run it on a runtime of its own in a thread of its own, so callers inside
    // a Tokio runtime (a `#[tokio::test]`) can use this too.
    let result = std::thread::spawn(move || -> Result<()> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(rattler_index::index_fs(IndexFsConfig {
            channel,
            target_platform: None,
            repodata_patch: None,
            write_zst: false,
            write_shards: false,
            repodata_revisions: Vec::new(),
            package_revision_assignment: PackageRevisionAssignment::default(),
            force: true,
            max_parallel: 4,
            multi_progress: None,
        }))
    })
    .join()
    .map_err(|_| anyhow!("The indexing thread panicked"))?;
    result.with_context(|| format!("Failed to index `{}`", channel_dir.display()))?;
    // `index_fs` writes through `<channel>/.tmp/` and leaves it behind, empty.
    let scratch = channel_dir.join(".tmp");
    if scratch.is_dir() {
        fs::remove_dir_all(&scratch)?;
    }
    for subdir in ["linux-64", "noarch"] {
        let repodata = channel_dir.join(subdir).join("repodata.json");
        ensure!(
            repodata.is_file(),
            "Indexing did not write `{}`",
            repodata.display()
        );
    }
    Ok(())
}
