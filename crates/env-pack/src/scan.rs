//! Walking an environment: what goes into the archive, what is left out, and the checks that
//! make it relocatable (one prefix, relative symlinks, `$ORIGIN` search paths).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::{Excluded, PackError, PackOptions, elf, io, shebang};

/// An environment prefix that passed the basic checks.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    /// The prefix as given (absolute).
    pub root: PathBuf,
    /// The prefix with symlinks resolved.
    pub canonical: PathBuf,
    /// `3.11`.
    pub python_minor: String,
    /// `3.11.7`.
    pub python_version: String,
    /// `lib/python3.11`.
    pub stdlib: String,
    /// The installed Python distributions (`*.dist-info` in site-packages), sorted by name.
    pub distributions: Vec<Distribution>,
}

impl Environment {
    /// `bin/python3.X`.
    #[must_use]
    pub fn python(&self) -> PathBuf {
        self.root
            .join("bin")
            .join(format!("python{}", self.python_minor))
    }

    /// The installed version of a distribution (name compared normalised: `scikit_learn` is
    /// `scikit-learn`).
    #[must_use]
    pub fn version_of(&self, name: &str) -> Option<&str> {
        let name = normalize(name);
        self.distributions
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.version.as_str())
    }
}

/// An installed distribution.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Distribution {
    /// The normalised name (`scikit-learn`).
    pub name: String,
    /// The version.
    pub version: String,
}

pub(crate) use env_prefix::normalize;

/// Checks that `prefix` is one complete, self-contained Python prefix and describes it.
pub fn inspect(prefix: &Path) -> Result<Environment, PackError> {
    let root = std::path::absolute(prefix).map_err(io(prefix))?;
    let canonical = fs_err::canonicalize(&root).map_err(io(&root))?;
    let venv_cfg = root.join("pyvenv.cfg");
    if venv_cfg.is_file() {
        let text = fs_err::read_to_string(&venv_cfg).map_err(io(&venv_cfg))?;
        let home = text
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once('=')?;
                (key.trim() == "home").then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        return Err(PackError::SystemVirtualenv { prefix: root, home });
    }
    let lib = root.join("lib");
    let mut minors: Vec<String> = fs_err::read_dir(&lib)
        .map(|read| {
            read.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let minor = name.strip_prefix("python")?.to_string();
                    (minor.starts_with("3.")
                        && e.path().join("os.py").is_file()
                        && minor[2..].chars().all(|c| c.is_ascii_digit()))
                    .then_some(minor)
                })
                .collect()
        })
        .unwrap_or_default();
    minors.sort();
    let Some(minor) = minors.pop() else {
        return Err(PackError::NotAnEnvironment { prefix: root });
    };
    let python = root.join("bin").join(format!("python{minor}"));
    if fs_err::symlink_metadata(&python).is_err() {
        return Err(PackError::NotAnEnvironment { prefix: root });
    }
    let resolved = fs_err::canonicalize(&python).map_err(io(&python))?;
    if !resolved.starts_with(&canonical) {
        return Err(PackError::PythonOutside {
            python,
            target: resolved,
        });
    }
    let python_version = run_python(
        &python,
        "import sys; print('%d.%d.%d' % sys.version_info[:3])",
    )?;
    let stdlib = format!("lib/python{minor}");
    let distributions = distributions(&root.join(&stdlib).join("site-packages"));
    Ok(Environment {
        root,
        canonical,
        python_minor: minor,
        python_version,
        stdlib,
        distributions,
    })
}

/// Runs `python -c code` in isolation from the caller's Python settings; its stdout, trimmed.
pub(crate) fn run_python(python: &Path, code: &str) -> Result<String, PackError> {
    let output = env_prefix::isolated_python(python)
        .args(["-c", code])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONNOUSERSITE", "1")
        .output()
        .map_err(io(python))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(PackError::PythonFailed {
            python: python.to_path_buf(),
            source: crate::CommandFailed {
                message: format!(
                    "{}: {}",
                    output.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            },
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

fn distributions(site_packages: &Path) -> Vec<Distribution> {
    let mut out: Vec<Distribution> = env_prefix::distributions(site_packages)
        .into_iter()
        .map(|d| Distribution {
            name: d.normalized,
            version: d.version,
        })
        .collect();
    out.sort();
    out
}

/// Where an archive entry's content comes from.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    Dir,
    File(PathBuf),
    Bytes(Vec<u8>),
    Symlink(PathBuf),
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

#[derive(Clone, Copy)]
enum Reason {
    Dev,
    Gui,
    Tests,
    Bytecode,
    Distribution,
    Metadata,
}

struct Rules {
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
    fn reason(&self, rel: &str, is_dir: bool) -> Option<Reason> {
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

struct Walker<'a> {
    environment: &'a Environment,
    rules: Rules,
    bin_dirs: Vec<String>,
    full_prefix: bool,
    plan: Plan,
    /// Absolute search-path entries that do not exist here, with the files that have them.
    stale_search_paths: std::collections::BTreeMap<String, Vec<String>>,
}

/// Walks the environment and decides every entry. Fails on the first thing that would not
/// work after extraction.
pub(crate) fn plan(environment: &Environment, options: &PackOptions) -> Result<Plan, PackError> {
    let (distribution_files, distribution_dirs) =
        distribution_rules(environment, &options.exclude_distributions);
    let rules = Rules {
        stdlib: environment.stdlib.clone(),
        minor: environment.python_minor.clone(),
        keep_tests: options.keep_tests,
        distribution_files,
        distribution_dirs,
    };
    let mut bin_dirs = vec![environment.root.join("bin").to_string_lossy().into_owned()];
    let canonical_bin = environment
        .canonical
        .join("bin")
        .to_string_lossy()
        .into_owned();
    if !bin_dirs.contains(&canonical_bin) {
        bin_dirs.push(canonical_bin);
    }
    let mut walker = Walker {
        environment,
        rules,
        bin_dirs,
        full_prefix: options.full_prefix,
        plan: Plan::default(),
        stale_search_paths: std::collections::BTreeMap::new(),
    };
    walker.walk(Path::new(""))?;
    walker.check_pth_files();
    for (value, files) in &walker.stale_search_paths {
        walker.plan.warnings.push(format!(
            "{} ELF file(s) keep the library search path `{value}`, which does not exist on this machine (a leftover of the machine that built the package; the loader skips it here and after extraction alike): `{}`{}",
            files.len(),
            files[0],
            if files.len() > 1 { ", ..." } else { "" }
        ));
    }
    let mut plan = walker.plan;
    // Symlinks to something left out would dangle (e.g. `bin/idle3 -> idle3.11`).
    let kept: BTreeSet<String> = plan.items.iter().map(|i| i.path.clone()).collect();
    plan.items.retain(|item| match &item.source {
        Source::Symlink(target) => {
            let parent = Path::new(&item.path).parent().unwrap_or(Path::new(""));
            match normalize_relative(&parent.join(target)) {
                Some(resolved) => {
                    let resolved = rel_string(&resolved);
                    let keep =
                        kept.contains(&resolved) || !environment.root.join(&resolved).exists();
                    if !keep {
                        tracing::debug!("Leaving out `{}`: its target was left out", item.path);
                    }
                    keep
                }
                None => false,
            }
        }
        _ => true,
    });
    Ok(plan)
}

impl Walker<'_> {
    /// Walks `rel` (a directory); returns how many entries below it are kept.
    fn walk(&mut self, rel: &Path) -> Result<usize, PackError> {
        let dir = self.environment.root.join(rel);
        let mut children: Vec<_> = fs_err::read_dir(&dir)
            .map_err(io(&dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io(&dir))?;
        children.sort();
        let mut kept = 0;
        for name in children {
            let child_rel = rel.join(&name);
            let rel_str = rel_string(&child_rel);
            let path = self.environment.root.join(&child_rel);
            let metadata = fs_err::symlink_metadata(&path).map_err(io(&path))?;
            let file_type = metadata.file_type();
            if let Some(reason) = self.rules.reason(&rel_str, file_type.is_dir()).filter(|r| {
                // A full prefix (a remote-cache entry) keeps what a deployment leaves out.
                !(self.full_prefix && matches!(r, Reason::Dev | Reason::Gui | Reason::Tests))
            }) {
                self.exclude(&path, reason);
                continue;
            }
            let mode = metadata.permissions().mode() & 0o7777;
            if file_type.is_dir() {
                let index = self.plan.items.len();
                self.plan.items.push(Item {
                    path: rel_str,
                    mode,
                    source: Source::Dir,
                });
                let below = self.walk(&child_rel)?;
                let was_empty = fs_err::read_dir(&path).map_or(true, |mut r| r.next().is_none());
                if below == 0 && !was_empty {
                    // Everything in it was left out: leave the directory out too.
                    self.plan.items.remove(index);
                } else {
                    kept += 1;
                }
            } else if file_type.is_symlink() {
                let target = fs_err::read_link(&path).map_err(io(&path))?;
                if target.is_absolute() {
                    return Err(PackError::AbsoluteSymlink {
                        path: rel_str,
                        target,
                    });
                }
                if normalize_relative(&rel.join(&target)).is_none() {
                    return Err(PackError::SymlinkEscapes {
                        path: rel_str,
                        target,
                    });
                }
                self.plan.items.push(Item {
                    path: rel_str,
                    mode: 0o777,
                    source: Source::Symlink(target),
                });
                kept += 1;
            } else if file_type.is_file() {
                let source = self.check_file(&path, &rel_str, metadata.len())?;
                self.plan.items.push(Item {
                    path: rel_str,
                    mode,
                    source,
                });
                kept += 1;
            } else {
                self.plan.warnings.push(format!(
                    "Left out `{rel_str}`: not a regular file, directory or symlink"
                ));
            }
        }
        Ok(kept)
    }

    fn exclude(&mut self, path: &Path, reason: Reason) {
        let counted = match reason {
            Reason::Dev => &mut self.plan.excluded.dev_files,
            Reason::Gui => &mut self.plan.excluded.gui_and_installers,
            Reason::Tests => &mut self.plan.excluded.tests,
            Reason::Bytecode => &mut self.plan.excluded.stale_bytecode,
            Reason::Distribution => &mut self.plan.excluded.distributions,
            Reason::Metadata => &mut self.plan.excluded.metadata,
        };
        let mut stack = vec![path.to_path_buf()];
        while let Some(path) = stack.pop() {
            let Ok(metadata) = fs_err::symlink_metadata(&path) else {
                continue;
            };
            if metadata.is_dir() {
                for entry in fs_err::read_dir(&path).into_iter().flatten().flatten() {
                    stack.push(entry.path());
                }
            } else {
                counted.add(metadata.len());
            }
        }
    }

    /// ELF search paths and console-script shebangs.
    fn check_file(&mut self, path: &Path, rel: &str, len: u64) -> Result<Source, PackError> {
        let mut head = [0u8; 4];
        let read = {
            let mut file = fs_err::File::open(path).map_err(io(path))?;
            let mut read = 0;
            while read < head.len() {
                match file.read(&mut head[read..]).map_err(io(path))? {
                    0 => break,
                    n => read += n,
                }
            }
            read
        };
        let head = &head[..read];
        if elf::has_elf_magic(head) {
            if let Some(paths) = elf::search_paths(path).map_err(io(path))? {
                for (tag, value) in paths.non_origin_entries() {
                    if value.starts_with('/') {
                        let entry = Path::new(&value);
                        let inside = entry.starts_with(&self.environment.root)
                            || entry.starts_with(&self.environment.canonical);
                        if inside || entry.exists() {
                            return Err(PackError::AbsoluteSearchPath {
                                path: rel.to_string(),
                                tag,
                                value,
                            });
                        }
                        self.stale_search_paths
                            .entry(value)
                            .or_default()
                            .push(rel.to_string());
                        continue;
                    }
                    self.plan.warnings.push(format!(
                        "`{rel}` has the library search path `{value}` ({tag}), relative to the working directory rather than to the file"
                    ));
                }
            }
            return Ok(Source::File(path.to_path_buf()));
        }
        let in_bin = rel
            .strip_prefix("bin/")
            .is_some_and(|name| !name.contains('/'));
        if in_bin && head.starts_with(b"#!") && len < 1 << 20 {
            let script = fs_err::read(path).map_err(io(path))?;
            if let Some(rewritten) = shebang::rewrite(&script, &self.bin_dirs) {
                self.plan.scripts_rewritten.push(rel.to_string());
                return Ok(Source::Bytes(rewritten));
            }
        }
        Ok(Source::File(path.to_path_buf()))
    }

    /// `.pth` lines that add absolute paths outside the environment (editable installs) will
    /// not work after extraction.
    fn check_pth_files(&mut self) {
        let site_rel = format!("{}/site-packages", self.environment.stdlib);
        let site = self.environment.root.join(&site_rel);
        let roots = [&self.environment.root, &self.environment.canonical];
        for entry in fs_err::read_dir(&site).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !std::path::Path::new(&name)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("pth"))
            {
                continue;
            }
            let Ok(text) = fs_err::read_to_string(entry.path()) else {
                continue;
            };
            for line in text.lines().map(str::trim) {
                if line.starts_with('/') && !roots.iter().any(|r| Path::new(line).starts_with(r)) {
                    self.plan.warnings.push(format!(
                        "`{site_rel}/{name}` adds `{line}` to `sys.path`, which is not in the archive (an editable install?)"
                    ));
                }
            }
        }
    }
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
            .filter(|i| matches!(i.source, Source::File(_)))
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

/// The compileall exclusion regex for an environment and options.
pub(crate) fn compile_exclusions(environment: &Environment, options: &PackOptions) -> String {
    let (distribution_files, distribution_dirs) =
        distribution_rules(environment, &options.exclude_distributions);
    let rules = Rules {
        stdlib: environment.stdlib.clone(),
        minor: environment.python_minor.clone(),
        keep_tests: options.keep_tests,
        distribution_files,
        distribution_dirs,
    };
    rules.compile_exclusions(&environment.root.join(&environment.stdlib))
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
