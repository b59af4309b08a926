//! Tiny `noarch: python` packages written from scratch, for fast tests.
//!
//! - `tinydep 0.1.0` (`.tar.bz2`) and `tinydep 0.1.1` (`.conda`): both archive formats.
//! - `tinypkg 1.2.0`: depends on `tinydep >=0.1`, has the entry point `tinypkg-hello`.
//! - `tinypkg 2.0.0`: depends on `tinydep >=0.2`, which does not exist, so any spec that needs
//!   `tinypkg 2` is unsatisfiable.
//!
//! Each ships a `.dist-info` (as real conda-forge noarch packages do), so pip and uv see them.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use fs_err as fs;

use crate::package::{self, ArchiveFormat, BuiltPackage, PackageKind, PackageMetadata};

/// One tiny package.
struct Tiny {
    name: &'static str,
    version: &'static str,
    format: ArchiveFormat,
    depends: &'static [&'static str],
    /// `Requires-Dist` lines of the dist-info.
    requires_dist: &'static [&'static str],
    entry_points: &'static [(&'static str, &'static str)],
    /// `(path inside site-packages, contents)`.
    files: &'static [(&'static str, &'static str)],
}

const TINYDEP_INIT: &str = "\"\"\"A dependency of tinypkg, for pyfunc-env tests.\"\"\"\n\n\
__version__ = \"{version}\"\nVALUE = 42\n";

const TINYPKG_INIT: &str = "\"\"\"A tiny package for pyfunc-env tests.\"\"\"\n\n\
import tinydep\n\n__version__ = \"{version}\"\n\n\n\
def main():\n    print(f\"tinypkg {__version__} says {tinydep.VALUE}\")\n    return 0\n";

const PACKAGES: [Tiny; 4] = [
    Tiny {
        name: "tinydep",
        version: "0.1.0",
        format: ArchiveFormat::TarBz2,
        depends: &["python >=3.8"],
        requires_dist: &[],
        entry_points: &[],
        files: &[("tinydep/__init__.py", TINYDEP_INIT)],
    },
    Tiny {
        name: "tinydep",
        version: "0.1.1",
        format: ArchiveFormat::Conda,
        depends: &["python >=3.8"],
        requires_dist: &[],
        entry_points: &[],
        files: &[("tinydep/__init__.py", TINYDEP_INIT)],
    },
    Tiny {
        name: "tinypkg",
        version: "1.2.0",
        format: ArchiveFormat::Conda,
        depends: &["python >=3.8", "tinydep >=0.1"],
        requires_dist: &["tinydep>=0.1"],
        entry_points: &[("tinypkg-hello", "tinypkg:main")],
        files: &[("tinypkg/__init__.py", TINYPKG_INIT)],
    },
    Tiny {
        name: "tinypkg",
        version: "2.0.0",
        format: ArchiveFormat::Conda,
        depends: &["python >=3.8", "tinydep >=0.2"],
        requires_dist: &["tinydep>=0.2"],
        entry_points: &[("tinypkg-hello", "tinypkg:main")],
        files: &[("tinypkg/__init__.py", TINYPKG_INIT)],
    },
];

/// Builds every tiny package into `channel_dir/noarch/`.
pub(crate) fn build_all(work_dir: &Path, channel_dir: &Path) -> Result<Vec<BuiltPackage>> {
    PACKAGES
        .iter()
        .map(|tiny| build(tiny, work_dir, channel_dir))
        .collect()
}

fn build(tiny: &Tiny, work_dir: &Path, channel_dir: &Path) -> Result<BuiltPackage> {
    let staging = work_dir.join(format!("{}-{}", tiny.name, tiny.version));
    let site_packages = staging.join("site-packages");
    let mut record = String::new();
    for (relative, template) in tiny.files {
        let path = site_packages.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&path, template.replace("{version}", tiny.version))?;
        writeln!(record, "{relative},,")?;
    }

    let dist_info = format!("{}-{}.dist-info", tiny.name, tiny.version);
    let dist_info_dir = site_packages.join(&dist_info);
    fs::create_dir_all(&dist_info_dir)?;
    let mut metadata = format!(
        "Metadata-Version: 2.1\nName: {}\nVersion: {}\nSummary: A tiny package for pyfunc-env \
         tests\nRequires-Python: >=3.8\n",
        tiny.name, tiny.version
    );
    for requirement in tiny.requires_dist {
        writeln!(metadata, "Requires-Dist: {requirement}")?;
    }
    let mut dist_files = vec![
        ("METADATA", metadata),
        ("INSTALLER", "conda\n".to_owned()),
        (
            "WHEEL",
            "Wheel-Version: 1.0\nGenerator: env-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
                .to_owned(),
        ),
    ];
    if !tiny.entry_points.is_empty() {
        let mut text = "[console_scripts]\n".to_owned();
        for (name, target) in tiny.entry_points {
            writeln!(text, "{name} = {target}")?;
        }
        dist_files.push(("entry_points.txt", text));
    }
    for (name, contents) in &dist_files {
        fs::write(dist_info_dir.join(name), contents)?;
        writeln!(record, "{dist_info}/{name},,")?;
    }
    writeln!(record, "{dist_info}/RECORD,,")?;
    fs::write(dist_info_dir.join("RECORD"), record)?;

    let meta = PackageMetadata {
        name: tiny.name.to_owned(),
        version: tiny.version.to_owned(),
        build: "py_0".to_owned(),
        build_number: 0,
        depends: tiny.depends.iter().map(|&spec| spec.to_owned()).collect(),
        kind: PackageKind::NoArchPython {
            entry_points: tiny
                .entry_points
                .iter()
                .map(|(name, target)| format!("{name} = {target}"))
                .collect(),
        },
        license: Some("MIT".to_owned()),
        summary: Some("A tiny package for pyfunc-env tests".to_owned()),
        home: None,
    };
    let built = package::write_package(&staging, &meta, None, tiny.format, channel_dir)?;
    fs::remove_dir_all(&staging)?;
    Ok(built)
}
