//! One environment prefix on disk: where its Python and site-packages are, which Python
//! distributions are installed there, and how to run its Python (or any other) isolated from
//! the caller's Python settings.
//!
//! `env-build` (builds, locks), `env-run` (`has_mlflow`, `exec`) and `env-pack` (scans) all
//! read prefixes; before this crate each had its own copy of the `*.dist-info` listing, and
//! they split `name-version` differently (`rsplit_once` in one, `split_once` in another). This
//! crate depends on nothing of ours, so every crate can use it without a cycle. With the
//! `verify` feature, [`verify`] checks a prefix against what was installed into it (its conda
//! records and `RECORD`s; `cache verify`), which reads conda records with
//! `rattler_conda_types`.
#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::Command;

#[cfg(feature = "verify")]
pub mod verify;

/// The interpreter of an environment prefix.
#[must_use]
pub fn python_of(prefix: &Path) -> PathBuf {
    if cfg!(windows) {
        prefix.join("python.exe")
    } else {
        prefix.join("bin").join("python")
    }
}

/// `lib/python3.X/site-packages` of a prefix, if there is one.
#[must_use]
pub fn site_packages(prefix: &Path) -> Option<PathBuf> {
    let read = fs_err::read_dir(prefix.join("lib")).ok()?;
    let mut candidates: Vec<PathBuf> = read
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("python3"))
        })
        .map(|path| path.join("site-packages"))
        .filter(|path| path.is_dir())
        .collect();
    // One Python per prefix; sorted so the answer never depends on directory order.
    candidates.sort();
    candidates.into_iter().next()
}

/// PEP 503 normalisation: `Scikit_Learn` -> `scikit-learn`.
#[must_use]
pub fn normalize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut dash = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            dash = true;
        } else {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// A Python distribution installed in site-packages (one `*.dist-info` directory).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Distribution {
    /// The PEP 503 normalised name (`scikit-learn`), for comparisons.
    pub normalized: String,
    /// The name as `METADATA` spells it (`scikit-learn`), else as the directory does.
    pub name: String,
    /// The version, from `METADATA`, else from the directory name.
    pub version: String,
    /// What installed it (`INSTALLER`: `uv`, `pip`, `conda`), empty when unknown.
    pub installer: String,
    /// The `*.dist-info` directory's name.
    pub dist_info: String,
}

/// `name-version` of a `*.dist-info` directory name. The name part never holds a `-`
/// (installers write it with `_`), the version part may not either, so the first `-` splits;
/// a legacy name with dashes (`my-pkg-1.0`) splits at the last `-` followed by a digit.
fn split_dist_info(stem: &str) -> Option<(&str, &str)> {
    let (name, version) = stem.split_once('-')?;
    if version.starts_with(|c: char| c.is_ascii_digit()) {
        return Some((name, version));
    }
    let at = stem
        .match_indices('-')
        .rev()
        .find(|(i, _)| stem[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?
        .0;
    Some((&stem[..at], &stem[at + 1..]))
}

/// Every `*.dist-info` in `site_packages`, sorted by normalised name.
#[must_use]
pub fn distributions(site_packages: &Path) -> Vec<Distribution> {
    let Ok(read) = fs_err::read_dir(site_packages) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        let dist_info = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = dist_info.strip_suffix(".dist-info") else {
            continue;
        };
        let Some((dir_name, dir_version)) = split_dist_info(stem) else {
            continue;
        };
        // The directory name is normalised (`scikit_learn`); METADATA has the real name.
        let metadata = fs_err::read_to_string(entry.path().join("METADATA")).unwrap_or_default();
        let field = |key: &str| {
            metadata
                .lines()
                .take_while(|line| !line.is_empty())
                .find_map(|line| line.strip_prefix(key))
                .map(|value| value.trim().to_string())
        };
        let name = field("Name:").unwrap_or_else(|| dir_name.to_string());
        out.push(Distribution {
            normalized: normalize(&name),
            version: field("Version:").unwrap_or_else(|| dir_version.to_string()),
            installer: fs_err::read_to_string(entry.path().join("INSTALLER"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            name,
            dist_info,
        });
    }
    out.sort();
    out
}

/// The distributions installed in `prefix` (empty without site-packages).
#[must_use]
pub fn prefix_distributions(prefix: &Path) -> Vec<Distribution> {
    site_packages(prefix)
        .map(|dir| distributions(&dir))
        .unwrap_or_default()
}

/// The first file named `name` in the directories of `PATH`, as a shell finds a program: the
/// one place that looks up `python3` (`run --env-manager local`, `check`) and `uv` on `PATH`.
#[must_use]
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether an environment has mlflow installed (a `mlflow` or `mlflow-skinny` distribution).
#[must_use]
pub fn has_mlflow(prefix: &Path) -> bool {
    prefix_distributions(prefix)
        .iter()
        .any(|d| matches!(d.normalized.as_str(), "mlflow" | "mlflow-skinny"))
}

/// Python's variables that would make an interpreter we run for our own purposes (inspecting
/// it, compiling bytecode, checking a pack) read other code or write elsewhere: one list for
/// every such call.
pub const PYTHON_VARIABLES: &[&str] = &[
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONPYCACHEPREFIX",
    "PYTHONUSERBASE",
    "PYTHONSAFEPATH",
    "PYTHONINSPECT",
    "PYTHONEXECUTABLE",
];

/// `python` as a command with [`PYTHON_VARIABLES`] removed. Not for the model's own
/// commands (`run`), which get the caller's environment as it is.
#[must_use]
pub fn isolated_python(python: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new(python);
    for name in PYTHON_VARIABLES {
        command.env_remove(name);
    }
    command
}

/// The `major.minor.micro` version of the interpreter `python` (a path, or a name on `PATH`),
/// asked in isolation ([`isolated_python`]); `None` when it cannot be run.
#[must_use]
pub fn python_version(python: impl AsRef<std::ffi::OsStr>) -> Option<String> {
    let output = isolated_python(python)
        .args(["-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Keeps `file` open in processes this one starts or becomes (`exec`): clears its
/// close-on-exec flag, so a lock held through it lasts as long as the child.
#[cfg(unix)]
pub fn keep_open_across_exec(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is a valid open descriptor owned by `file` for the duration of the call;
    // F_GETFD/F_SETFD only change its close-on-exec flag.
    #[expect(unsafe_code, reason = "no safe API clears FD_CLOEXEC")]
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
        }
    }
}

/// Keeps `file` open in processes this one starts (no-op where descriptors are not inherited
/// this way).
#[cfg(not(unix))]
pub fn keep_open_across_exec(_file: &std::fs::File) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn dist_info(site: &Path, dir: &str, metadata: Option<&str>) {
        let path = site.join(dir);
        fs_err::create_dir_all(&path).unwrap();
        if let Some(text) = metadata {
            fs_err::write(path.join("METADATA"), text).unwrap();
        }
    }

    #[test]
    fn distributions_are_named_the_same_whatever_the_directory_says() {
        let prefix = tempfile::tempdir().unwrap();
        let site = prefix.path().join("lib/python3.11/site-packages");
        dist_info(
            &site,
            "scikit_learn-1.9.1.dist-info",
            Some("Metadata-Version: 2.1\nName: scikit-learn\nVersion: 1.9.1\n\nbody\nName: no\n"),
        );
        dist_info(&site, "mlflow_skinny-3.17.2.dist-info", None);
        dist_info(&site, "legacy-name-2.0.dist-info", None);
        dist_info(&site, "pkg-1.0-py3.11.egg-info", None);
        assert_eq!(site_packages(prefix.path()).unwrap(), site);
        let found: Vec<(String, String, String)> = prefix_distributions(prefix.path())
            .into_iter()
            .map(|d| (d.normalized, d.name, d.version))
            .collect();
        assert_eq!(
            found,
            [
                ("legacy-name".into(), "legacy-name".into(), "2.0".into()),
                (
                    "mlflow-skinny".into(),
                    "mlflow_skinny".into(),
                    "3.17.2".into()
                ),
                ("scikit-learn".into(), "scikit-learn".into(), "1.9.1".into()),
            ]
        );
    }

    #[test]
    fn isolated_python_clears_every_python_variable() {
        let command = isolated_python("python3");
        let removed: Vec<String> = command
            .get_envs()
            .filter(|(_, value)| value.is_none())
            .map(|(name, _)| name.to_string_lossy().into_owned())
            .collect();
        for name in PYTHON_VARIABLES {
            assert!(removed.iter().any(|r| r == name), "{name}");
        }
    }
}
