//! `cache verify`: is a built environment still what was installed?
//!
//! Checks every file the conda records (`conda-meta/*.json`: path, size, sha256 in the prefix)
//! and the Python distributions (`*.dist-info/RECORD`: path, hash, size) list: present, same
//! size, and with `hash`, the same sha256. Files written after install (bytecode) are not
//! listed and not checked.
//!
//! [`verify_cache`] checks environments of a cache the way `cache verify` does: only complete
//! ones, each under its shared lock (so `cache prune` and a `--reinstall` cannot change it
//! meanwhile), and one being built is reported as such rather than checked half-written.

use std::path::{Path, PathBuf};

use env_cache::{Cache, CacheError, EnvEntry, EnvState};

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

/// Errors of [`verify_cache`].
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum VerifyError {
    /// A key was asked for that names no complete environment (and none being built).
    #[error("No complete environment `{key}` in {}", root.display())]
    NotComplete {
        /// The key asked for.
        key: String,
        /// The cache root.
        root: PathBuf,
    },
    /// The cache or an environment's lock could not be read.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Cache(#[from] CacheError),
}

impl VerifyError {
    /// Whether the caller can fix it (exit code 1): a key that names no complete environment.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        matches!(self, Self::NotComplete { .. })
    }
}

/// What the environment was first built for (its metadata), to name the repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltFor {
    /// The model directory.
    pub model: String,
    /// `conda` or `virtualenv`.
    pub env_manager: String,
}

/// The verdict on one environment of the cache.
#[derive(Debug, Clone)]
pub struct EnvVerdict {
    /// The key.
    pub key: String,
    /// From its metadata; `None` when unreadable.
    pub built_for: Option<BuiltFor>,
    /// Not checked: another process is building it (check it again once complete).
    pub building: bool,
    /// What was found; empty when `building`. A pulled environment's relocated console
    /// scripts and unchecked-hash bytecode are left out of `changed` (they differ by design).
    pub report: VerifyReport,
}

impl EnvVerdict {
    /// Whether nothing is wrong (an environment being built counts as fine).
    #[must_use]
    pub fn is_ok(&self) -> bool {
        self.building || self.report.is_ok()
    }
}

/// Verifies the environments of `cache` named by `keys`, or every complete one when `keys` is
/// empty; `hash` also compares contents. Holds the cache's shared lock throughout, and each
/// environment's shared lock while checking it; an environment whose builder holds its lock is
/// returned with [`EnvVerdict::building`] set instead of waiting for it.
pub fn verify_cache(
    cache: &Cache,
    keys: &[String],
    hash: bool,
) -> Result<Vec<EnvVerdict>, VerifyError> {
    let _shared = cache.lock_shared()?;
    // An environment being built is locked exclusively by its builder: say so rather than
    // leave it out silently (or, with `--reinstall`, check a directory being replaced).
    let building =
        |entry: &EnvEntry| -> Result<bool, CacheError> { Ok(entry.try_lock_shared()?.is_none()) };
    let mut envs = Vec::new();
    if keys.is_empty() {
        for entry in cache.envs()? {
            match entry.state() {
                EnvState::Complete(_) => envs.push(entry),
                EnvState::Incomplete if building(&entry)? => envs.push(entry),
                _ => {}
            }
        }
    } else {
        for key in keys {
            let entry = cache.env(key)?;
            let state = entry.state();
            // A key nothing ever built has no lock file: asking for its lock would create one,
            // a leftover `cache prune` then reports as an incomplete environment.
            let never_built = matches!(state, EnvState::Missing) && !entry.lock_path().exists();
            if !matches!(state, EnvState::Complete(_)) && (never_built || !building(&entry)?) {
                return Err(VerifyError::NotComplete {
                    key: key.clone(),
                    root: cache.root().to_path_buf(),
                });
            }
            envs.push(entry);
        }
    }
    let mut verdicts = Vec::new();
    for env in envs {
        let metadata = env.metadata().ok();
        let built_for = metadata.as_ref().map(|m| BuiltFor {
            model: m.model.clone(),
            env_manager: m.env_manager.clone(),
        });
        let Some(_lock) = env.try_lock_shared()? else {
            verdicts.push(EnvVerdict {
                key: env.key().to_string(),
                built_for,
                building: true,
                report: VerifyReport::default(),
            });
            continue;
        };
        let mut report = verify(env.dir(), hash);
        // A pulled environment's console scripts are relocatable trampolines and its bytecode
        // is compiled unchecked-hash (`pack`), so their recorded hashes differ by design.
        if let Some(relocated) = metadata
            .as_ref()
            .and_then(|m| m.extra.get("relocated_scripts").cloned())
            .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
        {
            report
                .changed
                .retain(|path| !differs_by_design(path, &relocated));
        }
        verdicts.push(EnvVerdict {
            key: env.key().to_string(),
            built_for,
            building: false,
            report,
        });
    }
    Ok(verdicts)
}

/// Whether a changed file of a pulled environment is one of its relocated console scripts or
/// its unchecked-hash bytecode.
fn differs_by_design(path: &str, relocated: &[String]) -> bool {
    let path = normalize(path);
    let bytecode =
        path.contains("/__pycache__/") && Path::new(&path).extension().is_some_and(|e| e == "pyc");
    bytecode || relocated.contains(&path)
}

/// `a/b/../c` as `a/c` (RECORD names scripts `site-packages/../../../bin/x`).
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
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
    let python = crate::build::python_of(prefix);
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
    fn pulled_environments_scripts_and_bytecode_differ_by_design() {
        let relocated = vec!["bin/tool".to_string()];
        assert!(differs_by_design(
            "lib/python3.11/site-packages/../../../bin/tool",
            &relocated
        ));
        assert!(differs_by_design(
            "lib/python3.11/site-packages/pkg/__pycache__/m.cpython-311.pyc",
            &relocated
        ));
        assert!(!differs_by_design("bin/other", &relocated));
        assert!(!differs_by_design(
            "lib/python3.11/site-packages/pkg/m.py",
            &relocated
        ));
        assert_eq!(normalize("./a/b/../c//d"), "a/c/d");
    }

    #[test]
    fn a_key_without_a_complete_environment_is_named() {
        let root = tempfile::tempdir().unwrap();
        let cache = Cache::new(root.path().join("cache"));
        cache.init().unwrap();
        assert!(verify_cache(&cache, &[], false).unwrap().is_empty());
        // A key nothing built: named, and nothing is left behind for `cache prune` to find.
        let unknown = "fedcba9876543210fedcba9876543210".to_string();
        let error = verify_cache(&cache, std::slice::from_ref(&unknown), false).unwrap_err();
        assert!(matches!(&error, VerifyError::NotComplete { key, .. } if *key == unknown));
        assert!(
            cache.envs().unwrap().is_empty(),
            "{:?}",
            cache.envs().unwrap()
        );
        assert!(!cache.env(&unknown).unwrap().lock_path().exists());
        // A crashed build's leftovers are neither complete nor being built.
        let entry = cache.env("0123456789abcdef0123456789abcdef").unwrap();
        fs_err::create_dir_all(entry.dir()).unwrap();
        assert!(verify_cache(&cache, &[], false).unwrap().is_empty());
        let error = verify_cache(&cache, &[entry.key().to_string()], false).unwrap_err();
        assert!(
            matches!(&error, VerifyError::NotComplete { key, .. } if key == entry.key()),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "No complete environment `{}` in {}",
                entry.key(),
                cache.root().display()
            )
        );
    }

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
