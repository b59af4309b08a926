//! `python` packages made from the machine's pyenv CPython builds.
//!
//! Staging copies `$PYENV_ROOT/versions/X.Y.Z`, trims what an environment does not need (tests,
//! IDLE, tkinter, caches, the static library, this machine's extra site-packages, pyenv's extra
//! scripts), strips debug info, rewrites every `RUNPATH` to `$ORIGIN`-relative and then checks
//! that none is absolute any more. Text files that mention the build prefix get a text-mode prefix
//! placeholder; binaries keep the string, because CPython finds its prefix from the location of the
//! executable (notes §2). The result is 30 MB per version, about 9 MB as a `.conda`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result, bail, ensure};
use fs_err as fs;
use serde::Serialize;

use crate::elf;
use crate::package::{self, ArchiveFormat, BuiltPackage, PackageKind, PackageMetadata};

/// The CPython versions packaged, each from `$PYENV_ROOT/versions/<version>`.
pub const PYTHON_VERSIONS: [&str; 3] = ["3.10.13", "3.11.7", "3.12.1"];

/// The build string of the `python` packages.
pub const PYTHON_BUILD: &str = "0_pyenv_cpython";

/// Directories of `lib/pythonX.Y/` dropped entirely.
const DROPPED_STDLIB_DIRS: [&str; 4] = ["test", "idlelib", "tkinter", "turtledemo"];

/// `major.minor` of a full version, e.g. `3.11` for `3.11.7`.
pub(crate) fn minor_version(version: &str) -> &str {
    version
        .rmatch_indices('.')
        .next()
        .map_or(version, |(index, _)| &version[..index])
}

/// What identifies a pyenv install for the cache key: rebuilding or reinstalling it changes the
/// size or modification time of the interpreter or `libpython`.
#[derive(Debug, Serialize)]
pub(crate) struct PythonIdentity {
    version: String,
    dir: PathBuf,
    files: Vec<(String, u64, u128)>,
}

/// The pyenv install directory of `version`, checking that it looks like a shared CPython build.
pub(crate) fn install_dir(pyenv_root: &Path, version: &str) -> Result<PathBuf> {
    let dir = pyenv_root.join("versions").join(version);
    let minor = minor_version(version);
    let interpreter = dir.join("bin").join(format!("python{minor}"));
    ensure!(
        interpreter.is_file(),
        "No CPython {version} at `{}` (install it with `pyenv install {version}`, built with \
         `PYTHON_CONFIGURE_OPTS=--enable-shared`)",
        dir.display()
    );
    Ok(dir)
}

/// The cache-key identity of the pyenv install of `version`.
pub(crate) fn identity(pyenv_root: &Path, version: &str) -> Result<PythonIdentity> {
    let dir = install_dir(pyenv_root, version)?;
    let minor = minor_version(version);
    let mut files = Vec::new();
    for relative in [
        format!("bin/python{minor}"),
        format!("lib/libpython{minor}.so.1.0"),
    ] {
        let path = dir.join(&relative);
        let (size, modified) = match fs::metadata(&path) {
            Ok(metadata) => (
                metadata.len(),
                metadata
                    .modified()?
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |duration| duration.as_nanos()),
            ),
            // A static build has no libpython; its absence is part of the identity.
            Err(_) => (0, 0),
        };
        files.push((relative, size, modified));
    }
    Ok(PythonIdentity {
        version: version.to_owned(),
        dir,
        files,
    })
}

/// Copies the pyenv install of `version` into `dest` (which must not exist), trimmed, stripped and
/// with `$ORIGIN`-relative library search paths. Returns the build prefix, the string that text
/// files may contain.
pub fn stage(pyenv_root: &Path, version: &str, dest: &Path) -> Result<String> {
    let source = install_dir(pyenv_root, version)?;
    let minor = minor_version(version);
    fs::create_dir(dest)?;
    copy_tree(&source, dest, Path::new(""), minor)?;
    check_symlinks(dest, Path::new(""))?;

    let elf_files = elf::find_elf_objects(dest)?;
    ensure!(
        elf_files
            .iter()
            .any(|file| file.ends_with(format!("bin/python{minor}"))),
        "No ELF interpreter `bin/python{minor}` in `{}`",
        source.display()
    );
    elf::strip_debug(&elf_files)?;
    let mut rpaths = BTreeMap::new();
    for file in &elf_files {
        // The file is under `dest` and is a file, so it has a parent below `dest`.
        let parent = file
            .parent()
            .and_then(|parent| parent.strip_prefix(dest).ok())
            .context("ELF file outside the staging directory")?;
        rpaths.insert(file.clone(), elf::origin_rpath_to_lib(parent));
    }
    elf::set_rpaths(&rpaths)?;
    elf::check_relative_rpaths(&elf_files)?;

    source
        .to_str()
        .map(str::to_owned)
        .with_context(|| format!("pyenv path `{}` is not UTF-8", source.display()))
}

/// Stages and packages CPython `version` into `channel_dir/linux-64/`.
pub(crate) fn build(
    pyenv_root: &Path,
    version: &str,
    work_dir: &Path,
    channel_dir: &Path,
) -> Result<BuiltPackage> {
    let staging = work_dir.join(format!("python-{version}"));
    let build_prefix = stage(pyenv_root, version, &staging)
        .with_context(|| format!("Failed to stage CPython {version}"))?;
    let meta = PackageMetadata {
        name: "python".to_owned(),
        version: version.to_owned(),
        build: PYTHON_BUILD.to_owned(),
        build_number: 0,
        // The interpreter links against the system's glibc (and libssl, libsqlite3, ...);
        // `__glibc` also makes every solve exercise virtual packages.
        depends: vec!["__glibc >=2.17".to_owned()],
        kind: PackageKind::Linux64,
        license: Some("Python-2.0".to_owned()),
        summary: Some(format!(
            "CPython {version}, repackaged from pyenv for pyfunc-env tests"
        )),
        home: Some("https://www.python.org".to_owned()),
    };
    let built = package::write_package(
        &staging,
        &meta,
        Some(&build_prefix),
        ArchiveFormat::Conda,
        channel_dir,
    )?;
    fs::remove_dir_all(&staging)?;
    Ok(built)
}

/// Whether `relative` (a path inside the pyenv install) belongs in the package.
fn keep(relative: &Path, is_dir: bool, minor: &str) -> bool {
    let parts: Vec<&str> = relative
        .components()
        .map(|component| component.as_os_str().to_str().unwrap_or(""))
        .collect();
    if parts.contains(&"__pycache__") {
        return false;
    }
    match parts.as_slice() {
        ["bin", name] if !is_dir => {
            let own = [
                "python".to_owned(),
                "python3".to_owned(),
                format!("python{minor}"),
                "python-config".to_owned(),
                "python3-config".to_owned(),
                format!("python{minor}-config"),
                "pydoc".to_owned(),
                "pydoc3".to_owned(),
                format!("pydoc{minor}"),
                "2to3".to_owned(),
                format!("2to3-{minor}"),
            ];
            own.iter().any(|own| own == name)
        }
        ["bin", _, ..] => false,
        ["lib", stdlib, rest @ ..] if *stdlib == format!("python{minor}") => match rest {
            [] => true,
            ["site-packages"] => true,
            ["site-packages", name] => *name == "README.txt",
            ["site-packages", ..] => false,
            [top, ..] if DROPPED_STDLIB_DIRS.contains(top) => false,
            // `*/test` and `*/tests` anywhere in the standard library.
            [.., last] if is_dir && (*last == "test" || *last == "tests") => false,
            [.., last] => *last != format!("libpython{minor}.a"),
        },
        [.., last] => *last != format!("libpython{minor}.a"),
        [] => true,
    }
}

fn copy_tree(source: &Path, dest: &Path, relative: &Path, minor: &str) -> Result<()> {
    let mut children: Vec<_> = fs::read_dir(source.join(relative))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()?;
    children.sort();
    for name in children {
        let child = relative.join(&name);
        let from = source.join(&child);
        let to = dest.join(&child);
        let file_type = fs::symlink_metadata(&from)?.file_type();
        if !keep(&child, file_type.is_dir(), minor) {
            continue;
        }
        if file_type.is_dir() {
            fs::create_dir(&to)?;
            copy_tree(source, dest, &child, minor)?;
        } else if file_type.is_symlink() {
            let target = fs::read_link(&from)?;
            ensure!(
                target.is_relative(),
                "Symlink `{}` points to the absolute path `{}`",
                from.display(),
                target.display()
            );
            fs_err::os::unix::fs::symlink(&target, &to)?;
        } else if file_type.is_file() {
            fs::copy(&from, &to)?;
            // strip and patchelf rewrite files in place, and pyenv installs some read-only.
            let mode = fs::metadata(&to)?.permissions().mode();
            fs::set_permissions(&to, std::fs::Permissions::from_mode(mode | 0o644))?;
        } else {
            bail!("Unsupported file type for `{}`", from.display());
        }
    }
    Ok(())
}

/// Fails on symlinks whose target was trimmed away.
fn check_symlinks(root: &Path, relative: &Path) -> Result<()> {
    for entry in fs::read_dir(root.join(relative))? {
        let entry = entry?;
        let child = relative.join(entry.file_name());
        let path = root.join(&child);
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            check_symlinks(root, &child)?;
        } else if file_type.is_symlink() && !path.exists() {
            bail!(
                "Symlink `{}` points to a file that was trimmed",
                child.display()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims() {
        let keep = |path: &str, is_dir: bool| keep(Path::new(path), is_dir, "3.11");
        assert!(keep("bin/python3.11", false));
        assert!(keep("bin/python3", false));
        assert!(keep("bin/pydoc3.11", false));
        assert!(!keep("bin/pip3.11", false));
        assert!(!keep("bin/idle3.11", false));
        assert!(!keep("bin/python3.11-gdb.py", false));
        assert!(!keep("bin/__pycache__", true));
        assert!(keep("lib/python3.11/os.py", false));
        assert!(keep("lib/python3.11/site-packages", true));
        assert!(keep("lib/python3.11/site-packages/README.txt", false));
        assert!(!keep("lib/python3.11/site-packages/numpy", true));
        assert!(!keep("lib/python3.11/test", true));
        assert!(!keep("lib/python3.11/tkinter", true));
        assert!(!keep("lib/python3.11/unittest/test", true));
        assert!(!keep("lib/python3.11/lib2to3/tests", true));
        assert!(keep("lib/python3.11/lib2to3/tests.py", false));
        assert!(!keep("lib/python3.11/json/__pycache__", true));
        assert!(!keep(
            "lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a",
            false
        ));
        assert!(keep("lib/libpython3.11.so.1.0", false));
        assert!(keep("include/python3.11/Python.h", false));
    }

    /// The check that guards relocatability rejects what pyenv installs.
    #[test]
    fn pyenv_rpaths_are_absolute() {
        let root = crate::pyenv_root().unwrap();
        let dir = install_dir(&root, "3.11.7").unwrap();
        let error = elf::check_relative_rpaths(&[dir.join("lib/libpython3.11.so.1.0")])
            .unwrap_err()
            .to_string();
        assert!(error.contains("absolute library search path"), "{error}");
    }

    #[test]
    fn minor_versions() {
        assert_eq!(minor_version("3.11.7"), "3.11");
        assert_eq!(minor_version("3.12.1"), "3.12");
    }
}
