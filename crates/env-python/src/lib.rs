//! Finding a Python interpreter on this machine for virtualenv-mode environments.
//!
//! Looks, in order, in pyenv's versions directory (`$PYENV_ROOT/versions`, default
//! `~/.pyenv/versions`: uv alone sees only pyenv's global version through its shims),
//! uv-managed installs (`$UV_PYTHON_INSTALL_DIR`, default `~/.local/share/uv/python`), and
//! `PATH` (`python3.X`, `python3`). Directory names give versions without running anything;
//! interpreters on `PATH` are asked.
//!
//! A leaf crate (it depends on env-prefix only, no rattler, no uv): env-build's virtualenv
//! provisioning uses it to pick an interpreter for `--env-manager virtualenv`. Finding the
//! first `python3` on `PATH` (`run --env-manager local`, `check`) is `env_prefix::find_on_path`.
#![warn(missing_docs)]

use std::path::PathBuf;

/// A Python interpreter found on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interpreter {
    /// The executable.
    pub path: PathBuf,
    /// Its version, `major.minor.patch`.
    pub version: String,
    /// Where it was found (`pyenv`, `uv`, `PATH`).
    pub source: &'static str,
}

/// `(major, minor, patch)` of a version string; `None` for anything else.
#[must_use]
pub fn parse_version(text: &str) -> Option<(u64, u64, Option<u64>)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    let patch = match parts.next() {
        Some(p) => Some(p.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((major, minor, patch))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn pyenv_candidates() -> Vec<Interpreter> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".pyenv")));
    let Some(root) = root else { return Vec::new() };
    let Ok(read) = fs_err::read_dir(root.join("versions")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((major, minor, Some(_))) = parse_version(&name) else {
            continue;
        };
        let exe = entry
            .path()
            .join("bin")
            .join(format!("python{major}.{minor}"));
        if exe.is_file() {
            out.push(Interpreter {
                path: exe,
                version: name,
                source: "pyenv",
            });
        }
    }
    out
}

fn uv_candidates() -> Vec<Interpreter> {
    let dir = std::env::var_os("UV_PYTHON_INSTALL_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .or_else(|| home().map(|h| h.join(".local").join("share")))
                .map(|d| d.join("uv").join("python"))
        });
    let Some(dir) = dir else { return Vec::new() };
    let Ok(read) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in read.flatten() {
        // `cpython-3.11.7-linux-x86_64-gnu`
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(version) = name
            .strip_prefix("cpython-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let Some((major, minor, Some(_))) = parse_version(version) else {
            continue;
        };
        let exe = entry
            .path()
            .join("bin")
            .join(format!("python{major}.{minor}"));
        if exe.is_file() {
            out.push(Interpreter {
                path: exe,
                version: version.to_string(),
                source: "uv",
            });
        }
    }
    out
}

fn path_candidates(minor: (u64, u64)) -> Vec<Interpreter> {
    let Some(path) = std::env::var_os("PATH") else {
        return Vec::new();
    };
    let names = [
        format!("python{}.{}", minor.0, minor.1),
        format!("python{}", minor.0),
    ];
    let mut out: Vec<Interpreter> = Vec::new();
    // Each one is run to learn its version: ask each file once, however many directories
    // lead to it (`/bin` is `/usr/bin` on merged-/usr systems).
    let mut seen: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(&path) {
        // pyenv's shims re-dispatch to pyenv versions, which we already list directly.
        if dir.ends_with("shims") {
            continue;
        }
        for name in &names {
            let exe = dir.join(name);
            if !exe.is_file() {
                continue;
            }
            let real = fs_err::canonicalize(&exe).unwrap_or_else(|_| exe.clone());
            if seen.contains(&real) {
                continue;
            }
            seen.push(real);
            if let Some(version) = env_prefix::python_version(&exe) {
                out.push(Interpreter {
                    path: exe,
                    version,
                    source: "PATH",
                });
            }
        }
    }
    out
}

/// Interpreters of the requested minor version, the exact version first, newest patch next.
/// When pyenv or uv has the exact version, interpreters on `PATH` (which would sort after it)
/// are not listed.
#[must_use]
pub fn find(requested: &str) -> Vec<Interpreter> {
    let Some((major, minor, patch)) = parse_version(requested) else {
        return Vec::new();
    };
    let mut found: Vec<Interpreter> = pyenv_candidates()
        .into_iter()
        .chain(uv_candidates())
        .filter(|i| parse_version(&i.version).is_some_and(|(a, b, _)| (a, b) == (major, minor)))
        .collect();
    let exact = |i: &Interpreter| {
        patch.is_some_and(|p| parse_version(&i.version).and_then(|v| v.2) == Some(p))
    };
    // Interpreters on `PATH` are run to learn their versions (about 50 ms each); an exact match
    // from the directories above sorts before all of them, so they are only asked without one.
    if !found.iter().any(exact) {
        found.extend(path_candidates((major, minor)).into_iter().filter(|i| {
            parse_version(&i.version).is_some_and(|(a, b, _)| (a, b) == (major, minor))
        }));
    }
    found.sort_by_key(|i| {
        (
            !exact(i),
            std::cmp::Reverse(parse_version(&i.version).and_then(|v| v.2)),
        )
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("3.11.7"), Some((3, 11, Some(7))));
        assert_eq!(parse_version("3.8"), Some((3, 8, None)));
        assert_eq!(parse_version("3.8.x"), None);
        assert_eq!(parse_version("3"), None);
    }
}
