//! The base image: its config and its layers' descriptors, from a registry (`IMAGE`), an OCI
//! image layout (`oci:DIR[:TAG]`) or a `docker save` archive (`docker-archive:FILE`).
//!
//! A registry base's layers are not downloaded to build the image: pushing to the same
//! registry reuses them by digest (present already, or mounted from the base's repository);
//! they are fetched, and their digests checked, only when another registry or a file output
//! needs their bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::blobs::{BlobStore, HashingWriter};
use crate::reference::Reference;
use crate::registry::{Client, RegistrySettings};
use crate::{ImageError, io};

/// A base layer.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    /// Its media type as the base's manifest gives it (Docker's or OCI's).
    pub media_type: String,
    /// Its digest.
    pub digest: String,
    /// Its size.
    pub size: u64,
}

/// Where the base's blobs are.
#[derive(Debug, Clone)]
pub enum BaseSource {
    /// Copied into the cache's blob store.
    Store,
    /// In a registry repository, fetched on demand.
    Registry(Reference),
}

/// A base image.
#[derive(Debug, Clone)]
pub struct Base {
    /// As given.
    pub name: String,
    /// Its config (`architecture`, `os`, `config.Env`, `rootfs.diff_ids`, `history`).
    pub config: Value,
    /// Its layers, bottom first.
    pub layers: Vec<BaseLayer>,
    /// Where their blobs are.
    pub source: BaseSource,
}

const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// The architecture images are made for: this machine's, in OCI's names.
#[must_use]
pub fn architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Loads the base named `name`.
pub async fn load(
    name: &str,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<Base, ImageError> {
    let base = if let Some(path) = name.strip_prefix("oci:") {
        from_layout(name, path, store)?
    } else if let Some(path) = name.strip_prefix("docker-archive:") {
        from_docker_archive(name, Path::new(path), store)?
    } else {
        from_registry(name, settings).await?
    };
    if base.layers.is_empty() {
        return Err(ImageError::NoGlibc {
            base: name.to_string(),
        });
    }
    Ok(base)
}

fn invalid(base: &str, why: impl Into<String>) -> ImageError {
    ImageError::InvalidBase {
        base: base.to_string(),
        why: why.into(),
    }
}

fn parse_json(base: &str, bytes: &[u8], what: &str) -> Result<Value, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| invalid(base, format!("{what} is not JSON: {e}")))
}

/// The manifest of this platform in an index.
fn pick_platform<'a>(base: &str, index: &'a Value) -> Result<&'a Value, ImageError> {
    let manifests = index["manifests"].as_array().map_or(&[][..], Vec::as_slice);
    manifests
        .iter()
        .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == architecture())
        .ok_or_else(|| {
            invalid(
                base,
                format!("it has no manifest for linux/{}", architecture()),
            )
        })
}

fn layers_of(base: &str, manifest: &Value) -> Result<Vec<BaseLayer>, ImageError> {
    let layers = manifest["layers"]
        .as_array()
        .ok_or_else(|| invalid(base, "its manifest lists no `layers`"))?;
    layers
        .iter()
        .map(|layer| {
            Ok(BaseLayer {
                media_type: layer["mediaType"].as_str().unwrap_or_default().to_string(),
                digest: layer["digest"]
                    .as_str()
                    .ok_or_else(|| invalid(base, "a layer has no digest"))?
                    .to_string(),
                size: layer["size"].as_u64().unwrap_or_default(),
            })
        })
        .collect()
}

async fn from_registry(name: &str, settings: &RegistrySettings) -> Result<Base, ImageError> {
    let reference = Reference::parse(name)?;
    let client = Client::new(&reference, settings)?;
    let (bytes, media_type) = client.manifest(reference.version()).await?;
    let mut manifest = parse_json(name, &bytes, "the manifest")?;
    let kind = manifest["mediaType"]
        .as_str()
        .unwrap_or(&media_type)
        .to_string();
    if INDEX_TYPES.contains(&kind.as_str()) || manifest["manifests"].is_array() {
        let digest = pick_platform(name, &manifest)?["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (bytes, _) = client.manifest(&digest).await?;
        manifest = parse_json(name, &bytes, "the platform manifest")?;
    }
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .ok_or_else(|| invalid(name, "its manifest has no config"))?;
    let config = client.blob_bytes(config_digest).await?;
    Ok(Base {
        name: name.to_string(),
        config: parse_json(name, &config, "the config")?,
        layers: layers_of(name, &manifest)?,
        source: BaseSource::Registry(reference),
    })
}

/// `DIR` or `DIR:TAG` (the tag after the last `:` when `DIR` itself does not exist).
fn split_layout(path: &str) -> (PathBuf, Option<String>) {
    if Path::new(path).is_dir() {
        return (PathBuf::from(path), None);
    }
    match path.rsplit_once(':') {
        Some((dir, tag)) if !tag.contains('/') => (PathBuf::from(dir), Some(tag.to_string())),
        _ => (PathBuf::from(path), None),
    }
}

fn from_layout(name: &str, path: &str, store: &BlobStore) -> Result<Base, ImageError> {
    let (dir, tag) = split_layout(path);
    let blob = |digest: &str| {
        dir.join("blobs")
            .join("sha256")
            .join(digest.strip_prefix("sha256:").unwrap_or(digest))
    };
    let read = |path: &Path| fs_err::read(path).map_err(io(path));
    let index = parse_json(name, &read(&dir.join("index.json"))?, "index.json")?;
    let manifests = index["manifests"].as_array().map_or(&[][..], Vec::as_slice);
    let chosen = match &tag {
        Some(tag) => manifests
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag)),
        None if manifests.len() == 1 => manifests.first(),
        None => manifests
            .iter()
            .find(|m| m["platform"]["architecture"] == architecture()),
    }
    .ok_or_else(|| invalid(name, "no manifest in index.json matches; add `:TAG`"))?;
    let mut manifest = parse_json(
        name,
        &read(&blob(chosen["digest"].as_str().unwrap_or_default()))?,
        "the manifest",
    )?;
    if manifest["manifests"].is_array() {
        let digest = pick_platform(name, &manifest)?["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        manifest = parse_json(name, &read(&blob(&digest))?, "the platform manifest")?;
    }
    let config_digest = manifest["config"]["digest"].as_str().unwrap_or_default();
    let config = parse_json(name, &read(&blob(config_digest))?, "the config")?;
    let layers = layers_of(name, &manifest)?;
    for layer in &layers {
        copy_into_store(store, &blob(&layer.digest), &layer.digest)?;
    }
    Ok(Base {
        name: name.to_string(),
        config,
        layers,
        source: BaseSource::Store,
    })
}

/// Copies (hard-links when it can) `path` into the store as `digest`, checking the digest.
fn copy_into_store(store: &BlobStore, path: &Path, digest: &str) -> Result<(), ImageError> {
    if store.has(digest) {
        return Ok(());
    }
    let mut temp = store.temp()?;
    let mut source = fs_err::File::open(path).map_err(io(path))?;
    let mut writer = HashingWriter::new(temp.as_file_mut());
    std::io::copy(&mut source, &mut writer).map_err(io(path))?;
    let (_, actual, _) = writer.finish();
    if actual != digest {
        return Err(ImageError::DigestMismatch {
            what: path.display().to_string(),
            expected: digest.to_string(),
            actual,
        });
    }
    store.persist(temp, digest)?;
    Ok(())
}

/// A `docker save` archive: `manifest.json` names the config and the layer files (plain tars,
/// or compressed ones from newer Docker); each layer is stored as it is, by its own digest.
fn from_docker_archive(name: &str, file: &Path, store: &BlobStore) -> Result<Base, ImageError> {
    let staging = tempfile::Builder::new()
        .prefix(".tmp-archive-")
        .tempdir_in(store.staging_dir())
        .map_err(io(file))?;
    // Unpack the regular files by index (the archive has no nesting worth keeping).
    let mut names = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(fs_err::File::open(file).map_err(io(file))?);
    for (index, entry) in archive.entries().map_err(io(file))?.enumerate() {
        let mut entry = entry.map_err(io(file))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let entry_name = entry
            .path()
            .map_err(io(file))?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let target = staging.path().join(index.to_string());
        let mut out = fs_err::File::create(&target).map_err(io(&target))?;
        std::io::copy(&mut entry, &mut out).map_err(io(&target))?;
        names.insert(entry_name, target);
    }
    let get = |entry: &str| {
        names
            .get(entry.trim_start_matches("./"))
            .ok_or_else(|| invalid(name, format!("the archive has no `{entry}`")))
    };
    let manifest = parse_json(name, &read_file(get("manifest.json")?)?, "manifest.json")?;
    let first = &manifest[0];
    let config = parse_json(
        name,
        &read_file(get(first["Config"].as_str().unwrap_or_default())?)?,
        "the config",
    )?;
    let mut layers = Vec::new();
    for layer in first["Layers"].as_array().map_or(&[][..], Vec::as_slice) {
        let path = get(layer.as_str().unwrap_or_default())?;
        let mut head = [0u8; 2];
        let gzip = fs_err::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .is_ok()
            && head == [0x1f, 0x8b];
        let mut temp = store.temp()?;
        let mut writer = HashingWriter::new(temp.as_file_mut());
        std::io::copy(
            &mut fs_err::File::open(path).map_err(io(path))?,
            &mut writer,
        )
        .map_err(io(path))?;
        let (_, digest, size) = writer.finish();
        store.persist(temp, &digest)?;
        layers.push(BaseLayer {
            media_type: if gzip {
                crate::layer::LAYER_MEDIA_TYPE.to_string()
            } else {
                "application/vnd.oci.image.layer.v1.tar".to_string()
            },
            digest,
            size,
        });
    }
    Ok(Base {
        name: name.to_string(),
        config,
        layers,
        source: BaseSource::Store,
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>, ImageError> {
    fs_err::read(path).map_err(io(path))
}

/// Whether any of the store's base layers holds a dynamic loader (`ld-linux*.so*`): an
/// environment's Python cannot start without one. Layers not in the store are not checked.
pub fn has_dynamic_loader(base: &Base, store: &BlobStore) -> Result<bool, ImageError> {
    if !matches!(base.source, BaseSource::Store) {
        return Ok(true);
    }
    for layer in &base.layers {
        let path = store.path(&layer.digest);
        let file = fs_err::File::open(&path).map_err(io(&path))?;
        let reader: Box<dyn Read> = if layer.media_type.ends_with("gzip") {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                file,
            )))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(io(&path))? {
            let entry = entry.map_err(io(&path))?;
            let entry_path = entry.path().map_err(io(&path))?;
            if entry_path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("ld-linux"))
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
