//! The pinned `uv`: found, or fetched from PyPI with its sha256 checked, and run to install
//! pip requirements into an environment.
//!
//! Order (DESIGN §6): `--uv` / `PYFUNC_ENV_UV`, then a `uv` on `PATH` whose version is
//! compatible, then our own copy in the cache, downloaded from PyPI's uv wheel on first use.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use env_spec::{IndexOptions, PipSet};
use sha2::{Digest, Sha256};

use env_spec::redact::{redact, register_url};

use crate::{Reporter, UvError, io};

/// The uv version we download and test with.
pub const UV_VERSION: &str = "0.13.9";
/// The oldest uv on `PATH` we accept: every flag we pass exists since then. The newest of them
/// is `uv pip compile --format pylock.toml` (`lock`), added in uv 0.6.15 (astral-sh/uv#13019,
/// released 2025-04-15: "Add PEP 751 support to `uv pip compile`").
pub const UV_MIN_VERSION: (u64, u64, u64) = (0, 6, 15);

/// The user's `UV_*` variables that reach uv: they change how files are fetched (timeouts,
/// parallelism, TLS roots, credentials), never which files. Every other `UV_*` variable is
/// removed, because it could change the environment without changing its key
/// (`UV_EXTRA_INDEX_URL`, `UV_INDEX_STRATEGY`, `UV_PRERELEASE`, `UV_CONSTRAINT`, ...).
/// `UV_INDEX_URL` and `UV_DEFAULT_INDEX` are kept as a PyPI mirror (a proxy such as
/// Artifactory serving the same packages), as `--mirror` is for conda channels: like a conda
/// mirror they do not change the key. A model's own `--index-url` still wins over them.
pub const UV_PASSED_VARIABLES: &[&str] = &[
    "UV_HTTP_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_CONCURRENT_DOWNLOADS",
    "UV_CONCURRENT_BUILDS",
    "UV_CONCURRENT_INSTALLS",
    "UV_NATIVE_TLS",
    "UV_KEYRING_PROVIDER",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
];

/// The uv wheel for each platform, with its sha256 from PyPI.
const UV_WHEELS: &[(&str, &str, &str)] = &[
    (
        "linux-64",
        "uv-0.13.9-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19",
    ),
    (
        "linux-aarch64",
        "uv-0.13.9-py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.musllinux_1_1_aarch64.whl",
        "5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe",
    ),
    (
        "osx-64",
        "uv-0.13.9-py3-none-macosx_10_12_x86_64.whl",
        "c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5",
    ),
    (
        "osx-arm64",
        "uv-0.13.9-py3-none-macosx_11_0_arm64.whl",
        "66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63",
    ),
];

/// Where PyPI's simple index lists the uv files.
const UV_INDEX: &str = "https://pypi.org/simple/uv/";

/// A usable uv binary.
#[derive(Debug, Clone)]
pub struct Uv {
    /// The binary.
    pub path: PathBuf,
    /// Its version (`0.13.9`).
    pub version: String,
}

/// The uv one environment is keyed and built with, looked up at most once: the configured
/// binary's `uv --version`, else the `uv` on `PATH`'s. Owned by the caller (a
/// env-build's `ModelEnvironment` holds one), not a process-wide memo: computing the key and each
/// build step used to ask again, and a `uv` on `PATH` is often a wrapper (a pyenv shim runs a
/// dozen bash processes: 0.1-0.6 s per call, measured with `strace -f` in
/// `benches/bench_cold.py`'s scenario, where it was asked three times before the first install),
/// but two environments resolved with different `--uv` settings must not share an answer, and
/// what a process learnt about one binary must not outlive the environment that asked.
///
/// With a memo ([`Self::remembering`], the cache's `tools-v1/`[`VERSION_MEMO`]), the answer is
/// remembered between processes by the binary's identity (device, inode, size, times), so a
/// cached `run` starts no process to key its environment: asking costs 10-30 ms for the uv
/// binary itself and 0.3-0.7 s through a pyenv shim (issue 25). A remembered answer only finds
/// environments: before a build, env-build's `ModelEnvironment::ensure` asks again
/// ([`Self::asked_again`]) when [`Self::memo_was_used`].
#[derive(Debug, Default, Clone)]
pub struct UvProbe {
    configured: Option<PathBuf>,
    memo: Option<PathBuf>,
    located: std::sync::OnceLock<Probed>,
}

/// What one probe found, and whether the memo answered.
#[derive(Debug, Clone)]
struct Probed {
    located: Located,
    /// The version came from the memo, not from running uv.
    from_memo: bool,
    /// An answer uv gave that the memo lacks, for [`UvProbe::save`].
    learnt: Option<Remembered>,
}

/// What [`UvProbe`] found without downloading anything.
#[derive(Debug, Clone)]
enum Located {
    /// The configured binary, and its version (`None`: it does not run).
    Configured(Option<String>),
    /// A `uv` on `PATH` and its version (compatible or not), or none.
    OnPath(Option<(PathBuf, String)>),
}

impl Located {
    fn path(&self, configured: Option<&Path>) -> Option<PathBuf> {
        match self {
            Self::Configured(_) => configured.map(Path::to_path_buf),
            Self::OnPath(found) => found.as_ref().map(|(path, _)| path.clone()),
        }
    }

    fn version(&self) -> Option<&str> {
        match self {
            Self::Configured(version) => version.as_deref(),
            Self::OnPath(found) => found.as_ref().map(|(_, version)| version.as_str()),
        }
    }
}

/// The file in the cache's tools bucket that remembers uv versions between processes.
pub const VERSION_MEMO: &str = "uv-versions-v1.json";

/// One remembered `uv --version`: the binary's path and identity when it was asked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Remembered {
    path: PathBuf,
    identity: Identity,
    version: String,
}

/// What changes when a file is replaced, upgraded or edited in place: device, inode, size,
/// modification and status-change times (nanoseconds). A `uv self update`, a new wheel or a
/// package upgrade all change at least one of them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Identity {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl Identity {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        // Follows symbolic links: `~/.local/bin/uv -> ...` is identified by its target.
        let meta = fs_err::metadata(path).ok()?;
        Some(Self {
            device: meta.dev(),
            inode: meta.ino(),
            size: meta.size(),
            modified_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            changed_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }

    #[cfg(not(unix))]
    fn of(_path: &Path) -> Option<Self> {
        None
    }
}

fn read_memo(memo: &Path) -> Vec<Remembered> {
    fs_err::read(memo)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

impl UvProbe {
    /// A probe for `configured` (`--uv`/`PYFUNC_ENV_UV`), else the `uv` on `PATH`, else our own.
    #[must_use]
    pub fn new(configured: Option<PathBuf>) -> Self {
        Self {
            configured,
            memo: None,
            located: std::sync::OnceLock::new(),
        }
    }

    /// [`Self::new`], with versions remembered in `memo` between processes.
    #[must_use]
    pub fn remembering(configured: Option<PathBuf>, memo: PathBuf) -> Self {
        Self {
            memo: Some(memo),
            ..Self::new(configured)
        }
    }

    /// A probe of the same binary that asks uv itself, not the memo, and remembers the answer
    /// at the next [`Self::save`].
    #[must_use]
    pub fn asked_again(&self) -> Self {
        let asked = Self {
            memo: None,
            ..Self::new(self.configured.clone())
        };
        let mut probed = asked.probe();
        probed.learnt = probed
            .located
            .path(self.configured.as_deref())
            .and_then(|path| {
                Some(Remembered {
                    identity: Identity::of(&path)?,
                    version: probed.located.version()?.to_string(),
                    path,
                })
            });
        Self {
            configured: self.configured.clone(),
            memo: self.memo.clone(),
            located: std::sync::OnceLock::from(probed),
        }
    }

    /// Whether the version came from the memo rather than from running uv.
    #[must_use]
    pub fn memo_was_used(&self) -> bool {
        self.probed().from_memo
    }

    /// Writes what uv answered (and the memo lacked) into the memo: best effort, a failure
    /// only means asking again next time. Keeps the newest 16 binaries.
    pub fn save(&self) {
        let (Some(memo), Some(Some(learnt))) = (
            &self.memo,
            self.located.get().map(|probed| probed.learnt.clone()),
        ) else {
            return;
        };
        let mut entries = read_memo(memo);
        entries.retain(|entry| entry.path != learnt.path);
        entries.push(learnt);
        let skip = entries.len().saturating_sub(16);
        let entries = &entries[skip..];
        if let Some(dir) = memo.parent()
            && fs_err::create_dir_all(dir).is_ok()
            && let Ok(bytes) = serde_json::to_vec_pretty(entries)
            && let Err(error) = env_cache::write_atomic(memo, &bytes)
        {
            tracing::debug!("Could not remember uv's version: {error}");
        }
    }

    fn probed(&self) -> &Probed {
        self.located.get_or_init(|| self.probe())
    }

    fn probe(&self) -> Probed {
        let path = match &self.configured {
            Some(path) => Some(path.clone()),
            None => find_on_path(),
        };
        let (version, from_memo, learnt) = match &path {
            None => (None, false, None),
            Some(path) => self.version_of(path),
        };
        let located = match (&self.configured, path) {
            (Some(_), _) => Located::Configured(version),
            (None, Some(path)) => Located::OnPath(version.map(|v| (path, v))),
            (None, None) => Located::OnPath(None),
        };
        Probed {
            located,
            from_memo,
            learnt,
        }
    }

    /// `path`'s version: the memo's while the binary is unchanged, else uv's answer (and that
    /// answer, to remember).
    fn version_of(&self, path: &Path) -> (Option<String>, bool, Option<Remembered>) {
        let identity = self.memo.as_ref().and_then(|_| Identity::of(path));
        if let (Some(memo), Some(identity)) = (&self.memo, &identity)
            && let Some(entry) = read_memo(memo)
                .into_iter()
                .find(|entry| entry.path == path && &entry.identity == identity)
        {
            tracing::debug!(
                "uv at `{}` is {} (remembered in `{}`)",
                path.display(),
                entry.version,
                memo.display()
            );
            return (Some(entry.version), true, None);
        }
        let version = query_version(path);
        let learnt = identity
            .zip(version.clone())
            .map(|(identity, version)| Remembered {
                path: path.to_path_buf(),
                identity,
                version,
            });
        (version, false, learnt)
    }

    /// The binary asked for (`--uv`), if any.
    #[must_use]
    pub fn configured(&self) -> Option<&Path> {
        self.configured.as_deref()
    }

    fn located(&self) -> &Located {
        &self.probed().located
    }

    /// The version of the uv [`Self::find`] would use, without downloading anything: the
    /// configured one's, else a compatible `uv` on `PATH`, else [`UV_VERSION`] (our own copy,
    /// cached or to be downloaded). It is part of the key: two uv versions may resolve the same
    /// requirements to different files. `None` when the configured uv does not run (the build
    /// then fails saying so).
    #[must_use]
    pub fn expected_version(&self) -> Option<String> {
        match self.located() {
            Located::Configured(version) => version.clone(),
            Located::OnPath(Some((_, version))) if compatible(version) => Some(version.clone()),
            Located::OnPath(_) => Some(UV_VERSION.to_string()),
        }
    }

    /// Finds or provisions uv: the configured one, else a compatible `uv` on `PATH`, else our
    /// own copy in the cache's tools bucket (downloaded unless `offline`).
    pub async fn find(&self, cache: &env_cache::Cache, offline: bool) -> Result<Uv, UvError> {
        match self.located() {
            Located::Configured(version) => {
                let path = self.configured.clone().unwrap_or_default();
                let version = version
                    .clone()
                    .ok_or_else(|| UvError::UvNotRunnable { path: path.clone() })?;
                return Ok(Uv { path, version });
            }
            Located::OnPath(Some((path, version))) => {
                if compatible(version) {
                    tracing::debug!("Using uv {version} from PATH: {}", path.display());
                    return Ok(Uv {
                        path: path.clone(),
                        version: version.clone(),
                    });
                }
                tracing::debug!(
                    "Ignoring uv {version} on PATH: older than {}.{}.{}",
                    UV_MIN_VERSION.0,
                    UV_MIN_VERSION.1,
                    UV_MIN_VERSION.2
                );
            }
            Located::OnPath(None) => {}
        }
        let tools_dir = cache.bucket(env_cache::TOOLS_BUCKET)?;
        let own = tools_dir.join(format!("uv-{UV_VERSION}")).join("uv");
        if own.is_file() {
            return Ok(Uv {
                path: own,
                version: UV_VERSION.to_string(),
            });
        }
        if offline {
            return Err(UvError::UvUnavailableOffline);
        }
        download(&tools_dir, &own, cache.lock_timeout()).await?;
        Ok(Uv {
            path: own,
            version: UV_VERSION.to_string(),
        })
    }
}

fn query_version(path: &Path) -> Option<String> {
    let output = env_cache::child::output(Command::new(path).arg("--version")).ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // `uv 0.13.9 (6b2b0f6 2026-...)`
    text.split_whitespace().nth(1).map(str::to_string)
}

fn compatible(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| {
        // `0.7.0rc1`: the leading digits.
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().unwrap_or(0)
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch) >= UV_MIN_VERSION
}

fn find_on_path() -> Option<PathBuf> {
    env_prefix::find_on_path("uv")
}

async fn download(
    tools_dir: &Path,
    target: &Path,
    lock_timeout: std::time::Duration,
) -> Result<(), UvError> {
    let platform = crate::current_platform()?;
    let Some((_, filename, sha256)) = UV_WHEELS.iter().find(|(p, _, _)| *p == platform.as_str())
    else {
        return Err(UvError::UvNoWheel {
            platform: platform.to_string(),
        });
    };
    fs_err::create_dir_all(tools_dir).map_err(io(tools_dir))?;
    // One download at a time; a second process waits and finds the binary.
    let lock_path = tools_dir.join(format!("uv-{UV_VERSION}.lock"));
    let lock = tokio::task::spawn_blocking({
        let lock_path = lock_path.clone();
        move || {
            env_cache::LockedFile::acquire(
                &lock_path,
                env_cache::LockKind::Exclusive,
                Some(lock_timeout),
                std::time::Duration::from_secs(30),
                |waited| tracing::debug!("Waiting for another process downloading uv ({waited:?})"),
            )
        }
    })
    .await
    .map_err(|e| UvError::Internal {
        message: e.to_string(),
    })??;
    if target.is_file() {
        return Ok(());
    }
    let client = reqwest::Client::builder()
        .user_agent(concat!("pyfunc-env/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| UvError::UvDownload {
            url: UV_INDEX.to_string(),
            detail: None,
            source: Some(e.into()),
        })?;
    let failed = |url: &str| {
        let url = url.to_string();
        move |e: reqwest::Error| UvError::UvDownload {
            url: url.clone(),
            detail: None,
            source: Some(e.into()),
        }
    };
    let index: serde_json::Value = client
        .get(UV_INDEX)
        .header("Accept", "application/vnd.pypi.simple.v1+json")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(failed(UV_INDEX))?
        .json()
        .await
        .map_err(failed(UV_INDEX))?;
    let url = index["files"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["filename"] == *filename)
        .and_then(|f| f["url"].as_str())
        .ok_or_else(|| UvError::UvDownload {
            url: UV_INDEX.to_string(),
            detail: Some(format!("`{filename}` is not listed")),
            source: None,
        })?
        .to_string();
    let bytes = client
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(failed(&url))?
        .bytes()
        .await
        .map_err(failed(&url))?;
    let digest = env_spec::spec::hex(&Sha256::digest(&bytes));
    if digest != *sha256 {
        return Err(UvError::UvChecksum {
            file: (*filename).to_string(),
            expected: (*sha256).to_string(),
            actual: digest,
        });
    }
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| UvError::UvDownload {
            url: url.clone(),
            detail: Some("not a wheel".into()),
            source: Some(e.into()),
        })?;
    let member = format!("uv-{UV_VERSION}.data/scripts/uv");
    let mut binary = Vec::new();
    archive
        .by_name(&member)
        .map_err(|e| UvError::UvDownload {
            url: url.clone(),
            detail: Some(format!("`{member}` missing from the wheel")),
            source: Some(e.into()),
        })?
        .read_to_end(&mut binary)
        .map_err(io(target))?;
    let dir = target.parent().unwrap_or(tools_dir);
    fs_err::create_dir_all(dir).map_err(io(dir))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    std::io::Write::write_all(&mut temp, &binary).map_err(io(target))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o755))
            .map_err(io(target))?;
    }
    temp.persist(target).map_err(|e| UvError::Io {
        path: target.to_path_buf(),
        source: e.error,
    })?;
    drop(lock);
    Ok(())
}

/// One `uv pip install` into an environment.
pub struct PipInstall<'a> {
    /// The environment's interpreter.
    pub python: &'a Path,
    /// What to install.
    pub set: &'a PipSet,
    /// The model directory: relative local paths and `--find-links` of the requirements are
    /// resolved against it, and uv runs in it; it is never written to (local directories are
    /// built from copies). `-r`/`-c` were followed when the spec was read (`env_spec`).
    pub model_root: &'a Path,
    /// uv's cache directory.
    pub cache_dir: &'a Path,
    /// A scratch directory for the generated requirement files.
    pub scratch: &'a Path,
    /// No network.
    pub offline: bool,
    /// `--exclude-newer`.
    pub exclude_newer: Option<&'a str>,
    /// What this step is, for messages (`build dependencies`, `pip requirements`). Bytecode is
    /// not uv's job: it is compiled afterwards through the shared store (env-bytecode).
    pub step: &'a str,
}

/// How uv is told a spec's index options. The index URLs, which may hold credentials
/// (`https://user:token@host/simple`), go in its environment, never its arguments: any local
/// user can read a process's arguments (`ps`, `/proc/PID/cmdline`), only its owner its
/// environment (`/proc/PID/environ` is mode 0400). Everything else stays a flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexArgs {
    /// Flags (`--no-index`, `--find-links DIR`, `--prerelease allow`, ...).
    pub args: Vec<String>,
    /// Variables (`UV_INDEX_URL`, `UV_EXTRA_INDEX_URL`, `UV_FIND_LINKS` when a link holds a
    /// secret).
    pub env: Vec<(String, String)>,
}

impl IndexArgs {
    /// Adds the flags and variables to a uv command. The model's own index replaces a
    /// `UV_DEFAULT_INDEX` mirror passed through from the user ([`UV_PASSED_VARIABLES`]), as
    /// its `--index-url` flag did.
    pub fn apply(&self, command: &mut Command) {
        command.args(&self.args);
        for (name, value) in &self.env {
            if name == "UV_INDEX_URL" {
                command.env_remove("UV_DEFAULT_INDEX");
            }
            command.env(name, value);
        }
    }
}

/// Whether a URL carries a secret that must not be in a process's arguments.
fn has_secret(url: &str) -> bool {
    env_spec::redact::redact_url(url) != url || env_spec::redact::mask_userinfo(url) != url
}

/// How uv is told pip index options (`--index-url`, `--find-links`, ...): see [`IndexArgs`].
#[must_use]
pub fn index_args(index: &IndexOptions, model_root: &Path) -> IndexArgs {
    let mut out = IndexArgs::default();
    if let Some(url) = &index.index_url {
        register_url(url);
        out.env.push(("UV_INDEX_URL".to_string(), url.clone()));
    }
    if !index.extra_index_urls.is_empty() {
        for url in &index.extra_index_urls {
            register_url(url);
        }
        // uv splits this variable at spaces, which a URL does not hold.
        out.env.push((
            "UV_EXTRA_INDEX_URL".to_string(),
            index.extra_index_urls.join(" "),
        ));
    }
    if index.no_index {
        out.args.push("--no-index".into());
    }
    let links: Vec<String> = index
        .find_links
        .iter()
        .map(|link| {
            register_url(link);
            if link.contains("://") {
                link.clone()
            } else {
                model_root.join(link).to_string_lossy().into_owned()
            }
        })
        .collect();
    // A flag given on the command line replaces its variable entirely, so all links go one
    // way: as flags (local directories may hold a comma, uv's separator here), unless one of
    // them carries a secret.
    if links.iter().any(|link| has_secret(link)) {
        out.env.push(("UV_FIND_LINKS".to_string(), links.join(",")));
    } else {
        for link in links {
            out.args.extend(["--find-links".to_string(), link]);
        }
    }
    if index.pre {
        out.args
            .extend(["--prerelease".to_string(), "allow".to_string()]);
    }
    for value in &index.no_binary {
        out.args.extend(["--no-binary".to_string(), value.clone()]);
    }
    for value in &index.only_binary {
        out.args
            .extend(["--only-binary".to_string(), value.clone()]);
    }
    for host in &index.trusted_hosts {
        out.args
            .extend(["--allow-insecure-host".to_string(), host.clone()]);
    }
    if index.require_hashes {
        out.args.push("--require-hashes".into());
    }
    out
}

impl Uv {
    /// The one way every uv call starts: our cache, no progress, no Python downloads, no
    /// configuration files (`uv.toml`, `[tool.uv]`: they are not part of the key), and of the
    /// user's `UV_*` variables only [`UV_PASSED_VARIABLES`].
    pub fn command(&self, cache_dir: &Path, offline: bool) -> Command {
        let mut command = Command::new(&self.path);
        for (name, _) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if name.starts_with("UV_") && !UV_PASSED_VARIABLES.contains(&name) {
                command.env_remove(name);
            }
        }
        command
            .env("UV_CACHE_DIR", cache_dir)
            .env("UV_NO_PROGRESS", "1")
            .env("UV_NO_CONFIG", "1")
            .env("UV_PYTHON_DOWNLOADS", "never")
            .env_remove("VIRTUAL_ENV")
            .env_remove("CONDA_PREFIX")
            .stdin(Stdio::null());
        if offline {
            command.env("UV_OFFLINE", "1");
        }
        command
    }

    /// Creates a virtual environment at `prefix` (which may already hold our metadata
    /// directory) from `interpreter`.
    pub fn venv(
        &self,
        interpreter: &Path,
        prefix: &Path,
        cache_dir: &Path,
        reporter: &Arc<dyn Reporter>,
    ) -> Result<(), UvError> {
        let mut command = self.command(cache_dir, true);
        command
            .args(["venv", "--allow-existing", "--no-project", "--python"])
            .arg(interpreter)
            .arg(prefix);
        let (status, stderr) = run_streaming(&mut command, reporter).map_err(io(&self.path))?;
        if status.success() {
            return Ok(());
        }
        Err(UvError::pip_failed(
            "virtualenv",
            status.code(),
            redact(stderr.trim_end()),
            true,
        ))
    }

    /// Installs exactly the distributions of a lock (`name==version --hash=sha256:...` lines,
    /// env-lock's `requirements_text`) from `files`, where `env_lock::fetch_files` put
    /// every locked file: no index, no dependency resolution, every hash required.
    #[expect(clippy::too_many_arguments, reason = "one uv invocation's settings")]
    pub fn pip_install_locked(
        &self,
        python: &Path,
        requirements: &str,
        files: &Path,
        cache_dir: &Path,
        scratch: &Path,
        offline: bool,
        reporter: &Arc<dyn Reporter>,
    ) -> Result<(), UvError> {
        let mut file = tempfile::Builder::new()
            .prefix("locked-")
            .suffix(".txt")
            .tempfile_in(scratch)
            .map_err(io(scratch))?;
        std::io::Write::write_all(&mut file, requirements.as_bytes()).map_err(io(file.path()))?;
        let mut command = self.command(cache_dir, offline);
        command
            .args([
                "pip",
                "install",
                "--no-deps",
                "--require-hashes",
                "--no-index",
                "--find-links",
            ])
            .arg(files)
            .arg("--python")
            .arg(python)
            .arg("-r")
            .arg(file.path());
        let (status, stderr) = run_streaming(&mut command, reporter).map_err(io(&self.path))?;
        if status.success() {
            return Ok(());
        }
        Err(UvError::pip_failed(
            "locked Python packages",
            status.code(),
            redact(stderr.trim_end()),
            offline,
        ))
    }

    /// Installs `install.set` into the environment of `install.python`.
    pub fn pip_install(
        &self,
        install: &PipInstall<'_>,
        reporter: &Arc<dyn Reporter>,
    ) -> Result<(), UvError> {
        if install.set.requirements.is_empty() {
            return Ok(());
        }
        let mut requirements = tempfile::Builder::new()
            .prefix("requirements-")
            .suffix(".txt")
            .tempfile_in(install.scratch)
            .map_err(io(install.scratch))?;
        // Local directories are built from copies, never in the model directory.
        let staged = crate::local::stage(
            &install.set.requirements,
            install.model_root,
            install.scratch,
        )?;
        let text: String = staged
            .requirements
            .iter()
            .map(|r| r.to_requirement_line(install.model_root) + "\n")
            .collect();
        std::io::Write::write_all(&mut requirements, text.as_bytes())
            .map_err(io(requirements.path()))?;
        let mut command = self.command(install.cache_dir, install.offline);
        command
            .args(["pip", "install", "--python"])
            .arg(install.python)
            .arg("-r")
            .arg(requirements.path())
            .current_dir(install.model_root);
        index_args(&install.set.index, install.model_root).apply(&mut command);
        let constraints = if install.set.constraints.is_empty() {
            None
        } else {
            let mut file = tempfile::Builder::new()
                .prefix("constraints-")
                .suffix(".txt")
                .tempfile_in(install.scratch)
                .map_err(io(install.scratch))?;
            let text: String = install
                .set
                .constraints
                .iter()
                .map(|r| r.to_requirement_line(install.model_root) + "\n")
                .collect();
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io(file.path()))?;
            command.arg("-c").arg(file.path());
            Some(file)
        };
        if let Some(date) = install.exclude_newer {
            command.args(["--exclude-newer", date]);
            // An exact pin names one release whatever its date: exempt it, so that a date
            // bounds only what the model's files leave open (`--exclude-newer model`).
            for requirement in &install.set.requirements {
                if let Some((name, _)) = requirement.exact_pin() {
                    command.args(["--exclude-newer-package", &format!("{name}=false")]);
                }
            }
        }
        tracing::debug!("Running {}", redact(&format!("{command:?}")));
        let result = run_streaming(&mut command, reporter);
        drop(constraints);
        let (status, stderr) = result.map_err(io(&self.path))?;
        if status.success() {
            return Ok(());
        }
        Err(UvError::pip_failed(
            install.step,
            status.code(),
            redact(stderr.trim_end()),
            install.offline,
        ))
    }
}

/// Runs a command, passing its stderr lines to the reporter, and returns its status and the
/// stderr text.
pub fn run_streaming(
    command: &mut Command,
    reporter: &Arc<dyn Reporter>,
) -> std::io::Result<(std::process::ExitStatus, String)> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = env_cache::child::spawn(command)?;
    let stdout = child.stdout.take();
    let stdout_thread = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut out) = stdout {
            let _ = out.read_to_string(&mut text);
        }
        text
    });
    let mut collected = String::new();
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            reporter.on_tool_output(&line);
            collected.push_str(&line);
            collected.push('\n');
        }
    }
    let status = child.wait()?;
    let stdout = stdout_thread.join().unwrap_or_default();
    if !stdout.is_empty() {
        collected.push_str(&stdout);
    }
    Ok((status, collected))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_compatibility() {
        assert!(compatible("0.13.9"));
        assert!(compatible("1.0.0"));
        assert!(compatible("0.6.15"));
        assert!(compatible("0.7.0rc1"));
        // `uv pip compile --format pylock.toml` arrived in 0.6.15.
        assert!(!compatible("0.6.14"));
        assert!(!compatible("0.5.0"));
        assert!(!compatible("0.4.30"));
    }

    /// A fake `uv` that prints `version` and counts its calls in `calls`.
    fn fake_uv(dir: &Path, version: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join("uv");
        let calls = dir.join("calls");
        fs_err::write(
            &path,
            format!(
                "#!/bin/sh\necho x >> '{}'\necho 'uv {version} (fake)'\n",
                calls.display()
            ),
        )
        .unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn a_probe_asks_its_uv_once_and_another_probe_asks_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = env_cache::Cache::new(dir.path().join("cache"));
        let uv = fake_uv(dir.path(), "0.13.9");
        let calls =
            || fs_err::read_to_string(dir.path().join("calls")).map_or(0, |t| t.lines().count());

        // One environment: the key and every build step share one `uv --version`.
        let probe = UvProbe::new(Some(uv.clone()));
        assert_eq!(probe.expected_version().as_deref(), Some("0.13.9"));
        assert_eq!(probe.find(&cache, true).await.unwrap().version, "0.13.9");
        assert_eq!(probe.find(&cache, true).await.unwrap().version, "0.13.9");
        assert_eq!(calls(), 1);

        // The binary was replaced (an upgrade between two environments of one process): the
        // next environment's probe sees it; a process-wide memo answered 0.13.9 for its path.
        fake_uv(dir.path(), "0.14.0");
        let next = UvProbe::new(Some(uv.clone()));
        assert_eq!(next.expected_version().as_deref(), Some("0.14.0"));
        assert_eq!(calls(), 2);

        // A configured uv that does not run: no version for the key, and the build says so.
        let missing = UvProbe::new(Some(dir.path().join("no-such-uv")));
        assert_eq!(missing.expected_version(), None);
        assert!(matches!(
            missing.find(&cache, true).await,
            Err(UvError::UvNotRunnable { .. })
        ));
    }

    #[test]
    fn uv_sees_no_config_file_and_only_the_passed_variables() {
        #[expect(unsafe_code, reason = "setting this test process's environment")]
        // SAFETY: nextest runs each test in a process of its own, and this one starts no
        // threads before these calls.
        unsafe {
            std::env::set_var("UV_EXTRA_INDEX_URL", "https://elsewhere.example/simple");
            std::env::set_var("UV_INDEX_STRATEGY", "unsafe-best-match");
            std::env::set_var("UV_HTTP_TIMEOUT", "90");
        }
        let uv = Uv {
            path: PathBuf::from("uv"),
            version: UV_VERSION.to_string(),
        };
        let command = uv.command(Path::new("/cache"), false);
        let set: std::collections::BTreeMap<String, Option<String>> = command
            .get_envs()
            .map(|(name, value)| {
                (
                    name.to_string_lossy().into_owned(),
                    value.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(set["UV_NO_CONFIG"].as_deref(), Some("1"));
        assert_eq!(set["UV_CACHE_DIR"].as_deref(), Some("/cache"));
        // Every `UV_*` variable of this process that is not passed on is removed.
        for (name, _) in std::env::vars() {
            if name.starts_with("UV_")
                && !UV_PASSED_VARIABLES.contains(&name.as_str())
                && !matches!(
                    name.as_str(),
                    "UV_CACHE_DIR" | "UV_NO_PROGRESS" | "UV_NO_CONFIG" | "UV_PYTHON_DOWNLOADS"
                )
            {
                assert_eq!(set.get(&name), Some(&None), "{name} reaches uv");
            }
        }
        assert_eq!(set.get("UV_EXTRA_INDEX_URL"), Some(&None));
        assert_eq!(set.get("UV_INDEX_STRATEGY"), Some(&None));
        // Passed on: inherited, not touched.
        assert_eq!(set.get("UV_HTTP_TIMEOUT"), None);
    }

    /// Index URLs, which may hold credentials, never reach uv's arguments (readable by every
    /// local user); they go in its environment.
    #[test]
    fn index_credentials_go_in_the_environment_not_the_arguments() {
        let index = IndexOptions {
            index_url: Some("http://alice:hunter22@idx.example/simple".into()),
            extra_index_urls: vec![
                "https://tok3n-abcdef-0123456789@extra.example/simple".into(),
                "https://plain.example/simple".into(),
            ],
            find_links: vec!["https://bob:pa55word@links.example/wheels/".into()],
            ..IndexOptions::default()
        };
        let passed = index_args(&index, Path::new("/model"));
        let mut command = Command::new("uv");
        command.env("UV_DEFAULT_INDEX", "https://mirror.example/simple");
        passed.apply(&mut command);
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        for secret in [
            "hunter22",
            "tok3n-abcdef-0123456789",
            "pa55word",
            "idx.example",
        ] {
            assert!(
                !args.iter().any(|a| a.contains(secret)),
                "{secret}: {args:?}"
            );
        }
        let env: std::collections::BTreeMap<String, Option<String>> = command
            .get_envs()
            .map(|(n, v)| {
                (
                    n.to_string_lossy().into_owned(),
                    v.map(|v| v.to_string_lossy().into_owned()),
                )
            })
            .collect();
        assert_eq!(
            env["UV_INDEX_URL"].as_deref(),
            Some("http://alice:hunter22@idx.example/simple")
        );
        assert_eq!(
            env["UV_EXTRA_INDEX_URL"].as_deref(),
            Some(
                "https://tok3n-abcdef-0123456789@extra.example/simple https://plain.example/simple"
            )
        );
        assert_eq!(
            env["UV_FIND_LINKS"].as_deref(),
            Some("https://bob:pa55word@links.example/wheels/")
        );
        // The model's index replaces a mirror passed through from the user.
        assert_eq!(env["UV_DEFAULT_INDEX"], None);

        // Links without secrets stay flags (a local directory may hold uv's `,` separator).
        let local = IndexOptions {
            find_links: vec!["wheels,v2".into()],
            no_index: true,
            ..IndexOptions::default()
        };
        let passed = index_args(&local, Path::new("/model"));
        assert_eq!(
            passed.args,
            ["--no-index", "--find-links", "/model/wheels,v2"]
        );
        assert!(passed.env.is_empty());
    }

    #[test]
    fn every_supported_platform_has_a_pinned_wheel() {
        for (platform, filename, sha256) in UV_WHEELS {
            assert!(
                filename.starts_with(&format!("uv-{UV_VERSION}-")),
                "{platform}"
            );
            assert_eq!(sha256.len(), 64);
        }
    }
}
