//! `unpack`: extract an archive into a new directory, refusing any entry that would land
//! outside it, then check that the environment's Python runs from there.
//!
//! Every entry name is checked before anything is written for it: no absolute names, no `..`
//! that climbs out, and link targets (symlinks and hard links) that resolve inside the target
//! directory. Entries are created inside directories this function created, so no entry can be
//! written through a symlink that points elsewhere.

use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::scan::{normalize_relative, run_python};
use crate::{Format, PackError, io};

/// The result of [`unpack`].
#[derive(Debug, Clone, Serialize)]
pub struct UnpackReport {
    /// The directory.
    pub dir: PathBuf,
    /// The archive's format.
    pub format: Format,
    /// Regular files extracted.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// `sys.prefix` of the unpacked Python (equal to `dir`).
    pub prefix: String,
    /// Its version.
    pub python: String,
    /// Whether the archive holds a model under `model/`.
    pub has_model: bool,
}

/// Sniffs the format from the first bytes.
fn detect(archive: &Path) -> Result<Format, PackError> {
    let mut head = [0u8; 512];
    let mut file = fs_err::File::open(archive).map_err(io(archive))?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..]).map_err(io(archive))? {
            0 => break,
            n => read += n,
        }
    }
    if head[..read].starts_with(&[0x1f, 0x8b]) {
        Ok(Format::TarGz)
    } else if head[..read].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Ok(Format::TarZst)
    } else if head[..read].starts_with(b"PK\x03\x04") || head[..read].starts_with(b"PK\x05\x06") {
        Ok(Format::Zip)
    } else if read >= 262 && &head[257..262] == b"ustar" {
        Ok(Format::Tar)
    } else {
        Err(PackError::UnknownFormat {
            path: archive.to_path_buf(),
        })
    }
}

/// `name` as a safe relative path, or `None`.
fn safe_name(name: &Path) -> Option<PathBuf> {
    if name
        .components()
        .any(|c| matches!(c, Component::RootDir | Component::Prefix(_)))
    {
        return None;
    }
    let normalized = normalize_relative(name)?;
    (!normalized.as_os_str().is_empty()).then_some(normalized)
}

/// A symlink target that, from `entry` (relative), stays inside the root.
fn safe_link(entry: &Path, target: &Path) -> bool {
    !target.is_absolute()
        && normalize_relative(&entry.parent().unwrap_or(Path::new("")).join(target)).is_some()
}

/// Extracts `archive` into `dir` (created; must be new or empty) and checks the environment.
pub fn unpack(archive: &Path, dir: &Path) -> Result<UnpackReport, PackError> {
    let format = detect(archive)?;
    if dir.exists() {
        let mut entries = fs_err::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(PackError::TargetNotEmpty {
                dir: dir.to_path_buf(),
            });
        }
    }
    fs_err::create_dir_all(dir).map_err(io(dir))?;
    let dir = fs_err::canonicalize(dir).map_err(io(dir))?;
    let mut report = UnpackReport {
        dir: dir.clone(),
        format,
        files: 0,
        directories: 0,
        symlinks: 0,
        bytes: 0,
        prefix: String::new(),
        python: String::new(),
        has_model: false,
    };
    match format {
        Format::TarGz => {
            let file = fs_err::File::open(archive).map_err(io(archive))?;
            let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
            untar(decoder, archive, &dir, &mut report)?;
        }
        Format::Tar => {
            let file = fs_err::File::open(archive).map_err(io(archive))?;
            untar(std::io::BufReader::new(file), archive, &dir, &mut report)?;
        }
        Format::TarZst => {
            let file = fs_err::File::open(archive).map_err(io(archive))?;
            let decoder = zstd::Decoder::new(file).map_err(io(archive))?;
            untar(decoder, archive, &dir, &mut report)?;
        }
        Format::Zip => unzip(archive, &dir, &mut report)?,
    }
    report.has_model = dir.join("model").join("MLmodel").is_file();
    let python = dir.join("bin").join("python");
    if fs_err::symlink_metadata(&python).is_err() {
        return Err(PackError::NotAnEnvironment { prefix: dir });
    }
    let said = run_python(
        &python,
        "import sys; print(sys.prefix); print('%d.%d.%d' % sys.version_info[:3])",
    )?;
    let mut lines = said.lines();
    let prefix = lines.next().unwrap_or_default().to_string();
    report.python = lines.next().unwrap_or_default().to_string();
    let same = fs_err::canonicalize(&prefix).is_ok_and(|p| p == dir);
    if !same {
        return Err(PackError::PrefixMismatch {
            expected: dir,
            actual: prefix,
        });
    }
    report.prefix = prefix;
    Ok(report)
}

fn untar(
    reader: impl Read,
    archive_path: &Path,
    dir: &Path,
    report: &mut UnpackReport,
) -> Result<(), PackError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let unsafe_entry = |entry: String| PackError::UnsafeEntry {
        archive: archive_path.to_path_buf(),
        entry,
    };
    for entry in archive.entries().map_err(io(archive_path))? {
        let mut entry = entry.map_err(io(archive_path))?;
        let name = entry.path().map_err(io(archive_path))?.into_owned();
        let Some(relative) = safe_name(&name) else {
            // `./` (the root itself) is harmless; anything else that normalises to nothing or
            // climbs out is not.
            if normalize_relative(&name).is_some_and(|p| p.as_os_str().is_empty())
                && !name.is_absolute()
            {
                continue;
            }
            return Err(unsafe_entry(name.display().to_string()));
        };
        let kind = entry.header().entry_type();
        if let Some(target) = entry.link_name().map_err(io(archive_path))? {
            let ok = if kind.is_hard_link() {
                safe_name(&target).is_some()
            } else {
                safe_link(&relative, &target)
            };
            if !ok {
                return Err(unsafe_entry(format!(
                    "{} -> {}",
                    name.display(),
                    target.display()
                )));
            }
        }
        let size = entry.header().size().unwrap_or(0);
        if !entry.unpack_in(dir).map_err(io(&dir.join(&relative)))? {
            return Err(unsafe_entry(name.display().to_string()));
        }
        if kind.is_dir() {
            report.directories += 1;
        } else if kind.is_symlink() {
            report.symlinks += 1;
        } else if kind.is_file() || kind.is_hard_link() {
            report.files += 1;
            report.bytes += size;
        }
    }
    Ok(())
}

fn unzip(archive_path: &Path, dir: &Path, report: &mut UnpackReport) -> Result<(), PackError> {
    let zip_err = |source| PackError::ZipRead {
        path: archive_path.to_path_buf(),
        source,
    };
    let file = fs_err::File::open(archive_path).map_err(io(archive_path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    for index in 0..zip.len() {
        let mut entry = zip.by_index(index).map_err(zip_err)?;
        let name = entry
            .name()
            .map(std::borrow::Cow::into_owned)
            .unwrap_or_default();
        let Some(relative) = entry.enclosed_name().and_then(|p| safe_name(&p)) else {
            return Err(PackError::UnsafeEntry {
                archive: archive_path.to_path_buf(),
                entry: name,
            });
        };
        let path = dir.join(&relative);
        let mode = entry.unix_mode();
        if entry.is_dir() {
            fs_err::create_dir_all(&path).map_err(io(&path))?;
            if let Some(mode) = mode {
                fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(io(&path))?;
            }
            report.directories += 1;
            continue;
        }
        if let Some(parent) = path.parent() {
            fs_err::create_dir_all(parent).map_err(io(parent))?;
        }
        if mode.is_some_and(|m| m & 0o170_000 == 0o120_000) {
            let mut target = String::new();
            entry.read_to_string(&mut target).map_err(io(&path))?;
            if !safe_link(&relative, Path::new(&target)) {
                return Err(PackError::UnsafeEntry {
                    archive: archive_path.to_path_buf(),
                    entry: format!("{name} -> {target}"),
                });
            }
            fs_err::os::unix::fs::symlink(&target, &path).map_err(io(&path))?;
            report.symlinks += 1;
            continue;
        }
        let mut out = fs_err::File::create(&path).map_err(io(&path))?;
        let bytes = std::io::copy(&mut entry, &mut out).map_err(io(&path))?;
        drop(out);
        if let Some(mode) = mode {
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(io(&path))?;
        }
        report.files += 1;
        report.bytes += bytes;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            safe_name(Path::new("bin/python")),
            Some(PathBuf::from("bin/python"))
        );
        assert_eq!(
            safe_name(Path::new("./bin/../lib/x")),
            Some(PathBuf::from("lib/x"))
        );
        assert_eq!(safe_name(Path::new("../x")), None);
        assert_eq!(safe_name(Path::new("/etc/passwd")), None);
        assert_eq!(safe_name(Path::new("a/../../x")), None);
        assert!(safe_link(Path::new("bin/python"), Path::new("python3.11")));
        assert!(safe_link(Path::new("lib/x/y"), Path::new("../../bin/z")));
        assert!(!safe_link(Path::new("bin/python"), Path::new("../../etc")));
        assert!(!safe_link(
            Path::new("bin/python"),
            Path::new("/usr/bin/python3")
        ));
    }

    /// A tar with an entry that climbs out, or a symlink that points out, is refused and
    /// writes nothing outside.
    #[test]
    fn refuses_escaping_entries() {
        let temp = tempfile::tempdir().unwrap();
        let cases: [(&str, tar::EntryType, Option<&str>); 3] = [
            ("../evil", tar::EntryType::Regular, None),
            ("bin/link", tar::EntryType::Symlink, Some("../../outside")),
            ("bin/abs", tar::EntryType::Symlink, Some("/etc/passwd")),
        ];
        for (index, (name, kind, link)) in cases.into_iter().enumerate() {
            let archive = temp.path().join(format!("a{index}.tar"));
            let mut builder = tar::Builder::new(fs_err::File::create(&archive).unwrap());
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(0o644);
            header.set_size(0);
            // `set_path` refuses `..`; write the raw name as an attacker would.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(link) = link {
                header.set_link_name(link).unwrap();
            }
            header.set_cksum();
            builder.append(&header, std::io::empty()).unwrap();
            builder.finish().unwrap();
            drop(builder);
            let target = temp.path().join(format!("out{index}/env"));
            let error = unpack(&archive, &target).unwrap_err();
            assert!(
                matches!(error, PackError::UnsafeEntry { .. }),
                "{name}: {error:?}"
            );
        }
        assert!(!temp.path().join("evil").exists());
        assert!(!temp.path().join("outside").exists());
    }
}
