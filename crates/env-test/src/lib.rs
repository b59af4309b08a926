//! Test support for `pyfunc-env`: a real, local conda channel, served over `file://` and HTTP.
//!
//! Conda channels are not reachable from the machines the tests run on, so the test suite builds
//! one from real content: CPython 3.10/3.11/3.12 from the machine's pyenv installs (made
//! relocatable), `pip`, `setuptools`, `wheel` and `numpy` from pinned PyPI wheels, and a few tiny
//! packages written from scratch. See the crate's `README.md` for the list.
//!
//! [`test_channel`] builds the channel once per set of inputs and caches it under the cargo target
//! directory; every test process (nextest runs each test in its own) reuses it. [`ChannelServer`]
//! serves a channel directory on `127.0.0.1`.

#![warn(missing_docs)]

mod channel;
mod elf;
mod package;
mod python;
mod server;
mod tiny;
mod wheel;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context, Result, ensure};
use fs_err as fs;
use serde::Serialize;
use url::Url;

pub use channel::{BuildOptions, ChannelSummary, build_channel, index, pyenv_root};
pub use package::{ArchiveFormat, BuiltPackage, ChannelSubdir};
pub use python::{PYTHON_BUILD, PYTHON_VERSIONS, stage as stage_python};
pub use server::{ChannelServer, ServedRequest};
pub use wheel::{PINNED_WHEELS, PinnedWheel};

/// Environment variable naming a pre-built channel directory that [`test_channel`] returns
/// instead of building one.
pub const PYFUNC_ENV_TEST_CHANNEL: &str = "PYFUNC_ENV_TEST_CHANNEL";

/// Bump when the channel's content changes in a way the hashed inputs do not capture.
const BUILDER_VERSION: u32 = 1;

/// The source of every module that decides the channel's content: a change to any of them gives a
/// new cache key, so nobody tests against a channel built by older code.
const BUILDER_SOURCES: [&str; 6] = [
    include_str!("channel.rs"),
    include_str!("elf.rs"),
    include_str!("package.rs"),
    include_str!("python.rs"),
    include_str!("tiny.rs"),
    include_str!("wheel.rs"),
];

/// A built, indexed channel directory with `linux-64/` and `noarch/` subdirs.
#[derive(Debug, Clone)]
pub struct TestChannel {
    path: PathBuf,
}

impl TestChannel {
    /// The channel directory (absolute).
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The channel as a `file://` URL with a trailing slash.
    #[must_use]
    pub fn file_url(&self) -> Url {
        // The path is absolute (canonicalized when the channel was found).
        Url::from_directory_path(&self.path).expect("an absolute path")
    }

    /// Serves the channel over HTTP on `127.0.0.1` until the returned server is dropped.
    pub fn serve(&self) -> Result<ChannelServer> {
        ChannelServer::start(&self.path)
    }
}

/// Returns the shared test channel, building it on first use.
///
/// The channel is cached under `<target dir>/env-test/channel-<key>/`, where the key hashes every
/// input: the builder's source, the identity of each pyenv CPython install and the pinned wheels.
/// Processes that ask at the same time wait on a file lock and reuse the result. A channel is built
/// in a temporary directory and renamed into place, so a half-built one is never used.
///
/// Set [`PYFUNC_ENV_TEST_CHANNEL`] to use a pre-built channel (see `env-test channel build`).
pub fn test_channel() -> Result<&'static TestChannel> {
    static CHANNEL: OnceLock<TestChannel> = OnceLock::new();
    static INIT: Mutex<()> = Mutex::new(());
    if let Some(channel) = CHANNEL.get() {
        return Ok(channel);
    }
    // Threads of one process take turns here; other processes are held off by the file lock.
    let _guard = INIT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(channel) = CHANNEL.get() {
        return Ok(channel);
    }
    let path = match std::env::var_os(PYFUNC_ENV_TEST_CHANNEL).filter(|path| !path.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            for subdir in ["linux-64", "noarch"] {
                ensure!(
                    path.join(subdir).join("repodata.json").is_file(),
                    "`{PYFUNC_ENV_TEST_CHANNEL}={}` is not an indexed channel (no \
                     `{subdir}/repodata.json`)",
                    path.display()
                );
            }
            path
        }
        None => cached_channel()?,
    };
    let path = fs::canonicalize(path)?;
    Ok(CHANNEL.get_or_init(|| TestChannel { path }))
}

/// A directory of real PyPI wheels (the pinned pip, setuptools, wheel and numpy wheels, sha256
/// checked), for tests that install with `uv --find-links DIR --no-index --offline`.
pub fn wheel_dir() -> Result<&'static Path> {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    if let Some(dir) = DIR.get() {
        return Ok(dir);
    }
    let options = BuildOptions::discover()?;
    let python = options.download_python()?;
    wheel::fetch(&options.wheel_cache, &python)?;
    Ok(DIR.get_or_init(|| options.wheel_cache))
}

/// Finds or builds the channel for the current inputs under the target directory.
fn cached_channel() -> Result<PathBuf> {
    let options = BuildOptions::discover()?;
    let key = cache_key(&options)?;
    let base = target_dir().join("env-test");
    let final_dir = base.join(format!("channel-{key}"));
    if final_dir.is_dir() {
        return Ok(final_dir);
    }

    fs::create_dir_all(&base)?;
    let lock_path = base.join("channel.lock");
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)?;
    if lock.try_lock().is_err() {
        note(&format!(
            "Waiting for another process to build the test channel (lock `{}`)",
            lock_path.display()
        ));
        lock.lock()?;
    }
    if final_dir.is_dir() {
        return Ok(final_dir);
    }
    // Holding the lock, any temporary directory left here belongs to a build that died.
    for entry in fs::read_dir(&base)? {
        let entry = entry?;
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".tmp-channel-")
        {
            fs::remove_dir_all(entry.path())?;
        }
    }
    note(&format!(
        "Building the test channel into `{}` (10–20 s, once per change of its inputs)",
        final_dir.display()
    ));
    let temp = tempfile::Builder::new()
        .prefix(".tmp-channel-")
        .tempdir_in(&base)?;
    let summary =
        build_channel(temp.path(), &options).context("Failed to build the test channel")?;
    fs::rename(temp.keep(), &final_dir)?;
    note(&format!(
        "Built the test channel ({} packages) in {:.1} s",
        summary.packages.len(),
        summary.elapsed.as_secs_f64()
    ));
    Ok(final_dir)
}

/// Everything that changes the channel's content, hashed into its directory name.
#[derive(Serialize)]
struct CacheKeyInputs {
    builder_version: u32,
    builder_sources: String,
    pythons: Vec<python::PythonIdentity>,
    wheels: &'static [PinnedWheel],
}

fn cache_key(options: &BuildOptions) -> Result<String> {
    let pythons = PYTHON_VERSIONS
        .iter()
        .map(|version| python::identity(&options.pyenv_root, version))
        .collect::<Result<_>>()?;
    let inputs = CacheKeyInputs {
        builder_version: BUILDER_VERSION,
        builder_sources: package::sha256_hex(BUILDER_SOURCES.concat().as_bytes()),
        pythons,
        wheels: &PINNED_WHEELS,
    };
    let digest = package::sha256_hex(&serde_json::to_vec(&inputs)?);
    Ok(digest[..16].to_owned())
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else `target/` in the workspace root found by
/// walking up from `$CARGO_MANIFEST_DIR` (the one at run time if cargo set it, else this crate's).
#[must_use]
pub fn target_dir() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let workspace_root = manifest_dir
        .ancestors()
        .find(|dir| {
            fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|manifest| manifest.lines().any(|line| line.trim() == "[workspace]"))
        })
        .unwrap_or(&manifest_dir)
        .to_path_buf();
    match std::env::var_os("CARGO_TARGET_DIR").filter(|dir| !dir.is_empty()) {
        Some(dir) => workspace_root.join(dir),
        None => workspace_root.join("target"),
    }
}

/// A progress line on stderr; test harnesses show it for failing or slow tests.
fn note(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "env-test: {message}");
}
