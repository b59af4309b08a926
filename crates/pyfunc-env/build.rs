//! Records the commit the binary is built from, for `pyfunc-env --version`.
//!
//! Sets `PYFUNC_ENV_VERSION_STRING` for the compiler: `0.1.0 (3f2a9c1d0 2026-11-30)` when built
//! from a git checkout of this workspace, the version alone when built from an sdist or a tree
//! without git. The build script reruns when HEAD (or the branch it points to) moves.
#![expect(clippy::disallowed_methods, reason = "a build script has no fs_err")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let text = match commit() {
        Some((hash, date)) => format!("{version} ({hash} {date})"),
        None => version,
    };
    println!("cargo:rustc-env=PYFUNC_ENV_VERSION_STRING={text}");
}

/// The short hash and date of HEAD, when this is a git checkout of this workspace.
fn commit() -> Option<(String, String)> {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    // Only a checkout of this workspace counts: an sdist unpacked inside some other git
    // repository must not report that repository's commit.
    let top = git(&[
        "-C",
        &manifest_dir.to_string_lossy(),
        "rev-parse",
        "--show-toplevel",
    ])?;
    if !Path::new(&top)
        .join("crates/pyfunc-env/Cargo.toml")
        .is_file()
    {
        return None;
    }
    if let Some(git_dir) = git(&["-C", &top, "rev-parse", "--absolute-git-dir"]) {
        let git_dir = PathBuf::from(git_dir);
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Ok(head) = std::fs::read_to_string(git_dir.join("HEAD"))
            && let Some(reference) = head.trim().strip_prefix("ref: ")
        {
            // Worktrees keep their refs in the common git dir.
            let common = git(&["-C", &top, "rev-parse", "--git-common-dir"])
                .map_or_else(|| git_dir.clone(), |c| Path::new(&top).join(c));
            println!(
                "cargo:rerun-if-changed={}",
                common.join(reference).display()
            );
            println!(
                "cargo:rerun-if-changed={}",
                common.join("packed-refs").display()
            );
        }
    }
    let hash = git(&["-C", &top, "rev-parse", "--short=9", "HEAD"])?;
    let date = git(&["-C", &top, "log", "-1", "--date=short", "--format=%cd"])?;
    Some((hash, date))
}
