//! Pull, push, list and prune.

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use env_cache::{Cache, EnvEntry, EnvState};
use futures_util::StreamExt as _;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutPayload, WriteMultipart};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::{LAYOUT, LAYOUT_DIR, MANIFEST, Manifest, Remote, RemoteError, io};

/// Multipart parts; files up to this size go in one request.
const PART: usize = 16 << 20;

/// What [`Remote::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushResult {
    /// Uploaded: the archive, then the manifest.
    Pushed {
        /// The archive's size.
        size: u64,
        /// The archive's sha256.
        sha256: String,
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
    /// The archive's size.
    pub size: u64,
    /// When it was pushed.
    pub created: u64,
    /// The model it was built for, where it was built.
    pub model: String,
    /// `conda` or `virtualenv`.
    pub env_manager: String,
    /// The pyfunc-env version that pushed it.
    pub tool_version: String,
    /// The archive, relative to the remote's root.
    pub archive: String,
}

/// What [`Remote::prune`] removed (or would).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Keys whose manifest was removed.
    pub removed: Vec<String>,
    /// Archives removed (unreferenced and older than the cut-off).
    pub archives_removed: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Entries kept.
    pub kept: usize,
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn secs(start: Instant) -> f64 {
    (start.elapsed().as_secs_f64() * 1000.0).round() / 1000.0
}

impl Remote {
    async fn read_manifest(
        &self,
        store: &Arc<dyn ObjectStore>,
        relative: &str,
    ) -> Result<Option<Manifest>, RemoteError> {
        let path = self.object(relative);
        let what = format!("reading `{relative}`");
        let get = match tokio::time::timeout(self.timeout, store.get(&path)).await {
            Err(_) => return Err(self.timed_out(&what)),
            Ok(Err(object_store::Error::NotFound { .. })) => return Ok(None),
            Ok(Err(error)) => return Err(self.error(&what, &error)),
            Ok(Ok(get)) => get,
        };
        let bytes = self.bounded(&what, get.bytes()).await?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RemoteError::BadManifest {
                path: relative.to_string(),
                message: e.to_string(),
            })
    }

    /// Whether `manifest`'s archive is in the store with its recorded size, and not known
    /// damaged.
    async fn archive_intact(&self, store: &Arc<dyn ObjectStore>, manifest: &Manifest) -> bool {
        if self.is_damaged(&manifest.sha256) {
            return false;
        }
        let path = self.object(&manifest.archive);
        matches!(
            tokio::time::timeout(self.timeout, store.head(&path)).await,
            Ok(Ok(meta)) if meta.size == manifest.size
        )
    }

    /// Looks `env`'s key up and, on a hit, installs it (the caller holds the environment's
    /// exclusive lock). `Ok(None)` on a miss; the seconds spent on a hit.
    pub async fn pull(
        &self,
        cache: &Cache,
        env: &EnvEntry,
        model_root: &Path,
        reporter: &dyn env_solve::Reporter,
    ) -> Result<Option<f64>, RemoteError> {
        let start = Instant::now();
        let platform = crate::current_platform()?;
        let key = env.key().to_string();
        let relative = Self::manifest_path(&platform, &key);
        let store = self.store()?;
        let tmp = cache.bucket(env_cache::TMP_DIR)?;
        let Some(manifest) = self.read_manifest(&store, &relative).await? else {
            tracing::debug!("Remote cache miss: {}/{relative}", self.url);
            return Ok(None);
        };
        if manifest.layout != LAYOUT || manifest.key != key || manifest.platform != platform {
            return Err(RemoteError::BadManifest {
                path: relative,
                message: format!(
                    "it is for key `{}` on `{}` (layout {}), not `{key}` on `{platform}` (layout {LAYOUT})",
                    manifest.key, manifest.platform, manifest.layout
                ),
            });
        }
        reporter.on_phase("Downloading from the remote cache");
        let download = tempfile::Builder::new()
            .prefix(".remote-pull-")
            .suffix(".tar.zst")
            .tempfile_in(&tmp)
            .map_err(io(&tmp))?;
        let (download, size, sha256) = self.download(&store, &manifest, download, reporter).await?;
        if size != manifest.size || sha256 != manifest.sha256 {
            self.mark_damaged(&manifest.sha256);
            return Err(RemoteError::Damaged {
                archive: manifest.archive.clone(),
                message: if size == manifest.size {
                    format!(
                        "its sha256 is {sha256}, the manifest says {}",
                        manifest.sha256
                    )
                } else {
                    format!(
                        "{size} bytes where the manifest says {} (truncated or replaced)",
                        manifest.size
                    )
                },
            });
        }
        reporter.on_phase("Unpacking the environment from the remote cache");
        let mut metadata = manifest.metadata.clone();
        metadata.model = model_root.display().to_string();
        metadata.extra.insert(
            "remote".into(),
            serde_json::json!({
                "url": self.url.to_string(),
                "archive": manifest.archive,
                "sha256": manifest.sha256,
                "pushed": manifest.created,
                "pulled": env_cache::unix_now(),
                "built_by": manifest.tool_version,
            }),
        );
        metadata.extra.insert(
            "relocated_scripts".into(),
            serde_json::json!(manifest.relocated_scripts),
        );
        let installed = {
            let (env, archive) = (env.clone(), manifest.archive.clone());
            blocking(move || install(&env, &tmp, download, &archive, &metadata)).await
        };
        if let Err(error) = installed {
            if matches!(error, RemoteError::Damaged { .. }) {
                self.mark_damaged(&manifest.sha256);
            }
            return Err(error);
        }
        tracing::debug!(
            "Pulled {key} from {} ({} bytes) in {:.2} s",
            self.url,
            manifest.size,
            start.elapsed().as_secs_f64()
        );
        Ok(Some(secs(start)))
    }

    /// Downloads `manifest`'s archive into `file`: its size and sha256. The writes and the
    /// hashing run on the blocking pool, a chunk at a time.
    async fn download(
        &self,
        store: &Arc<dyn ObjectStore>,
        manifest: &Manifest,
        file: tempfile::NamedTempFile,
        reporter: &dyn env_solve::Reporter,
    ) -> Result<(tempfile::NamedTempFile, u64, String), RemoteError> {
        let what = format!("downloading `{}`", manifest.archive);
        let path = self.object(&manifest.archive);
        let get = self.bounded(&what, store.get(&path)).await?;
        let mut stream = get.into_stream();
        let id = reporter.on_download_start("environment archive");
        let mut sink = (file, Sha256::new());
        let mut total = 0u64;
        loop {
            match tokio::time::timeout(self.timeout, stream.next()).await {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(self.error(&what, &error)),
                Ok(Some(Ok(bytes))) => {
                    total += bytes.len() as u64;
                    let (mut file, mut hasher) = sink;
                    sink = blocking(move || {
                        hasher.update(&bytes);
                        file.write_all(&bytes).map_err(io(file.path()))?;
                        Ok((file, hasher))
                    })
                    .await?;
                    reporter.on_download_progress(id, total, Some(manifest.size));
                    // A remote that sends more than the manifest says is not the archive.
                    if total > manifest.size {
                        break;
                    }
                }
            }
        }
        reporter.on_download_complete(id);
        let (file, hasher) = sink;
        Ok((file, total, hex(&hasher.finalize())))
    }

    /// `cache push`'s one call: uploads the environment of `env` if the local cache has it
    /// complete ([`PushResult::NotBuilt`] if not; nothing is built).
    pub async fn push_model(
        &self,
        cache: &Cache,
        env: &env_solve::ModelEnvironment,
        reporter: &dyn env_solve::Reporter,
    ) -> Result<PushResult, RemoteError> {
        let entry = cache.env(env.key.as_str())?;
        if !env.is_cached(cache)? {
            return Ok(PushResult::NotBuilt);
        }
        self.push(cache, &entry, env.options.compile_bytecode, reporter)
            .await
    }

    /// Packs the complete environment `env` and uploads it: the archive under its sha256,
    /// then the manifest.
    pub async fn push(
        &self,
        cache: &Cache,
        env: &EnvEntry,
        compile_bytecode: bool,
        reporter: &dyn env_solve::Reporter,
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
        let metadata = env.metadata()?;
        let platform = crate::current_platform()?;
        let key = env.key().to_string();
        let relative = Self::manifest_path(&platform, &key);
        let store = self.store()?;
        if let Some(existing) = self.read_manifest(&store, &relative).await.unwrap_or(None)
            && self.archive_intact(&store, &existing).await
        {
            tracing::debug!("{key} is in the remote cache already");
            return Ok(PushResult::AlreadyThere);
        }
        let tmp = cache.bucket(env_cache::TMP_DIR)?;
        let out = tempfile::Builder::new()
            .prefix(".remote-push-")
            .tempdir_in(&tmp)
            .map_err(io(&tmp))?;
        let archive = out.path().join("env.tar.zst");
        reporter.on_phase("Packing the environment for the remote cache");
        let options = env_pack::PackOptions {
            format: env_pack::Format::TarZst,
            compile: compile_bytecode,
            keep_tests: false,
            exclude_distributions: Vec::new(),
            model: None,
            staging_dir: tmp.clone(),
            mtime: metadata.created,
            compression_level: 3,
            full_prefix: true,
        };
        let packed = {
            let (prefix, archive) = (env.dir().to_path_buf(), archive.clone());
            blocking(move || {
                Ok(env_pack::pack(&prefix, &archive, &options)
                    .map(|report| (report, sha256_file(&archive))))
            })
            .await?
        };
        let (report, hashed) = match packed {
            Ok(report) => report,
            Err(env_pack::PackError::SystemVirtualenv { home, .. }) => {
                return Ok(not_shareable(&home));
            }
            Err(env_pack::PackError::PythonOutside { target, .. }) => {
                return Ok(not_shareable(&target.display()));
            }
            Err(error) => return Err(error.into()),
        };
        let (size, sha256) = hashed?;
        let archive_relative = format!("{LAYOUT_DIR}/archives/{sha256}.tar.zst");
        reporter.on_phase("Uploading to the remote cache");
        self.upload(&store, &archive_relative, &archive, size, reporter)
            .await?;
        let manifest = Manifest {
            layout: LAYOUT,
            key: key.clone(),
            platform,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            archive: archive_relative.clone(),
            sha256: sha256.clone(),
            size,
            files: report.files,
            unpacked_bytes: report.unpacked_bytes,
            created: env_cache::unix_now(),
            compile_bytecode,
            relocated_scripts: report.scripts_rewritten.clone(),
            metadata,
        };
        let kept_other = self.put_manifest(&store, &relative, &manifest).await?;
        if kept_other {
            return Ok(PushResult::KeptOther);
        }
        Ok(PushResult::Pushed { size, sha256 })
    }

    async fn upload(
        &self,
        store: &Arc<dyn ObjectStore>,
        relative: &str,
        file: &Path,
        size: u64,
        reporter: &dyn env_solve::Reporter,
    ) -> Result<(), RemoteError> {
        let what = format!("uploading `{relative}`");
        let path = self.object(relative);
        // A part may take a while on a slow link; a stall is still bounded.
        let part_timeout = (self.timeout * 4).max(Duration::from_secs(60));
        let id = reporter.on_download_start("upload: environment archive");
        let mut reader = fs_err::File::open(file).map_err(io(file))?;
        if size <= PART as u64 {
            let bytes = blocking(move || {
                let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
                reader.read_to_end(&mut bytes).map_err(io(reader.path()))?;
                Ok(bytes)
            })
            .await?;
            match tokio::time::timeout(part_timeout, store.put(&path, PutPayload::from(bytes)))
                .await
            {
                Err(_) => return Err(self.timed_out(&what)),
                Ok(result) => {
                    result.map_err(|error| self.error(&what, &error))?;
                }
            }
        } else {
            let upload = self.bounded(&what, store.put_multipart(&path)).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
            let mut chunk = (reader, vec![0u8; 4 << 20]);
            let mut sent = 0u64;
            loop {
                let (mut reader, mut buffer) = chunk;
                let (n, read) = blocking(move || {
                    let n = reader.read(&mut buffer).map_err(io(reader.path()))?;
                    Ok((n, (reader, buffer)))
                })
                .await?;
                chunk = read;
                let buffer = &chunk.1;
                if n == 0 {
                    break;
                }
                match tokio::time::timeout(part_timeout, writer.wait_for_capacity(4)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        let _ = writer.abort().await;
                        return Err(self.error(&what, &error));
                    }
                    Err(_) => {
                        let _ = writer.abort().await;
                        return Err(self.timed_out(&what));
                    }
                }
                writer.write(&buffer[..n]);
                sent += n as u64;
                reporter.on_download_progress(id, sent, Some(size));
            }
            match tokio::time::timeout(part_timeout * 4, writer.finish()).await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => return Err(self.error(&what, &error)),
                Err(_) => return Err(self.timed_out(&what)),
            }
        }
        reporter.on_download_progress(id, size, Some(size));
        reporter.on_download_complete(id);
        Ok(())
    }

    /// Writes the manifest, create-only where the store supports it. `Ok(true)` when another
    /// agent's intact manifest was there first and was kept (our archive is then removed).
    async fn put_manifest(
        &self,
        store: &Arc<dyn ObjectStore>,
        relative: &str,
        manifest: &Manifest,
    ) -> Result<bool, RemoteError> {
        let what = format!("writing `{relative}`");
        let path = self.object(relative);
        let bytes = serde_json::to_vec_pretty(manifest).unwrap_or_default();
        let create = tokio::time::timeout(
            self.timeout,
            store.put_opts(
                &path,
                PutPayload::from(bytes.clone()),
                PutMode::Create.into(),
            ),
        )
        .await;
        let mut replaced = None;
        match create {
            Err(_) => return Err(self.timed_out(&what)),
            Ok(Ok(_)) => return Ok(false),
            Ok(Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            )) => {
                let existing = self.read_manifest(store, relative).await.ok().flatten();
                if let Some(existing) = &existing
                    && existing.sha256 != manifest.sha256
                    && self.archive_intact(store, existing).await
                {
                    tracing::debug!("Another agent pushed `{relative}` first; keeping its entry");
                    let _ = tokio::time::timeout(
                        self.timeout,
                        store.delete(&self.object(&manifest.archive)),
                    )
                    .await;
                    return Ok(true);
                }
                // The entry there is damaged: it is replaced, and its archive dropped.
                replaced = existing.filter(|e| e.archive != manifest.archive);
            }
            // No conditional put: the last manifest wins, each names a complete archive.
            Ok(Err(
                object_store::Error::NotImplemented { .. }
                | object_store::Error::NotSupported { .. },
            )) => {}
            Ok(Err(error)) => return Err(self.error(&what, &error)),
        }
        self.bounded(&what, store.put(&path, PutPayload::from(bytes)))
            .await?;
        if let Some(old) = replaced {
            let _ =
                tokio::time::timeout(self.timeout, store.delete(&self.object(&old.archive))).await;
        }
        Ok(false)
    }

    /// Every object under `v1/`, with its size and modification time.
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
    ) -> Vec<(String, Manifest)> {
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

    /// The environments in the remote, newest first.
    pub async fn list(&self) -> Result<Vec<RemoteEntry>, RemoteError> {
        let store = self.store()?;
        {
            let objects = self.objects(&store).await?;
            let mut entries: Vec<RemoteEntry> = self
                .manifests(&store, &objects)
                .await
                .into_iter()
                .map(|(_, m)| RemoteEntry {
                    key: m.key,
                    platform: m.platform,
                    size: m.size,
                    created: m.created,
                    model: m.metadata.model,
                    env_manager: m.metadata.env_manager,
                    tool_version: m.tool_version,
                    archive: m.archive,
                })
                .collect();
            entries.sort_by(|a, b| b.created.cmp(&a.created).then(a.key.cmp(&b.key)));
            Ok(entries)
        }
    }

    /// Removes entries pushed longer ago than `older_than` (the remote records no uses), then
    /// archives no manifest names that are older than that too (left by a push that lost a
    /// race or died before its manifest). An archive being uploaded now is never that old.
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
        {
            let objects = self.objects(&store).await?;
            let manifests = self.manifests(&store, &objects).await;
            let mut report = PruneReport::default();
            let mut referenced = std::collections::HashSet::new();
            for (relative, manifest) in manifests {
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
                    referenced.insert(manifest.archive);
                }
            }
            let archives = format!("{LAYOUT_DIR}/archives/");
            for meta in &objects {
                let relative = self.relative(&meta.location);
                if !relative.starts_with(&archives) || referenced.contains(&relative) {
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
                report.archives_removed += 1;
                report.bytes_freed += meta.size;
            }
            report.removed.sort();
            Ok(report)
        }
    }
}

fn not_shareable(home: &impl std::fmt::Display) -> PushResult {
    PushResult::NotShareable {
        reason: format!(
            "Not pushed to the remote cache: this virtualenv uses this machine's interpreter (`{home}`), which other agents do not have; build with `--python-source conda` (or `--env-manager conda`) to share it"
        ),
    }
}

fn sha256_file(path: &Path) -> Result<(u64, String), RemoteError> {
    let mut file = fs_err::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok((size, hex(&hasher.finalize())))
}

/// Runs blocking file work (archives, hashing, local reads and writes) on the runtime's
/// blocking pool.
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

/// Unpacks the downloaded archive into a staging directory beside the environment and moves it
/// into place: whatever a crashed build or pull left goes first; the environment is complete
/// only once `finish_build` has written the fingerprint, last. An archive that does not unpack
/// is [`RemoteError::Damaged`].
fn install(
    env: &EnvEntry,
    tmp: &Path,
    download: tempfile::NamedTempFile,
    archive: &str,
    metadata: &env_cache::Metadata,
) -> Result<(), RemoteError> {
    let staging = tempfile::Builder::new()
        .prefix(&format!("{}-pull-", env.key()))
        .tempdir_in(tmp)
        .map_err(io(tmp))?;
    let target = staging.path().join("env");
    if let Err(error) = env_pack::unpack(download.path(), &target) {
        return Err(RemoteError::Damaged {
            archive: archive.to_string(),
            message: format!("it does not unpack: {error}"),
        });
    }
    drop(download);
    let meta = target.join(env_cache::META_DIR);
    fs_err::create_dir_all(&meta).map_err(io(&meta))?;
    if !matches!(env.state(), EnvState::Missing) {
        env.remove_dir(tmp)?;
    }
    fs_err::rename(&target, env.dir()).map_err(io(env.dir()))?;
    if let Err(error) = env.finish_build(metadata) {
        let _ = env.remove_dir(tmp);
        return Err(error.into());
    }
    Ok(())
}
