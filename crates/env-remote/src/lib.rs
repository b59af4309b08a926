//! A shared cache of complete environments on object storage: build once, every agent reuses
//! (issues 13 and 25).
//!
//! ```text
//! <url>/v2/<platform>/<key>/manifest.json   `{"signatures": [...], "manifest": {...}}`: key,
//!                                           platform, metadata, provenance, the environment's
//!                                           entries (`env_store::Manifest`) and, for each
//!                                           file's sha256, its pack, offset and length; the
//!                                           signatures cover the manifest's exact bytes;
//!                                           written last
//! <url>/v2/packs/<sha256>.pack              blobs shared by all environments, each zstd on its
//!                                           own, grouped by distribution (sources, bytecode)
//!                                           and at most 32 MiB of content a pack
//! ```
//!
//! The `v1` layout (one archive per environment) is no longer read or written.
//!
//! Guarantees, and why they hold:
//! - **A pull fetches only what the agent lacks.** Files are named by content; the agent's
//!   `store-v1/` holds every file of the environments it built or pulled, so a pull of a
//!   sibling range-GETs (coalesced, in parallel) only the blobs the store lacks, and
//!   materialises the environment by hard links.
//! - **A push uploads only what the remote lacks.** Packs are named by the hash of their
//!   bytes; a pack the remote has (HEAD, same size) is not uploaded again. Siblings share the
//!   packs of their common distributions.
//! - **A reader never sees a manifest without its blobs.** Packs go up first (an object
//!   appears whole or not at all), the manifest last.
//! - **Concurrent pushes leave a consistent entry.** The manifest is written with a conditional
//!   put (create only) where the store supports it: the first push wins. Packs are content
//!   named, so two pushers write the same bytes to the same name.
//! - **Bounded work on hostile input.** The manifest is read up to [`MAX_MANIFEST`] bytes and
//!   checked entry by entry (paths, symlinks, hashes, sizes within [`MAX_FILE`] and
//!   [`MAX_TOTAL`]) before anything is fetched; each blob is decompressed into a writer that
//!   refuses more than its recorded size and checks its sha256 before it enters the store.
//! - **A pulled environment is installed like a build.** It is materialised into a staging
//!   directory in the cache's `tmp/`, renamed into place under the environment's exclusive
//!   lock, and marked complete last. A killed pull leaves no `complete` marker, and the next
//!   pull of the key removes its staging directory.
//! - **The remote never fails a build.** Unreachable, slow (every request and every stalled
//!   read is bounded by [`Remote::timeout`]), refused or damaged: one warning, and the build
//!   goes on locally (and its push replaces what was damaged).
//!
//! Trust (issue 26): without trusted keys, whoever can write the bucket can put code on every
//! agent that pulls from it, as with any shared build cache. With trusted keys
//! ([`sign::Trust`]), an entry is used only if a trusted key signed its manifest (the
//! manifest names every file's sha256, so the signature covers every byte installed): CI
//! signs with `--remote-cache-sign-key`, agents hold only public keys and read-only
//! credentials. The manifest is an envelope, `{"signatures": [...], "manifest": {...}}`; the
//! signatures cover the exact bytes of `manifest` ([`sign::SIGNED_PREFIX`] first).
//!
//! What runs on a pull: nothing. The manifest is read, its signature verified (with trusted
//! keys), the manifest checked (key, platform, paths, sizes), blobs downloaded and each
//! checked against its sha256 before it enters the store, and the environment materialised
//! (links, copies, prefix rewrites of text files). No file of the entry is executed before
//! the command that asked for the environment starts it (`run` starts the model's Python).
#![warn(missing_docs)]

mod describe;
mod packs;
pub mod push;
pub mod sign;
mod store;
mod transfer;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use sign::{KeyError, PublicKey, SecretKey, Signature, SignatureError, Trust};
pub use transfer::{EntryCheck, PruneReport, PushResult, RemoteEntry, RemoteListing};

/// The layout version, part of every path.
pub const LAYOUT: u32 = 2;
const LAYOUT_DIR: &str = "v2";
const MANIFEST: &str = "manifest.json";

/// The largest manifest a pull reads.
pub const MAX_MANIFEST: u64 = 64 << 20;
/// The largest file a pull writes.
pub const MAX_FILE: u64 = 4 << 30;
/// The most bytes of files a pull writes.
pub const MAX_TOTAL: u64 = 64 << 30;

/// How long a request, or a read that makes no progress, may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// The kinds of store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// `s3://bucket/prefix`: AWS S3 or an S3-compatible store (`AWS_ENDPOINT_URL`).
    S3,
    /// `gs://bucket/prefix`: Google Cloud Storage.
    Gs,
    /// `az://container/prefix`: Azure Blob Storage (`AZURE_STORAGE_ACCOUNT_NAME`).
    Az,
    /// `file:///dir`: a shared directory (an NFS mount).
    File,
}

/// A remote cache location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// The kind of store.
    pub scheme: Scheme,
    /// The bucket or container (empty for `file://`).
    pub bucket: String,
    /// The prefix inside it, without leading or trailing `/` (empty for `file://`).
    pub prefix: String,
    /// The directory of a `file://` URL.
    pub dir: Option<PathBuf>,
    text: String,
}

/// Errors of the remote cache.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RemoteError {
    /// The URL is not one the remote cache takes.
    #[error("Invalid remote cache URL `{url}`: {message}")]
    #[diagnostic(help(
        "Use `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX` or `file:///SHARED/DIR`"
    ))]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// Why.
        message: String,
    },

    /// The store refused the credentials.
    #[error("The remote cache `{url}` refused the credentials ({what}): {message}")]
    #[diagnostic(help("{help}"))]
    Credentials {
        /// The remote.
        url: String,
        /// What was being done.
        what: String,
        /// The store's answer (secrets masked).
        message: String,
        /// The settings to check.
        help: String,
        /// The HTTP status (401, 403), if the store answered one.
        status: Option<u16>,
    },

    /// The store could not be reached in time.
    #[error("The remote cache `{url}` did not answer ({what}): {message}")]
    #[diagnostic(help(
        "Check the URL and the endpoint (`AWS_ENDPOINT_URL`, `MLFLOW_S3_ENDPOINT_URL`); each request waits at most `PYFUNC_ENV_REMOTE_CACHE_TIMEOUT` seconds"
    ))]
    Unreachable {
        /// The remote.
        url: String,
        /// What was being done.
        what: String,
        /// Why.
        message: String,
    },

    /// Any other error of the store.
    #[error("The remote cache `{url}` failed ({what}): {message}")]
    Store {
        /// The remote.
        url: String,
        /// What was being done.
        what: String,
        /// The store's answer (secrets masked).
        message: String,
        /// The HTTP status, if the store answered.
        status: Option<u16>,
    },

    /// A downloaded pack is not what the manifest says.
    #[error("The remote cache's `{archive}` is damaged: {message}; it was discarded")]
    Damaged {
        /// The object's path, relative to the remote's root.
        archive: String,
        /// What differs.
        message: String,
    },

    /// A manifest that cannot be used.
    #[error("The remote cache's manifest `{path}` is unusable: {message}")]
    BadManifest {
        /// The manifest's path.
        path: String,
        /// Why.
        message: String,
    },

    /// An entry without a valid signature by a trusted key (issue 26).
    #[error("The remote cache's entry `{path}` is not trusted: {reason}")]
    #[diagnostic(help(
        "Push it from CI with `--remote-cache-sign-key` and a key this agent trusts ({trusted}), or remove it from the remote cache"
    ))]
    Untrusted {
        /// The manifest's path.
        path: String,
        /// Why.
        reason: SignatureError,
        /// The trusted keys' names, for the hint.
        trusted: String,
    },

    /// `cache verify --remote KEY` for a key the remote does not have.
    #[error("The remote cache `{url}` has no entry `{path}`")]
    #[diagnostic(help("`pyfunc-env cache list --remote` lists its entries"))]
    NoEntry {
        /// The remote.
        url: String,
        /// The manifest's path.
        path: String,
    },

    /// A signing or trusted key.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Key(#[from] KeyError),

    /// A command that needs a remote cache, and none is configured.
    #[error(
        "No remote cache{}: pass `--remote-cache URL`, or set `PYFUNC_ENV_REMOTE_CACHE` or `remote-cache` in the configuration file",
        if *offline { " (`--offline` leaves out a remote cache reached over the network)" } else { "" }
    )]
    NotConfigured {
        /// Whether `--offline` left it out.
        offline: bool,
    },

    /// The remote cache is read-only and the command writes to it.
    #[error("The remote cache `{url}` is read-only here (`--remote-cache-read-only`)")]
    ReadOnly {
        /// The remote.
        url: String,
    },

    /// A local file.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The local cache.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),

    /// Packing or unpacking.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Pack(#[from] env_pack::PackError),

    /// The local file store.
    #[error(transparent)]
    #[diagnostic(transparent)]
    LocalStore(#[from] env_store::StoreError),

    /// This machine's platform.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Solve(#[from] env_build::SolveError),

    /// The S3 settings (`AWS_PROFILE` naming a profile that exists nowhere, ...).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Settings(#[from] env_source::SourceError),
}

impl RemoteError {
    /// Whether the input is at fault (a bad URL, a read-only remote, credentials the store
    /// refuses) rather than the store. An HTTP answer is classified by the rule model sources
    /// use ([`env_source::http`]): 401/403 and other 4xx are the user's (exit 1); 408, 429 and
    /// 5xx are transient (exit 2).
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::InvalidUrl { .. } | Self::ReadOnly { .. } | Self::NotConfigured { .. } => true,
            // Not transient: retrying finds the same entry; the operator re-signs or removes it.
            Self::Untrusted { .. } | Self::NoEntry { .. } => true,
            Self::Key(error) => !matches!(error, KeyError::Write { .. } | KeyError::Random { .. }),
            Self::Credentials { .. } => true,
            Self::Store { status, .. } => env_source::http::is_user_error(*status),
            Self::Settings(error) => error.is_user_error(),
            Self::Solve(error) => error.is_user_error(),
            _ => false,
        }
    }
}

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RemoteError + '_ {
    move |source| RemoteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl RemoteUrl {
    /// Parses `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix` or
    /// `file:///dir`.
    pub fn parse(text: &str) -> Result<Self, RemoteError> {
        let invalid = |message: &str| RemoteError::InvalidUrl {
            url: env_spec::redact::redact_url(text),
            message: message.to_string(),
        };
        let url = url::Url::parse(text.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the URL; use the store's own settings (`AWS_ACCESS_KEY_ID`, ...)",
            ));
        }
        let scheme = match url.scheme() {
            "s3" | "s3a" => Scheme::S3,
            "gs" => Scheme::Gs,
            "az" | "azure" => Scheme::Az,
            "file" => Scheme::File,
            other => {
                return Err(invalid(&format!(
                    "the scheme `{other}` is not supported (`s3`, `gs`, `az` and `file` are)"
                )));
            }
        };
        if scheme == Scheme::File {
            let dir = url
                .to_file_path()
                .map_err(|()| invalid("not an absolute local path (`file:///shared/dir`)"))?;
            return Ok(Self {
                scheme,
                bucket: String::new(),
                prefix: String::new(),
                dir: Some(dir),
                text: url.to_string().trim_end_matches('/').to_string(),
            });
        }
        let bucket = url.host_str().unwrap_or_default().to_string();
        if bucket.is_empty() {
            return Err(invalid("no bucket"));
        }
        let prefix = url.path().trim_matches('/').to_string();
        if prefix.split('/').any(|part| part == "." || part == "..") {
            return Err(invalid("`.` and `..` are not allowed in the prefix"));
        }
        let text = if prefix.is_empty() {
            format!("{}://{bucket}", url.scheme())
        } else {
            format!("{}://{bucket}/{prefix}", url.scheme())
        };
        Ok(Self {
            scheme,
            bucket,
            prefix,
            dir: None,
            text,
        })
    }

    /// The settings that hold this store's credentials, for messages.
    #[must_use]
    pub fn credential_settings(&self) -> &'static str {
        match self.scheme {
            Scheme::S3 => {
                "Check `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`, `AWS_PROFILE`): they must allow reading the bucket, and writing it unless `--remote-cache-read-only` is set"
            }
            Scheme::Gs => {
                "Check `GOOGLE_APPLICATION_CREDENTIALS` (or `GOOGLE_SERVICE_ACCOUNT`): it must allow reading the bucket, and writing it unless `--remote-cache-read-only` is set (without credentials, requests are anonymous, as MLflow's)"
            }
            Scheme::Az => {
                "Check `AZURE_STORAGE_ACCOUNT_NAME` and `AZURE_STORAGE_ACCOUNT_KEY` (or `AZURE_STORAGE_SAS_KEY`): they must allow reading the container, and writing it unless `--remote-cache-read-only` is set"
            }
            Scheme::File => "Check the directory's permissions",
        }
    }

    /// Whether reaching it needs the network (`--offline` skips such a remote).
    #[must_use]
    pub fn is_network(&self) -> bool {
        self.scheme != Scheme::File
    }
}

impl std::fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for RemoteUrl {
    type Err = RemoteError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

/// What a manifest records: written last, after the packs it names.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// [`LAYOUT`].
    pub layout: u32,
    /// The environment key.
    pub key: String,
    /// The conda platform (`linux-64`).
    pub platform: String,
    /// The pyfunc-env version that pushed it.
    pub tool_version: String,
    /// When it was pushed (seconds since the Unix epoch).
    pub created: u64,
    /// Whether the environment was built with bytecode.
    pub compile_bytecode: bool,
    /// The environment: its entries and which files name its prefix.
    pub tree: env_store::Manifest,
    /// Where each file's content is, by sha256.
    pub blobs: std::collections::BTreeMap<String, BlobAt>,
    /// The packs it uses, with their sizes.
    pub packs: std::collections::BTreeMap<String, u64>,
    /// The environment's metadata where it was built.
    pub metadata: env_cache::Metadata,
    /// What it was built from and by what (signed with the rest).
    #[serde(default)]
    pub provenance: Provenance,
}

/// What an environment was built from and by what: recorded by the pusher, covered by the
/// signature (documented in `docs/concepts/env-key.md`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The pyfunc-env version that built it.
    pub builder_version: String,
    /// The builder's conda platform (`linux-64`).
    pub builder_platform: String,
    /// The builder's operating system and architecture (`linux x86_64`).
    pub builder_os: String,
    /// The model spec it was built from (`env_spec::EnvSpec` as JSON: the requirements,
    /// channels, Python version and lock the model declared).
    pub spec: serde_json::Value,
    /// Every package installed: conda packages with their archive's sha256, Python
    /// distributions with the sha256 of their `RECORD` (which lists every file's hash).
    pub packages: Vec<ProvenancePackage>,
}

/// One installed package of [`Provenance`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvenancePackage {
    /// `conda` or `python`.
    pub kind: String,
    /// The name.
    pub name: String,
    /// The version.
    pub version: String,
    /// The conda archive's sha256, or the sha256 of the distribution's `RECORD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where it came from: the conda archive's URL, or the distribution's `*.dist-info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Provenance {
    /// The provenance of an environment built here, from its metadata and file tree.
    #[must_use]
    pub fn of(metadata: &env_cache::Metadata, tree: &env_store::Manifest, platform: &str) -> Self {
        let text =
            |value: &serde_json::Value, field: &str| value[field].as_str().map(ToString::to_string);
        let mut packages: Vec<ProvenancePackage> = metadata
            .conda_packages
            .iter()
            .map(|record| ProvenancePackage {
                kind: "conda".to_string(),
                name: text(record, "name").unwrap_or_default(),
                version: text(record, "version").unwrap_or_default(),
                sha256: text(record, "sha256"),
                source: text(record, "url"),
            })
            .collect();
        for entry in &tree.entries {
            let Some(dist_info) = entry.path.strip_suffix("/RECORD") else {
                continue;
            };
            let Some(dir) = dist_info
                .rsplit('/')
                .next()
                .and_then(|d| d.strip_suffix(".dist-info"))
            else {
                continue;
            };
            let (name, version) = dir.split_once('-').unwrap_or((dir, ""));
            packages.push(ProvenancePackage {
                kind: "python".to_string(),
                name: name.to_string(),
                version: version.to_string(),
                sha256: entry.sha256.clone(),
                source: Some(dist_info.to_string()),
            });
        }
        Self {
            builder_version: env!("CARGO_PKG_VERSION").to_string(),
            builder_platform: platform.to_string(),
            builder_os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            spec: metadata.spec.clone(),
            packages,
        }
    }
}

/// Where a blob is: a zstd frame at `offset` in a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobAt {
    /// The pack's index in the manifest's `packs` (sorted by name).
    pub pack: usize,
    /// Byte offset of the frame.
    pub offset: u64,
    /// Compressed length.
    pub length: u64,
}

impl Manifest {
    /// The packs' names, in the order [`BlobAt::pack`] counts them.
    #[must_use]
    pub fn pack_names(&self) -> Vec<&String> {
        self.packs.keys().collect()
    }

    /// Bytes the remote stores for this environment (its packs).
    #[must_use]
    pub fn stored_bytes(&self) -> u64 {
        self.packs.values().sum()
    }
}

/// A remote cache and how to use it.
#[derive(Debug)]
pub struct Remote {
    url: RemoteUrl,
    read_only: bool,
    timeout: Duration,
    /// Packs found damaged by this process: a push uploads them again and replaces a manifest
    /// that names them.
    damaged: Mutex<HashSet<String>>,
    /// A pull found the remote unreachable or refusing the credentials: later pulls and pushes
    /// of this process would only fail the same way (and warn again), so they are skipped.
    unavailable: std::sync::atomic::AtomicBool,
    /// The key pushes sign with.
    signer: Option<SecretKey>,
    /// The keys pulls trust.
    trust: Trust,
}

impl Remote {
    /// A remote cache at `url`; nothing is contacted yet.
    #[must_use]
    pub fn new(url: RemoteUrl, read_only: bool) -> Self {
        for name in [
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AZURE_STORAGE_ACCOUNT_KEY",
            "AZURE_STORAGE_SAS_KEY",
            "AZURE_STORAGE_ACCESS_KEY",
        ] {
            if let Ok(secret) = std::env::var(name)
                && !secret.trim().is_empty()
            {
                env_spec::redact::register_secret(&secret);
            }
        }
        Self {
            url,
            read_only,
            timeout: DEFAULT_TIMEOUT,
            damaged: Mutex::new(HashSet::new()),
            unavailable: std::sync::atomic::AtomicBool::new(false),
            signer: None,
            trust: Trust::default(),
        }
    }

    /// The same remote, signing what it pushes with `key`.
    #[must_use]
    pub fn with_signing_key(mut self, key: Option<SecretKey>) -> Self {
        self.signer = key;
        self
    }

    /// The same remote, using only entries signed by `trust`'s keys (when it has any).
    #[must_use]
    pub fn with_trust(mut self, trust: Trust) -> Self {
        self.trust = trust;
        self
    }

    /// The keys pulls trust.
    #[must_use]
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The same remote, with `timeout` for each request and each stalled read.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The URL.
    #[must_use]
    pub fn url(&self) -> &RemoteUrl {
        &self.url
    }

    /// Whether pushes are off.
    #[must_use]
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// How long a request, or a read that makes no progress, may take.
    #[must_use]
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The manifest's path for a key on a platform, relative to the remote's root.
    #[must_use]
    pub fn manifest_path(platform: &str, key: &str) -> String {
        format!("{LAYOUT_DIR}/{platform}/{key}/{MANIFEST}")
    }

    fn mark_damaged(&self, pack: &str) {
        self.damaged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pack.to_string());
    }

    fn is_damaged(&self, pack: &str) -> bool {
        self.damaged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(pack)
    }
}

/// This machine's conda platform (`linux-64`), part of every manifest path.
pub fn current_platform() -> Result<String, RemoteError> {
    Ok(env_build::context::current_platform()?.to_string())
}

impl env_build::remote::RemoteCache for Remote {
    fn url(&self) -> String {
        self.url.to_string()
    }

    fn pull<'a>(
        &'a self,
        cache: &'a env_cache::Cache,
        env: &'a env_cache::EnvEntry,
        what: env_build::remote::RemoteEnv<'a>,
        reporter: &'a std::sync::Arc<dyn env_build::Reporter>,
    ) -> env_build::remote::RemoteFuture<'a, env_build::remote::Pulled> {
        use env_build::remote::Pulled;
        Box::pin(async move {
            // Already found down in this process (`create --from` builds many): one warning.
            if self.unavailable.load(std::sync::atomic::Ordering::Relaxed) {
                return Pulled::Miss;
            }
            match self
                .pull(
                    cache,
                    env,
                    what.model_root,
                    what.uv_cache,
                    reporter.as_ref(),
                )
                .await
            {
                Ok(Some(seconds)) => Pulled::Hit { seconds },
                Ok(None) => Pulled::Miss,
                Err(error @ RemoteError::Untrusted { .. }) if self.trust.require_signed => {
                    use miette::Diagnostic as _;
                    Pulled::Refused {
                        message: env_spec::redact::redact(&error.to_string()),
                        help: error.help().map(|h| h.to_string()).unwrap_or_default(),
                    }
                }
                Err(error) => {
                    if matches!(
                        error,
                        RemoteError::Unreachable { .. } | RemoteError::Credentials { .. }
                    ) {
                        self.unavailable
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                    Pulled::Failed {
                        warning: one_screen_with(&error, "; building locally"),
                    }
                }
            }
        })
    }

    fn holds<'a>(&'a self, key: &'a str) -> env_build::remote::RemoteFuture<'a, bool> {
        Box::pin(async move {
            self.has_entry(key).await.unwrap_or_else(|error| {
                tracing::debug!("Remote cache not asked: {error}");
                false
            })
        })
    }

    fn accepts_pushes(&self) -> bool {
        !self.read_only && !self.unavailable.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn push<'a>(
        &'a self,
        cache: &'a env_cache::Cache,
        env: &'a env_cache::EnvEntry,
        what: env_build::remote::RemoteEnv<'a>,
        reporter: &'a std::sync::Arc<dyn env_build::Reporter>,
    ) -> env_build::remote::RemoteFuture<'a, env_build::remote::Pushed> {
        use env_build::remote::Pushed;
        Box::pin(async move {
            if self.read_only || self.unavailable.load(std::sync::atomic::Ordering::Relaxed) {
                return Pushed::default();
            }
            match self
                .push(cache, env, what.compile_bytecode, reporter.as_ref())
                .await
            {
                Ok(PushResult::Pushed { .. }) => Pushed {
                    pushed: true,
                    warning: None,
                },
                Ok(PushResult::AlreadyThere | PushResult::KeptOther | PushResult::NotBuilt) => {
                    Pushed::default()
                }
                Ok(PushResult::NotShareable { reason }) => Pushed {
                    pushed: false,
                    warning: Some(reason),
                },
                Err(error) => Pushed {
                    pushed: false,
                    warning: Some(format!(
                        "Not pushed to the remote cache: {}",
                        one_screen(&error)
                    )),
                },
            }
        })
    }
}

/// An error with its help, on a few lines, secrets masked: for warnings.
#[must_use]
pub fn one_screen(error: &RemoteError) -> String {
    one_screen_with(error, "")
}

/// [`one_screen`] with `suffix` after the first line.
fn one_screen_with(error: &RemoteError, suffix: &str) -> String {
    use miette::Diagnostic as _;
    use std::fmt::Write as _;
    let mut text = format!("{error}{suffix}");
    if let Some(help) = error.help() {
        let _ = write!(text, "\n  help: {help}");
    }
    env_spec::redact::redact(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Refused credentials exit 1 as they do for model sources, transient answers 2 (issue
    /// 23: the remote cache gave 401/403 exit 2).
    #[test]
    fn http_answers_exit_like_model_sources() {
        let credentials = RemoteError::Credentials {
            url: "s3://b".into(),
            what: "listing".into(),
            message: "403 Forbidden".into(),
            help: String::new(),
            status: Some(403),
        };
        assert!(credentials.is_user_error());
        let store = |status| RemoteError::Store {
            url: "s3://b".into(),
            what: "listing".into(),
            message: String::new(),
            status,
        };
        for (status, user) in [
            (Some(404), true),
            (Some(408), false),
            (Some(429), false),
            (Some(503), false),
            (None, false),
        ] {
            assert_eq!(store(status).is_user_error(), user, "{status:?}");
            assert_eq!(
                env_source::http::is_user_error(status),
                user,
                "the model sources' rule, {status:?}"
            );
        }
    }

    #[test]
    fn urls() {
        let url = RemoteUrl::parse("s3://bucket/some/prefix/").unwrap();
        assert_eq!(
            (url.scheme, url.bucket.as_str(), url.prefix.as_str()),
            (Scheme::S3, "bucket", "some/prefix")
        );
        assert_eq!(url.to_string(), "s3://bucket/some/prefix");
        let url = RemoteUrl::parse("file:///shared/envs").unwrap();
        assert_eq!(
            url.dir.as_deref(),
            Some(std::path::Path::new("/shared/envs"))
        );
        assert!(!url.is_network());
        assert_eq!(RemoteUrl::parse("gs://b").unwrap().scheme, Scheme::Gs);
        assert_eq!(RemoteUrl::parse("az://c/p").unwrap().scheme, Scheme::Az);
        for bad in [
            "http://host/x",
            "s3://",
            "s3://key:secret@bucket/p",
            "file://relative",
            "bucket/prefix",
        ] {
            assert!(RemoteUrl::parse(bad).is_err(), "{bad}");
        }
        // `..` never survives: the URL is normalized first.
        assert_eq!(RemoteUrl::parse("s3://b/a/../x").unwrap().prefix, "x");
        let error = RemoteUrl::parse("s3://key:secret@bucket/p").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn manifest_paths_carry_layout_platform_and_key() {
        assert_eq!(
            Remote::manifest_path("linux-64", "abc"),
            "v2/linux-64/abc/manifest.json"
        );
    }
}
