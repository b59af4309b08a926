//! ELF handling for relocatable packages, by shelling out to `strip` and `patchelf`.
//!
//! pyenv builds CPython with an absolute `RUNPATH` (`$PYENV_ROOT/versions/X.Y.Z/lib`) in the
//! interpreter, `libpython` and every `lib-dynload` module. A package built without fixing that
//! still works on the machine that built it — the path exists — so it would hide relocation bugs.
//! [`check_relative_rpaths`] therefore fails the build if any absolute search path is left.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use fs_err as fs;

/// `e_type` values of ELF files that have a dynamic section worth patching.
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;

/// Whether `path` is an ELF executable or shared object (not a relocatable `.o`, which
/// `patchelf` refuses). Symlinks are not followed.
pub(crate) fn is_elf_object(path: &Path) -> Result<bool> {
    if !fs::symlink_metadata(path)?.file_type().is_file() {
        return Ok(false);
    }
    let mut header = [0u8; 18];
    let mut file = fs::File::open(path)?;
    let mut read = 0;
    while read < header.len() {
        let n = file.read(&mut header[read..])?;
        if n == 0 {
            return Ok(false);
        }
        read += n;
    }
    if &header[..4] != b"\x7fELF" {
        return Ok(false);
    }
    // EI_DATA (byte 5) is 1 for little endian, 2 for big endian; e_type is at offset 16.
    let e_type = if header[5] == 2 {
        u16::from_be_bytes([header[16], header[17]])
    } else {
        u16::from_le_bytes([header[16], header[17]])
    };
    Ok(e_type == ET_EXEC || e_type == ET_DYN)
}

/// Every ELF executable or shared object under `root`, as absolute paths, sorted.
pub(crate) fn find_elf_objects(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                stack.push(path);
            } else if is_elf_object(&path)? {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `strip --strip-debug` on `files`: pyenv's binaries carry debug info, half their size.
pub(crate) fn strip_debug(files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    run(Command::new("strip").arg("--strip-debug").args(files))?;
    Ok(())
}

/// Sets each file's `RUNPATH` to its value in `rpaths` (file → `$ORIGIN`-relative path), one
/// `patchelf` call per distinct value.
pub(crate) fn set_rpaths(rpaths: &BTreeMap<PathBuf, String>) -> Result<()> {
    let mut by_value: BTreeMap<&str, Vec<&Path>> = BTreeMap::new();
    for (file, rpath) in rpaths {
        by_value.entry(rpath).or_default().push(file);
    }
    for (rpath, files) in by_value {
        run(Command::new("patchelf")
            .arg("--set-rpath")
            .arg(rpath)
            .args(files))?;
    }
    Ok(())
}

/// Fails unless every entry of every file's `RPATH`/`RUNPATH` starts with `$ORIGIN`.
pub(crate) fn check_relative_rpaths(files: &[PathBuf]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    // With several files, `patchelf --print-rpath` prints one line per file, in order (an empty
    // line for a file without one).
    let output = run(Command::new("patchelf").arg("--print-rpath").args(files))?;
    let lines: Vec<&str> = output.lines().collect();
    ensure!(
        lines.len() == files.len(),
        "`patchelf --print-rpath` printed {} lines for {} files",
        lines.len(),
        files.len()
    );
    for (file, line) in files.iter().zip(lines) {
        for entry in line.split(':').filter(|entry| !entry.is_empty()) {
            if !entry.starts_with("$ORIGIN") {
                bail!(
                    "`{}` still has the absolute library search path `{entry}`",
                    file.display()
                );
            }
        }
    }
    Ok(())
}

/// The `$ORIGIN`-relative path from a file in `parent` (relative to the prefix) to `<prefix>/lib`.
pub(crate) fn origin_rpath_to_lib(parent: &Path) -> String {
    let mut components = parent.components();
    let (up, suffix) = if components
        .next()
        .is_some_and(|first| first.as_os_str() == "lib")
    {
        (components.count(), "")
    } else {
        (parent.components().count(), "/lib")
    };
    format!("$ORIGIN{}{suffix}", "/..".repeat(up))
}

/// Runs `command`, returning its stdout; a non-zero exit is an error that includes its stderr.
fn run(command: &mut Command) -> Result<String> {
    let program = command.get_program().to_string_lossy().into_owned();
    let output = command.output().with_context(|| {
        format!("Failed to run `{program}` (install it, e.g. `apt-get install patchelf binutils`)")
    })?;
    if !output.status.success() {
        bail!(
            "`{program}` failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{program}` printed invalid UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpaths_point_at_lib() {
        assert_eq!(origin_rpath_to_lib(Path::new("bin")), "$ORIGIN/../lib");
        assert_eq!(origin_rpath_to_lib(Path::new("lib")), "$ORIGIN");
        assert_eq!(
            origin_rpath_to_lib(Path::new("lib/python3.11/lib-dynload")),
            "$ORIGIN/../.."
        );
        assert_eq!(origin_rpath_to_lib(Path::new("")), "$ORIGIN/lib");
    }
}
