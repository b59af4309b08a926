//! The walk over a prefix that decides every entry and fails on anything that would not work
//! after extraction (absolute symlinks, symlinks that escape, absolute search paths).

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use std::collections::HashMap;

use env_store::PrefixUse;

use super::entries::{Item, Plan, Source};
use super::rules::{Reason, Rules};
use super::{Environment, normalize_relative, rel_string};
use crate::relocate::Relocation;
use crate::{PackError, PackOptions, elf, io, shebang};

struct Walker<'a> {
    environment: &'a Environment,
    rules: Rules,
    bin_dirs: Vec<String>,
    full_prefix: bool,
    plan: Plan,
    /// Absolute search-path entries that do not exist here, with the files that have them.
    stale_search_paths: std::collections::BTreeMap<String, Vec<String>>,
    /// The environment's saved manifest: every entry, with how each file names the prefix and
    /// its mode.
    recorded: Option<HashMap<String, (PrefixUse, u32)>>,
    /// Entries the manifest does not list (left out).
    unlisted: Vec<String>,
    /// Where the archive will be extracted, when known.
    relocation: Option<&'a Relocation>,
    /// Non-ELF binary files naming the prefix (left as they are).
    binary_with_prefix: Vec<String>,
}

/// The manifest saved beside the environment, when it has a valid one for this path: the build
/// (or the pull) already found the files naming the prefix, so no file needs searching again.
pub(crate) fn saved_manifest(environment: &Environment) -> Option<env_store::Manifest> {
    let manifest = env_store::Manifest::saved(&environment.root)?;
    if manifest.prefix != environment.root.to_string_lossy()
        || manifest.check(u64::MAX, u64::MAX).is_err()
    {
        tracing::debug!(
            "Not using the manifest of `{}`: it is for `{}` or does not check",
            environment.root.display(),
            manifest.prefix
        );
        return None;
    }
    tracing::debug!(
        "Using the manifest of `{}` ({} entries)",
        environment.root.display(),
        manifest.entries.len()
    );
    Some(manifest)
}

/// Walks the environment and decides every entry. Fails on the first thing that would not
/// work after extraction. With `relocation`, every file naming the prefix names its
/// destination instead (see [`crate::relocate`]).
pub(crate) fn plan(
    environment: &Environment,
    options: &PackOptions,
    manifest: Option<&env_store::Manifest>,
    relocation: Option<&Relocation>,
) -> Result<Plan, PackError> {
    let rules = Rules::new(environment, options);
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
        recorded: manifest.map(|manifest| {
            manifest
                .entries
                .iter()
                .map(|entry| (entry.path.clone(), (entry.prefix, entry.mode)))
                .collect()
        }),
        unlisted: Vec::new(),
        relocation,
        binary_with_prefix: Vec::new(),
    };
    walker.walk(Path::new(""))?;
    walker.check_pth_files();
    if let Some(first) = walker.unlisted.first() {
        walker.plan.warnings.push(format!(
            "Left out {} entries the environment's manifest does not list (added after it was built): `{first}`{}",
            walker.unlisted.len(),
            if walker.unlisted.len() > 1 { ", ..." } else { "" }
        ));
    }
    if let Some(first) = walker.binary_with_prefix.first() {
        walker.plan.warnings.push(format!(
            "{} binary file(s) name the path the environment was built at and are packed as they are: `{first}`{}",
            walker.binary_with_prefix.len(),
            if walker.binary_with_prefix.len() > 1 { ", ..." } else { "" }
        ));
    }
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
    if let Some(relocation) = relocation {
        relocation.fix_records(&mut plan, &environment.root)?;
    }
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
            if let Some(recorded) = &self.recorded
                && !recorded.contains_key(&rel_str)
            {
                tracing::debug!("Leaving out `{rel_str}`: the manifest does not list it");
                self.unlisted.push(rel_str);
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
                // A pulled environment's files are linked from the store, which keeps them
                // read-only: the mode is the one the manifest recorded where it was built.
                let mode = self
                    .recorded
                    .as_ref()
                    .and_then(|recorded| recorded.get(&rel_str))
                    .map_or(mode, |&(_, recorded)| recorded);
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
            if let Some(relocation) = self.relocation
                && self.prefix_use(rel, path)? != PrefixUse::None
            {
                let data = fs_err::read(path).map_err(io(path))?;
                match relocation.c_strings(&data) {
                    Some(out) if out != data => return Ok(Source::Bytes(out)),
                    // Recorded as naming the prefix, yet none of the paths it may name is in
                    // it: a pulled environment whose manifest does not say where it was built.
                    Some(_) | None => self.binary_with_prefix.push(rel.to_string()),
                }
            }
            return Ok(Source::File(path.to_path_buf()));
        }
        let in_bin = rel
            .strip_prefix("bin/")
            .is_some_and(|name| !name.contains('/'));
        let script = in_bin && head.starts_with(b"#!") && len < 1 << 20;
        if let Some(relocation) = self.relocation {
            let bin_dir = format!("{}/bin", relocation.to);
            match self.prefix_use(rel, path)? {
                PrefixUse::Text => {
                    let data = fs_err::read(path).map_err(io(path))?;
                    // Any script naming the environment's Python, not only in `bin/`
                    // (`config-3.X-*/python-config.py`).
                    let retargeted = head
                        .starts_with(b"#!")
                        .then(|| shebang::retarget(&data, &self.bin_dirs, &bin_dir))
                        .flatten();
                    if retargeted.is_some() {
                        self.plan.scripts_rewritten.push(rel.to_string());
                    }
                    return Ok(Source::Bytes(
                        relocation.text(retargeted.as_deref().unwrap_or(&data)),
                    ));
                }
                PrefixUse::Binary => {
                    self.binary_with_prefix.push(rel.to_string());
                    return Ok(Source::File(path.to_path_buf()));
                }
                PrefixUse::None if script => {
                    // A shebang naming the canonical path, which the manifest's search (the
                    // prefix as written) does not find.
                    let data = fs_err::read(path).map_err(io(path))?;
                    if let Some(out) = shebang::retarget(&data, &self.bin_dirs, &bin_dir) {
                        self.plan.scripts_rewritten.push(rel.to_string());
                        return Ok(Source::Bytes(out));
                    }
                    return Ok(Source::File(path.to_path_buf()));
                }
                PrefixUse::None => return Ok(Source::File(path.to_path_buf())),
            }
        }
        if script {
            let script = fs_err::read(path).map_err(io(path))?;
            if let Some(rewritten) = shebang::rewrite(&script, &self.bin_dirs) {
                self.plan.scripts_rewritten.push(rel.to_string());
                return Ok(Source::Bytes(rewritten));
            }
        }
        Ok(Source::File(path.to_path_buf()))
    }

    /// How the file `rel` names the prefix: as the manifest recorded it, else searched now.
    fn prefix_use(&self, rel: &str, path: &Path) -> Result<PrefixUse, PackError> {
        if Path::new(rel).extension().is_some_and(|e| e == "pyc") {
            return Ok(PrefixUse::None);
        }
        if let Some(recorded) = &self.recorded {
            return Ok(recorded.get(rel).map(|&(use_, _)| use_).unwrap_or_default());
        }
        let Some(relocation) = self.relocation else {
            return Ok(PrefixUse::None);
        };
        let data = fs_err::read(path).map_err(io(path))?;
        Ok(relocation.search(&data))
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
