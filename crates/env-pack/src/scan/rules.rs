//! What is left out of an archive and why: development files, GUI and installers, tests, stale
//! bytecode, excluded distributions and our own metadata.

use std::collections::BTreeSet;
use std::path::Path;

use super::{Environment, normalize, normalize_relative, rel_string};
use crate::PackOptions;

#[derive(Clone, Copy)]
pub(super) enum Reason {
    Dev,
    Gui,
    Tests,
    Bytecode,
    Distribution,
    Metadata,
}

pub(super) struct Rules {
    stdlib: String,
    minor: String,
    keep_tests: bool,
    /// Files of excluded distributions, relative to the prefix.
    distribution_files: BTreeSet<String>,
    /// Directories of excluded distributions (`*.dist-info`, conda-meta records are files).
    distribution_dirs: BTreeSet<String>,
}

const DEV_DIRS: [&str; 9] = [
    "include",
    "lib/pkgconfig",
    "lib/cmake",
    "share/man",
    "share/doc",
    "share/info",
    "share/gtk-doc",
    "share/aclocal",
    "share/pkgconfig",
];

const GUI_DIRS: [&str; 4] = ["idlelib", "tkinter", "turtledemo", "ensurepip"];

impl Rules {
    /// The rules for packing `environment` with `options`.
    pub(super) fn new(environment: &Environment, options: &PackOptions) -> Self {
        let (distribution_files, distribution_dirs) =
            distribution_rules(environment, &options.exclude_distributions);
        Self {
            stdlib: environment.stdlib.clone(),
            minor: environment.python_minor.clone(),
            keep_tests: options.keep_tests,
            distribution_files,
            distribution_dirs,
        }
    }

    pub(super) fn reason(&self, rel: &str, is_dir: bool) -> Option<Reason> {
        // pyfunc-env's metadata, and the cache's tag (an unpacked environment is not a cache).
        if rel == ".pyfunc-env" || rel.starts_with(".pyfunc-env/") || rel == "CACHEDIR.TAG" {
            return Some(Reason::Metadata);
        }
        if self.distribution_files.contains(rel) || self.distribution_dirs.contains(rel) {
            return Some(Reason::Distribution);
        }
        let name = rel.rsplit('/').next().unwrap_or(rel);
        if is_dir && name == "__pycache__" {
            return Some(Reason::Bytecode);
        }
        if DEV_DIRS.contains(&rel) {
            return Some(Reason::Dev);
        }
        if let Some(in_stdlib) = rel
            .strip_prefix(self.stdlib.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            let first = in_stdlib.split('/').next().unwrap_or("");
            if is_dir && GUI_DIRS.contains(&in_stdlib) {
                return Some(Reason::Gui);
            }
            if !is_dir
                && first.starts_with("config-")
                && std::path::Path::new(name)
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("a"))
            {
                return Some(Reason::Dev);
            }
            if !is_dir
                && first == "lib-dynload"
                && name.starts_with("_tkinter.")
                && in_stdlib.matches('/').count() == 1
            {
                return Some(Reason::Gui);
            }
            if is_dir && !self.keep_tests && (name == "test" || name == "tests") {
                return Some(Reason::Tests);
            }
        }
        if let Some(script) = rel.strip_prefix("bin/")
            && !is_dir
            && script.starts_with("idle")
            && (script == "idle3" || script == format!("idle{}", self.minor))
        {
            return Some(Reason::Gui);
        }
        None
    }

    /// The `-x` regex for compileall: what is left out of the archive anyway, under `lib/`.
    pub(crate) fn compile_exclusions(&self, lib: &Path) -> String {
        let mut alternatives: Vec<String> = GUI_DIRS.iter().map(|d| format!("{d}/")).collect();
        if !self.keep_tests {
            alternatives.push("(.*/)?tests?/".into());
        }
        for dir in &self.distribution_dirs {
            if let Some(rest) = dir.strip_prefix(&format!("{}/", self.stdlib)) {
                alternatives.push(format!("{}/", regex_escape(rest)));
            }
        }
        let top_levels: BTreeSet<&str> = self
            .distribution_files
            .iter()
            .filter_map(|f| f.strip_prefix(&format!("{}/site-packages/", self.stdlib)))
            .filter_map(|f| f.split_once('/').map(|(top, _)| top))
            .collect();
        for top in top_levels {
            alternatives.push(format!("site-packages/{}/", regex_escape(top)));
        }
        format!(
            "^{}/({})",
            regex_escape(&lib.to_string_lossy()),
            alternatives.join("|")
        )
    }
}

/// Escapes Python `re` metacharacters.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.^$|?*+()[]{}-#&~ ".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
fn distribution_rules(
    environment: &Environment,
    names: &[String],
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut files = BTreeSet::new();
    let mut dirs = BTreeSet::new();
    if names.is_empty() {
        return (files, dirs);
    }
    let names: BTreeSet<String> = names.iter().map(|n| normalize(n)).collect();
    let site_rel = format!("{}/site-packages", environment.stdlib);
    let site = environment.root.join(&site_rel);
    for distribution in env_prefix::distributions(&site) {
        if !names.contains(&distribution.normalized) {
            continue;
        }
        let name = &distribution.dist_info;
        dirs.insert(format!("{site_rel}/{name}"));
        let record = site.join(name).join("RECORD");
        let Ok(text) = fs_err::read_to_string(&record) else {
            continue;
        };
        for line in text.lines() {
            let path = match line.strip_prefix('"') {
                Some(quoted) => quoted.split('"').next().unwrap_or(""),
                None => line.split(',').next().unwrap_or(""),
            };
            if path.is_empty() {
                continue;
            }
            if let Some(rel) = normalize_relative(&Path::new(&site_rel).join(path)) {
                files.insert(rel_string(&rel));
            }
        }
    }
    // conda-installed: `conda-meta/<name>-<version>-<build>.json` lists the files.
    let meta = environment.root.join("conda-meta");
    for entry in fs_err::read_dir(&meta).into_iter().flatten().flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !std::path::Path::new(&file_name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        {
            continue;
        }
        let Ok(text) = fs_err::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(name) = record["name"].as_str() else {
            continue;
        };
        if !names.contains(&normalize(name)) {
            continue;
        }
        files.insert(format!("conda-meta/{file_name}"));
        for path in record["files"].as_array().into_iter().flatten() {
            if let Some(path) = path.as_str()
                && let Some(rel) = normalize_relative(Path::new(path))
            {
                files.insert(rel_string(&rel));
            }
        }
    }
    (files, dirs)
}
/// The compileall exclusion regex for an environment and options.
pub(crate) fn compile_exclusions(environment: &Environment, options: &PackOptions) -> String {
    Rules::new(environment, options).compile_exclusions(&environment.root.join(&environment.stdlib))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(keep_tests: bool) -> Rules {
        Rules {
            stdlib: "lib/python3.11".into(),
            minor: "3.11".into(),
            keep_tests,
            distribution_files: BTreeSet::from([
                "lib/python3.11/site-packages/pyspark/__init__.py".into(),
            ]),
            distribution_dirs: BTreeSet::from([
                "lib/python3.11/site-packages/pyspark-4.3.0.dist-info".into(),
            ]),
        }
    }

    #[test]
    fn exclusions() {
        let rules = rules(false);
        let excluded = |rel: &str, is_dir: bool| rules.reason(rel, is_dir).is_some();
        for (rel, is_dir) in [
            ("include", true),
            ("lib/pkgconfig", true),
            ("share/man", true),
            (
                "lib/python3.11/config-3.11-x86_64-linux-gnu/libpython3.11.a",
                false,
            ),
            ("lib/python3.11/idlelib", true),
            ("lib/python3.11/tkinter", true),
            ("lib/python3.11/ensurepip", true),
            (
                "lib/python3.11/lib-dynload/_tkinter.cpython-311-x86_64-linux-gnu.so",
                false,
            ),
            ("lib/python3.11/test", true),
            ("lib/python3.11/site-packages/numpy/tests", true),
            ("lib/python3.11/site-packages/numpy/__pycache__", true),
            ("lib/python3.11/site-packages/pyspark/__init__.py", false),
            ("lib/python3.11/site-packages/pyspark-4.3.0.dist-info", true),
            ("bin/idle3.11", false),
            (".pyfunc-env", true),
            ("CACHEDIR.TAG", false),
        ] {
            assert!(excluded(rel, is_dir), "{rel}");
        }
        for (rel, is_dir) in [
            ("bin/python3.11", false),
            ("conda-meta", true),
            ("share/terminfo", true),
            ("ssl", true),
            (
                "lib/python3.11/config-3.11-x86_64-linux-gnu/Makefile",
                false,
            ),
            ("lib/python3.11/site-packages/numpy/testing", true),
            ("lib/python3.11/site-packages/tests.py", false),
            (
                "lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
                false,
            ),
            ("lib/libpython3.11.so.1.0", false),
        ] {
            assert!(!excluded(rel, is_dir), "{rel}");
        }
        assert!(rules_keep_tests_keeps_tests());
    }

    fn rules_keep_tests_keeps_tests() -> bool {
        rules(true)
            .reason("lib/python3.11/site-packages/numpy/tests", true)
            .is_none()
    }

    #[test]
    fn compile_exclusion_regex() {
        let regex = rules(false).compile_exclusions(Path::new("/c/envs-v1/k/lib/python3.11"));
        assert_eq!(
            regex,
            r"^/c/envs\-v1/k/lib/python3\.11/(idlelib/|tkinter/|turtledemo/|ensurepip/|(.*/)?tests?/|site\-packages/pyspark\-4\.3\.0\.dist\-info/|site-packages/pyspark/)"
        );
    }
}
