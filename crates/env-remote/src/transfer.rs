//! Pull, push, list and prune (layout `v2`: manifests over shared packs).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use env_cache::{Cache, EnvEntry, EnvState};
use env_store::PullReport;
use futures_util::StreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutPayload};
use serde::Serialize;

use crate::packs::{self, Planned};
use crate::sign::{Signature, SignatureError};
use crate::{
    BlobAt, LAYOUT, LAYOUT_DIR, MANIFEST, MAX_FILE, MAX_MANIFEST, MAX_TOTAL, Manifest, Provenance,
    Remote, RemoteError, io,
};

/// A boxed future, so futures of one kind built in a loop can share a stream.
type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// A pack pushed: its name, size, blobs (`sha256`, offset, length), the bytes sent, and the
/// content bytes it holds.
type PackPushed = (String, u64, Vec<(String, u64, u64)>, u64, u64);

/// A pack of the environment: its name, size and blobs (`sha256`, offset, length).
type Located = (String, u64, Vec<(String, u64, u64)>);

/// Ranges of one pack closer than this are fetched in one request.
const GAP: u64 = 1 << 20;
/// Requests in flight at once, each at most a pack.
const PARALLEL: usize = 4;

/// What [`Remote::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushResult {
    /// Uploaded: the packs the remote lacked, then the manifest.
    Pushed {
        /// Bytes uploaded (packs the remote lacked).
        uploaded: u64,
        /// Bytes the remote stores for this environment (its packs, shared or not).
        stored: u64,
    },
    /// The remote already has this key, intact: nothing uploaded.
    AlreadyThere,
    /// Another agent's manifest was written first and is intact: it was kept.
    KeptOther,
    /// The environment cannot be shared (a virtualenv of this machine's interpreter).
    NotShareable {
        /// One line: why, and how to make it shareable.
        reason: String,
    },
    /// The local cache does not have the environment complete ([`Remote::push_model`]).
    NotBuilt,
}

/// One environment in the remote.
#[derive(Debug, Clone, Serialize)]
pub struct RemoteEntry {
    /// The key.
    pub key: String,
    /// The platform.
    pub platform: String,
    /// Bytes of the packs it uses (shared with other environments or not).
    pub size: u64,
    /// Bytes of its files, unpacked.
    pub unpacked_bytes: u64,
    /// Its packs.
    pub packs: usize,
    /// When it was pushed.
    pub created: u64,
    /// The model it was built for, where it was built.
    pub model: String,
    /// `conda` or `virtualenv`.
    pub env_manager: String,
    /// The pyfunc-env version that pushed it.
    pub tool_version: String,
    /// The names of the keys its signatures claim (empty: unsigned).
    pub signed_by: Vec<String>,
    /// The trusted key whose signature verifies (`None` when this agent trusts no key, or
    /// none verifies).
    pub verified_by: Option<String>,
    /// With trusted keys, why the entry is not trusted (`it is not signed`, ...).
    pub untrusted: Option<String>,
}

/// What [`Remote::list`] found.
#[derive(Debug, Clone)]
pub struct RemoteListing {
    /// The environments, newest first.
    pub entries: Vec<RemoteEntry>,
    /// Bytes all packs take: less than [`RemoteListing::unshared`] by what the entries share.
    pub stored: u64,
}

/// What [`Remote::check_entry`] found: the entry's signature and every blob's hash, checked
/// without installing anything.
#[derive(Debug, Clone, Serialize)]
pub struct EntryCheck {
    /// The manifest's path in the remote.
    pub path: String,
    /// The key.
    pub key: String,
    /// The platform.
    pub platform: String,
    /// The names of the keys its signatures claim (empty: unsigned).
    pub signed_by: Vec<String>,
    /// The trusted key whose signature verifies (`None`: no trusted key configured).
    pub verified_by: Option<String>,
    /// When it was pushed, and by which version.
    pub created: u64,
    /// The pyfunc-env version that pushed it.
    pub tool_version: String,
    /// Distinct blobs checked (each downloaded, decompressed and hashed).
    pub blobs: u64,
    /// Their bytes, unpacked.
    pub bytes: u64,
    /// Bytes downloaded.
    pub downloaded_bytes: u64,
    /// What the entry was built from.
    pub provenance: Provenance,
}

/// A remote manifest as read: parsed, with the exact bytes its signatures cover.
pub(crate) struct Fetched {
    pub manifest: Manifest,
    /// The bytes of the manifest the signatures cover.
    pub signed: Vec<u8>,
    pub signatures: Vec<Signature>,
}

/// The object a manifest is stored as: the manifest's exact bytes and their signatures. A
/// manifest written before signing existed (a bare manifest, no `manifest` field) reads as
/// unsigned.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    manifest: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    signatures: Vec<Signature>,
}

/// The object for `manifest`, signed with `signer`.
pub(crate) fn envelope(manifest: &Manifest, signer: Option<&crate::SecretKey>) -> Vec<u8> {
    // A manifest always serialises (plain data, string keys).
    let bytes = serde_json::to_vec(manifest).unwrap_or_default();
    let signatures: Vec<Signature> = signer.map(|key| key.sign(&bytes)).into_iter().collect();
    let mut out = b"{\"signatures\":".to_vec();
    out.extend(serde_json::to_vec(&signatures).unwrap_or_default());
    out.extend_from_slice(b",\"manifest\":");
    out.extend(bytes);
    out.push(b'}');
    out
}

/// Parses a manifest object (see [`Envelope`]).
pub(crate) fn parse_envelope(bytes: &[u8]) -> Result<Fetched, String> {
    let envelope: Envelope<'_> = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let signed = match envelope.manifest {
        Some(raw) => raw.get().as_bytes(),
        None => bytes,
    };
    let manifest = serde_json::from_slice(signed).map_err(|e| e.to_string())?;
    Ok(Fetched {
        manifest,
        signed: signed.to_vec(),
        signatures: envelope.signatures,
    })
}

/// What [`Remote::prune`] removed (or would).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Keys whose manifest was removed.
    pub removed: Vec<String>,
    /// Packs removed (no kept manifest uses them, older than the cut-off).
    pub packs_removed: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Entries kept.
    pub kept: usize,
}

fn secs(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

fn pack_path(name: &str) -> String {
    format!("{LAYOUT_DIR}/packs/{name}.pack")
}

impl Remote {
    /// Reads a manifest, at most [`MAX_MANIFEST`] bytes of it.
    pub(crate) async fn read_manifest(
        &self,
        store: &Arc<dyn ObjectStore>,
        relative: &str,
    ) -> Result<Option<Fetched>, RemoteError> {
        let path = self.object(relative);
        let what = format!("reading `{relative}`");
        let bad = |message: String| RemoteError::BadManifest {
            path: relative.to_string(),
            message,
        };
        let get = match tokio::time::timeout(self.timeout, store.get(&path)).await {
            Err(_) => return Err(self.timed_out(&what)),
            Ok(Err(object_store::Error::NotFound { .. })) => return Ok(None),
            Ok(Err(error)) => return Err(self.error(&what, &error)),
            Ok(Ok(get)) => get,
        };
        if get.meta.size > MAX_MANIFEST {
            return Err(bad(format!(
                "it is {} bytes, more than the {MAX_MANIFEST} bytes a manifest may have",
                get.meta.size
            )));
        }
        let mut stream = get.into_stream();
        let mut bytes = Vec::new();
        loop {
            match tokio::time::timeout(self.timeout, stream.next()).await {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(self.error(&what, &error)),
                Ok(Some(Ok(chunk))) => {
                    if (bytes.len() + chunk.len()) as u64 > MAX_MANIFEST {
                        return Err(bad(format!(
                            "it is more than the {MAX_MANIFEST} bytes a manifest may have"
                        )));
                    }
                    bytes.extend_from_slice(&chunk);
                }
            }
        }
        parse_envelope(&bytes).map(Some).map_err(bad)
    }

    /// The trusted key that signed `fetched`, or why none did ([`RemoteError::Untrusted`]).
    fn check_signature(&self, fetched: &Fetched, relative: &str) -> Result<String, RemoteError> {
        self.trust
            .verify(&fetched.signed, &fetched.signatures)
            .map_err(|reason| self.untrusted(relative, reason))
    }

    fn untrusted(&self, relative: &str, reason: SignatureError) -> RemoteError {
        RemoteError::Untrusted {
            path: relative.to_string(),
            reason,
            trusted: self
                .trust
                .keys
                .iter()
                .map(|k| format!("`{}`", k.name))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Whether a push may keep the entry `fetched` rather than replace it: always without a
    /// signing key; with one, only if it is signed by that key or a trusted one (so a signing
    /// CI replaces unsigned entries, and entries an attacker wrote).
    fn keeps(&self, fetched: &Fetched) -> bool {
        let Some(signer) = &self.signer else {
            return true;
        };
        let mut keys = self.trust.keys.clone();
        keys.push(signer.public());
        crate::sign::verify(&keys, &fetched.signed, &fetched.signatures).is_ok()
    }

    /// Whether every pack `manifest` names is in the store with its recorded size, and none is
    /// known damaged.
    async fn packs_intact(&self, store: &Arc<dyn ObjectStore>, manifest: &Manifest) -> bool {
        let mut checks: Vec<BoxFuture<'_, bool>> = Vec::new();
        for (name, size) in &manifest.packs {
            checks.push(Box::pin(self.pack_there(store, name, *size)));
        }
        let mut results = futures_util::stream::iter(checks).buffer_unordered(8);
        while let Some(ok) = results.next().await {
            if !ok {
                return false;
            }
        }
        true
    }

    /// Whether the pack `name` is in the store with `size` bytes and not known damaged.
    async fn pack_there(&self, store: &Arc<dyn ObjectStore>, name: &str, size: u64) -> bool {
        if self.is_damaged(name) {
            return false;
        }
        let path = self.object(&pack_path(name));
        matches!(
            tokio::time::timeout(self.timeout, store.head(&path)).await,
            Ok(Ok(meta)) if meta.size == size
        )
    }

    /// Whether [`Self::pull`] would install `key`: its manifest is there for this platform (and
    /// signed by a trusted key, when signatures are checked) and every pack it names is there;
    /// nothing but the manifest is downloaded (`create --dry-run`).
    pub(crate) async fn has_entry(&self, key: &str) -> Result<bool, RemoteError> {
        let platform = crate::current_platform()?;
        let relative = Self::manifest_path(&platform, key);
        let store = self.store()?;
        let Some(fetched) = self.read_manifest(&store, &relative).await? else {
            return Ok(false);
        };
        if self.trust.is_enabled() {
            self.check_signature(&fetched, &relative)?;
        }
        check_manifest(&fetched.manifest, &relative, key, &platform)?;
        Ok(self.packs_intact(&store, &fetched.manifest).await)
    }

    /// Looks `env`'s key up and, on a hit, installs it (the caller holds the environment's
    /// exclusive lock). `Ok(None)` on a miss; the seconds spent on a hit.
    pub async fn pull(
        &self,
        cache: &Cache,
        env: &EnvEntry,
        model_root: &Path,
        uv_cache: Option<&Path>,
        reporter: &dyn env_build::Reporter,
    ) -> Result<Option<f64>, RemoteError> {
        let start = Instant::now();
        let platform = crate::current_platform()?;
        let key = env.key().to_string();
        let relative = Self::manifest_path(&platform, &key);
        let store = self.store()?;
        let tmp = cache.bucket(env_cache::TMP_DIR)?;
        let Some(fetched) = self.read_manifest(&store, &relative).await? else {
            tracing::debug!("Remote cache miss: {}/{relative}", self.url);
            return Ok(None);
        };
        // The signature first: nothing of an entry no trusted key signed is looked at further.
        let signer = if self.trust.is_enabled() {
            Some(self.check_signature(&fetched, &relative)?)
        } else {
            None
        };
        let manifest = fetched.manifest;
        // The signed key and platform must be the ones asked for: a signed manifest copied to
        // another key's path is refused here.
        check_manifest(&manifest, &relative, &key, &platform)?;
        // Whatever a killed pull of this key left (we hold its exclusive lock).
        remove_stale_staging(&tmp, &key);
        let local = env_store::Store::open(cache)?;
        let mut report = PullReport::default();
        let names = manifest.pack_names();
        let held: HashSet<&str> = manifest
            .tree
            .blobs()
            .into_iter()
            .filter_map(|e| e.sha256.as_deref())
            .filter(|sha| local.has(sha))
            .collect();
        // What the agent's uv cache holds of the rest enters the store first, checked by
        // hash: a warm agent downloads only what no local cache has.
        if let Some(uv_cache) = uv_cache.filter(|dir| dir.is_dir()) {
            reporter.on_phase("Taking files from the local uv cache");
            let (local, tree, uv_cache) =
                (local.clone(), manifest.tree.clone(), uv_cache.to_path_buf());
            let seeded = blocking(move || Ok(local.seed_from_uv(&tree, &uv_cache))).await?;
            report.seeded_files = seeded.files;
            report.seeded_bytes = seeded.bytes;
            report.seed_rejected = seeded.rejected;
        }
        // Then the bytecode store's `.pyc` of the sources the manifest lists, by their key.
        let pyc_store = cache.root().join(env_cache::PYC_BUCKET);
        if pyc_store.is_dir() {
            let (local, tree) = (local.clone(), manifest.tree.clone());
            let seeded = blocking(move || {
                let seeded = local.seed(&pyc_candidates(&tree, &pyc_store));
                tracing::debug!(
                    "Seeded the store from the bytecode store: {} files, {} bytes ({} rejected)",
                    seeded.files,
                    seeded.bytes,
                    seeded.rejected
                );
                Ok(seeded)
            })
            .await?;
            report.seeded_pyc_files = seeded.files;
            report.seeded_pyc_bytes = seeded.bytes;
            report.seed_rejected += seeded.rejected;
        }
        // The blobs the store lacks, each with the first entry that has it, by pack.
        let mut wanted: BTreeMap<usize, Vec<(BlobAt, &env_store::Entry)>> = BTreeMap::new();
        for entry in manifest.tree.blobs() {
            let sha = entry.sha256.as_deref().unwrap_or_default();
            report.blobs += 1;
            if held.contains(sha) {
                report.reused_bytes += entry.size;
                continue;
            }
            if local.has(sha) {
                continue;
            }
            let at = manifest.blobs[sha];
            wanted.entry(at.pack).or_default().push((at, entry));
        }
        report.env_bytes = manifest.tree.bytes;
        // Missing or truncated packs first: one HEAD each, before any download.
        for &pack in wanted.keys() {
            let name = names[pack];
            let path = self.object(&pack_path(name));
            let what = format!("checking `{}`", pack_path(name));
            let found = match tokio::time::timeout(self.timeout, store.head(&path)).await {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(Err(object_store::Error::NotFound { .. })) => None,
                Ok(Err(error)) => return Err(self.error(&what, &error)),
                Ok(Ok(meta)) => Some(meta.size),
            };
            let expected = manifest.packs[name];
            if found != Some(expected) {
                self.mark_damaged(name);
                return Err(RemoteError::Damaged {
                    archive: pack_path(name),
                    message: match found {
                        None => "it is missing".to_string(),
                        Some(size) => format!(
                            "{size} bytes where the manifest says {expected} (truncated or replaced)"
                        ),
                    },
                });
            }
        }
        reporter.on_phase("Downloading from the remote cache");
        let id = reporter.on_download_start("environment files");
        let mut requests = Vec::new();
        for (pack, mut blobs) in wanted {
            blobs.sort_by_key(|(at, _)| at.offset);
            let mut current: Vec<(BlobAt, env_store::Entry)> = Vec::new();
            for (at, entry) in blobs {
                if let Some((last, _)) = current.last()
                    && at.offset > last.offset + last.length + GAP
                {
                    requests.push((pack, std::mem::take(&mut current)));
                }
                current.push((at, entry.clone()));
            }
            if !current.is_empty() {
                requests.push((pack, current));
            }
        }
        report.requests = requests.len() as u64;
        let total: u64 = requests
            .iter()
            .map(|(_, blobs)| {
                let first = blobs[0].0.offset;
                let last = blobs[blobs.len() - 1].0;
                last.offset + last.length - first
            })
            .sum();
        let mut fetches: Vec<BoxFuture<'_, Result<(u64, u64), RemoteError>>> = Vec::new();
        for (pack, blobs) in requests {
            fetches.push(Box::pin(self.fetch(&store, &local, names[pack], blobs)));
        }
        let mut results = futures_util::stream::iter(fetches).buffer_unordered(PARALLEL);
        while let Some(result) = results.next().await {
            let (bytes, blobs) = result?;
            report.downloaded_bytes += bytes;
            report.blobs_downloaded += blobs;
            reporter.on_download_progress(id, report.downloaded_bytes, Some(total));
        }
        drop(results);
        reporter.on_download_complete(id);

        reporter.on_phase("Linking the environment from the store");
        let mut metadata = manifest.metadata.clone();
        metadata.model = model_root.display().to_string();
        let rewritten: Vec<&str> = manifest
            .tree
            .entries
            .iter()
            .filter(|e| e.prefix == env_store::PrefixUse::Text)
            .map(|e| e.path.as_str())
            .collect();
        metadata
            .extra
            .insert("relocated_scripts".into(), serde_json::json!(rewritten));
        let (env_owned, tree) = (env.clone(), manifest.tree.clone());
        let materialised =
            blocking(move || install(&env_owned, &tmp, &local, &tree, &metadata)).await;
        let materialised = match materialised {
            Ok(done) => done,
            Err(error) => return Err(error),
        };
        report.materialised = materialised;
        // The report goes into the metadata after the fact: the environment is complete
        // already, and a lost report loses nothing.
        if let Ok(mut metadata) = env.metadata() {
            metadata.extra.insert(
                "remote".into(),
                serde_json::json!({
                    "url": self.url.to_string(),
                    "pushed": manifest.created,
                    "pulled": env_cache::unix_now(),
                    "built_by": manifest.tool_version,
                    "signed_by": signer,
                    "stored_bytes": manifest.stored_bytes(),
                    "pull": report,
                    "seconds": secs(start),
                }),
            );
            let path = env.dir().join(env_cache::META_DIR).join("metadata.json");
            if let Ok(bytes) = serde_json::to_vec_pretty(&metadata) {
                let _ = env_cache::write_atomic(&path, &bytes);
            }
        }
        tracing::debug!(
            "Pulled {key} from {}: {} of {} blobs, {} bytes in {} requests; from local caches {} bytes ({} from the store, {} in {} files from uv's cache); {:.2} s",
            self.url,
            report.blobs_downloaded,
            report.blobs,
            report.downloaded_bytes,
            report.requests,
            report.reused_bytes + report.seeded_bytes,
            report.reused_bytes,
            report.seeded_bytes,
            report.seeded_files,
            start.elapsed().as_secs_f64()
        );
        Ok(Some(secs(start)))
    }

    /// One range of a pack: downloaded (bounded), cut into blobs, each decompressed into the
    /// store and checked. Bytes downloaded and blobs stored.
    async fn fetch(
        &self,
        store: &Arc<dyn ObjectStore>,
        local: &env_store::Store,
        name: &str,
        blobs: Vec<(BlobAt, env_store::Entry)>,
    ) -> Result<(u64, u64), RemoteError> {
        let relative = pack_path(name);
        let what = format!("downloading `{relative}`");
        let start = blobs[0].0.offset;
        let last = blobs[blobs.len() - 1].0;
        let end = last.offset + last.length;
        // A range may take a while on a slow link; a stall is bounded by the timeout of the
        // requests' client, the whole range by a generous multiple.
        let range_timeout = (self.timeout * 8).max(Duration::from_secs(120));
        let bytes = match tokio::time::timeout(
            range_timeout,
            store.get_range(&self.object(&relative), start..end),
        )
        .await
        {
            Err(_) => return Err(self.timed_out(&what)),
            Ok(Err(error)) => return Err(self.error(&what, &error)),
            Ok(Ok(bytes)) => bytes,
        };
        if bytes.len() as u64 != end - start {
            self.mark_damaged(name);
            return Err(RemoteError::Damaged {
                archive: relative,
                message: format!(
                    "{} bytes came for a range of {} (truncated or replaced)",
                    bytes.len(),
                    end - start
                ),
            });
        }
        let local = local.clone();
        let count = blobs.len() as u64;
        let stored = blocking(move || {
            // A signal stops it between two blobs, with no partial store file left in `tmp/`.
            let _deferred = env_cache::child::defer_signals();
            for (at, entry) in &blobs {
                if env_cache::child::interrupted() {
                    return Err(env_store::StoreError::Interrupted {
                        path: local.path(entry.sha256.as_deref().unwrap_or_default()),
                    }
                    .into());
                }
                let from = usize::try_from(at.offset - start).unwrap_or(usize::MAX);
                let to = usize::try_from(at.offset + at.length - start).unwrap_or(usize::MAX);
                match packs::unpack_blob(&local, &bytes[from..to], entry) {
                    Ok(()) => {}
                    Err(Ok(message)) => return Ok(Err(message)),
                    Err(Err(error)) => return Err(error),
                }
            }
            Ok(Ok(()))
        })
        .await?;
        if let Err(message) = stored {
            self.mark_damaged(name);
            return Err(RemoteError::Damaged {
                archive: relative,
                message,
            });
        }
        Ok((end - start, count))
    }

    /// `cache push`'s one call: uploads the environment of `env` if the local cache has it
    /// complete ([`PushResult::NotBuilt`] if not; nothing is built).
    pub async fn push_model(
        &self,
        cache: &Cache,
        env: &env_build::ModelEnvironment,
        reporter: &dyn env_build::Reporter,
    ) -> Result<PushResult, RemoteError> {
        let entry = cache.env(env.key.as_str())?;
        if !env.is_cached(cache)? {
            return Ok(PushResult::NotBuilt);
        }
        self.push(cache, &entry, env.options.compile_bytecode, reporter)
            .await
    }

    /// Uploads the complete environment `env`: the packs the remote lacks, then the manifest.
    pub async fn push(
        &self,
        cache: &Cache,
        env: &EnvEntry,
        compile_bytecode: bool,
        reporter: &dyn env_build::Reporter,
    ) -> Result<PushResult, RemoteError> {
        if self.read_only {
            return Err(RemoteError::ReadOnly {
                url: self.url.to_string(),
            });
        }
        // Shared: no prune or rebuild while we read it.
        let _lock = {
            let env = env.clone();
            blocking(move || Ok(env.lock_shared(|_, _| {})?)).await?
        };
        if !matches!(env.state(), EnvState::Complete(_)) {
            return Err(RemoteError::Io {
                path: env.dir().to_path_buf(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the environment is not complete in the local cache",
                ),
            });
        }
        let prefix = env.dir().to_path_buf();
        let shareable = {
            let prefix = prefix.clone();
            blocking(move || Ok(env_pack::inspect(&prefix))).await?
        };
        match shareable {
            Ok(_) => {}
            Err(env_pack::PackError::SystemVirtualenv { home, .. }) => {
                return Ok(not_shareable(&home));
            }
            Err(env_pack::PackError::PythonOutside { target, .. }) => {
                return Ok(not_shareable(&target.display()));
            }
            Err(error) => return Err(error.into()),
        }
        let metadata = env.metadata()?;
        let platform = crate::current_platform()?;
        let key = env.key().to_string();
        let relative = Self::manifest_path(&platform, &key);
        let store = self.store()?;
        if let Some(existing) = self.read_manifest(&store, &relative).await.unwrap_or(None)
            && self.keeps(&existing)
            && self.packs_intact(&store, &existing.manifest).await
        {
            tracing::debug!("{key} is in the remote cache already");
            return Ok(PushResult::AlreadyThere);
        }
        reporter.on_phase("Hashing the environment's files");
        let tree = {
            let (prefix, local) = (prefix.clone(), env_store::Store::open(cache)?);
            blocking(move || {
                let tree = env_store::Manifest::load_or_scan(&prefix)?;
                // The agent that built it holds its files for its siblings' pulls.
                if let Err(error) = local.ingest(&tree, &prefix) {
                    tracing::debug!("Not adding the environment to the local store: {error}");
                }
                Ok(tree)
            })
            .await?
        };
        let plans = packs::plan(&tree);
        reporter.on_phase("Uploading to the remote cache");
        let id = reporter.on_download_start("upload: environment packs");
        let content: u64 = plans.iter().flatten().map(|p| p.size).sum();
        let mut uploads: Vec<BoxFuture<'_, Result<PackPushed, RemoteError>>> = Vec::new();
        for planned in plans {
            uploads.push(Box::pin(self.push_pack(&store, &prefix, planned)));
        }
        let mut results = futures_util::stream::iter(uploads).buffer_unordered(2);
        let mut located: Vec<Located> = Vec::new();
        let (mut uploaded, mut done) = (0u64, 0u64);
        while let Some(result) = results.next().await {
            let (name, size, blobs, sent, content_bytes) = result?;
            uploaded += sent;
            done += content_bytes;
            reporter.on_download_progress(id, done, Some(content));
            located.push((name, size, blobs));
        }
        drop(results);
        reporter.on_download_complete(id);
        located.sort_by(|a, b| a.0.cmp(&b.0));
        located.dedup_by(|a, b| a.0 == b.0);
        let packs: BTreeMap<String, u64> =
            located.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
        let mut blobs = BTreeMap::new();
        for (index, (_, _, inside)) in located.into_iter().enumerate() {
            for (sha, offset, length) in inside {
                blobs.insert(
                    sha,
                    BlobAt {
                        pack: index,
                        offset,
                        length,
                    },
                );
            }
        }
        let provenance = Provenance::of(&metadata, &tree, &platform);
        let manifest = Manifest {
            layout: LAYOUT,
            key: key.clone(),
            platform,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            created: env_cache::unix_now(),
            compile_bytecode,
            tree,
            blobs,
            packs,
            metadata,
            provenance,
        };
        let stored = manifest.stored_bytes();
        if self.put_manifest(&store, &relative, &manifest).await? {
            return Ok(PushResult::KeptOther);
        }
        Ok(PushResult::Pushed { uploaded, stored })
    }

    /// Builds one pack and uploads it unless the remote has it: its name, size, blobs, the
    /// bytes sent and the content bytes it holds.
    async fn push_pack(
        &self,
        store: &Arc<dyn ObjectStore>,
        prefix: &Path,
        planned: Vec<Planned>,
    ) -> Result<PackPushed, RemoteError> {
        let content: u64 = planned.iter().map(|p| p.size).sum();
        let built = {
            let prefix = prefix.to_path_buf();
            blocking(move || packs::build(&prefix, &planned)).await?
        };
        let relative = pack_path(&built.name);
        let path = self.object(&relative);
        let size = built.bytes.len() as u64;
        let there = matches!(
            tokio::time::timeout(self.timeout, store.head(&path)).await,
            Ok(Ok(meta)) if meta.size == size
        );
        let mut sent = 0;
        if !there || self.is_damaged(&built.name) {
            let what = format!("uploading `{relative}`");
            let part_timeout = (self.timeout * 4).max(Duration::from_secs(60));
            match tokio::time::timeout(
                part_timeout,
                store.put(&path, PutPayload::from(built.bytes)),
            )
            .await
            {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(result) => {
                    result.map_err(|error| self.error(&what, &error))?;
                }
            }
            sent = size;
        }
        Ok((built.name, size, built.blobs, sent, content))
    }

    /// Writes the manifest, create-only where the store supports it. `Ok(true)` when another
    /// agent's intact manifest was there first and was kept.
    async fn put_manifest(
        &self,
        store: &Arc<dyn ObjectStore>,
        relative: &str,
        manifest: &Manifest,
    ) -> Result<bool, RemoteError> {
        let what = format!("writing `{relative}`");
        let path = self.object(relative);
        let bytes = envelope(manifest, self.signer.as_ref());
        let create = tokio::time::timeout(
            self.timeout,
            store.put_opts(
                &path,
                PutPayload::from(bytes.clone()),
                PutMode::Create.into(),
            ),
        )
        .await;
        match create {
            Err(_) => return Err(self.timed_out(&what)),
            Ok(Ok(_)) => return Ok(false),
            Ok(Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            )) => {
                let existing = self.read_manifest(store, relative).await.ok().flatten();
                if let Some(existing) = &existing
                    && self.keeps(existing)
                    && self.packs_intact(store, &existing.manifest).await
                {
                    tracing::debug!("Another agent pushed `{relative}` first; keeping its entry");
                    return Ok(true);
                }
                // The entry there is damaged: it is replaced (its packs go with `prune`).
            }
            // No conditional put: the last manifest wins, each names complete packs.
            Ok(Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            )) => {}
            Ok(Err(error)) => return Err(self.error(&what, &error)),
        }
        self.bounded(&what, store.put(&path, PutPayload::from(bytes)))
            .await?;
        Ok(false)
    }

    /// Every object under `v2/`, with its size and modification time.
    async fn objects(
        &self,
        store: &Arc<dyn ObjectStore>,
    ) -> Result<Vec<object_store::ObjectMeta>, RemoteError> {
        let root = self.object(LAYOUT_DIR);
        let what = "listing".to_string();
        let mut stream = store.list(Some(&root));
        let mut objects = Vec::new();
        loop {
            match tokio::time::timeout(self.timeout, stream.next()).await {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(self.error(&what, &error)),
                Ok(Some(Ok(meta))) => objects.push(meta),
            }
        }
        Ok(objects)
    }

    async fn manifests(
        &self,
        store: &Arc<dyn ObjectStore>,
        objects: &[object_store::ObjectMeta],
    ) -> Vec<(String, Fetched)> {
        let mut out = Vec::new();
        for meta in objects {
            let relative = self.relative(&meta.location);
            if !relative.ends_with(&format!("/{MANIFEST}")) {
                continue;
            }
            match self.read_manifest(store, &relative).await {
                Ok(Some(manifest)) => out.push((relative, manifest)),
                Ok(None) => {}
                Err(error) => tracing::warn!("{}", crate::one_screen(&error)),
            }
        }
        out
    }

    /// `cache verify --remote KEY`: the entry's signature (with trusted keys), its manifest,
    /// and every blob downloaded and hashed, nothing installed or stored.
    pub async fn check_entry(&self, key: &str) -> Result<EntryCheck, RemoteError> {
        let platform = crate::current_platform()?;
        let relative = Self::manifest_path(&platform, key);
        let store = self.store()?;
        let Some(fetched) = self.read_manifest(&store, &relative).await? else {
            return Err(RemoteError::NoEntry {
                url: self.url.to_string(),
                path: relative,
            });
        };
        let verified_by = if self.trust.is_enabled() {
            Some(self.check_signature(&fetched, &relative)?)
        } else {
            None
        };
        let manifest = &fetched.manifest;
        check_manifest(manifest, &relative, key, &platform)?;
        let names = manifest.pack_names();
        let mut by_pack: BTreeMap<usize, Vec<(BlobAt, &env_store::Entry)>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for entry in manifest.tree.blobs() {
            let sha = entry.sha256.as_deref().unwrap_or_default();
            if seen.insert(sha) {
                let at = manifest.blobs[sha];
                by_pack.entry(at.pack).or_default().push((at, entry));
            }
        }
        let (mut blobs, mut bytes, mut downloaded) = (0u64, 0u64, 0u64);
        for (pack, mut wanted) in by_pack {
            wanted.sort_by_key(|(at, _)| at.offset);
            let relative_pack = pack_path(names[pack]);
            let what = format!("downloading `{relative_pack}`");
            let start = wanted[0].0.offset;
            let last = wanted[wanted.len() - 1].0;
            let end = last.offset + last.length;
            let range_timeout = (self.timeout * 8).max(Duration::from_secs(120));
            let data = match tokio::time::timeout(
                range_timeout,
                store.get_range(&self.object(&relative_pack), start..end),
            )
            .await
            {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(Err(error)) => return Err(self.error(&what, &error)),
                Ok(Ok(data)) => data,
            };
            if data.len() as u64 != end - start {
                return Err(RemoteError::Damaged {
                    archive: relative_pack,
                    message: format!(
                        "{} bytes came for a range of {} (truncated or replaced)",
                        data.len(),
                        end - start
                    ),
                });
            }
            downloaded += end - start;
            for (at, entry) in wanted {
                let from = usize::try_from(at.offset - start).unwrap_or(usize::MAX);
                let to = usize::try_from(at.offset + at.length - start).unwrap_or(usize::MAX);
                packs::check_blob(&data[from..to], entry).map_err(|message| {
                    RemoteError::Damaged {
                        archive: relative_pack.clone(),
                        message,
                    }
                })?;
                blobs += 1;
                bytes += entry.size;
            }
        }
        Ok(EntryCheck {
            path: relative,
            key: key.to_string(),
            platform,
            signed_by: fetched.signatures.iter().map(|s| s.key.clone()).collect(),
            verified_by,
            created: manifest.created,
            tool_version: manifest.tool_version.clone(),
            blobs,
            bytes,
            downloaded_bytes: downloaded,
            provenance: manifest.provenance.clone(),
        })
    }

    /// The environments in the remote, newest first, and the bytes all packs take.
    pub async fn list(&self) -> Result<RemoteListing, RemoteError> {
        let store = self.store()?;
        let objects = self.objects(&store).await?;
        let packs_dir = format!("{LAYOUT_DIR}/packs/");
        let stored: u64 = objects
            .iter()
            .filter(|m| self.relative(&m.location).starts_with(&packs_dir))
            .map(|m| m.size)
            .sum();
        let mut entries: Vec<RemoteEntry> = self
            .manifests(&store, &objects)
            .await
            .into_iter()
            .map(|(_, fetched)| {
                let (verified_by, untrusted) = if self.trust.is_enabled() {
                    match self.trust.verify(&fetched.signed, &fetched.signatures) {
                        Ok(key) => (Some(key), None),
                        Err(reason) => (None, Some(reason.to_string())),
                    }
                } else {
                    (None, None)
                };
                let signed_by = fetched.signatures.iter().map(|s| s.key.clone()).collect();
                let m = fetched.manifest;
                RemoteEntry {
                    size: m.stored_bytes(),
                    unpacked_bytes: m.tree.bytes,
                    packs: m.packs.len(),
                    key: m.key,
                    platform: m.platform,
                    created: m.created,
                    model: m.metadata.model,
                    env_manager: m.metadata.env_manager,
                    tool_version: m.tool_version,
                    signed_by,
                    verified_by,
                    untrusted,
                }
            })
            .collect();
        entries.sort_by(|a, b| b.created.cmp(&a.created).then(a.key.cmp(&b.key)));
        Ok(RemoteListing { entries, stored })
    }

    /// Removes entries pushed longer ago than `older_than` (the remote records no uses), then
    /// packs no remaining manifest uses that are older than that too (left by removed
    /// entries, by a push that died before its manifest, or replaced damaged ones). A pack
    /// being uploaded now is never that old.
    pub async fn prune(
        &self,
        older_than: Duration,
        dry_run: bool,
    ) -> Result<PruneReport, RemoteError> {
        if self.read_only && !dry_run {
            return Err(RemoteError::ReadOnly {
                url: self.url.to_string(),
            });
        }
        let store = self.store()?;
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let cutoff_secs = cutoff
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let objects = self.objects(&store).await?;
        let manifests = self.manifests(&store, &objects).await;
        let mut report = PruneReport::default();
        let mut referenced = HashSet::new();
        for (relative, fetched) in manifests {
            let manifest = fetched.manifest;
            if manifest.created <= cutoff_secs {
                if !dry_run {
                    self.bounded(
                        &format!("removing `{relative}`"),
                        store.delete(&self.object(&relative)),
                    )
                    .await?;
                }
                report.removed.push(manifest.key);
            } else {
                report.kept += 1;
                referenced.extend(manifest.packs.keys().map(|name| pack_path(name)));
            }
        }
        let packs_dir = format!("{LAYOUT_DIR}/packs/");
        for meta in &objects {
            let relative = self.relative(&meta.location);
            if !relative.starts_with(&packs_dir) || referenced.contains(&relative) {
                continue;
            }
            let modified: std::time::SystemTime = meta.last_modified.into();
            if modified > cutoff {
                continue;
            }
            if !dry_run {
                self.bounded(
                    &format!("removing `{relative}`"),
                    store.delete(&meta.location),
                )
                .await?;
            }
            report.packs_removed += 1;
            report.bytes_freed += meta.size;
        }
        report.removed.sort();
        Ok(report)
    }
}

/// Everything a pull relies on, checked before anything is fetched or written.
fn check_manifest(
    manifest: &Manifest,
    relative: &str,
    key: &str,
    platform: &str,
) -> Result<(), RemoteError> {
    let bad = |message: String| RemoteError::BadManifest {
        path: relative.to_string(),
        message,
    };
    if manifest.layout != LAYOUT || manifest.key != key || manifest.platform != platform {
        return Err(bad(format!(
            "it is for key `{}` on `{}` (layout {}), not `{key}` on `{platform}` (layout {LAYOUT})",
            manifest.key, manifest.platform, manifest.layout
        )));
    }
    manifest
        .tree
        .check(MAX_FILE, MAX_TOTAL)
        .map_err(|e| bad(e.to_string()))?;
    if manifest
        .packs
        .keys()
        .any(|name| !env_store::is_sha256(name))
    {
        return Err(bad("a pack name is not a sha256".to_string()));
    }
    let sizes: Vec<u64> = manifest.packs.values().copied().collect();
    for entry in manifest.tree.blobs() {
        let sha = entry.sha256.as_deref().unwrap_or_default();
        let Some(at) = manifest.blobs.get(sha) else {
            return Err(bad(format!("no pack holds the file `{}`", entry.path)));
        };
        let fits = sizes.get(at.pack).is_some_and(|size| {
            at.offset
                .checked_add(at.length)
                .is_some_and(|end| end <= *size)
        });
        if !fits || at.length == 0 {
            return Err(bad(format!(
                "the blob of `{}` lies outside its pack",
                entry.path
            )));
        }
    }
    Ok(())
}

/// The bytecode store's `.pyc` for every `dir/__pycache__/<module>.<tag>.pyc` of `tree`
/// whose source `dir/<module>.py` it lists: the store keys bytecode by the source's hash, size
/// and mtime, which the manifest records. [`env_store::Store::seed`] checks each by hash.
fn pyc_candidates<'a>(
    tree: &'a env_store::Manifest,
    pyc_store: &Path,
) -> Vec<env_store::Candidate<'a>> {
    let files: std::collections::HashMap<&str, &env_store::Entry> = tree
        .entries
        .iter()
        .filter(|e| e.kind == env_store::Kind::File)
        .map(|e| (e.path.as_str(), e))
        .collect();
    let mut out = Vec::new();
    for entry in files.values() {
        let Some((dir, name)) = entry.path.rsplit_once("/__pycache__/") else {
            continue;
        };
        let Some((module, tag)) = name
            .strip_suffix(".pyc")
            .and_then(|stem| stem.split_once('.'))
        else {
            continue;
        };
        // `<module>.<tag>.opt-1.pyc` and the like: not what the store holds.
        if tag.contains('.') || name.contains('/') {
            continue;
        }
        let Some(source) = files.get(format!("{dir}/{module}.py").as_str()) else {
            continue;
        };
        let Some(sha) = source.sha256.as_deref() else {
            continue;
        };
        out.push(env_store::Candidate {
            source: env_bytecode::stored_pyc(pyc_store, sha, source.size, source.mtime, tag),
            entry,
        });
    }
    out
}

/// Removes `tmp/<key>-pull-*` left by a killed pull of `key`.
fn remove_stale_staging(tmp: &Path, key: &str) {
    let prefix = format!("{key}-pull-");
    for entry in fs_err::read_dir(tmp).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::debug!(
                "Removing `{}`, left by a killed pull",
                entry.path().display()
            );
            let _ = make_writable_and_remove(&entry.path());
        }
    }
}

/// Removes a staging tree whose directories may be read-only.
fn make_writable_and_remove(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(metadata) = fs_err::symlink_metadata(&dir)
            && metadata.is_dir()
        {
            let _ = fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755));
            for entry in fs_err::read_dir(&dir).into_iter().flatten().flatten() {
                stack.push(entry.path());
            }
        }
    }
    fs_err::remove_dir_all(path)
}

fn not_shareable(home: &impl std::fmt::Display) -> PushResult {
    PushResult::NotShareable {
        reason: format!(
            "Not pushed to the remote cache: this virtualenv uses this machine's interpreter (`{home}`), which other agents do not have; build with `--python-source conda` (or `--env-manager conda`) to share it"
        ),
    }
}

/// Runs blocking file work (hashing, compressing, linking) on the runtime's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, RemoteError> + Send + 'static,
) -> Result<T, RemoteError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| RemoteError::Io {
            path: std::path::PathBuf::from("<blocking task>"),
            source: std::io::Error::other(error.to_string()),
        })?
}

/// Materialises the environment from the store into a staging directory beside the
/// environment and moves it into place: whatever a crashed build or pull left goes first; the
/// environment is complete only once `finish_build` has written the fingerprint, last.
///
/// SIGINT/SIGTERM are deferred meanwhile (`env_cache::child::SignalsDeferred`): one that comes
/// before the move stops the linking, the staging tree is removed, and the signal then ends the
/// process; one that comes after lets the environment be completed first.
fn install(
    env: &EnvEntry,
    tmp: &Path,
    local: &env_store::Store,
    tree: &env_store::Manifest,
    metadata: &env_cache::Metadata,
) -> Result<env_store::Materialised, RemoteError> {
    let _deferred = env_cache::child::defer_signals();
    let staging = tempfile::Builder::new()
        .prefix(&format!("{}-pull-", env.key()))
        .tempdir_in(tmp)
        .map_err(io(tmp))?;
    let target = staging.path().join("env");
    let staged = (|| {
        let done = local.materialise(tree, &target, env.dir())?;
        let meta = target.join(env_cache::META_DIR);
        fs_err::create_dir_all(&meta).map_err(io(&meta))?;
        // The manifest stays with the environment (`pack`, images and pushes read it), with
        // the files that name the prefix as they are here.
        let kept = tree.relocated(&target, env.dir())?;
        kept.save(&target)?;
        if env_cache::child::interrupted() {
            return Err(env_store::StoreError::Interrupted {
                path: target.clone(),
            }
            .into());
        }
        Ok::<_, RemoteError>(done)
    })();
    let done = match staged {
        Ok(done) => done,
        Err(error) => {
            // Its directories may be read-only, which `TempDir`'s removal does not handle.
            let _ = make_writable_and_remove(staging.path());
            return Err(error);
        }
    };
    if !matches!(env.state(), EnvState::Missing) {
        env.remove_dir(tmp)?;
    }
    fs_err::rename(&target, env.dir()).map_err(io(env.dir()))?;
    drop(staging);
    if let Err(error) = env.finish_build(metadata) {
        let _ = env.remove_dir(tmp);
        return Err(error.into());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            layout: LAYOUT,
            key: "0123456789abcdef0123456789abcdef".into(),
            platform: "linux-64".into(),
            tool_version: "0.1.0".into(),
            created: 1_700_000_000,
            compile_bytecode: true,
            tree: env_store::Manifest {
                format: 1,
                prefix: "/cache/envs-v1/x".into(),
                binary_prefix: None,
                entries: Vec::new(),
                files: 0,
                bytes: 0,
            },
            blobs: BTreeMap::new(),
            packs: BTreeMap::new(),
            metadata: serde_json::from_value(serde_json::json!({
                "key": "x", "tool_version": "0.1.0", "created": 1, "build_seconds": 1.5,
                "env_manager": "conda", "model": "/m", "python": null, "python_version": null,
                "spec": {}, "conda_packages": [], "pip_packages": []
            }))
            .unwrap(),
            provenance: Provenance::default(),
        }
    }

    /// A `.pyc` of the bytecode store enters the file store when its key (its source's hash,
    /// size and mtime) and its own hash are the manifest's; a damaged one does not.
    #[test]
    fn bytecode_store_seeds_pyc_files_checked_by_hash() {
        use sha2::Digest as _;
        let temp = tempfile::tempdir().unwrap();
        let cache = Cache::new(temp.path().join("cache"));
        cache.init().unwrap();
        let local = env_store::Store::open(&cache).unwrap();
        let pyc_store = temp.path().join("pyc-v1");
        let entry = |path: &str, content: &[u8], mtime: u64| env_store::Entry {
            path: path.into(),
            kind: env_store::Kind::File,
            mode: 0o644,
            size: content.len() as u64,
            sha256: Some(env_store::hex(&sha2::Sha256::digest(content))),
            mtime,
            target: None,
            prefix: env_store::PrefixUse::None,
        };
        let tree = env_store::Manifest {
            format: 1,
            prefix: "/p".into(),
            binary_prefix: None,
            entries: vec![
                entry("d/m.py", b"x = 1\n", 1_700_000_000),
                entry("d/__pycache__/m.cpython-311.pyc", b"bytecode", 0),
                entry("d/__pycache__/m.cpython-311.opt-1.pyc", b"other", 0),
            ],
            files: 3,
            bytes: 19,
        };
        let source = &tree.entries[0];
        let stored = env_bytecode::stored_pyc(
            &pyc_store,
            source.sha256.as_deref().unwrap(),
            source.size,
            source.mtime,
            "cpython-311",
        );
        fs_err::create_dir_all(stored.parent().unwrap()).unwrap();
        fs_err::write(&stored, b"bytecodf").unwrap();
        let candidates = pyc_candidates(&tree, &pyc_store);
        assert_eq!(candidates.len(), 1, "{candidates:?}");
        let seeded = local.seed(&candidates);
        assert_eq!((seeded.files, seeded.rejected), (0, 1), "damaged: refused");
        fs_err::remove_file(&stored).unwrap();
        fs_err::write(&stored, b"bytecode").unwrap();
        let seeded = local.seed(&pyc_candidates(&tree, &pyc_store));
        assert_eq!((seeded.files, seeded.bytes), (1, 8));
        assert!(local.has(tree.entries[1].sha256.as_deref().unwrap()));
    }

    /// The signature covers the stored bytes of `manifest` exactly, as read back; a bare
    /// manifest (pushed before signing) reads as unsigned; a changed byte breaks the signature.
    #[test]
    fn envelopes_carry_the_exact_signed_bytes() {
        let key = crate::SecretKey::parse(&format!(
            "ci-1:{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32])
        ))
        .unwrap();
        let trusted = [key.public()];
        let manifest = manifest();
        let object = envelope(&manifest, Some(&key));
        let text = String::from_utf8(object.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"signatures":[{"key":"ci-1","signature":""#),
            "{text}"
        );
        let fetched = parse_envelope(&object).unwrap();
        assert_eq!(fetched.signed, serde_json::to_vec(&manifest).unwrap());
        assert_eq!(fetched.manifest.key, manifest.key);
        assert_eq!(
            crate::sign::verify(&trusted, &fetched.signed, &fetched.signatures),
            Ok("ci-1".to_string())
        );
        // Whitespace inside the manifest is part of what was signed.
        let spaced = text.replacen(r#""layout":2"#, r#""layout": 2"#, 1);
        let fetched = parse_envelope(spaced.as_bytes()).unwrap();
        assert!(crate::sign::verify(&trusted, &fetched.signed, &fetched.signatures).is_err());
        // A bare manifest: unsigned.
        let bare = serde_json::to_vec(&manifest).unwrap();
        let fetched = parse_envelope(&bare).unwrap();
        assert!(fetched.signatures.is_empty());
        assert_eq!(fetched.manifest.key, manifest.key);
        // Unsigned pushes write the envelope with no signature.
        let fetched = parse_envelope(&envelope(&manifest, None)).unwrap();
        assert!(fetched.signatures.is_empty());
    }
}
