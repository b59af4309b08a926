//! Local directory requirements (`./pkg`, `-e .`) are built from a copy in the cache's staging
//! area, never in the model directory (issue 15, item 3).
//!
//! Building a source tree writes into it (setuptools leaves `build/` and `*.egg-info/`), and an
//! editable install points the environment at the tree itself: the model directory, which
//! must never be written to and may be deleted, or be one of several copies that share the
//! environment. So each local directory is copied (what `env-spec` hashes into the key: every
//! file but `.git/` and `__pycache__/`) and installed from the copy as a regular package; the
//! model's files warn that `-e` is installed that way.

use std::path::Path;

use env_spec::{PipRequirement, Target};

use crate::{UvError, io};

/// Requirements rewritten to install from copies, and the staging directory holding them
/// (removed when this is dropped, after the install).
pub struct Staged {
    /// The requirements to give uv.
    pub requirements: Vec<PipRequirement>,
    _dir: Option<tempfile::TempDir>,
}

/// Copies each local directory requirement into a new directory under `scratch` and points
/// the requirement at the copy, as a non-editable install.
pub fn stage(
    requirements: &[PipRequirement],
    model_root: &Path,
    scratch: &Path,
) -> Result<Staged, UvError> {
    let mut dir: Option<tempfile::TempDir> = None;
    let mut staged = Vec::with_capacity(requirements.len());
    for (index, requirement) in requirements.iter().enumerate() {
        let mut requirement = requirement.clone();
        if let Target::Path(path) = &requirement.target {
            let (base, extras) = path.split_at(path.find('[').unwrap_or(path.len()));
            let source = model_root.join(base);
            if source.is_dir() {
                let staging = match &dir {
                    Some(dir) => dir.path().to_path_buf(),
                    None => {
                        let created = tempfile::Builder::new()
                            .prefix("local-")
                            .tempdir_in(scratch)
                            .map_err(io(scratch))?;
                        let path = created.path().to_path_buf();
                        dir = Some(created);
                        path
                    }
                };
                let name = source
                    .file_name()
                    .map_or_else(|| "source".into(), |n| n.to_string_lossy().into_owned());
                let copy = staging.join(format!("{index}-{name}"));
                copy_tree(&source, &copy)?;
                requirement.target = Target::Path(format!("{}{extras}", copy.display()));
                requirement.editable = false;
            }
        }
        staged.push(requirement);
    }
    Ok(Staged {
        requirements: staged,
        _dir: dir,
    })
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), UvError> {
    fs_err::create_dir_all(to).map_err(io(to))?;
    for entry in fs_err::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let name = entry.file_name();
        if name == ".git" || name == "__pycache__" {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let kind = entry.file_type().map_err(io(&source))?;
        if kind.is_dir() {
            copy_tree(&source, &target)?;
        } else if kind.is_symlink() {
            #[cfg(unix)]
            {
                let link = fs_err::read_link(&source).map_err(io(&source))?;
                fs_err::os::unix::fs::symlink(&link, &target).map_err(io(&target))?;
            }
        } else if kind.is_file() {
            fs_err::copy(&source, &target).map_err(io(&source))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_directories_are_copied_and_installed_non_editable() {
        let root = tempfile::tempdir().unwrap();
        let model = root.path().join("model");
        fs_err::create_dir_all(model.join("pkg/.git")).unwrap();
        fs_err::write(model.join("pkg/setup.py"), "x").unwrap();
        fs_err::write(model.join("pkg/.git/HEAD"), "x").unwrap();
        fs_err::write(model.join("dist.whl"), "x").unwrap();
        let scratch = root.path().join("tmp");
        fs_err::create_dir_all(&scratch).unwrap();
        let mut editable = PipRequirement::named("placeholder").unwrap();
        editable.target = Target::Path("pkg[extra]".into());
        editable.editable = true;
        let mut wheel = PipRequirement::named("placeholder").unwrap();
        wheel.target = Target::Path("dist.whl".into());
        let named = PipRequirement::named("numpy==2.0").unwrap();
        let staged = stage(&[editable, wheel.clone(), named.clone()], &model, &scratch).unwrap();
        let Target::Path(copy) = &staged.requirements[0].target else {
            panic!()
        };
        assert!(copy.starts_with(&scratch.display().to_string()), "{copy}");
        assert!(copy.ends_with("[extra]"));
        assert!(!staged.requirements[0].editable);
        let copy = Path::new(copy.trim_end_matches("[extra]"));
        assert!(copy.join("setup.py").is_file());
        assert!(!copy.join(".git").exists());
        assert_eq!(staged.requirements[1], wheel);
        assert_eq!(staged.requirements[2], named);
        let copy = copy.to_path_buf();
        drop(staged);
        assert!(!copy.exists());
    }
}
