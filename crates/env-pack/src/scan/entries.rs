//! The archive's entries: what the walk decided, plus the compiled bytecode and the model.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use super::{Environment, rel_string};
use crate::{Excluded, PackError, io};

/// Where an archive entry's content comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Dir,
    File(PathBuf),
    Bytes(Vec<u8>),
    Symlink(PathBuf),
    /// The environment's own timestamp-based `.pyc` of a source that is archived unchanged,
    /// with the source mtime in its header replaced by the archive's (the source's mtime in
    /// the archive): valid wherever the archive's mtimes are kept (an image layer).
    Pyc(PathBuf, u32),
}

/// One archive entry.
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// `/`-separated, relative.
    pub path: String,
    pub mode: u32,
    pub source: Source,
}

/// The archive's entries and what the walk learned.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub items: Vec<Item>,
    pub excluded: Excluded,
    pub scripts_rewritten: Vec<String>,
    pub warnings: Vec<String>,
    pub bytecode_files: u64,
}
impl Plan {
    /// Adds the `.pyc` files compiled into `staging` (a `PYTHONPYCACHEPREFIX`) as
    /// `<dir>/__pycache__/<name>.pyc` beside sources that are in the archive.
    pub(crate) fn add_bytecode(
        &mut self,
        environment: &Environment,
        staging: &Path,
    ) -> Result<(), PackError> {
        let files: BTreeSet<String> = self
            .items
            .iter()
            .filter(|i| {
                matches!(
                    i.source,
                    Source::File(_) | Source::Bytes(_) | Source::Pyc(..)
                )
            })
            .map(|i| i.path.clone())
            .collect();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        // The pycache prefix mirrors the absolute source directory; compileall was given the
        // prefix as written (`root`).
        let mirrored = staging.join(
            environment
                .root
                .strip_prefix("/")
                .unwrap_or(&environment.root),
        );
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let dir = mirrored.join(&rel);
            let Ok(read) = fs_err::read_dir(&dir) else {
                continue;
            };
            for entry in read {
                let entry = entry.map_err(io(&dir))?;
                let child = rel.join(entry.file_name());
                let file_type = entry.file_type().map_err(io(&entry.path()))?;
                if file_type.is_dir() {
                    stack.push(child);
                    continue;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(module) = name.strip_suffix(".pyc").and_then(|n| n.split('.').next())
                else {
                    continue;
                };
                let parent = rel_string(&rel);
                let source = if parent.is_empty() {
                    format!("{module}.py")
                } else {
                    format!("{parent}/{module}.py")
                };
                if !files.contains(&source) {
                    continue;
                }
                let cache_dir = if parent.is_empty() {
                    "__pycache__".to_string()
                } else {
                    format!("{parent}/__pycache__")
                };
                self.items.push(Item {
                    path: format!("{cache_dir}/{name}"),
                    mode: 0o644,
                    source: Source::File(entry.path()),
                });
                dirs.insert(cache_dir);
                self.bytecode_files += 1;
            }
        }
        for dir in dirs {
            self.items.push(Item {
                path: dir,
                mode: 0o755,
                source: Source::Dir,
            });
        }
        Ok(())
    }

    /// Adds the model directory under `model/` (symlinks followed: a model is data).
    pub(crate) fn add_model(
        &mut self,
        environment: &Environment,
        model: &Path,
    ) -> Result<(), PackError> {
        if self.items.iter().any(|i| i.path == "model") {
            return Err(PackError::ModelPathTaken {
                prefix: environment.root.clone(),
            });
        }
        let mut stack = vec![(model.to_path_buf(), "model".to_string())];
        while let Some((path, rel)) = stack.pop() {
            let metadata = fs_err::metadata(&path).map_err(io(&path))?;
            let mode = metadata.permissions().mode() & 0o7777;
            if metadata.is_dir() {
                self.items.push(Item {
                    path: rel.clone(),
                    mode,
                    source: Source::Dir,
                });
                for entry in fs_err::read_dir(&path).map_err(io(&path))? {
                    let entry = entry.map_err(io(&path))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    stack.push((entry.path(), format!("{rel}/{name}")));
                }
            } else {
                self.items.push(Item {
                    path: rel,
                    mode,
                    source: Source::File(path),
                });
            }
        }
        Ok(())
    }

    /// Sorts the entries (deterministic archives; a directory before its contents).
    pub(crate) fn finish(&mut self) {
        self.items.sort_by(|a, b| a.path.cmp(&b.path));
        self.items.dedup_by(|a, b| a.path == b.path);
    }
}
