//! Turns a staged directory into a conda package (`.conda` or `.tar.bz2`).
//!
//! The staged directory holds the files exactly as they land in an environment (or, for
//! `noarch: python` packages, under `site-packages/`). This module writes the `info/` files the
//! installers read — `index.json`, `paths.json`, `files`, `about.json` and, for `noarch: python`,
//! `link.json` — and checks each of them by parsing it back with the `rattler_conda_types` types,
//! so a mistake fails the build rather than an install much later.

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use fs_err as fs;
use rattler_conda_types::compression_level::CompressionLevel;
use rattler_conda_types::package::{AboutJson, IndexJson, LinkJson, PackageFile, PathsJson};
use serde::Serialize;
use sha2::{Digest, Sha256};

/// zstd level for `.conda` packages: level 3 packs the 30 MB python tree in well under a second,
/// where the default (15) took 3.7 s in release and 9.8 s in a debug build (notes §2).
const ZSTD_LEVEL: i32 = 3;

/// A fixed `timestamp` for `index.json`, so identical inputs give identical packages.
const TIMESTAMP_MS: u64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z

/// The subdirectory of the channel a package belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelSubdir {
    /// `linux-64`
    Linux64,
    /// `noarch`
    NoArch,
}

impl ChannelSubdir {
    /// The directory name, e.g. `linux-64`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linux64 => "linux-64",
            Self::NoArch => "noarch",
        }
    }
}

/// The archive format of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// `.conda`: a zip of two zstd-compressed tars.
    Conda,
    /// `.tar.bz2`: the legacy format.
    TarBz2,
}

impl ArchiveFormat {
    /// The file extension, including the leading dot.
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            Self::Conda => ".conda",
            Self::TarBz2 => ".tar.bz2",
        }
    }
}

/// The kind of package: architecture-specific, or `noarch: python` with entry points.
#[derive(Debug, Clone)]
pub(crate) enum PackageKind {
    /// A `linux-64` package whose files are installed as they are.
    Linux64,
    /// A `noarch: python` package: `site-packages/` and `python-scripts/` are remapped by the
    /// installer, which also writes a script for each entry point (`name = module:function`).
    NoArchPython { entry_points: Vec<String> },
}

/// What goes into `info/index.json` and `info/about.json`.
#[derive(Debug, Clone)]
pub(crate) struct PackageMetadata {
    pub name: String,
    pub version: String,
    pub build: String,
    pub build_number: u64,
    pub depends: Vec<String>,
    pub kind: PackageKind,
    pub license: Option<String>,
    pub summary: Option<String>,
    pub home: Option<String>,
}

impl PackageMetadata {
    fn subdir(&self) -> ChannelSubdir {
        match self.kind {
            PackageKind::Linux64 => ChannelSubdir::Linux64,
            PackageKind::NoArchPython { .. } => ChannelSubdir::NoArch,
        }
    }

    /// `<name>-<version>-<build>`, the archive's file name without extension.
    pub fn stem(&self) -> String {
        format!("{}-{}-{}", self.name, self.version, self.build)
    }
}

/// A package written into a channel directory.
#[derive(Debug, Clone)]
pub struct BuiltPackage {
    /// The subdirectory it was written to.
    pub subdir: ChannelSubdir,
    /// The archive's file name, e.g. `python-3.11.7-0_pyenv_cpython.conda`.
    pub file_name: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// The number of files and symlinks in the package, not counting `info/`.
    pub path_count: usize,
}

#[derive(Serialize)]
struct IndexJsonOut<'a> {
    name: &'a str,
    version: &'a str,
    build: &'a str,
    build_number: u64,
    depends: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    noarch: Option<&'a str>,
    subdir: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arch: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    license: Option<&'a str>,
    timestamp: u64,
}

#[derive(Serialize)]
struct PathsJsonOut {
    paths: Vec<PathEntryOut>,
    paths_version: u64,
}

#[derive(Serialize)]
struct PathEntryOut {
    #[serde(rename = "_path")]
    path: String,
    path_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix_placeholder: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    file_mode: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_in_bytes: Option<u64>,
}

/// Writes `meta` and the files under `staging` as a package into `channel_dir/<subdir>/`.
///
/// Text files (no NUL byte) that contain `prefix_placeholder` are marked for text-mode prefix
/// replacement. Binary files that contain it are left alone on purpose: binary replacement cannot
/// grow the string, and the programs here find their prefix at run time (notes §2).
pub(crate) fn write_package(
    staging: &Path,
    meta: &PackageMetadata,
    prefix_placeholder: Option<&str>,
    format: ArchiveFormat,
    channel_dir: &Path,
) -> Result<BuiltPackage> {
    ensure!(
        !staging.join("info").exists(),
        "Staging directory `{}` already contains `info/`",
        staging.display()
    );
    let mut relative_paths = Vec::new();
    walk(staging, Path::new(""), &mut relative_paths)?;
    ensure!(
        !relative_paths.is_empty(),
        "Package `{}` has no files",
        meta.stem()
    );

    let mut entries = Vec::with_capacity(relative_paths.len());
    for relative in &relative_paths {
        entries.push(path_entry(staging, relative, prefix_placeholder)?);
    }

    let info = staging.join("info");
    fs::create_dir(&info)?;
    let mut info_files = Vec::new();
    let mut write_info = |name: &str, contents: &[u8]| -> Result<()> {
        let path = info.join(name);
        fs::write(&path, contents)?;
        info_files.push(path);
        Ok(())
    };

    let subdir = meta.subdir();
    let index = IndexJsonOut {
        name: &meta.name,
        version: &meta.version,
        build: &meta.build,
        build_number: meta.build_number,
        depends: &meta.depends,
        noarch: matches!(meta.kind, PackageKind::NoArchPython { .. }).then_some("python"),
        subdir: subdir.as_str(),
        platform: (subdir == ChannelSubdir::Linux64).then_some("linux"),
        arch: (subdir == ChannelSubdir::Linux64).then_some("x86_64"),
        license: meta.license.as_deref(),
        timestamp: TIMESTAMP_MS,
    };
    let index_json = serde_json::to_string_pretty(&index)?;
    IndexJson::from_str(&index_json)
        .with_context(|| format!("Invalid `info/index.json` for `{}`", meta.stem()))?
        .validate()
        .with_context(|| format!("Invalid `info/index.json` for `{}`", meta.stem()))?;
    write_info("index.json", index_json.as_bytes())?;

    let paths_json = serde_json::to_string_pretty(&PathsJsonOut {
        paths: entries,
        paths_version: 1,
    })?;
    PathsJson::from_str(&paths_json)
        .with_context(|| format!("Invalid `info/paths.json` for `{}`", meta.stem()))?;
    write_info("paths.json", paths_json.as_bytes())?;

    let mut files = String::new();
    for relative in &relative_paths {
        writeln!(files, "{}", slash_path(relative))?;
    }
    write_info("files", files.as_bytes())?;

    let about_json = serde_json::to_string_pretty(&serde_json::json!({
        "home": meta.home,
        "license": meta.license,
        "summary": meta.summary,
    }))?;
    AboutJson::from_str(&about_json)
        .with_context(|| format!("Invalid `info/about.json` for `{}`", meta.stem()))?;
    write_info("about.json", about_json.as_bytes())?;

    if let PackageKind::NoArchPython { entry_points } = &meta.kind {
        let link_json = serde_json::to_string_pretty(&serde_json::json!({
            "noarch": { "type": "python", "entry_points": entry_points },
            "package_metadata_version": 1,
        }))?;
        LinkJson::from_str(&link_json)
            .with_context(|| format!("Invalid `info/link.json` for `{}`", meta.stem()))?;
        write_info("link.json", link_json.as_bytes())?;
    }

    // The writers strip `staging` off every path and panic on paths outside it, so pass them
    // absolute (notes §2).
    let mut archive_paths: Vec<PathBuf> = relative_paths.iter().map(|p| staging.join(p)).collect();
    archive_paths.extend(info_files);

    let file_name = format!("{}{}", meta.stem(), format.extension());
    let out_dir = channel_dir.join(subdir.as_str());
    fs::create_dir_all(&out_dir)?;
    let out_path = out_dir.join(&file_name);
    let out = fs::File::create(&out_path)?;
    let result = match format {
        // One zstd thread: the channel builder already runs packages in parallel.
        ArchiveFormat::Conda => rattler_package_streaming::write::write_conda_package(
            out,
            staging,
            &archive_paths,
            CompressionLevel::Numeric(ZSTD_LEVEL),
            Some(1),
            &meta.stem(),
            None,
            None,
        ),
        ArchiveFormat::TarBz2 => rattler_package_streaming::write::write_tar_bz2_package(
            out,
            staging,
            &archive_paths,
            CompressionLevel::Default,
            None,
            None,
        ),
    };
    result.with_context(|| format!("Failed to write `{}`", out_path.display()))?;
    let size = fs::metadata(&out_path)?.len();
    Ok(BuiltPackage {
        subdir,
        file_name,
        size,
        path_count: relative_paths.len(),
    })
}

/// Collects the files and symlinks under `root/relative`, sorted, as paths relative to `root`.
fn walk(root: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let mut children: Vec<_> = fs::read_dir(root.join(relative))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()?;
    children.sort();
    for name in children {
        let child = relative.join(name);
        let file_type = fs::symlink_metadata(root.join(&child))?.file_type();
        if file_type.is_dir() {
            walk(root, &child, out)?;
        } else if file_type.is_file() || file_type.is_symlink() {
            out.push(child);
        } else {
            bail!(
                "Unsupported file type for `{}`",
                root.join(&child).display()
            );
        }
    }
    Ok(())
}

fn path_entry(
    root: &Path,
    relative: &Path,
    prefix_placeholder: Option<&str>,
) -> Result<PathEntryOut> {
    let path = root.join(relative);
    let metadata = fs::symlink_metadata(&path)?;
    if metadata.file_type().is_symlink() {
        // rattler checks only that a softlink is a symlink (rattler_cache validation.rs), and
        // conda-build's hash of the target adds nothing here.
        return Ok(PathEntryOut {
            path: slash_path(relative),
            path_type: "softlink",
            prefix_placeholder: None,
            file_mode: None,
            sha256: None,
            size_in_bytes: None,
        });
    }
    let contents = fs::read(&path)?;
    let placeholder = prefix_placeholder
        .filter(|prefix| is_text(&contents) && contains(&contents, prefix.as_bytes()));
    Ok(PathEntryOut {
        path: slash_path(relative),
        path_type: "hardlink",
        prefix_placeholder: placeholder.map(str::to_owned),
        file_mode: placeholder.map(|_| "text"),
        sha256: Some(sha256_hex(&contents)),
        size_in_bytes: Some(metadata.len()),
    })
}

/// A file is text when it has no NUL byte, the same rule conda-build applies.
pub(crate) fn is_text(contents: &[u8]) -> bool {
    // `<[u8]>::contains(&u8)` is a memchr in the precompiled (optimised) core library, which
    // matters in debug builds of this crate.
    !contents.contains(&0)
}

/// Whether `needle` occurs in `haystack`.
pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    // `str::contains` runs the optimised core searcher even in debug builds; the byte-window loop
    // is only the fallback for text that is not UTF-8.
    match (std::str::from_utf8(haystack), std::str::from_utf8(needle)) {
        (Ok(haystack), Ok(needle)) => haystack.contains(needle),
        _ => haystack
            .windows(needle.len())
            .any(|window| window == needle),
    }
}

/// The lowercase hex sha256 of `contents`.
pub(crate) fn sha256_hex(contents: &[u8]) -> String {
    hex(&Sha256::digest(contents))
}

/// The lowercase hex sha256 of the file at `path`, read in chunks.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.write_all(&buffer[..read])?;
    }
    Ok(hex(&hasher.finalize()))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing to a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A relative path with `/` separators, as `paths.json` and `info/files` spell them.
fn slash_path(relative: &Path) -> String {
    relative
        .components()
        .map(|component| component.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_needles() {
        assert!(contains(
            b"prefix=/root/.pyenv/versions/3.11.7\n",
            b"/root/.pyenv"
        ));
        assert!(!contains(b"prefix=/usr\n", b"/root/.pyenv"));
        assert!(contains(b"\xff\xfe/root/.pyenv", b"/root/.pyenv"));
        assert!(is_text(b"#!/bin/sh\n"));
        assert!(!is_text(b"\x7fELF\0\0"));
    }

    #[test]
    fn hashes() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
