//! The two layers pyfunc-env writes, both reproducible: entries sorted, every mtime
//! [`LAYER_MTIME`], owner 0:0 with no names, permission bits normalised, gzip without a
//! timestamp, and no path of the build machine in either layer.
//!
//! - The **environment layer** is the relocatable prefix `pack` makes (the same checks and
//!   pack-time bytecode) packed for its destination, [`ENV_PATH`]
//!   (`env_pack::pack_for_destination`): every file that named the environment's path in the
//!   cache names [`ENV_PATH`] instead, bytecode included, and the package cache's paths are
//!   left out of `conda-meta`, so the same environment gives the same layer whatever the cache
//!   directory's path on whichever machine. It depends on the environment
//!   only, so it is written once per environment key and recorded in the cache
//!   (`images-v1/env-layers/<key>-<variant>.json`); a second image of the same environment
//!   reuses the blob without reading the environment again.
//! - The **model layer** is the model directory under [`MODEL_PATH`] (MLflow's `/opt/ml/model`
//!   convention), plus the two small scripts the entrypoint runs and a world-writable `/tmp`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blobs::{BlobStore, HashingWriter};
use crate::compress::{Compression, Compressor};
use crate::{ImageError, io};

/// Where the environment is in the image.
pub const ENV_PATH: &str = "/opt/pyfunc-env/env";
/// Where the model is in the image (the convention of MLflow's images and of Amazon's).
pub const MODEL_PATH: &str = "/opt/ml/model";
/// Where the entrypoint scripts are in the image.
pub const SCRIPTS_PATH: &str = "/opt/pyfunc-env";
/// The mtime of every entry: 2000-01-01T00:00:00Z, as `pack`'s default. Pack-time bytecode is
/// unchecked-hash, so no mtime can make it stale.
pub const LAYER_MTIME: u64 = 946_684_800;
/// OCI media type of a gzip-compressed layer.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Bumped when the environment layer's content for the same environment changes (2: packed
/// for [`ENV_PATH`], the same from every cache path; 3: the environment's own bytecode, gzip
/// level 4 in parallel chunks; 4: a pulled environment's binary files no longer name the path
/// of the agent that built it).
const ENV_LAYER_FORMAT: u32 = 4;

/// A layer blob in the store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerBlob {
    /// `sha256:` of the compressed blob (the manifest's digest).
    pub digest: String,
    /// Compressed size.
    pub size: u64,
    /// `sha256:` of the uncompressed tar (the config's `diff_id`).
    pub diff_id: String,
    /// Uncompressed size.
    pub uncompressed_size: u64,
    /// Its OCI media type (`tar+gzip` or `tar+zstd`).
    pub media_type: String,
}

/// A compressed layer being written into the store: the tar goes in, its digest (`diff_id`)
/// and the compressed blob's are computed on the way, nothing is read back.
pub(crate) struct LayerSink {
    writer: HashingWriter<Compressor<HashingWriter<std::io::BufWriter<std::fs::File>>>>,
    temp: tempfile::NamedTempFile,
    compression: Compression,
}

impl LayerSink {
    fn new(store: &BlobStore, compression: Compression) -> Result<Self, ImageError> {
        let temp = store.temp()?;
        let file = temp.reopen().map_err(io(temp.path()))?;
        let file = std::io::BufWriter::with_capacity(1 << 20, file);
        let compressor =
            Compressor::new(HashingWriter::new(file), compression).map_err(io(temp.path()))?;
        Ok(Self {
            writer: HashingWriter::new(compressor),
            temp,
            compression,
        })
    }

    fn finish(self, store: &BlobStore) -> Result<LayerBlob, ImageError> {
        let path = self.temp.path().to_path_buf();
        let (compressor, diff_id, uncompressed_size) = self.writer.finish();
        let file = compressor.finish().map_err(io(&path))?;
        let (file, digest, size) = file.finish();
        file.into_inner().map_err(|e| ImageError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        store.persist(self.temp, &digest)?;
        Ok(LayerBlob {
            digest,
            size,
            diff_id,
            uncompressed_size,
            media_type: self.compression.media_type().to_string(),
        })
    }
}

impl Write for LayerSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

/// A layer written entry by entry.
struct LayerWriter {
    builder: tar::Builder<LayerSink>,
}

impl LayerWriter {
    fn new(store: &BlobStore, compression: Compression) -> Result<Self, ImageError> {
        let mut builder = tar::Builder::new(LayerSink::new(store, compression)?);
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(Self { builder })
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header.set_mtime(LAYER_MTIME);
        header.set_uid(0);
        header.set_gid(0);
        let _ = header.set_username("");
        let _ = header.set_groupname("");
        header
    }

    fn dir(&mut self, path: &str, mode: u32) -> Result<(), ImageError> {
        let mut header = Self::header(tar::EntryType::Directory, mode, 0);
        self.builder
            .append_data(&mut header, format!("{path}/"), std::io::empty())
            .map_err(io(Path::new(path)))
    }

    fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: impl Read,
    ) -> Result<(), ImageError> {
        let mut header = Self::header(tar::EntryType::Regular, mode, size);
        self.builder
            .append_data(&mut header, path, data)
            .map_err(io(Path::new(path)))
    }

    fn symlink(&mut self, path: &str, target: &Path) -> Result<(), ImageError> {
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut header, path, target)
            .map_err(io(Path::new(path)))
    }

    fn finish(self, store: &BlobStore) -> Result<LayerBlob, ImageError> {
        let sink = self
            .builder
            .into_inner()
            .map_err(io(Path::new("layer.tar")))?;
        sink.finish(store)
    }
}

/// Writes the directories of `path` (`opt/pyfunc-env`): `opt/`, `opt/pyfunc-env/`.
fn parents(writer: &mut LayerWriter, path: &str) -> Result<(), ImageError> {
    let mut current = String::new();
    for part in path.trim_matches('/').split('/') {
        if !current.is_empty() {
            current.push('/');
        }
        current.push_str(part);
        writer.dir(&current, 0o755)?;
    }
    Ok(())
}

/// How the environment layer is made.
#[derive(Debug, Clone)]
pub struct EnvLayerOptions {
    /// Compile bytecode into the layer (as `pack` does by default).
    pub compile: bool,
    /// Where `pack` stages its bytecode (the cache's `tmp/`).
    pub staging_dir: PathBuf,
    /// How the layer is compressed.
    pub compression: Compression,
}

/// What [`env_layer`] did.
#[derive(Debug, Clone, Serialize)]
pub struct EnvLayer {
    /// The blob.
    #[serde(flatten)]
    pub blob: LayerBlob,
    /// True when the layer was already in the cache for this environment key.
    pub cached: bool,
    /// `pack`'s warnings (only when written now).
    pub warnings: Vec<String>,
    /// Seconds spent.
    pub seconds: f64,
}

/// The environment layer of the environment at `prefix` (key `key`): from the cache, or
/// packed now and recorded.
pub fn env_layer(
    store: &BlobStore,
    prefix: &Path,
    key: &str,
    options: &EnvLayerOptions,
) -> Result<EnvLayer, ImageError> {
    let started = std::time::Instant::now();
    let variant = if options.compile { "pyc" } else { "nopyc" };
    let record = store.record_dir().join(format!(
        "{key}-v{ENV_LAYER_FORMAT}-{variant}-{}.json",
        options.compression.name()
    ));
    if let Ok(text) = fs_err::read_to_string(&record)
        && let Ok(blob) = serde_json::from_str::<LayerBlob>(&text)
        && store.has(&blob.digest)
    {
        tracing::debug!(
            "Environment layer of `{key}` from the cache: {}",
            blob.digest
        );
        return Ok(EnvLayer {
            blob,
            cached: true,
            warnings: Vec::new(),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    fs_err::create_dir_all(&options.staging_dir).map_err(io(&options.staging_dir))?;
    let pack_options = env_pack::PackOptions {
        format: env_pack::Format::Tar,
        compile: options.compile,
        // Layer mtimes are kept in the container: the environment's own bytecode, made valid
        // for them, instead of compiling it all again.
        reuse_bytecode: true,
        keep_tests: false,
        exclude_distributions: Vec::new(),
        model: None,
        staging_dir: options.staging_dir.clone(),
        mtime: LAYER_MTIME,
        compression_level: 0,
        full_prefix: false,
    };
    // The tar goes straight into the compressor and both digests: no archive on disk.
    let sink = LayerSink::new(store, options.compression)?;
    let (report, sink) = env_pack::pack_for_destination_to(
        prefix,
        sink,
        &pack_options,
        ENV_PATH,
        ENV_PATH.trim_start_matches('/'),
    )
    .map_err(|source| ImageError::Pack {
        prefix: prefix.to_path_buf(),
        source: Box::new(source),
    })?;
    tracing::debug!(
        "Environment layer: scan {:.2} s, bytecode {:.2} s ({} files), tar and compression {:.2} s",
        report.timings.scan,
        report.timings.compile,
        report.bytecode_files,
        report.timings.write
    );
    let blob = sink.finish(store)?;
    let text = serde_json::to_string_pretty(&blob).map_err(|e| ImageError::Io {
        path: record.clone(),
        source: e.into(),
    })?;
    write_atomic(&record, text.as_bytes())?;
    Ok(EnvLayer {
        blob,
        cached: false,
        warnings: report.warnings,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The files the model layer adds besides the model.
#[derive(Debug, Clone)]
pub struct ModelLayerExtras<'a> {
    /// `entrypoint.py`.
    pub entrypoint: &'a str,
    /// `serve.py` (`env-run`'s, the script of `run -- serve`).
    pub serve: &'a str,
}

/// The model layer: `model_dir` under [`MODEL_PATH`], the scripts under [`SCRIPTS_PATH`], and
/// `/tmp` (mode 1777).
pub fn model_layer(
    store: &BlobStore,
    model_dir: &Path,
    extras: &ModelLayerExtras<'_>,
    compression: Compression,
) -> Result<LayerBlob, ImageError> {
    let mut files = Vec::new();
    collect(model_dir, model_dir, &mut files)?;
    files.sort_by(|a, b| a.0.cmp(&b.0));

    let mut writer = LayerWriter::new(store, compression)?;
    // Sorted: `opt/`, `opt/ml/...`, `opt/pyfunc-env/...`, `tmp/`.
    parents(&mut writer, MODEL_PATH)?;
    for (relative, path, kind) in &files {
        let name = format!("{}/{relative}", MODEL_PATH.trim_start_matches('/'));
        match kind {
            Kind::Dir => writer.dir(&name, 0o755)?,
            Kind::Symlink(target) => writer.symlink(&name, target)?,
            Kind::File(executable) => {
                let file = fs_err::File::open(path).map_err(io(path))?;
                let size = file.metadata().map_err(io(path))?.len();
                let mode = if *executable { 0o755 } else { 0o644 };
                writer.file(&name, mode, size, file)?;
            }
        }
    }
    let scripts = SCRIPTS_PATH.trim_start_matches('/');
    writer.dir(scripts, 0o755)?;
    for (name, text) in [
        ("entrypoint.py", extras.entrypoint),
        ("serve.py", extras.serve),
    ] {
        writer.file(
            &format!("{scripts}/{name}"),
            0o644,
            text.len() as u64,
            text.as_bytes(),
        )?;
    }
    writer.dir("tmp", 0o1777)?;
    writer.finish(store)
}

enum Kind {
    Dir,
    /// A relative symlink that stays inside the model directory.
    Symlink(PathBuf),
    /// A regular file (or what a symlink leading elsewhere points to); executable or not.
    File(bool),
}

/// Every entry under `dir`, as (path relative to `root` with `/`, path, kind).
fn collect(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf, Kind)>,
) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt as _;
    for entry in fs_err::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let link = fs_err::symlink_metadata(&path).map_err(io(&path))?;
        if link.file_type().is_symlink() {
            let target = fs_err::read_link(&path).map_err(io(&path))?;
            let inside = !target.is_absolute()
                && fs_err::canonicalize(&path)
                    .ok()
                    .zip(fs_err::canonicalize(root).ok())
                    .is_some_and(|(resolved, root)| resolved.starts_with(root));
            if inside {
                out.push((relative, path, Kind::Symlink(target)));
                continue;
            }
        }
        // Follows a symlink that leaves the model directory: the image gets its content.
        let metadata = fs_err::metadata(&path).map_err(io(&path))?;
        if metadata.is_dir() {
            out.push((relative, path.clone(), Kind::Dir));
            collect(root, &path, out)?;
        } else if metadata.is_file() {
            let executable = metadata.permissions().mode() & 0o111 != 0;
            out.push((relative, path, Kind::File(executable)));
        }
    }
    Ok(())
}

/// Writes a small file atomically (a temporary file beside it, then a rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir).map_err(io(dir))?;
    let mut temp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
    temp.write_all(bytes).map_err(io(path))?;
    temp.persist(path).map_err(|e| ImageError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same model directory gives the same layer digest, whatever the files' mtimes,
    /// owners and permission bits beyond executable-or-not, and the order they were created in.
    #[test]
    fn model_layer_is_reproducible() {
        use std::os::unix::fs::PermissionsExt as _;
        let store_dir = tempfile::tempdir().unwrap();
        let store = BlobStore::new(store_dir.path()).unwrap();
        let extras = ModelLayerExtras {
            entrypoint: "e",
            serve: "s",
        };
        let make = |order: &[&str], mode: u32| {
            let dir = tempfile::tempdir().unwrap();
            for name in order {
                let path = dir.path().join(name);
                fs_err::create_dir_all(path.parent().unwrap()).unwrap();
                fs_err::write(&path, name.as_bytes()).unwrap();
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
            dir
        };
        let first = make(&["MLmodel", "sub/model.pkl", "conda.yaml"], 0o600);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let second = make(&["sub/model.pkl", "conda.yaml", "MLmodel"], 0o640);
        let a = model_layer(&store, first.path(), &extras, Compression::Gzip).unwrap();
        let b = model_layer(&store, second.path(), &extras, Compression::Gzip).unwrap();
        assert_eq!(a, b);
        // A different byte is a different layer.
        fs_err::write(second.path().join("MLmodel"), "changed").unwrap();
        let c = model_layer(&store, second.path(), &extras, Compression::Gzip).unwrap();
        assert_ne!(a.digest, c.digest);
        // The layer lists the model under /opt/ml/model, owned by 0:0, mtime fixed.
        let file = fs_err::File::open(store.path(&a.digest)).unwrap();
        let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
        let mut names = Vec::new();
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            assert_eq!(entry.header().uid().unwrap(), 0);
            assert_eq!(entry.header().mtime().unwrap(), LAYER_MTIME);
            names.push(format!(
                "{} {:o}",
                entry.path().unwrap().display(),
                entry.header().mode().unwrap()
            ));
        }
        assert_eq!(
            names,
            [
                "opt/ 755",
                "opt/ml/ 755",
                "opt/ml/model/ 755",
                "opt/ml/model/MLmodel 644",
                "opt/ml/model/conda.yaml 644",
                "opt/ml/model/sub/ 755",
                "opt/ml/model/sub/model.pkl 644",
                "opt/pyfunc-env/ 755",
                "opt/pyfunc-env/entrypoint.py 644",
                "opt/pyfunc-env/serve.py 644",
                "tmp/ 1777",
            ]
        );
    }
}
