//! Reading files of a model directory, which is untrusted input.
//!
//! Every path that comes from a model file (the env file names in `MLmodel`, `-r`/`-c` targets,
//! local requirement paths) goes through [`ModelFs::resolve`], which refuses absolute paths,
//! `..` that climbs out of the directory and symlinks that point outside it. Files are read with
//! a size limit and decoded as UTF-8, as MLflow's `open()` does.

use std::path::{Component, Path, PathBuf};

use miette::NamedSource;

use crate::error::SpecError;

/// Largest environment file we read. Real ones are far below this (the largest `MLmodel` in the
/// conformance corpus is 40 KB); the limit keeps a hostile 10 GB file from exhausting memory.
pub const MAX_FILE_SIZE: u64 = 16 * 1024 * 1024;

/// A file of the model directory, read as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The path relative to the model directory, with `/` separators (what messages show).
    pub name: String,
    /// The exact text (line endings as in the file, BOM removed).
    pub text: String,
}

impl SourceFile {
    /// The text with `\r\n` and lone `\r` turned into `\n`, as Python's `open()` in text mode
    /// delivers it to PyYAML and to MLflow's requirements parser.
    #[must_use]
    pub fn universal_newlines(&self) -> String {
        if self.text.contains('\r') {
            self.text.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            self.text.clone()
        }
    }

    /// The file as miette source code, for diagnostics.
    #[must_use]
    pub fn named_source(&self) -> NamedSource<String> {
        NamedSource::new(&self.name, self.universal_newlines())
    }
}

/// The line numbers of byte offsets in one text.
///
/// Counting the `\n`s before each item of a list made reading a list of n items cost n^2 (a
/// 350 KB `conda.yaml` took 80 s in the `conda` fuzz target); this counts them once.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// Byte offset of every `\n`.
    breaks: Vec<usize>,
}

impl LineIndex {
    /// Indexes `text`.
    #[must_use]
    pub fn new(text: &str) -> Self {
        Self {
            breaks: text.match_indices('\n').map(|(i, _)| i).collect(),
        }
    }

    /// The 1-based line of byte `offset`: `text[..offset].matches('\n').count() + 1`, with
    /// `offset` clamped to the text.
    #[must_use]
    pub fn line(&self, offset: usize) -> usize {
        self.breaks.partition_point(|&at| at < offset) + 1
    }
}

/// Read access to one model directory that never leaves it.
#[derive(Debug, Clone)]
pub struct ModelFs {
    root: PathBuf,
}

impl ModelFs {
    /// Opens a model directory. The path is canonicalised so symlink checks compare real paths.
    pub fn open(dir: &Path) -> Result<Self, SpecError> {
        let root = match fs_err::canonicalize(dir) {
            Ok(root) => root,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpecError::ModelDirNotFound {
                    path: dir.to_path_buf(),
                });
            }
            Err(err) => {
                return Err(SpecError::Read {
                    path: dir.to_path_buf(),
                    source: err,
                });
            }
        };
        if !root.is_dir() {
            return Err(SpecError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Ok(Self { root })
    }

    /// The canonical model directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves `written` (a path as it appears in a model file) relative to `base` (a
    /// directory relative to the model root, `""` for the root) to a normalised path relative
    /// to the root. `what` describes where the path came from, for the error message.
    pub fn resolve(
        &self,
        base: &str,
        written: &str,
        what: &dyn Fn() -> String,
    ) -> Result<String, SpecError> {
        let escape = || SpecError::PathEscape {
            path: written.to_string(),
            what: what(),
        };
        let path = Path::new(written);
        if path.is_absolute() || written.starts_with('~') {
            return Err(escape());
        }
        let mut parts: Vec<String> = base
            .split('/')
            .filter(|part| !part.is_empty())
            .map(str::to_string)
            .collect();
        for component in path.components() {
            match component {
                Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
                Component::CurDir => {}
                Component::ParentDir => {
                    if parts.pop().is_none() {
                        return Err(escape());
                    }
                }
                Component::RootDir | Component::Prefix(_) => return Err(escape()),
            }
        }
        let relative = parts.join("/");
        // A symlink inside the directory may still point outside it.
        if let Ok(real) = fs_err::canonicalize(self.root.join(&relative))
            && !real.starts_with(&self.root)
        {
            return Err(escape());
        }
        Ok(relative)
    }

    /// The absolute path of a resolved relative path.
    #[must_use]
    pub fn absolute(&self, relative: &str) -> PathBuf {
        if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        }
    }

    /// Whether a resolved path exists as a file (`os.path.exists` in MLflow).
    #[must_use]
    pub fn is_file(&self, relative: &str) -> bool {
        self.absolute(relative).is_file()
    }

    /// Whether a resolved path exists at all.
    #[must_use]
    pub fn exists(&self, relative: &str) -> bool {
        self.absolute(relative).exists()
    }

    /// Reads a resolved file, or `Ok(None)` if it does not exist.
    pub fn read_optional(&self, relative: &str) -> Result<Option<SourceFile>, SpecError> {
        let path = self.absolute(relative);
        let metadata = match fs_err::metadata(&path) {
            Ok(metadata) => metadata,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => {
                return Err(SpecError::Read { path, source: err });
            }
        };
        if metadata.is_dir() {
            return Err(SpecError::NotAFile {
                file: relative.to_string(),
            });
        }
        // Files MLflow reads by a fixed name (`MLmodel`, `requirements.txt`) do not go through
        // [`Self::resolve`], so check here too that a symlink does not lead out of the directory:
        // `deps` would otherwise print any file the user can read.
        if let Ok(real) = fs_err::canonicalize(&path)
            && !real.starts_with(&self.root)
        {
            return Err(SpecError::PathEscape {
                path: relative.to_string(),
                what: format!("a symlink to `{}`", real.display()),
            });
        }
        if metadata.len() > MAX_FILE_SIZE {
            return Err(SpecError::TooLarge {
                file: relative.to_string(),
                size: metadata.len(),
                limit: MAX_FILE_SIZE,
            });
        }
        let bytes = fs_err::read(&path).map_err(|err| SpecError::Read {
            path: path.clone(),
            source: err,
        })?;
        let text = String::from_utf8(bytes).map_err(|err| {
            let offset = err.utf8_error().valid_up_to();
            SpecError::NotUtf8 {
                file: relative.to_string(),
                line: err.as_bytes()[..offset]
                    .split(|byte| *byte == b'\n')
                    .count(),
                offset,
            }
        })?;
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        Ok(Some(SourceFile {
            name: relative.to_string(),
            text,
        }))
    }

    /// Reads a resolved file that must exist.
    pub fn read(
        &self,
        relative: &str,
        referenced_from: Option<String>,
        help: &str,
    ) -> Result<SourceFile, SpecError> {
        self.read_optional(relative)?
            .ok_or_else(|| SpecError::MissingFile {
                file: relative.to_string(),
                referenced_from,
                help: help.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_refuses_escapes() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir(dir.path().join("sub")).unwrap();
        let fs = ModelFs::open(dir.path()).unwrap();
        let what = || "test".to_string();
        assert_eq!(fs.resolve("", "conda.yaml", &what).unwrap(), "conda.yaml");
        assert_eq!(
            fs.resolve("", "./sub/../conda.yaml", &what).unwrap(),
            "conda.yaml"
        );
        assert_eq!(fs.resolve("sub", "x.txt", &what).unwrap(), "sub/x.txt");
        assert_eq!(fs.resolve("sub", "../x.txt", &what).unwrap(), "x.txt");
        for bad in ["../x", "/etc/passwd", "sub/../../x", "~/x"] {
            assert!(
                matches!(
                    fs.resolve("", bad, &what),
                    Err(SpecError::PathEscape { .. })
                ),
                "{bad}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn resolve_refuses_symlinks_pointing_outside() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("conda.yaml"))
            .unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("inside")).unwrap();
        fs_err::write(dir.path().join("real"), "x").unwrap();
        let fs = ModelFs::open(dir.path()).unwrap();
        let what = || "test".to_string();
        assert!(matches!(
            fs.resolve("", "conda.yaml", &what),
            Err(SpecError::PathEscape { .. })
        ));
        assert_eq!(fs.resolve("", "inside", &what).unwrap(), "inside");
    }

    #[cfg(unix)]
    #[test]
    fn read_refuses_symlinks_pointing_outside_and_directories() {
        let outside = tempfile::tempdir().unwrap();
        fs_err::write(outside.path().join("secret"), "x").unwrap();
        let dir = tempfile::tempdir().unwrap();
        // `requirements.txt` is read by its fixed name, without `resolve`.
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("requirements.txt"),
        )
        .unwrap();
        fs_err::create_dir(dir.path().join("MLmodel")).unwrap();
        fs_err::write(dir.path().join("real.txt"), "y").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real.txt"), dir.path().join("link.txt"))
            .unwrap();
        let fs = ModelFs::open(dir.path()).unwrap();
        let err = fs.read_optional("requirements.txt").unwrap_err();
        assert!(
            matches!(&err, SpecError::PathEscape { path, .. } if path == "requirements.txt"),
            "{err}"
        );
        let err = fs.read_optional("MLmodel").unwrap_err();
        assert!(
            matches!(&err, SpecError::NotAFile { file } if file == "MLmodel"),
            "{err}"
        );
        assert_eq!(fs.read_optional("link.txt").unwrap().unwrap().text, "y");
    }

    #[test]
    fn line_index_counts_like_matches() {
        let text = "a\nbb\n\nc";
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 2 {
            let expected = text[..offset.min(text.len())].matches('\n').count() + 1;
            assert_eq!(index.line(offset), expected, "{offset}");
        }
        assert_eq!(LineIndex::new("").line(0), 1);
    }

    #[test]
    fn read_decodes_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("bom.txt"), "\u{feff}numpy\r\n").unwrap();
        fs_err::write(dir.path().join("bad.txt"), b"ok\xff").unwrap();
        fs_err::write(dir.path().join("bad3.txt"), b"a\nb\nc\xe9\n").unwrap();
        let fs = ModelFs::open(dir.path()).unwrap();
        let file = fs.read_optional("bom.txt").unwrap().unwrap();
        assert_eq!(file.text, "numpy\r\n");
        assert_eq!(file.universal_newlines(), "numpy\n");
        assert!(matches!(
            fs.read_optional("bad.txt"),
            Err(SpecError::NotUtf8 {
                offset: 2,
                line: 1,
                ..
            })
        ));
        assert!(matches!(
            fs.read_optional("bad3.txt"),
            Err(SpecError::NotUtf8 {
                offset: 5,
                line: 3,
                ..
            })
        ));
        assert_eq!(fs.read_optional("missing.txt").unwrap(), None);
    }
}
