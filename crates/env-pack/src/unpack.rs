//! `unpack`: extract an archive into a new directory, refusing any entry that would land
//! outside it, then check that the environment's Python runs from there.
//!
//! Every entry name is checked before anything is written for it: no absolute names, no `..`
//! that climbs out, and link targets (symlinks and hard links) that resolve inside the target
//! directory, following the links extracted before them (`g/up -> ../..` then
//! `g/out -> up/../..` is refused, whatever order they come in: every link is checked again
//! against all the others once extraction ends). Entries are created inside directories this
//! function created, so no entry can be written through a symlink that points elsewhere.
//! Only directories, regular files and links are extracted (no devices, fifos or sparse
//! files), and setuid/setgid bits are dropped. What is written is bounded by each entry's
//! declared size and by [`UnpackLimits`]; [`UnpackLimits::cancel`] stops it between any two
//! reads of the archive. When extraction fails or is stopped, nothing is left in the target.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// The most file content [`unpack`] writes: no environment comes near it, and an archive
/// that claims more (a decompression bomb) is refused before it fills the disk. A caller that
/// knows the archive's unpacked size (the remote cache's manifest) passes that instead.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 30;

/// The most entries [`unpack`] extracts (a large CUDA environment has about 100,000).
pub const MAX_ENTRIES: u64 = 5_000_000;

/// Bits never extracted: setuid and setgid. An archive from elsewhere must not install
/// programs that run as their owner.
const STRIPPED_MODE_BITS: u32 = 0o6000;

/// Bounds on what [`unpack_with`] writes, and a way to stop it.
#[derive(Debug, Clone)]
pub struct UnpackLimits {
    /// Bytes of file content, at most (checked against each entry's declared size before it
    /// is written, and against what decompression yields).
    pub max_bytes: u64,
    /// Entries, at most.
    pub max_entries: u64,
    /// When set (by a SIGINT handler), extraction stops at the next read of the archive,
    /// removes what it wrote and returns [`PackError::Interrupted`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_UNPACKED_BYTES,
            max_entries: MAX_ENTRIES,
            cancel: None,
        }
    }
}

impl UnpackLimits {
    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
    }
}

/// Why a [`Guarded`] read failed, carried inside the `io::Error` so the error that reaches
/// the caller can be told apart from a damaged archive.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("interrupted")]
    Cancelled,
    #[error("the archive decompresses to more than its limit")]
    TooLarge,
}

/// The decompressed archive stream, stopping at [`UnpackLimits::cancel`] and after `budget`
/// bytes (file content plus tar headers): a decompression bomb ends here however its headers
/// lie.
struct Guarded<'a, R> {
    inner: R,
    limits: &'a UnpackLimits,
    budget: u64,
}

impl<R: Read> Read for Guarded<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.limits.cancelled() {
            return Err(std::io::Error::other(Stop::Cancelled));
        }
        let read = self.inner.read(buf)?;
        self.budget = self
            .budget
            .checked_sub(read as u64)
            .ok_or_else(|| std::io::Error::other(Stop::TooLarge))?;
        Ok(read)
    }
}

/// The [`Stop`] inside an I/O error, if any, however the tar and zip readers wrapped it (an
/// `io::Error`'s `source()` skips the error it carries, so look inside each one).
fn stop_of(error: &std::io::Error) -> Option<&Stop> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(stop) = error.downcast_ref::<Stop>() {
            return Some(stop);
        }
        if let Some(inner) = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            current = Some(inner);
            continue;
        }
        current = error.source();
    }
    None
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

/// The symlinks extracted so far (relative path -> target), to resolve later names through.
#[derive(Default)]
struct Links(HashMap<PathBuf, PathBuf>);

/// How many links one name may pass through (Linux's own limit is 40).
const MAX_LINK_HOPS: u32 = 40;

impl Links {
    /// Where `path` (relative to the root; may hold `..`) lands once every extracted symlink
    /// on the way is followed: `None` when it climbs out of the root, meets an absolute
    /// target, or passes through too many links.
    fn resolve(&self, path: &Path) -> Option<PathBuf> {
        let mut pending: Vec<OsString> = Vec::new();
        for component in path.components().rev() {
            match component {
                Component::Normal(part) => pending.push(part.to_owned()),
                Component::ParentDir => pending.push(OsString::from("..")),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        let mut out = PathBuf::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                if !out.pop() {
                    return None;
                }
                continue;
            }
            out.push(&part);
            if let Some(target) = self.0.get(&out) {
                hops += 1;
                if hops > MAX_LINK_HOPS || target.is_absolute() {
                    return None;
                }
                out.pop();
                for component in target.components().rev() {
                    match component {
                        Component::Normal(part) => pending.push(part.to_owned()),
                        Component::ParentDir => pending.push(OsString::from("..")),
                        Component::CurDir => {}
                        Component::RootDir | Component::Prefix(_) => return None,
                    }
                }
            }
        }
        Some(out)
    }

    /// Whether the symlink `entry -> target` stays inside the root, given the links so far.
    fn link_stays_inside(&self, entry: &Path, target: &Path) -> bool {
        !target.is_absolute()
            && self
                .resolve(&entry.parent().unwrap_or(Path::new("")).join(target))
                .is_some()
    }

    /// The first link that, with all links known, leads outside the root: a link can be
    /// extracted before one it passes through.
    fn first_escaping(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.0
            .iter()
            .find(|(entry, target)| !self.link_stays_inside(entry, target))
    }
}

/// Extracts `archive` into `dir` (created; must be new or empty) and checks the environment,
/// within the default [`UnpackLimits`].
pub fn unpack(archive: &Path, dir: &Path) -> Result<UnpackReport, PackError> {
    unpack_with(archive, dir, &UnpackLimits::default())
}

/// [`unpack`], stopped when `cancel` is set (`unpack`'s SIGINT handler sets it: extraction
/// stops at the next read of the archive and removes what it wrote), on the caller's runtime's
/// blocking pool so the handler keeps running meanwhile. (The blocking task, its copies of the
/// paths and the limits were the CLI's.)
///
/// # Errors
/// As [`unpack_with`] ([`PackError::Interrupted`] once `cancel` is set), or
/// [`PackError::Task`] if the blocking task panicked.
pub async fn unpack_interruptible(
    archive: &Path,
    dir: &Path,
    cancel: Arc<AtomicBool>,
) -> Result<UnpackReport, PackError> {
    let (archive, dir) = (archive.to_path_buf(), dir.to_path_buf());
    let limits = UnpackLimits {
        cancel: Some(cancel),
        ..UnpackLimits::default()
    };
    crate::spawn_blocking("unpack", move || unpack_with(&archive, &dir, &limits)).await
}

/// Removes what a failed extraction wrote: `dir` itself when this call created it, else its
/// contents (it was empty).
fn remove_extracted(dir: &Path, created: bool) {
    let result = if created {
        fs_err::remove_dir_all(dir)
    } else {
        fs_err::read_dir(dir).and_then(|entries| {
            for entry in entries {
                let path = entry?.path();
                if fs_err::symlink_metadata(&path)?.is_dir() {
                    fs_err::remove_dir_all(&path)?;
                } else {
                    fs_err::remove_file(&path)?;
                }
            }
            Ok(())
        })
    };
    if let Err(error) = result {
        tracing::warn!("Failed to remove a partial extraction: {error}");
    }
}

/// [`unpack`] within `limits`: stops when they are exceeded or cancelled, leaving nothing in
/// `dir`.
pub fn unpack_with(
    archive: &Path,
    dir: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackReport, PackError> {
    let format = detect(archive)?;
    if dir.exists() {
        let mut entries = fs_err::read_dir(dir).map_err(io(dir))?;
        if entries.next().is_some() {
            return Err(PackError::TargetNotEmpty {
                dir: dir.to_path_buf(),
            });
        }
    }
    let created = !dir.exists();
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
    let extracted = extract(format, archive, &dir, limits, &mut report);
    if let Err(error) = extracted {
        remove_extracted(&dir, created);
        return Err(error);
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

/// Extracts every entry of `archive` into `dir`, then checks every link against all the
/// others; the limits' stops become [`PackError::Interrupted`] and [`PackError::TooLarge`].
fn extract(
    format: Format,
    archive: &Path,
    dir: &Path,
    limits: &UnpackLimits,
    report: &mut UnpackReport,
) -> Result<(), PackError> {
    let mut links = Links::default();
    // File content plus, per entry, a header, padding and perhaps a long name or pax record.
    let budget = limits
        .max_bytes
        .saturating_add(limits.max_entries.saturating_mul(4096));
    let result = match format {
        Format::TarGz | Format::Tar | Format::TarZst => {
            let file = std::io::BufReader::new(fs_err::File::open(archive).map_err(io(archive))?);
            let stream: Box<dyn Read> = match format {
                Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(file)),
                Format::TarZst => Box::new(zstd::Decoder::with_buffer(file).map_err(io(archive))?),
                _ => Box::new(file),
            };
            let guarded = Guarded {
                inner: stream,
                limits,
                budget,
            };
            untar(guarded, archive, dir, limits, &mut links, report)
        }
        Format::Zip => unzip(archive, dir, limits, &mut links, report),
    };
    let stopped = |error: &PackError| match error {
        PackError::Io { source, .. } => stop_of(source).map(|stop| match stop {
            Stop::Cancelled => PackError::Interrupted {
                dir: dir.to_path_buf(),
            },
            Stop::TooLarge => PackError::TooLarge {
                archive: archive.to_path_buf(),
                limit: limits.max_bytes,
            },
        }),
        _ => None,
    };
    match result {
        Err(error) => Err(stopped(&error).unwrap_or(error)),
        Ok(()) if limits.cancelled() => Err(PackError::Interrupted {
            dir: dir.to_path_buf(),
        }),
        Ok(()) => match links.first_escaping() {
            Some((entry, target)) => Err(PackError::UnsafeEntry {
                archive: archive.to_path_buf(),
                entry: format!("{} -> {}", entry.display(), target.display()),
            }),
            None => Ok(()),
        },
    }
}

fn untar(
    reader: impl Read,
    archive_path: &Path,
    dir: &Path,
    limits: &UnpackLimits,
    links: &mut Links,
    report: &mut UnpackReport,
) -> Result<(), PackError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_mask(STRIPPED_MODE_BITS);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let unsafe_entry = |entry: String| PackError::UnsafeEntry {
        archive: archive_path.to_path_buf(),
        entry,
    };
    let (mut entries, mut bytes) = (0u64, 0u64);
    for entry in archive.entries().map_err(io(archive_path))? {
        let mut entry = entry.map_err(io(archive_path))?;
        if limits.cancelled() {
            return Err(PackError::Interrupted {
                dir: dir.to_path_buf(),
            });
        }
        entries += 1;
        if entries > limits.max_entries {
            return Err(PackError::TooManyEntries {
                archive: archive_path.to_path_buf(),
                limit: limits.max_entries,
            });
        }
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
        if !(kind.is_dir() || kind.is_file() || kind.is_symlink() || kind.is_hard_link()) {
            // Devices, fifos, sparse files: `pack` writes none, and a sparse entry's header
            // does not bound what it writes.
            return Err(PackError::UnsupportedEntry {
                archive: archive_path.to_path_buf(),
                entry: name.display().to_string(),
            });
        }
        // Nothing is written through a link, and no name passes through one to leave.
        if links.resolve(&relative).is_none() {
            return Err(unsafe_entry(name.display().to_string()));
        }
        if let Some(target) = entry.link_name().map_err(io(archive_path))? {
            let ok = if kind.is_hard_link() {
                safe_name(&target).is_some() && links.resolve(&target).is_some()
            } else {
                links.link_stays_inside(&relative, &target)
            };
            if !ok {
                return Err(unsafe_entry(format!(
                    "{} -> {}",
                    name.display(),
                    target.display()
                )));
            }
            if kind.is_symlink() {
                links.0.insert(relative.clone(), target.into_owned());
            }
        } else if !kind.is_dir() {
            // A file replaces a link of that name (a directory does not: it is created
            // through it).
            links.0.remove(&relative);
        }
        // Declared by the header (or its pax record); the reader gives no more than this.
        let size = entry.size();
        bytes = bytes.saturating_add(size);
        if bytes > limits.max_bytes {
            return Err(PackError::TooLarge {
                archive: archive_path.to_path_buf(),
                limit: limits.max_bytes,
            });
        }
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

fn unzip(
    archive_path: &Path,
    dir: &Path,
    limits: &UnpackLimits,
    links: &mut Links,
    report: &mut UnpackReport,
) -> Result<(), PackError> {
    let zip_err = |source| PackError::ZipRead {
        path: archive_path.to_path_buf(),
        source,
    };
    let file = fs_err::File::open(archive_path).map_err(io(archive_path))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(zip_err)?;
    if zip.len() as u64 > limits.max_entries {
        return Err(PackError::TooManyEntries {
            archive: archive_path.to_path_buf(),
            limit: limits.max_entries,
        });
    }
    // The central directory declares every entry's size: the total is known up front.
    let mut declared = 0u64;
    for index in 0..zip.len() {
        let entry = zip.by_index_raw(index).map_err(zip_err)?;
        declared = declared.saturating_add(entry.size());
    }
    if declared > limits.max_bytes {
        return Err(PackError::TooLarge {
            archive: archive_path.to_path_buf(),
            limit: limits.max_bytes,
        });
    }
    for index in 0..zip.len() {
        if limits.cancelled() {
            return Err(PackError::Interrupted {
                dir: dir.to_path_buf(),
            });
        }
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
        // Every link on the way followed: the file lands where its name leads, inside.
        let Some(resolved) = links.resolve(&relative) else {
            return Err(PackError::UnsafeEntry {
                archive: archive_path.to_path_buf(),
                entry: name,
            });
        };
        let path = dir.join(&resolved);
        let mode = entry.unix_mode().map(|mode| mode & !STRIPPED_MODE_BITS);
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
            (&mut entry)
                .take(4096)
                .read_to_string(&mut target)
                .map_err(io(&path))?;
            if !links.link_stays_inside(&resolved, Path::new(&target)) {
                return Err(PackError::UnsafeEntry {
                    archive: archive_path.to_path_buf(),
                    entry: format!("{name} -> {target}"),
                });
            }
            fs_err::os::unix::fs::symlink(&target, &path).map_err(io(&path))?;
            links.0.insert(resolved, PathBuf::from(target));
            report.symlinks += 1;
            continue;
        }
        let declared = entry.size();
        let mut out = fs_err::File::create(&path).map_err(io(&path))?;
        // No more than the central directory declared: one byte more is a lie.
        let mut guarded = Guarded {
            inner: (&mut entry).take(declared.saturating_add(1)),
            limits,
            budget: u64::MAX,
        };
        let bytes = std::io::copy(&mut guarded, &mut out).map_err(io(&path))?;
        drop(out);
        if bytes > declared {
            return Err(PackError::TooLarge {
                archive: archive_path.to_path_buf(),
                limit: limits.max_bytes,
            });
        }
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
        let safe_link = |entry: &str, target: &str| {
            Links::default().link_stays_inside(Path::new(entry), Path::new(target))
        };
        assert!(safe_link("bin/python", "python3.11"));
        assert!(safe_link("lib/x/y", "../../bin/z"));
        assert!(!safe_link("bin/python", "../../etc"));
        assert!(!safe_link("bin/python", "/usr/bin/python3"));
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

    /// A raw tar header for `name` (written as an attacker would: `set_path` refuses `..`).
    fn raw_header(
        name: &str,
        kind: tar::EntryType,
        link: Option<&str>,
        mode: u32,
        size: u64,
    ) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        let raw = &mut header.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            header.set_link_name(link).unwrap();
        }
        header.set_cksum();
        header
    }

    #[test]
    fn names_resolve_through_the_links_extracted_before_them() {
        let mut links = Links::default();
        let deep = "a/b/c/d/e/f/g";
        assert!(links.link_stays_inside(
            &Path::new(deep).join("up"),
            Path::new("../../../../../../..")
        ));
        links.0.insert(
            Path::new(deep).join("up"),
            PathBuf::from("../../../../../../.."),
        );
        // On paper `up/../../../../../../../..` from `g` stays inside; through `up` it is `/`.
        assert!(!links.link_stays_inside(
            &Path::new(deep).join("out"),
            Path::new("up/../../../../../../../..")
        ));
        assert_eq!(
            links.resolve(&Path::new(deep).join("up/x")),
            Some(PathBuf::from("x"))
        );
        assert_eq!(links.resolve(&Path::new(deep).join("up/..")), None);
        // A loop ends.
        links.0.insert(PathBuf::from("l1"), PathBuf::from("l2"));
        links.0.insert(PathBuf::from("l2"), PathBuf::from("l1"));
        assert_eq!(links.resolve(Path::new("l1/x")), None);
    }

    /// The chain of issue 23, in both orders, is refused and leaves nothing behind; setuid
    /// and setgid bits are dropped.
    #[test]
    fn link_chains_are_refused_in_either_order_and_setuid_is_dropped() {
        let temp = tempfile::tempdir().unwrap();
        let deep = "a/b/c/d/e/f/g";
        let up = (format!("{deep}/up"), "../../../../../../..");
        let out = (format!("{deep}/out"), "up/../../../../../../../..");
        for (index, order) in [[&up, &out], [&out, &up]].into_iter().enumerate() {
            let archive = temp.path().join(format!("chain{index}.tar"));
            let mut builder = tar::Builder::new(fs_err::File::create(&archive).unwrap());
            for (name, target) in order {
                let header = raw_header(name, tar::EntryType::Symlink, Some(target), 0o777, 0);
                builder.append(&header, std::io::empty()).unwrap();
            }
            builder.finish().unwrap();
            drop(builder);
            let target = temp.path().join(format!("out{index}"));
            let error = unpack(&archive, &target).unwrap_err();
            assert!(
                matches!(error, PackError::UnsafeEntry { .. }),
                "{index}: {error:?}"
            );
            assert!(!target.exists(), "{index}: left behind");
        }
        let archive = temp.path().join("setuid.tar");
        let mut builder = tar::Builder::new(fs_err::File::create(&archive).unwrap());
        let header = raw_header("bin/su", tar::EntryType::Regular, None, 0o6755, 2);
        builder.append(&header, &b"hi"[..]).unwrap();
        builder.finish().unwrap();
        drop(builder);
        let target = temp.path().join("setuid");
        // No Python in it: refused after extraction, which is what is checked here.
        let _ = unpack(&archive, &target);
        let mode = fs_err::metadata(target.join("bin/su"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o755);
    }

    /// Declared sizes and the limits bound what is written; a cancelled unpack leaves nothing.
    #[test]
    fn limits_and_cancellation_stop_it_leaving_nothing() {
        let temp = tempfile::tempdir().unwrap();
        let archive = temp.path().join("big.tar.gz");
        let file = fs_err::File::create(&archive).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for index in 0..4 {
            let header = raw_header(
                &format!("f{index}"),
                tar::EntryType::Regular,
                None,
                0o644,
                1 << 20,
            );
            builder
                .append(&header, std::io::repeat(0).take(1 << 20))
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        let limited = UnpackLimits {
            max_bytes: 3 << 20,
            ..UnpackLimits::default()
        };
        let target = temp.path().join("limited");
        let error = unpack_with(&archive, &target, &limited).unwrap_err();
        assert!(matches!(error, PackError::TooLarge { .. }), "{error:?}");
        assert!(!target.exists());
        let few = UnpackLimits {
            max_entries: 2,
            ..UnpackLimits::default()
        };
        let error = unpack_with(&archive, &target, &few).unwrap_err();
        assert!(
            matches!(error, PackError::TooManyEntries { .. }),
            "{error:?}"
        );
        let cancelled = UnpackLimits {
            cancel: Some(Arc::new(AtomicBool::new(true))),
            ..UnpackLimits::default()
        };
        // An existing empty directory is emptied again, not removed.
        fs_err::create_dir_all(&target).unwrap();
        let error = unpack_with(&archive, &target, &cancelled).unwrap_err();
        assert!(matches!(error, PackError::Interrupted { .. }), "{error:?}");
        assert_eq!(fs_err::read_dir(&target).unwrap().count(), 0);
        // The call the `unpack` command makes, on the caller's runtime, stopped by the flag it
        // is given.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let error = runtime
            .block_on(unpack_interruptible(
                &archive,
                &target,
                Arc::new(AtomicBool::new(true)),
            ))
            .unwrap_err();
        assert!(matches!(error, PackError::Interrupted { .. }), "{error:?}");
        assert_eq!(fs_err::read_dir(&target).unwrap().count(), 0);
    }
}
