//! OCI images of a built environment and a model, written directly (no Docker daemon, no
//! `RUN pip install`), the way `ko`, `jib` and `nix2container` do.
//!
//! An image is the base image's layers (reused by digest), one **environment layer** (the
//! relocatable prefix `pack` makes, at [`layer::ENV_PATH`], cached by environment key) and one
//! **model layer** (the model at [`layer::MODEL_PATH`] and the entrypoint). What this crate
//! guarantees:
//! - **Reproducible.** Every layer is a sorted tar with fixed mtimes and owner 0:0 and a gzip
//!   header without a timestamp; the config's `created` is fixed; JSON is written in one fixed
//!   order. The same environment, model and base give the same image digest, whatever the
//!   cache directory's path on whichever machine (see [`layer`]).
//! - **Serves as `run -- serve` does.** The entrypoint runs `env-run`'s own `serve.py` with the
//!   environment's Python (see `entrypoint.py`): the model's MLflow builds its scoring server
//!   command line, on `0.0.0.0` and `PORT` (else `MLFLOW_PORT`, else 8080). It needs no shell
//!   in the base (distroless has none), runs as any uid, and writes nothing outside `/tmp`.
//! - **Nothing half-pushed is trusted.** Blobs are uploaded first, each checked by digest by
//!   the registry; the manifest, which is what makes the tag exist, is uploaded last.

#![warn(missing_docs)]

pub mod auth_files;
pub mod base;
pub mod blobs;
mod compress;
pub mod layer;
mod output;
pub mod reference;
pub mod registry;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

pub use base::{Base, BaseSource};
pub use blobs::BlobStore;
pub use compress::Compression;
pub use layer::{EnvLayer, LayerBlob};
pub use output::{write_docker_archive, write_oci_layout};
pub use reference::Reference;
pub use registry::{Credentials, RegistrySettings};

/// The base used when none is given: glibc, libstdc++ and CA certificates, no shell, no
/// package manager (about 10 MB compressed).
pub const DEFAULT_BASE: &str = "gcr.io/distroless/cc-debian12";
/// The user the container runs as unless the platform picks another: distroless's `nonroot`.
pub const DEFAULT_USER: &str = "65532:65532";
/// The port, as MLflow's images use.
pub const DEFAULT_PORT: u16 = 8080;
/// OCI image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The entrypoint script baked into every image.
pub const ENTRYPOINT_SCRIPT: &str = include_str!("entrypoint.py");

/// Errors of building, writing and pushing images.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ImageError {
    /// The cache (its root, a bucket) could not be opened.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] env_cache::CacheError),

    /// An `--output` that is neither `oci:DIR` nor `docker-archive:FILE`.
    #[error("Invalid `--output` `{text}`")]
    #[diagnostic(help("Write `oci:DIR` (an OCI image layout) or `docker-archive:FILE`"))]
    InvalidOutput {
        /// The text given.
        text: String,
    },

    /// A registry password without a user name, or a user name without a password.
    #[error("A registry {given} was given without a {missing}")]
    #[diagnostic(help(
        "Pass both `--username` and `--password` (or `PYFUNC_ENV_REGISTRY_USERNAME` and `PYFUNC_ENV_REGISTRY_PASSWORD`), or neither to use the auth files of `podman login` and `docker login`"
    ))]
    HalfCredentials {
        /// What was given: `password` or `user name`.
        given: &'static str,
        /// What is missing.
        missing: &'static str,
    },

    /// `--push` under `--offline`.
    #[error("`--push` needs the network, and `--offline` is set")]
    #[diagnostic(help("Write the image to a file with `--output` instead"))]
    PushOffline,

    /// An I/O error on a path.
    #[error("Failed to access `{}`", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// The environment cannot be made into a layer (not relocatable).
    #[error("The environment `{}` cannot be put in an image", prefix.display())]
    Pack {
        /// The environment.
        prefix: PathBuf,
        /// Why (its own hint says how to fix it).
        #[source]
        source: Box<env_pack::PackError>,
    },

    /// A reference that does not parse.
    #[error("Invalid image reference `{reference}`: {why}")]
    #[diagnostic(help("Write it as `registry.example.com/team/model:tag`"))]
    InvalidReference {
        /// As given.
        reference: String,
        /// Why.
        why: String,
    },

    /// A base image that cannot be read.
    #[error("Cannot use `{base}` as the base image: {why}")]
    #[diagnostic(help(
        "Pass `--base` a registry image, `oci:DIR[:TAG]` or `docker-archive:FILE` for linux/amd64 or linux/arm64"
    ))]
    InvalidBase {
        /// As given.
        base: String,
        /// Why.
        why: String,
    },

    /// A base image without the C library (`scratch`).
    #[error("The base image `{base}` has no glibc (no dynamic loader `ld-linux*.so*`)")]
    #[diagnostic(help(
        "The environment's Python needs glibc from the base: use the default (`gcr.io/distroless/cc-debian12`) or any Debian/Ubuntu/UBI-based image with `--base`"
    ))]
    NoGlibc {
        /// As given.
        base: String,
    },

    /// A registry that cannot be reached.
    #[error("Cannot reach the registry `{registry}`")]
    #[diagnostic(help(
        "Check that the registry is up and the name is right; a registry on plain HTTP other than localhost needs `--insecure-registry HOST`"
    ))]
    Unreachable {
        /// The registry.
        registry: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },

    /// A registry that refused the credentials, or wants some.
    #[error("The registry `{registry}` refused access{}", if *had_credentials { " with the credentials given" } else { " without credentials" })]
    #[diagnostic(help(
        "Log in with `podman login` or `docker login` (their auth files are read, and `REGISTRY_AUTH_FILE`), or pass `--username` and `--password` (or `PYFUNC_ENV_REGISTRY_USERNAME` and `PYFUNC_ENV_REGISTRY_PASSWORD`)"
    ))]
    Unauthorized {
        /// The registry.
        registry: String,
        /// Whether credentials were sent.
        had_credentials: bool,
    },

    /// A registry that answered a request with an error.
    #[error("The registry `{registry}` refused {what} (HTTP {status}): {body}")]
    Refused {
        /// The registry.
        registry: String,
        /// What was asked.
        what: String,
        /// The status.
        status: u16,
        /// The start of its answer.
        body: String,
    },

    /// A client could not be made.
    #[error("Failed to set up an HTTP client for `{registry}`")]
    Http {
        /// The registry.
        registry: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },

    /// A blob whose content does not match its digest.
    #[error("`{what}` has digest `{actual}`, not `{expected}`")]
    #[diagnostic(help("The base image's files are damaged or were changed; fetch it again"))]
    DigestMismatch {
        /// The blob.
        what: String,
        /// The digest expected.
        expected: String,
        /// The digest found.
        actual: String,
    },
}

impl ImageError {
    /// Whether the user can fix it (bad input or settings) rather than something broken.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Pack { source, .. } => source.is_user_error(),
            Self::Cache(source) => source.is_user_error(),
            Self::InvalidReference { .. }
            | Self::InvalidOutput { .. }
            | Self::PushOffline
            | Self::HalfCredentials { .. }
            | Self::InvalidBase { .. }
            | Self::NoGlibc { .. }
            | Self::Unauthorized { .. } => true,
            _ => false,
        }
    }
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// From the base image.
    Base,
    /// The environment.
    Environment,
    /// The model and the entrypoint.
    Model,
    /// The image config.
    Config,
}

/// A layer of the image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageLayer {
    /// What it is.
    pub role: Role,
    /// Its media type.
    #[serde(rename = "media_type")]
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

/// An assembled image: its config and manifest bytes, and its layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// The config JSON.
    pub config: Vec<u8>,
    /// Its digest.
    pub config_digest: String,
    /// The manifest JSON.
    pub manifest: Vec<u8>,
    /// Its digest: the image's digest.
    pub digest: String,
    /// The layers, bottom first.
    pub layers: Vec<ImageLayer>,
    /// Where the base layers' blobs are.
    pub base_source: BaseSource,
}

/// What goes into the config besides the layers.
#[derive(Debug, Clone)]
pub struct ImageSettings {
    /// Labels (`io.pyfunc-env.*`).
    pub labels: BTreeMap<String, String>,
    /// Variables the environment's activation sets (`CONDA_PREFIX` or `VIRTUAL_ENV`, the
    /// conda file's `variables:`).
    pub env: Vec<(String, String)>,
    /// `created` and history times (seconds since the epoch).
    pub created: u64,
}

/// `1970-01-01T00:00:00Z` style.
fn rfc3339(seconds: u64) -> String {
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    let rest = seconds % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The `PATH` of the image: the environment's `bin/` first, then the usual directories.
fn image_path() -> String {
    format!(
        "{}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        layer::ENV_PATH
    )
}

/// The layer media type to write for a base layer (Docker's types mapped to OCI's; the bytes
/// are the same).
fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" | "" => {
            layer::LAYER_MEDIA_TYPE.to_string()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".to_string()
        }
        other => other.to_string(),
    }
}

/// Assembles the image: the base's layers, then `env`, then `model`.
pub fn assemble(
    base: &Base,
    env: &LayerBlob,
    model: &LayerBlob,
    settings: &ImageSettings,
) -> Result<Image, ImageError> {
    let created = rfc3339(settings.created);
    let base_config = &base.config;
    // The base's variables, ours over them.
    let mut variables: Vec<(String, String)> = base_config["config"]["Env"]
        .as_array()
        .map_or(&[][..], Vec::as_slice)
        .iter()
        .filter_map(|v| v.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut set = |key: &str, value: String| {
        variables.retain(|(k, _)| k != key);
        variables.push((key.to_string(), value));
    };
    set("PATH", image_path());
    for (key, value) in &settings.env {
        set(key, value.clone());
    }
    // A read-only root filesystem and any uid: Python writes no bytecode (the layer has it),
    // and home, caches and temporary files go to /tmp.
    set("PYTHONDONTWRITEBYTECODE", "1".into());
    set("PYTHONUNBUFFERED", "1".into());
    set("HOME", "/tmp".into());
    set("TMPDIR", "/tmp".into());
    let mut diff_ids: Vec<Value> = base_config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if diff_ids.len() != base.layers.len() {
        return Err(ImageError::InvalidBase {
            base: base.name.clone(),
            why: format!(
                "its config lists {} layers and its manifest {}",
                diff_ids.len(),
                base.layers.len()
            ),
        });
    }
    diff_ids.push(Value::String(env.diff_id.clone()));
    diff_ids.push(Value::String(model.diff_id.clone()));
    let mut history: Vec<Value> = base_config["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let key = settings
        .labels
        .get("io.pyfunc-env.env-key")
        .cloned()
        .unwrap_or_default();
    history.push(json!({
        "created": created,
        "created_by": format!("pyfunc-env image: environment {key} at {}", layer::ENV_PATH),
    }));
    history.push(json!({
        "created": created,
        "created_by": format!("pyfunc-env image: model at {}", layer::MODEL_PATH),
    }));
    let config = json!({
        "created": created,
        "architecture": base_config["architecture"].as_str().unwrap_or(base::architecture()),
        "os": "linux",
        "config": {
            "User": DEFAULT_USER,
            "ExposedPorts": { format!("{DEFAULT_PORT}/tcp"): {} },
            "Env": variables.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "Entrypoint": [
                format!("{}/bin/python", layer::ENV_PATH),
                format!("{}/entrypoint.py", layer::SCRIPTS_PATH),
            ],
            "WorkingDir": "/tmp",
            "Labels": settings.labels,
            "StopSignal": "SIGTERM",
        },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
        "history": history,
    });
    let config = serde_json::to_vec(&config).map_err(|e| ImageError::Io {
        path: PathBuf::from("config.json"),
        source: e.into(),
    })?;
    let config_digest = blobs::sha256_digest(&config);

    let mut layers: Vec<ImageLayer> = base
        .layers
        .iter()
        .map(|l| ImageLayer {
            role: Role::Base,
            media_type: oci_layer_type(&l.media_type),
            digest: l.digest.clone(),
            size: l.size,
        })
        .collect();
    for (role, blob) in [(Role::Environment, env), (Role::Model, model)] {
        layers.push(ImageLayer {
            role,
            media_type: blob.media_type.clone(),
            digest: blob.digest.clone(),
            size: blob.size,
        });
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type,
            "digest": l.digest,
            "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest = serde_json::to_vec(&manifest).map_err(|e| ImageError::Io {
        path: PathBuf::from("manifest.json"),
        source: e.into(),
    })?;
    Ok(Image {
        digest: blobs::sha256_digest(&manifest),
        config,
        config_digest,
        manifest,
        layers,
        base_source: base.source.clone(),
    })
}

/// One blob of a push and what happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct PushedBlob {
    /// What it is.
    pub role: Role,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
    /// `uploaded`, `present` (the registry had it) or `mounted` (from the base's repository).
    pub action: &'static str,
}

/// What [`push`] did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// The reference pushed.
    pub reference: String,
    /// Every blob, in upload order (the config last).
    pub blobs: Vec<PushedBlob>,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
}

impl PushReport {
    /// How many blobs were uploaded (the others the registry had, or mounted from the base's
    /// repository). (Was counted in the CLI.)
    #[must_use]
    pub fn uploaded(&self) -> usize {
        self.blobs.iter().filter(|b| b.action == "uploaded").count()
    }
}

/// Makes sure the blob of `layer` is in the store (fetching a registry base layer, checking
/// its digest); returns its path.
pub(crate) async fn local_blob(
    image: &Image,
    layer: &ImageLayer,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<PathBuf, ImageError> {
    let path = store.path(&layer.digest);
    if path.is_file() {
        return Ok(path);
    }
    let BaseSource::Registry(reference) = &image.base_source else {
        return Err(ImageError::Io {
            path,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "blob missing from the cache",
            ),
        });
    };
    let client = registry::Client::new(reference, settings)?;
    let temp = store.temp()?;
    client.blob_to_file(&layer.digest, temp.path()).await?;
    let mut file = fs_err::File::open(temp.path()).map_err(io(temp.path()))?;
    let mut writer = blobs::HashingWriter::new(std::io::sink());
    std::io::copy(&mut file, &mut writer).map_err(io(temp.path()))?;
    let (_, actual, _) = writer.finish();
    if actual != layer.digest {
        return Err(ImageError::DigestMismatch {
            what: format!("{reference} layer"),
            expected: layer.digest.clone(),
            actual,
        });
    }
    store.persist(temp, &layer.digest)
}

/// Pushes `image` to `target`: every blob the registry lacks (base layers mounted from the
/// base's repository when it is the same registry), then the manifest under the tag.
pub async fn push(
    image: &Image,
    target: &Reference,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<PushReport, ImageError> {
    let client = registry::Client::new(target, settings)?;
    let mut report = PushReport {
        reference: target.tagged(),
        blobs: Vec::new(),
        uploaded_bytes: 0,
    };
    let config_path = store.path(&store.put_bytes(&image.config)?);
    let config_layer = ImageLayer {
        role: Role::Config,
        media_type: CONFIG_MEDIA_TYPE.to_string(),
        digest: image.config_digest.clone(),
        size: image.config.len() as u64,
    };
    for layer in image.layers.iter().chain(std::iter::once(&config_layer)) {
        let mut action = "present";
        if !client.has_blob(&layer.digest).await? {
            let same_registry = matches!(&image.base_source,
                BaseSource::Registry(base) if base.registry == target.registry && base.repository != target.repository);
            let mounted = layer.role == Role::Base
                && same_registry
                && match &image.base_source {
                    BaseSource::Registry(base) => {
                        client.mount(&layer.digest, &base.repository).await?
                    }
                    BaseSource::Store => false,
                };
            if mounted {
                action = "mounted";
            } else {
                let path = if layer.role == Role::Config {
                    config_path.clone()
                } else {
                    local_blob(image, layer, store, settings).await?
                };
                client.upload(&layer.digest, &path, layer.size).await?;
                report.uploaded_bytes += layer.size;
                action = "uploaded";
            }
        }
        tracing::debug!("{} {:?} {}", action, layer.role, layer.digest);
        report.blobs.push(PushedBlob {
            role: layer.role,
            digest: layer.digest.clone(),
            size: layer.size,
            action,
        });
    }
    let tag = target.tag.as_deref().unwrap_or("latest");
    client
        .put_manifest(tag, &image.manifest, MANIFEST_MEDIA_TYPE)
        .await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only an image that goes nowhere but the cache is worth a warning before the build.
    #[test]
    fn an_image_kept_only_in_the_cache_is_a_warning() {
        let request = |push, outputs: &[&str]| ImageRequest {
            contents: ImageContents {
                prefix: "/cache/envs-v1/k".into(),
                key: "k".into(),
                model_dir: "/model".into(),
                variables: BTreeMap::new(),
            },
            model_uri: "model".into(),
            target: Reference::parse("localhost:5000/model:1").unwrap(),
            push,
            outputs: outputs.iter().map(|o| Output::parse(o).unwrap()).collect(),
            compile: true,
            compression: Compression::default(),
            staging_dir: "/cache/tmp".into(),
            registry: RegistrySettings::default(),
            source_date_epoch: None,
        };
        assert_eq!(
            request(false, &[]).warnings(),
            [RequestWarning::OnlyInCache]
        );
        assert_eq!(
            RequestWarning::OnlyInCache.to_string(),
            "Neither `--push` nor `--output` given: the image is only written to the cache"
        );
        assert!(request(true, &[]).warnings().is_empty());
        assert!(request(false, &["oci:/out"]).warnings().is_empty());
    }

    /// Blobs the registry had or mounted from the base are not counted as uploaded.
    #[test]
    fn a_push_counts_only_the_blobs_it_uploaded() {
        let blob = |action| PushedBlob {
            role: Role::Base,
            digest: "sha256:0".into(),
            size: 1,
            action,
        };
        let report = PushReport {
            reference: "localhost:5000/model:1".into(),
            blobs: vec![
                blob("present"),
                blob("uploaded"),
                blob("mounted"),
                blob("uploaded"),
            ],
            uploaded_bytes: 2,
        };
        assert_eq!(report.uploaded(), 2);
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(946_684_800 + 3723), "2000-01-01T01:02:03Z");
    }

    /// The environment layer's line: a short digest, its size, and cached or how long it took;
    /// nothing for an image without one.
    #[test]
    fn the_environment_layer_is_one_line() {
        let layer = |role, digest: &str| ReportedLayer {
            layer: ImageLayer {
                role,
                media_type: String::new(),
                digest: digest.into(),
                size: 3 * 1024 * 1024,
            },
            diff_id: String::new(),
        };
        let mut report = ImageReport {
            reference: String::new(),
            digest: String::new(),
            config: layer(Role::Config, "c").layer,
            layers: vec![layer(Role::Base, "b"), layer(Role::Model, "m")],
            size: 0,
            env_key: String::new(),
            mlflow_version: None,
            env_layer_cached: true,
            env_layer_seconds: 3.21,
            push: None,
            outputs: Vec::new(),
            warnings: Vec::new(),
            seconds: 0.0,
        };
        assert_eq!(report.environment_layer(), None);
        report
            .layers
            .push(layer(Role::Environment, "sha256:0123456789abcdef0123"));
        assert_eq!(
            report.environment_layer().as_deref(),
            Some("Environment layer sha256:0123456789ab (3.0 MiB, cached)")
        );
        report.env_layer_cached = false;
        assert_eq!(
            report.environment_layer().as_deref(),
            Some("Environment layer sha256:0123456789ab (3.0 MiB, written in 3.2s)")
        );
    }
}

/// Where to write the image besides a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout directory.
    OciLayout(PathBuf),
    /// A `docker save` archive.
    DockerArchive(PathBuf),
}

impl Output {
    /// Parses `oci:DIR` or `docker-archive:FILE`.
    ///
    /// # Errors
    /// [`ImageError::InvalidOutput`] for anything else (or an empty path).
    pub fn parse(text: &str) -> Result<Self, ImageError> {
        let output = if let Some(dir) = text.strip_prefix("oci:") {
            (!dir.is_empty()).then(|| Self::OciLayout(PathBuf::from(dir)))
        } else if let Some(file) = text.strip_prefix("docker-archive:") {
            (!file.is_empty()).then(|| Self::DockerArchive(PathBuf::from(file)))
        } else {
            None
        };
        output.ok_or_else(|| ImageError::InvalidOutput {
            text: text.to_string(),
        })
    }
}

/// Refuses `--push` when the network is off (`--offline`), before anything is built.
///
/// # Errors
/// [`ImageError::PushOffline`].
pub fn check_offline(push: bool, offline: bool) -> Result<(), ImageError> {
    if push && offline {
        return Err(ImageError::PushOffline);
    }
    Ok(())
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::OciLayout(dir) => write!(f, "oci:{}", dir.display()),
            Self::DockerArchive(file) => write!(f, "docker-archive:{}", file.display()),
        }
    }
}

/// The environment and model an image is made of: what [`ImageRequest`] takes from env-build's
/// [`Ensured`](env_build::Ensured).
#[derive(Debug, Clone)]
pub struct ImageContents {
    /// The built environment.
    pub prefix: PathBuf,
    /// Its key.
    pub key: String,
    /// The model directory.
    pub model_dir: PathBuf,
    /// The conda file's `variables:`.
    pub variables: BTreeMap<String, String>,
}

impl From<&env_build::Ensured> for ImageContents {
    /// The environment `ensured` holds, and its model. (Was copied field by field in the CLI.)
    fn from(ensured: &env_build::Ensured) -> Self {
        Self {
            prefix: ensured.created.prefix.clone(),
            key: ensured.created.key.to_string(),
            model_dir: ensured.env.root().to_path_buf(),
            variables: ensured.env.variables(),
        }
    }
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// The environment and the model.
    pub contents: ImageContents,
    /// The model as the user named it (a label).
    pub model_uri: String,
    /// The image's name.
    pub target: Reference,
    /// Push to `target`'s registry.
    pub push: bool,
    /// Files to write.
    pub outputs: Vec<Output>,
    /// Compile bytecode into the environment layer.
    pub compile: bool,
    /// How the environment and model layers are compressed.
    pub compression: Compression,
    /// The cache's `tmp/`.
    pub staging_dir: PathBuf,
    /// How to reach registries.
    pub registry: RegistrySettings,
    /// `SOURCE_DATE_EPOCH`: the config's `created` (else
    /// [`auth_files::DEFAULT_CREATED`]).
    pub source_date_epoch: Option<u64>,
}

/// What the user should know about an [`ImageRequest`] before it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestWarning {
    /// Nothing but the cache's blob store gets the image.
    #[error("Neither `--push` nor `--output` given: the image is only written to the cache")]
    OnlyInCache,
}

impl ImageRequest {
    /// What the user should know before the build. (Was decided in the CLI.)
    #[must_use]
    pub fn warnings(&self) -> Vec<RequestWarning> {
        let mut warnings = Vec::new();
        if !self.push && self.outputs.is_empty() {
            warnings.push(RequestWarning::OnlyInCache);
        }
        warnings
    }
}

/// A layer in the report, with its uncompressed digest when known.
#[derive(Debug, Clone, Serialize)]
pub struct ReportedLayer {
    /// The layer.
    #[serde(flatten)]
    pub layer: ImageLayer,
    /// Its `diff_id`.
    pub diff_id: String,
}

/// What [`build`] did.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The image's name.
    pub reference: String,
    /// The manifest's digest.
    pub digest: String,
    /// The config.
    pub config: ImageLayer,
    /// The layers, bottom first.
    pub layers: Vec<ReportedLayer>,
    /// Bytes of the manifest, the config and every layer (compressed): what a registry holds.
    pub size: u64,
    /// The environment's key.
    pub env_key: String,
    /// The environment's mlflow.
    pub mlflow_version: Option<String>,
    /// Whether the environment layer came from the cache.
    pub env_layer_cached: bool,
    /// Seconds spent on the environment layer.
    pub env_layer_seconds: f64,
    /// The push, if any.
    pub push: Option<PushReport>,
    /// Files written.
    pub outputs: Vec<String>,
    /// Things the user should know.
    pub warnings: Vec<String>,
    /// Seconds spent in all.
    pub seconds: f64,
}

impl ImageReport {
    /// The environment layer in one line, `Environment layer sha256:0123456789ab (12.0 MiB,
    /// cached)` or `(..., written in 3.2s)`; `None` if the image has none. (Was assembled in
    /// the CLI.)
    #[must_use]
    pub fn environment_layer(&self) -> Option<String> {
        let layer = &self
            .layers
            .iter()
            .find(|l| l.layer.role == Role::Environment)?
            .layer;
        let how = if self.env_layer_cached {
            "cached".to_string()
        } else {
            format!("written in {:.1}s", self.env_layer_seconds)
        };
        Some(format!(
            "Environment layer {} ({}, {how})",
            &layer.digest[..19.min(layer.digest.len())],
            env_cache::units::human_size(layer.size),
        ))
    }
}

/// What can be checked before the environment is built, so a bad base or an unreachable
/// registry fails in seconds, not after a build: loads the base (refusing one without glibc)
/// and, when pushing, asks the target registry's `/v2/`.
pub async fn prepare(
    base_name: &str,
    push_to: Option<&Reference>,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<Base, ImageError> {
    let base = base::load(base_name, store, settings).await?;
    if !base::has_dynamic_loader(&base, store)? {
        return Err(ImageError::NoGlibc {
            base: base_name.to_string(),
        });
    }
    if let Some(target) = push_to {
        registry::Client::new(target, settings)?.ping().await?;
    }
    Ok(base)
}

/// Builds the image of `request` on `base` (from [`prepare`]): the environment layer, the
/// model layer and the config; writes the outputs asked for and pushes.
pub async fn build(
    request: &ImageRequest,
    base: &Base,
    store: &BlobStore,
) -> Result<ImageReport, ImageError> {
    let started = std::time::Instant::now();
    let environment =
        env_pack::inspect(&request.contents.prefix).map_err(|source| ImageError::Pack {
            prefix: request.contents.prefix.clone(),
            source: Box::new(source),
        })?;
    let mlflow_version = environment.version_of("mlflow").map(ToString::to_string);
    let env = layer::env_layer(
        store,
        &request.contents.prefix,
        &request.contents.key,
        &layer::EnvLayerOptions {
            compile: request.compile,
            staging_dir: request.staging_dir.clone(),
            compression: request.compression,
        },
    )?;
    let model = layer::model_layer(
        store,
        &request.contents.model_dir,
        &layer::ModelLayerExtras {
            entrypoint: ENTRYPOINT_SCRIPT,
            serve: env_run_serve_script(),
        },
        request.compression,
    )?;
    let mut labels = BTreeMap::new();
    labels.insert(
        "io.pyfunc-env.env-key".to_string(),
        request.contents.key.clone(),
    );
    labels.insert(
        "io.pyfunc-env.model-uri".to_string(),
        request.model_uri.clone(),
    );
    labels.insert(
        "io.pyfunc-env.mlflow-version".to_string(),
        mlflow_version.clone().unwrap_or_default(),
    );
    labels.insert(
        "io.pyfunc-env.version".to_string(),
        env!("CARGO_PKG_VERSION").to_string(),
    );
    labels.insert(
        "org.opencontainers.image.title".to_string(),
        request.target.repository.clone(),
    );
    let prefix_variable = if request.contents.prefix.join("conda-meta").is_dir() {
        "CONDA_PREFIX"
    } else {
        "VIRTUAL_ENV"
    };
    let mut env_vars = vec![(prefix_variable.to_string(), layer::ENV_PATH.to_string())];
    env_vars.extend(
        request
            .contents
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let image = assemble(
        base,
        &env.blob,
        &model,
        &ImageSettings {
            labels,
            env: env_vars,
            created: auth_files::created_time(request.source_date_epoch),
        },
    )?;
    store.put_bytes(&image.config)?;

    let mut outputs = Vec::new();
    for output in &request.outputs {
        match output {
            Output::OciLayout(dir) => {
                write_oci_layout(&image, &request.target, dir, store, &request.registry).await?;
            }
            Output::DockerArchive(file) => {
                write_docker_archive(&image, &request.target, file, store, &request.registry)
                    .await?;
            }
        }
        outputs.push(output.to_string());
    }
    let push = if request.push {
        Some(push(&image, &request.target, store, &request.registry).await?)
    } else {
        None
    };
    let diff_ids: Vec<String> = serde_json::from_slice::<Value>(&image.config)
        .ok()
        .and_then(|c| c["rootfs"]["diff_ids"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect();
    let size = image.manifest.len() as u64
        + image.config.len() as u64
        + image.layers.iter().map(|l| l.size).sum::<u64>();
    Ok(ImageReport {
        reference: request.target.tagged(),
        digest: image.digest.clone(),
        config: ImageLayer {
            role: Role::Config,
            media_type: CONFIG_MEDIA_TYPE.to_string(),
            digest: image.config_digest.clone(),
            size: image.config.len() as u64,
        },
        layers: image
            .layers
            .iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| ReportedLayer {
                layer: layer.clone(),
                diff_id,
            })
            .collect(),
        size,
        env_key: request.contents.key.clone(),
        mlflow_version,
        env_layer_cached: env.cached,
        env_layer_seconds: (env.seconds * 1000.0).round() / 1000.0,
        push,
        outputs,
        warnings: env.warnings,
        seconds: (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

/// `env-run`'s serve script, which the image runs as `run -- serve` does.
fn env_run_serve_script() -> &'static str {
    env_run::SERVE_SCRIPT
}
