//! Writing the planned entries as `.tar.gz`, `.tar.zst`, `.tar` or `.zip`.
//!
//! tar: GNU headers (long names and link names through `././@LongLink` entries, which GNU tar,
//! bsdtar, busybox tar, Python's `tarfile` and Java's commons-compress read), numeric owner 0:0
//! with empty owner names, the file's permission bits, relative symlinks kept. The prototype's
//! archive had 211 names longer than 100 bytes, so a plain ustar header would not do.
//!
//! zip: Hadoop's `unZip` (Spark's `--archives x.zip`) restores unix modes when the zip stores
//! them, but does not create symlinks, so a symlink is stored as a copy of its target (a
//! directory symlink as a copy of the directory).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::scan::{Item, Plan, Source, normalize_relative};
use crate::{Format, PackError, PackOptions, io};

/// What was written.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub files: u64,
    pub directories: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Writes `plan` to `output` atomically (a temporary file in the same directory, then a rename).
pub(crate) fn write(
    plan: &Plan,
    output: &Path,
    options: &PackOptions,
) -> Result<Counts, PackError> {
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-pack-");
    // The umask's mode (0644 under umask 022), like any tool's output, not tempfile's 0600
    // (issue 23): an archive is made to be shipped to and read by other users.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    let temp = builder.tempfile_in(dir).map_err(io(dir))?;
    let file = temp.reopen().map_err(io(temp.path()))?;
    let writer = BufWriter::with_capacity(1 << 20, file);
    let counts = match options.format {
        Format::TarGz => {
            let encoder = flate2::GzBuilder::new()
                .mtime(0)
                .write(writer, flate2::Compression::new(options.compression_level));
            let (counts, encoder) = write_tar(plan, encoder, options.mtime)?;
            let mut writer = encoder.finish().map_err(io(output))?;
            writer.flush().map_err(io(output))?;
            counts
        }
        Format::Tar => {
            let (counts, mut writer) = write_tar(plan, writer, options.mtime)?;
            writer.flush().map_err(io(output))?;
            counts
        }
        Format::TarZst => {
            let mut encoder = zstd::Encoder::new(writer, 3).map_err(io(output))?;
            let threads = std::thread::available_parallelism().map_or(1, usize::from);
            encoder
                .multithread(u32::try_from(threads).unwrap_or(1))
                .map_err(io(output))?;
            let (counts, encoder) = write_tar(plan, encoder, options.mtime)?;
            let mut writer = encoder.finish().map_err(io(output))?;
            writer.flush().map_err(io(output))?;
            counts
        }
        Format::Zip => write_zip(plan, writer, output, options)?,
    };
    temp.as_file().sync_all().map_err(io(output))?;
    temp.persist(output).map_err(|e| PackError::Io {
        path: output.to_path_buf(),
        source: e.error,
    })?;
    Ok(counts)
}

fn tar_header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(mtime);
    header.set_uid(0);
    header.set_gid(0);
    // Numeric ownership only: empty user and group names.
    let _ = header.set_username("");
    let _ = header.set_groupname("");
    header
}

/// A `.pyc` of [`Source::Pyc`]: the file with `mtime` as its source mtime.
pub(crate) fn pyc_bytes(path: &Path, mtime: u32) -> Result<Vec<u8>, PackError> {
    let mut bytes = fs_err::read(path).map_err(io(path))?;
    if let Some(field) = bytes.get_mut(8..12) {
        field.copy_from_slice(&mtime.to_le_bytes());
    }
    Ok(bytes)
}

fn write_tar<W: Write>(plan: &Plan, writer: W, mtime: u64) -> Result<(Counts, W), PackError> {
    write_tar_under(plan, writer, mtime, "")
}

/// Writes `plan` as a tar whose entries are under `root` (`opt/pyfunc-env/env`, its parent
/// directories first; `""`: at the archive's root).
pub(crate) fn write_tar_under<W: Write>(
    plan: &Plan,
    writer: W,
    mtime: u64,
    root: &str,
) -> Result<(Counts, W), PackError> {
    let mut builder = tar::Builder::new(writer);
    let mut counts = Counts::default();
    let err = |path: &str| {
        let path = PathBuf::from(path);
        move |source| PackError::Io { path, source }
    };
    let mut parent = String::new();
    for part in root.split('/').filter(|p| !p.is_empty()) {
        parent.push_str(part);
        parent.push('/');
        let mut header = tar_header(tar::EntryType::Directory, 0o755, 0, mtime);
        builder
            .append_data(&mut header, &parent, std::io::empty())
            .map_err(err(&parent))?;
    }
    let name = |path: &str| format!("{parent}{path}");
    for item in &plan.items {
        match &item.source {
            Source::Dir => {
                let mut header = tar_header(tar::EntryType::Directory, item.mode, 0, mtime);
                builder
                    .append_data(
                        &mut header,
                        format!("{}/", name(&item.path)),
                        std::io::empty(),
                    )
                    .map_err(err(&item.path))?;
                counts.directories += 1;
            }
            Source::Symlink(target) => {
                let mut header = tar_header(tar::EntryType::Symlink, 0o777, 0, mtime);
                builder
                    .append_link(&mut header, name(&item.path), target)
                    .map_err(err(&item.path))?;
                counts.symlinks += 1;
            }
            Source::File(path) => {
                let file = fs_err::File::open(path).map_err(io(path))?;
                let size = file.metadata().map_err(io(path))?.len();
                let mut header = tar_header(tar::EntryType::Regular, item.mode, size, mtime);
                builder
                    .append_data(&mut header, name(&item.path), file)
                    .map_err(io(path))?;
                counts.files += 1;
                counts.bytes += size;
            }
            Source::Pyc(path, pyc_mtime) => {
                let bytes = pyc_bytes(path, *pyc_mtime)?;
                let mut header = tar_header(
                    tar::EntryType::Regular,
                    item.mode,
                    bytes.len() as u64,
                    mtime,
                );
                builder
                    .append_data(&mut header, name(&item.path), bytes.as_slice())
                    .map_err(io(path))?;
                counts.files += 1;
                counts.bytes += bytes.len() as u64;
            }
            Source::Bytes(bytes) => {
                let mut header = tar_header(
                    tar::EntryType::Regular,
                    item.mode,
                    bytes.len() as u64,
                    mtime,
                );
                builder
                    .append_data(&mut header, name(&item.path), bytes.as_slice())
                    .map_err(err(&item.path))?;
                counts.files += 1;
                counts.bytes += bytes.len() as u64;
            }
        }
    }
    let writer = builder.into_inner().map_err(err("archive"))?;
    Ok((counts, writer))
}

/// Days since the epoch to a civil date (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A zip timestamp (DOS time: 1980–2107, two-second resolution) for an epoch time.
fn zip_time(mtime: u64) -> zip::DateTime {
    let seconds = i64::try_from(mtime).unwrap_or(0);
    let (year, month, day) = civil(seconds.div_euclid(86_400));
    let rest = seconds.rem_euclid(86_400);
    let year = u16::try_from(year.clamp(1980, 2107)).unwrap_or(1980);
    let hour = u8::try_from(rest / 3600).unwrap_or(0);
    let minute = u8::try_from(rest % 3600 / 60).unwrap_or(0);
    let second = u8::try_from(rest % 60).unwrap_or(0);
    zip::DateTime::from_date_and_time(
        year,
        u8::try_from(month).unwrap_or(1),
        u8::try_from(day).unwrap_or(1),
        hour,
        minute,
        second,
    )
    .unwrap_or_default()
}

fn write_zip<W: Write + std::io::Seek>(
    plan: &Plan,
    writer: W,
    output: &Path,
    options: &PackOptions,
) -> Result<Counts, PackError> {
    let zip_err = |source| PackError::Zip {
        path: output.to_path_buf(),
        source,
    };
    let mut zip = zip::ZipWriter::new(writer);
    let base = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(i64::from(options.compression_level)))
        .last_modified_time(zip_time(options.mtime));
    let by_path: BTreeMap<&str, &Item> = plan.items.iter().map(|i| (i.path.as_str(), i)).collect();
    let mut counts = Counts::default();
    for item in &plan.items {
        match &item.source {
            Source::Dir => {
                zip.add_directory(format!("{}/", item.path), base.unix_permissions(item.mode))
                    .map_err(zip_err)?;
                counts.directories += 1;
            }
            Source::Symlink(_) => {
                // A copy of what it points to (followed through further symlinks).
                let Some(target) = resolve(&by_path, item, 0) else {
                    tracing::debug!("Leaving dangling symlink `{}` out of the zip", item.path);
                    continue;
                };
                if matches!(target.source, Source::Dir) {
                    let prefix = format!("{}/", target.path);
                    zip.add_directory(
                        format!("{}/", item.path),
                        base.unix_permissions(target.mode),
                    )
                    .map_err(zip_err)?;
                    counts.directories += 1;
                    for inner in plan.items.iter().filter(|i| i.path.starts_with(&prefix)) {
                        let renamed = format!("{}/{}", item.path, &inner.path[prefix.len()..]);
                        let inner = resolve(&by_path, inner, 0).unwrap_or(inner);
                        add_zip_entry(&mut zip, &renamed, inner, base, output, &mut counts)?;
                    }
                } else {
                    add_zip_entry(&mut zip, &item.path, target, base, output, &mut counts)?;
                }
            }
            Source::File(_) | Source::Bytes(_) | Source::Pyc(..) => {
                add_zip_entry(&mut zip, &item.path, item, base, output, &mut counts)?;
            }
        }
    }
    let mut writer = zip.finish().map_err(zip_err)?;
    writer.flush().map_err(io(output))?;
    Ok(counts)
}

fn resolve<'a>(
    by_path: &BTreeMap<&str, &'a Item>,
    item: &'a Item,
    depth: usize,
) -> Option<&'a Item> {
    let Source::Symlink(target) = &item.source else {
        return Some(item);
    };
    if depth > 16 {
        return None;
    }
    let parent = Path::new(&item.path).parent().unwrap_or(Path::new(""));
    let resolved = normalize_relative(&parent.join(target))?;
    let next = by_path.get(resolved.to_string_lossy().as_ref())?;
    resolve(by_path, next, depth + 1)
}

fn add_zip_entry<W: Write + std::io::Seek>(
    zip: &mut zip::ZipWriter<W>,
    name: &str,
    item: &Item,
    base: zip::write::SimpleFileOptions,
    output: &Path,
    counts: &mut Counts,
) -> Result<(), PackError> {
    let zip_err = |source| PackError::Zip {
        path: output.to_path_buf(),
        source,
    };
    match &item.source {
        Source::Dir => {
            zip.add_directory(format!("{name}/"), base.unix_permissions(item.mode))
                .map_err(zip_err)?;
            counts.directories += 1;
        }
        Source::File(path) => {
            let mut file = fs_err::File::open(path).map_err(io(path))?;
            let size = file.metadata().map_err(io(path))?.len();
            zip.start_file(
                name,
                base.unix_permissions(item.mode)
                    .large_file(size >= 0xFFFF_FFFF),
            )
            .map_err(zip_err)?;
            std::io::copy(&mut file, zip).map_err(io(path))?;
            counts.files += 1;
            counts.bytes += size;
        }
        Source::Bytes(bytes) => {
            zip.start_file(name, base.unix_permissions(item.mode))
                .map_err(zip_err)?;
            zip.write_all(bytes).map_err(io(output))?;
            counts.files += 1;
            counts.bytes += bytes.len() as u64;
        }
        Source::Pyc(path, mtime) => {
            let bytes = pyc_bytes(path, *mtime)?;
            zip.start_file(name, base.unix_permissions(item.mode))
                .map_err(zip_err)?;
            zip.write_all(&bytes).map_err(io(output))?;
            counts.files += 1;
            counts.bytes += bytes.len() as u64;
        }
        Source::Symlink(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(10_957), (2000, 1, 1));
        assert_eq!(civil(19_782), (2024, 2, 29));
        let time = zip_time(946_684_800 + 3600 + 62);
        assert_eq!(
            (
                time.year(),
                time.month(),
                time.day(),
                time.hour(),
                time.minute(),
                time.second()
            ),
            (2000, 1, 1, 1, 1, 2)
        );
    }
}
