//! Conda packages made from real PyPI wheels, pinned by version and sha256.
//!
//! Wheels are downloaded once with `pip download` into a cache directory and verified against the
//! pinned hash every time they are used. The conversion does what conda-forge's recipes do with
//! `pip install`: the files go to `site-packages/` (`noarch: python`) or
//! `lib/pythonX.Y/site-packages/` (one `linux-64` package per Python minor), the `.dist-info` is
//! kept with `INSTALLER` set to `conda`, and `[console_scripts]` become `info/link.json` entry
//! points (noarch) or `bin/` scripts with a prefix placeholder in the shebang (linux-64).

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use fs_err as fs;
use serde::Serialize;

use crate::elf;
use crate::package::{self, ArchiveFormat, BuiltPackage, PackageKind, PackageMetadata};

/// The placeholder prefix in the shebang of the `bin/` scripts of `linux-64` wheel packages. It
/// stands for the build prefix conda-build would have used; the installer replaces it (text mode).
const SCRIPT_PREFIX_PLACEHOLDER: &str = "/opt/env-test/build-prefix-placeholder";

/// A wheel from PyPI, pinned by file name and sha256.
#[derive(Debug, Clone, Serialize)]
pub struct PinnedWheel {
    /// The distribution name, e.g. `numpy`.
    pub name: &'static str,
    /// The version, e.g. `1.26.4`.
    pub version: &'static str,
    /// For a CPython-specific wheel, the `major.minor` it is built for; `None` for `py3-none-any`.
    pub python: Option<&'static str>,
    /// The wheel's file name.
    pub file_name: &'static str,
    /// The wheel's sha256, as PyPI lists it.
    pub sha256: &'static str,
}

/// The wheels the channel is built from. The hashes are PyPI's; a mismatch fails the build.
pub const PINNED_WHEELS: [PinnedWheel; 6] = [
    PinnedWheel {
        name: "pip",
        version: "25.0.1",
        python: None,
        file_name: "pip-25.0.1-py3-none-any.whl",
        sha256: "c46efd13b6aa8279f33f2864459c8ce587ea6a1a59ee20de055868d8f7688f7f",
    },
    PinnedWheel {
        name: "setuptools",
        version: "75.8.0",
        python: None,
        file_name: "setuptools-75.8.0-py3-none-any.whl",
        sha256: "e3982f444617239225d675215d51f6ba05f845d4eec313da4418fdbb56fb27e3",
    },
    PinnedWheel {
        name: "wheel",
        version: "0.45.1",
        python: None,
        file_name: "wheel-0.45.1-py3-none-any.whl",
        sha256: "708e7481cc80179af0e556bbf0cc00b8444c7321e2700b8d8580231d13017248",
    },
    PinnedWheel {
        name: "numpy",
        version: "1.26.4",
        python: Some("3.10"),
        file_name: "numpy-1.26.4-cp310-cp310-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256: "ffa75af20b44f8dba823498024771d5ac50620e6915abac414251bd971b4529f",
    },
    PinnedWheel {
        name: "numpy",
        version: "1.26.4",
        python: Some("3.11"),
        file_name: "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256: "666dbfb6ec68962c033a450943ded891bed2d54e6755e35e5835d63f4f6931d5",
    },
    PinnedWheel {
        name: "numpy",
        version: "1.26.4",
        python: Some("3.12"),
        file_name: "numpy-1.26.4-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        sha256: "675d61ffbfa78604709862923189bad94014bef562cc35cf61d3a07bba02a7ed",
    },
];

impl PinnedWheel {
    /// The build string of the conda package made from this wheel: `py_0` for noarch,
    /// `py311_0` for a CPython 3.11 wheel.
    #[must_use]
    pub fn build_string(&self) -> String {
        match self.python {
            None => "py_0".to_owned(),
            Some(minor) => format!("py{}_0", minor.replace('.', "")),
        }
    }

    /// The minimum glibc of a `manylinux_2_N` wheel, from its platform tag.
    fn glibc(&self) -> Option<String> {
        let stem = self.file_name.strip_suffix(".whl")?;
        let platform = stem.rsplit('-').next()?;
        platform.split('.').find_map(|tag| {
            let rest = tag.strip_prefix("manylinux_")?;
            let mut parts = rest.splitn(3, '_');
            let major = parts.next()?;
            let minor = parts.next()?;
            Some(format!("{major}.{minor}"))
        })
    }
}

/// Returns the path of each pinned wheel in `cache_dir`, downloading the missing ones with
/// `python -m pip download`. Every wheel's sha256 is checked, cached or not.
pub(crate) fn fetch(cache_dir: &Path, python: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(cache_dir)?;
    // Builds of different channels (other cache keys, or `channel build`) share the cache.
    let lock = fs::File::create(cache_dir.join(".lock"))?;
    lock.lock()?;

    let mut paths = Vec::new();
    for wheel in &PINNED_WHEELS {
        let path = cache_dir.join(wheel.file_name);
        if !path.is_file() {
            download(wheel, cache_dir, python)?;
        }
        let sha256 = package::sha256_file(&path)?;
        ensure!(
            sha256 == wheel.sha256,
            "`{}` has sha256 `{sha256}`, expected `{}` (delete it to download it again)",
            path.display(),
            wheel.sha256
        );
        paths.push(path);
    }
    Ok(paths)
}

fn download(wheel: &PinnedWheel, cache_dir: &Path, python: &Path) -> Result<()> {
    let temp = tempfile::Builder::new()
        .prefix(".download-")
        .tempdir_in(cache_dir)?;
    let mut command = Command::new(python);
    command
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary",
            ":all:",
        ])
        .args(["--disable-pip-version-check", "--no-input", "--quiet"])
        .arg("--dest")
        .arg(temp.path())
        .arg(format!("{}=={}", wheel.name, wheel.version));
    if let Some(minor) = wheel.python {
        let tag = minor.replace('.', "");
        command
            .args([
                "--platform",
                "manylinux2014_x86_64",
                "--implementation",
                "cp",
            ])
            .args(["--python-version", minor, "--abi"])
            .arg(format!("cp{tag}"));
    }
    let output = command
        .output()
        .with_context(|| format!("Failed to run `{}`", python.display()))?;
    if !output.status.success() {
        bail!(
            "`pip download {}=={}` failed with {}: {}",
            wheel.name,
            wheel.version,
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let downloaded = temp.path().join(wheel.file_name);
    ensure!(
        downloaded.is_file(),
        "`pip download {}=={}` did not produce `{}`",
        wheel.name,
        wheel.version,
        wheel.file_name
    );
    fs::rename(&downloaded, cache_dir.join(wheel.file_name))?;
    Ok(())
}

/// Where the wheel's files go in the package.
#[derive(Debug, Clone, Copy)]
enum Layout<'a> {
    /// `noarch: python`: `site-packages/` and `python-scripts/`, remapped by the installer.
    NoArch,
    /// `linux-64` for CPython `major.minor`: `lib/pythonX.Y/site-packages/` and `bin/`.
    Python(&'a str),
}

impl Layout<'_> {
    fn site_packages(self) -> PathBuf {
        match self {
            Self::NoArch => PathBuf::from("site-packages"),
            Self::Python(minor) => PathBuf::from(format!("lib/python{minor}/site-packages")),
        }
    }

    fn scripts(self) -> PathBuf {
        match self {
            Self::NoArch => PathBuf::from("python-scripts"),
            Self::Python(_) => PathBuf::from("bin"),
        }
    }
}

/// The parts of the wheel's metadata the package needs.
#[derive(Debug, Default)]
struct WheelMetadata {
    requires_python: Option<String>,
    summary: Option<String>,
    license: Option<String>,
    home: Option<String>,
    /// `name = module:function` from `[console_scripts]`.
    console_scripts: Vec<(String, String)>,
}

/// Converts `wheel_path` (the pinned `wheel`) into a conda package in `channel_dir`.
pub(crate) fn build(
    wheel: &PinnedWheel,
    wheel_path: &Path,
    work_dir: &Path,
    channel_dir: &Path,
) -> Result<BuiltPackage> {
    let build = wheel.build_string();
    let staging = work_dir.join(format!("{}-{}-{build}", wheel.name, wheel.version));
    fs::create_dir(&staging)?;
    let layout = wheel.python.map_or(Layout::NoArch, Layout::Python);
    let metadata = extract(wheel, wheel_path, layout, &staging)
        .with_context(|| format!("Failed to convert `{}`", wheel_path.display()))?;

    let mut depends = Vec::new();
    let kind = match layout {
        Layout::NoArch => {
            depends.push(python_dependency(metadata.requires_python.as_deref())?);
            PackageKind::NoArchPython {
                entry_points: metadata
                    .console_scripts
                    .iter()
                    .map(|(name, target)| format!("{name} = {target}"))
                    .collect(),
            }
        }
        Layout::Python(minor) => {
            depends.push(format!(
                "python >={minor},<{next}.0a0",
                next = next_minor(minor)?
            ));
            if let Some(glibc) = wheel.glibc() {
                depends.push(format!("__glibc >={glibc}"));
            }
            for (name, target) in &metadata.console_scripts {
                write_script(&staging, minor, name, target)?;
            }
            // auditwheel makes manylinux wheels find their vendored libraries through
            // `$ORIGIN`; hold every linux-64 package to the same rule as `python`.
            elf::check_relative_rpaths(&elf::find_elf_objects(&staging)?)?;
            PackageKind::Linux64
        }
    };

    let meta = PackageMetadata {
        name: wheel.name.to_owned(),
        version: wheel.version.to_owned(),
        build,
        build_number: 0,
        depends,
        kind,
        license: metadata.license,
        summary: metadata.summary,
        home: metadata.home,
    };
    let placeholder = matches!(layout, Layout::Python(_)).then_some(SCRIPT_PREFIX_PLACEHOLDER);
    let built = package::write_package(
        &staging,
        &meta,
        placeholder,
        ArchiveFormat::Conda,
        channel_dir,
    )?;
    fs::remove_dir_all(&staging)?;
    Ok(built)
}

/// `3.12` for `3.11`.
fn next_minor(minor: &str) -> Result<String> {
    let (major, minor_number) = minor
        .split_once('.')
        .with_context(|| format!("Invalid Python version `{minor}`"))?;
    let minor_number: u32 = minor_number
        .parse()
        .with_context(|| format!("Invalid Python version `{minor}`"))?;
    Ok(format!("{major}.{}", minor_number + 1))
}

/// The conda dependency on `python` for a `Requires-Python` specifier such as `>=3.8`.
fn python_dependency(requires_python: Option<&str>) -> Result<String> {
    let Some(requires_python) = requires_python else {
        return Ok("python".to_owned());
    };
    let mut clauses = Vec::new();
    for clause in requires_python.split(',') {
        let clause = clause.trim();
        let (operator, version) = ["<=", ">=", "!=", "<", ">"]
            .iter()
            .find_map(|operator| Some((*operator, clause.strip_prefix(operator)?)))
            .with_context(|| format!("Unsupported `Requires-Python` clause `{clause}`"))?;
        let version = version.trim();
        ensure!(
            !version.is_empty() && version.chars().all(|c| c.is_ascii_digit() || c == '.'),
            "Unsupported `Requires-Python` clause `{clause}`"
        );
        clauses.push(format!("{operator}{version}"));
    }
    Ok(format!("python {}", clauses.join(",")))
}

/// Unpacks the wheel into `staging` following `layout`, marks it installed by conda and returns
/// its metadata.
fn extract(
    wheel: &PinnedWheel,
    wheel_path: &Path,
    layout: Layout<'_>,
    staging: &Path,
) -> Result<WheelMetadata> {
    let mut archive = zip::ZipArchive::new(fs::File::open(wheel_path)?)?;
    // Wheel normalises the `.dist-info` name with `_` for `-`; none of the pinned names has one.
    let dist_info = format!("{}-{}.dist-info", wheel.name, wheel.version);
    let data_dir = format!("{}-{}.data", wheel.name, wheel.version);
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        if entry.is_dir() {
            continue;
        }
        let name = entry.enclosed_name().with_context(|| {
            format!(
                "Unsafe path in wheel: `{}`",
                entry.name().unwrap_or_default()
            )
        })?;
        ensure!(
            !entry.is_symlink(),
            "Symlink in wheel: `{}`",
            name.display()
        );
        let target = match name.strip_prefix(&data_dir) {
            Ok(rest) => {
                let mut components = rest.components();
                let scheme = components
                    .next()
                    .map(|scheme| scheme.as_os_str().to_string_lossy().into_owned())
                    .unwrap_or_default();
                let rest = components.as_path();
                match scheme.as_str() {
                    "purelib" | "platlib" => layout.site_packages().join(rest),
                    "scripts" => layout.scripts().join(rest),
                    "data" => rest.to_path_buf(),
                    _ => bail!("Unsupported wheel `.data` scheme `{scheme}`"),
                }
            }
            Err(_) => layout.site_packages().join(&name),
        };
        let path = staging.join(&target);
        ensure!(
            !path.exists(),
            "Duplicate path in wheel: `{}`",
            target.display()
        );
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        let mut file = fs::File::create(&path)?;
        io::copy(&mut entry, &mut file)?;
        let executable = entry.unix_mode().is_some_and(|mode| mode & 0o111 != 0);
        let mode = if executable { 0o755 } else { 0o644 };
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    }

    let dist_info_dir = staging.join(layout.site_packages()).join(&dist_info);
    ensure!(
        dist_info_dir.is_dir(),
        "Wheel has no `{dist_info}` directory"
    );
    fs::write(dist_info_dir.join("INSTALLER"), "conda\n")?;
    let record_path = dist_info_dir.join("RECORD");
    let mut record = fs::read_to_string(&record_path)?;
    if !record.is_empty() && !record.ends_with('\n') {
        record.push('\n');
    }
    writeln!(record, "{dist_info}/INSTALLER,,")?;
    fs::write(&record_path, record)?;

    let mut metadata = parse_metadata(&fs::read_to_string(dist_info_dir.join("METADATA"))?)?;
    let entry_points = dist_info_dir.join("entry_points.txt");
    if entry_points.is_file() {
        metadata.console_scripts = parse_console_scripts(&fs::read_to_string(entry_points)?);
    }
    Ok(metadata)
}

/// Parses the headers of a core metadata file (RFC 822 style, continuation lines indented).
fn parse_metadata(text: &str) -> Result<WheelMetadata> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let first = |key: &str| {
        headers
            .iter()
            .find(|(name, _)| name == key)
            .map(|(_, value)| value.clone())
    };
    for (name, requirement) in &headers {
        // The converter does not translate dependencies; the pinned wheels have none outside
        // extras, and a new pin with some must fail loudly rather than install broken.
        if name == "requires-dist" {
            let marker = requirement.split_once(';').map(|(_, marker)| marker);
            ensure!(
                marker.is_some_and(|marker| marker.contains("extra")),
                "Wheel dependency `{requirement}` is not supported by the converter"
            );
        }
    }
    let license = first("license-expression").or_else(|| {
        first("license").map(|license| license.lines().next().unwrap_or_default().to_owned())
    });
    let home = first("home-page").or_else(|| {
        headers
            .iter()
            .filter(|(name, _)| name == "project-url")
            .find_map(|(_, value)| value.split_once(',').map(|(_, url)| url.trim().to_owned()))
    });
    Ok(WheelMetadata {
        requires_python: first("requires-python"),
        summary: first("summary"),
        license: license.filter(|license| !license.is_empty()),
        home,
        console_scripts: Vec::new(),
    })
}

/// The `name = module:function` pairs of the `[console_scripts]` section.
fn parse_console_scripts(text: &str) -> Vec<(String, String)> {
    let mut in_section = false;
    let mut scripts = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_section = line == "[console_scripts]";
        } else if in_section
            && !line.starts_with(['#', ';'])
            && let Some((name, target)) = line.split_once('=')
        {
            scripts.push((name.trim().to_owned(), target.trim().to_owned()));
        }
    }
    scripts
}

/// Writes `bin/<name>` running `target` (`module:function`) with the environment's Python.
fn write_script(staging: &Path, minor: &str, name: &str, target: &str) -> Result<()> {
    let (module, function) = target
        .split_once(':')
        .with_context(|| format!("Invalid entry point `{name} = {target}`"))?;
    let function = function.trim();
    let import_name = function.split('.').next().unwrap_or(function);
    let script = format!(
        "#!{SCRIPT_PREFIX_PLACEHOLDER}/bin/python{minor}\n\
         # -*- coding: utf-8 -*-\n\
         import re\n\
         import sys\n\
         from {module} import {import_name}\n\
         if __name__ == '__main__':\n\
         \x20   sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n\
         \x20   sys.exit({function}())\n",
        module = module.trim(),
    );
    let dir = staging.join("bin");
    fs::create_dir_all(&dir)?;
    let path = dir.join(name);
    fs::write(&path, script)?;
    fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_strings() {
        assert_eq!(PINNED_WHEELS[0].build_string(), "py_0");
        assert_eq!(PINNED_WHEELS[4].build_string(), "py311_0");
        assert_eq!(PINNED_WHEELS[4].glibc().as_deref(), Some("2.17"));
        assert_eq!(PINNED_WHEELS[0].glibc(), None);
    }

    #[test]
    fn python_dependencies() {
        assert_eq!(python_dependency(Some(">=3.8")).unwrap(), "python >=3.8");
        assert_eq!(
            python_dependency(Some(">=3.8, !=3.9.1")).unwrap(),
            "python >=3.8,!=3.9.1"
        );
        assert_eq!(python_dependency(None).unwrap(), "python");
        assert!(python_dependency(Some("~=3.8")).is_err());
    }

    #[test]
    fn metadata() {
        let metadata = parse_metadata(
            "Metadata-Version: 2.1\nName: numpy\nSummary: Fundamental package\n\
             License: Copyright (c) 2005\n        All rights reserved.\n\
             Requires-Python: >=3.9\nRequires-Dist: pytest ; extra == 'test'\n\nbody: no\n",
        )
        .unwrap();
        assert_eq!(metadata.requires_python.as_deref(), Some(">=3.9"));
        assert_eq!(metadata.license.as_deref(), Some("Copyright (c) 2005"));
        assert!(parse_metadata("Name: x\nRequires-Dist: six\n").is_err());
        assert_eq!(
            parse_console_scripts("[console_scripts]\npip = pip._internal.cli.main:main\n[x]\na=b"),
            vec![("pip".to_owned(), "pip._internal.cli.main:main".to_owned())]
        );
    }
}
