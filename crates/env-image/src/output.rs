//! Image files: an OCI image layout directory (`oci:DIR`, what `skopeo`, `crane`, `podman`
//! and containerd read) and a `docker save` archive (`docker-archive:FILE`, what `docker load`
//! and `podman load` read).

use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::blobs::BlobStore;
use crate::reference::Reference;
use crate::registry::RegistrySettings;
use crate::{Image, ImageError, io, local_blob};

/// Writes `image` into the OCI image layout `dir` (created if missing; other images in it are
/// kept, one with the same tag is replaced), tagged with `reference`'s tag.
pub async fn write_oci_layout(
    image: &Image,
    reference: &Reference,
    dir: &Path,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<(), ImageError> {
    let blobs = dir.join("blobs").join("sha256");
    fs_err::create_dir_all(&blobs).map_err(io(&blobs))?;
    let blob_path = |digest: &str| blobs.join(digest.strip_prefix("sha256:").unwrap_or(digest));
    for layer in &image.layers {
        let target = blob_path(&layer.digest);
        if target.is_file() {
            continue;
        }
        let source = local_blob(image, layer, store, settings).await?;
        link_or_copy(&source, &target)?;
    }
    for (digest, bytes) in [
        (&image.config_digest, &image.config),
        (&image.digest, &image.manifest),
    ] {
        crate::layer::write_atomic(&blob_path(digest), bytes)?;
    }
    crate::layer::write_atomic(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let tag = reference.tag.as_deref().unwrap_or("latest");
    let index_path = dir.join("index.json");
    let mut manifests: Vec<serde_json::Value> = fs_err::read(&index_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|index| index["manifests"].as_array().cloned())
        .unwrap_or_default();
    manifests.retain(|m| m["annotations"]["org.opencontainers.image.ref.name"] != tag);
    manifests.push(json!({
        "mediaType": crate::MANIFEST_MEDIA_TYPE,
        "digest": image.digest,
        "size": image.manifest.len(),
        "annotations": { "org.opencontainers.image.ref.name": tag },
    }));
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let text = serde_json::to_vec(&index).map_err(|e| ImageError::Io {
        path: index_path.clone(),
        source: e.into(),
    })?;
    crate::layer::write_atomic(&index_path, &text)
}

fn link_or_copy(source: &Path, target: &Path) -> Result<(), ImageError> {
    if fs_err::hard_link(source, target).is_ok() {
        return Ok(());
    }
    let dir = target.parent().unwrap_or(Path::new("."));
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    fs_err::copy(source, temp.path()).map_err(io(target))?;
    temp.persist(target).map_err(|e| ImageError::Io {
        path: target.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Writes `image` as a `docker save` archive at `file` (atomically), tagged `reference`.
/// Layers are stored uncompressed, as `docker save` writes them, which every version of
/// `docker load` reads.
pub async fn write_docker_archive(
    image: &Image,
    reference: &Reference,
    file: &Path,
    store: &BlobStore,
    settings: &RegistrySettings,
) -> Result<(), ImageError> {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = tempfile::Builder::new()
        .prefix(".tmp-image-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    let writer = std::io::BufWriter::with_capacity(1 << 20, temp.reopen().map_err(io(file))?);
    let mut builder = tar::Builder::new(writer);
    let header = |size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(crate::layer::LAYER_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header
    };
    let config: serde_json::Value =
        serde_json::from_slice(&image.config).map_err(|e| ImageError::Io {
            path: file.to_path_buf(),
            source: e.into(),
        })?;
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let config_name = format!(
        "blobs/sha256/{}",
        image.config_digest.trim_start_matches("sha256:")
    );
    builder
        .append_data(
            &mut header(image.config.len() as u64),
            &config_name,
            image.config.as_slice(),
        )
        .map_err(io(file))?;
    let mut layer_names = Vec::new();
    let mut written = std::collections::BTreeSet::new();
    for (layer, diff_id) in image.layers.iter().zip(&diff_ids) {
        let diff_id = diff_id.as_str().unwrap_or_default();
        let name = format!("blobs/sha256/{}", diff_id.trim_start_matches("sha256:"));
        layer_names.push(name.clone());
        if !written.insert(name.clone()) {
            continue;
        }
        let source = local_blob(image, layer, store, settings).await?;
        // Uncompressed into a temporary file first: a tar entry needs its size up front.
        let plain = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        {
            let input = fs_err::File::open(&source).map_err(io(&source))?;
            let mut output = std::io::BufWriter::new(plain.reopen().map_err(io(plain.path()))?);
            if layer.media_type.ends_with("gzip") {
                let mut decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(input));
                std::io::copy(&mut decoder, &mut output).map_err(io(&source))?;
            } else {
                std::io::copy(&mut std::io::BufReader::new(input), &mut output)
                    .map_err(io(&source))?;
            }
            output.flush().map_err(io(plain.path()))?;
        }
        let size = fs_err::metadata(plain.path())
            .map_err(io(plain.path()))?
            .len();
        let reader = fs_err::File::open(plain.path()).map_err(io(plain.path()))?;
        builder
            .append_data(&mut header(size), &name, reader)
            .map_err(io(file))?;
    }
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": [reference.tagged()],
        "Layers": layer_names,
    }]);
    let manifest = serde_json::to_vec(&manifest).map_err(|e| ImageError::Io {
        path: file.to_path_buf(),
        source: e.into(),
    })?;
    builder
        .append_data(
            &mut header(manifest.len() as u64),
            "manifest.json",
            manifest.as_slice(),
        )
        .map_err(io(file))?;
    let mut writer = builder.into_inner().map_err(io(file))?;
    writer.flush().map_err(io(file))?;
    drop(writer);
    temp.persist(file).map_err(|e| ImageError::Io {
        path: file.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}
