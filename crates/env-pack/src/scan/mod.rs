//! Walking an environment: what goes into the archive, what is left out, and the checks that
//! make it relocatable (one prefix, relative symlinks, `$ORIGIN` search paths).

mod entries;
mod environment;
mod rules;
mod walk;

use std::path::{Component, Path, PathBuf};

pub(crate) use entries::{Item, Plan, Source};
pub use environment::{Distribution, Environment, inspect};
pub(crate) use environment::{normalize, run_python};
pub(crate) use rules::compile_exclusions;
pub(crate) use walk::{plan, saved_manifest};

/// Normalises `a/b/../c` lexically; `None` if it climbs above its start.
pub(crate) fn normalize_relative(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn rel_string(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert_eq!(normalize("Scikit_Learn"), "scikit-learn");
        assert_eq!(normalize("py4j"), "py4j");
        assert_eq!(
            normalize_relative(Path::new("lib/python3.11/site-packages/../../../bin/x")),
            Some(PathBuf::from("bin/x"))
        );
        assert_eq!(normalize_relative(Path::new("bin/../../x")), None);
    }
}
