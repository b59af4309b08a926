//! Is a prefix still what was installed into it? Checks every file the conda records
//! (`conda-meta/*.json`: path, size, sha256 in the prefix) and the Python distributions
//! (`*.dist-info/RECORD`: path, hash, size) list: present, same size, and with `hash`, the same
//! sha256. Files written after install (bytecode) are not listed and not checked.
//!
//! Moved from env-build's `verify.rs` (whose `verify_cache`, the cache-wide `cache verify` with
//! its locks, stays there and calls [`verify`]). Behind the `verify` feature, because it reads
//! conda records with `rattler_conda_types`: the crates that only need a prefix's Python and
//! site-packages (env-python, env-run) do not compile rattler for it.

use std::path::{Path, PathBuf};

use rattler_conda_types::prefix_record::PathType;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// What verification found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Files checked.
    pub checked: usize,
    /// Listed files that are gone (relative to the prefix).
    pub missing: Vec<String>,
    /// Listed files whose size or hash differs.
    pub changed: Vec<String>,
}

impl VerifyReport {
    /// Whether nothing is wrong.
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.changed.is_empty()
    }
}

fn sha256_file(path: &Path) -> Option<[u8; 32]> {
    let mut file = fs_err::File::open(path).ok()?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hasher.finalize().into())
}

fn relative(prefix: &Path, path: &Path) -> String {
    path.strip_prefix(prefix)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

/// Verifies the environment at `prefix`; `hash` also compares contents.
#[must_use]
pub fn verify(prefix: &Path, hash: bool) -> VerifyReport {
    let mut report = VerifyReport::default();
    let records = rattler_conda_types::PrefixRecord::collect_from_prefix::<
        rattler_conda_types::PrefixRecord,
    >(prefix)
    .unwrap_or_default();
    for record in &records {
        for entry in &record.paths_data.paths {
            if matches!(
                entry.path_type,
                PathType::Directory | PathType::PycFile | PathType::LinkedPackageRecord
            ) {
                continue;
            }
            let path = prefix.join(&entry.relative_path);
            report.checked += 1;
            let Ok(metadata) = path.symlink_metadata() else {
                report.missing.push(relative(prefix, &path));
                continue;
            };
            if entry.path_type == PathType::SoftLink {
                continue;
            }
            let placeholder = entry.prefix_placeholder.is_some();
            if !placeholder
                && entry
                    .size_in_bytes
                    .is_some_and(|size| size != metadata.len())
            {
                report.changed.push(relative(prefix, &path));
                continue;
            }
            if hash {
                let expected =
                    entry
                        .sha256_in_prefix
                        .or(if placeholder { None } else { entry.sha256 });
                if let Some(expected) = expected
                    && sha256_file(&path)
                        .is_some_and(|actual| actual.as_slice() != expected.as_slice())
                {
                    report.changed.push(relative(prefix, &path));
                }
            }
        }
    }
    // The interpreter itself: a venv's `bin/python` is a link to an interpreter elsewhere,
    // listed in no record, and every command needs it.
    let python = crate::python_of(prefix);
    let python_name = relative(prefix, &python);
    if !report.missing.contains(&python_name) {
        report.checked += 1;
        if fs_err::metadata(&python).is_err() {
            report.missing.push(python_name);
        }
    }
    for site_packages in site_packages_dirs(prefix) {
        let Ok(entries) = fs_err::read_dir(&site_packages) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".dist-info") {
                continue;
            }
            // Conda-installed Python packages are checked through their conda record.
            if fs_err::read_to_string(entry.path().join("INSTALLER"))
                .is_ok_and(|i| i.trim() == "conda")
            {
                continue;
            }
            let Ok(record) = fs_err::read_to_string(entry.path().join("RECORD")) else {
                continue;
            };
            check_record(prefix, &site_packages, &record, hash, &mut report);
        }
    }
    report
}

fn site_packages_dirs(prefix: &Path) -> Vec<PathBuf> {
    let Ok(lib) = fs_err::read_dir(prefix.join("lib")) else {
        return Vec::new();
    };
    lib.flatten()
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir())
        .collect()
}

fn check_record(
    prefix: &Path,
    site_packages: &Path,
    record: &str,
    hash: bool,
    report: &mut VerifyReport,
) {
    for line in record.lines() {
        // `path,sha256=<urlsafe base64>,size`; the path may be quoted when it holds a comma.
        let (path, rest) = match line.strip_prefix('"') {
            Some(quoted) => match quoted.split_once("\",") {
                Some((path, rest)) => (path.to_string(), rest),
                None => continue,
            },
            None => match line.split_once(',') {
                Some((path, rest)) => (path.to_string(), rest),
                None => continue,
            },
        };
        let (digest, size) = rest.split_once(',').unwrap_or((rest, ""));
        if digest.is_empty() && size.is_empty() {
            // RECORD itself and files written later (e.g. INSTALLER) have no hash.
            continue;
        }
        let full = site_packages.join(&path);
        report.checked += 1;
        let Ok(metadata) = full.metadata() else {
            report.missing.push(relative(prefix, &full));
            continue;
        };
        if size.parse::<u64>().is_ok_and(|size| size != metadata.len()) {
            report.changed.push(relative(prefix, &full));
            continue;
        }
        if hash
            && let Some(expected) = digest.strip_prefix("sha256=")
            && let Some(actual) = sha256_file(&full)
            && base64_urlsafe_nopad(&actual) != expected
        {
            report.changed.push(relative(prefix, &full));
        }
    }
}

fn base64_urlsafe_nopad(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_pip() {
        // sha256 of b"" as pip writes it in RECORD.
        let digest: [u8; 32] = Sha256::digest(b"").into();
        assert_eq!(
            base64_urlsafe_nopad(&digest),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn record_checks_presence_size_and_hash() {
        let prefix = tempfile::tempdir().unwrap();
        let site = prefix.path().join("lib/python3.11/site-packages");
        fs_err::create_dir_all(site.join("pkg")).unwrap();
        fs_err::write(site.join("pkg/__init__.py"), "x = 1\n").unwrap();
        fs_err::write(site.join("pkg/data.txt"), "abc").unwrap();
        let digest: [u8; 32] = Sha256::digest(b"x = 1\n").into();
        let record = format!(
            "pkg/__init__.py,sha256={},6\npkg/data.txt,sha256=AAAA,3\npkg/gone.py,sha256=AAAA,1\npkg-1.0.dist-info/RECORD,,\n",
            base64_urlsafe_nopad(&digest)
        );
        let mut report = VerifyReport::default();
        check_record(prefix.path(), &site, &record, true, &mut report);
        assert_eq!(report.checked, 3);
        assert_eq!(report.missing, ["lib/python3.11/site-packages/pkg/gone.py"]);
        assert_eq!(
            report.changed,
            ["lib/python3.11/site-packages/pkg/data.txt"]
        );
    }
}
