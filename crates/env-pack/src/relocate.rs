//! Packing for a known destination (an image's environment layer at `/opt/pyfunc-env/env`):
//! every byte that names the path the environment was built at names the destination
//! instead, so the archive is the same whichever cache, at whichever path, on whichever
//! machine built the environment (issue 21: "the same environment gives the same layer digest
//! on every machine").
//!
//! What names the build path, and what is done about it:
//! - **Text files** (no NUL byte) naming the prefix: `_sysconfigdata*.py`, `python3.X-config`,
//!   `config-3.X-*/Makefile`, `*.pc`, `.pth` files, conda's entry points. The prefix is
//!   replaced by the destination.
//! - **Console scripts** in `bin/` whose shebang runs the environment's Python, in either of
//!   the installers' forms (`#!PREFIX/bin/python`, or uv's and distlib's `/bin/sh` form, which
//!   they choose for long prefixes): `#!DEST/bin/python...`, which needs no shell (distroless
//!   has none) and is the same whatever the prefix's length was.
//! - **ELF files** naming the prefix in a C string (conda's binary prefix placeholder, e.g.
//!   libpython's compiled-in prefix): replaced as conda does at install time, the rest of the
//!   string moved up and NUL padding at its end, when the destination is not longer. Other
//!   binary files naming the prefix are left as they are, with a warning.
//! - **Bytecode**: compiled with the destination in `co_filename` (`compileall -d`), and the
//!   rewritten sources compiled from their rewritten text.
//! - **Records of file hashes**: `*.dist-info/RECORD` and `conda-meta/*.json` record each
//!   file's hash and size; those of rewritten files become the archive's. conda-meta also
//!   names the package cache the files were linked from (`extracted_package_dir`,
//!   `package_tarball_full_path`, `link.source`): left out, as nothing in the destination has it.
//!
//! Which files name the prefix comes from the environment's manifest
//! (`.pyfunc-env/manifest.json`, see `env_store::Manifest`) when it has one for this path: no
//! file is searched. Without one, each file is searched as it is packed. An environment pulled
//! from a remote cache has text files naming its own path but binary files naming the path it
//! was built at on another agent (a pull links them as they are); its manifest records that
//! path (`binary_prefix`), and it is replaced as well, so the archive is the builder's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use env_store::PrefixUse;
use sha2::{Digest as _, Sha256};

use crate::scan::{Item, Plan, Source, normalize_relative};
use crate::{PackError, io};

/// Where the archive will be extracted, and what the environment's files name instead.
#[derive(Debug, Clone)]
pub(crate) struct Relocation {
    /// Every path that names the prefix, longest first: as written, as canonical path, and
    /// the path its binary files name (where it was built, for a pulled environment).
    from: Vec<String>,
    /// The destination (absolute, no trailing `/`).
    pub to: String,
}

impl Relocation {
    /// The environment at `root` (`canonical`), whose binary files name `built_at` (its
    /// manifest's binary prefix; `root` when it was built here), packed for `to`.
    pub(crate) fn new(root: &Path, canonical: &Path, built_at: Option<&str>, to: &str) -> Self {
        let mut from = vec![root.to_string_lossy().into_owned()];
        let canonical = canonical.to_string_lossy().into_owned();
        for path in std::iter::once(canonical).chain(built_at.map(str::to_string)) {
            if !from.contains(&path) {
                from.push(path);
            }
        }
        from.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Self {
            from,
            to: to.trim_end_matches('/').to_string(),
        }
    }

    /// How `bytes` names the prefix (the manifest's rule: a `.pyc` never counts).
    pub(crate) fn search(&self, bytes: &[u8]) -> PrefixUse {
        let found = self
            .from
            .iter()
            .any(|p| memchr::memmem::find(bytes, p.as_bytes()).is_some());
        if !found {
            PrefixUse::None
        } else if memchr::memchr(0, bytes).is_some() {
            PrefixUse::Binary
        } else {
            PrefixUse::Text
        }
    }

    /// `text` with every prefix replaced by the destination.
    pub(crate) fn text(&self, text: &[u8]) -> Vec<u8> {
        let mut out = text.to_vec();
        for from in &self.from {
            out = replace(&out, from.as_bytes(), self.to.as_bytes());
        }
        out
    }

    /// `data` (an ELF file) with the prefix replaced in each C string that holds it, padded with
    /// NULs to the same length; `None` when the destination is longer than a prefix it holds.
    pub(crate) fn c_strings(&self, data: &[u8]) -> Option<Vec<u8>> {
        let mut out = data.to_vec();
        for from in &self.from {
            let (from, to) = (from.as_bytes(), self.to.as_bytes());
            let finder = memchr::memmem::Finder::new(from);
            if to.len() > from.len() {
                if finder.find(&out).is_some() {
                    return None;
                }
                continue;
            }
            let mut position = 0;
            while let Some(found) = finder.find(&out[position..]) {
                let at = position + found;
                let end = memchr::memchr(0, &out[at..]).map_or(out.len(), |n| at + n);
                let replaced = replace(&out[at..end], from, to);
                out[at..at + replaced.len()].copy_from_slice(&replaced);
                out[at + replaced.len()..end].fill(0);
                position = end;
            }
        }
        Some(out)
    }

    /// Makes the plan's records of file hashes agree with the archive, and leaves the package
    /// cache's paths out of conda-meta.
    pub(crate) fn fix_records(&self, plan: &mut Plan, root: &Path) -> Result<(), PackError> {
        let kept: BTreeSet<String> = plan.items.iter().map(|i| i.path.clone()).collect();
        let rewritten: BTreeMap<String, (String, u64)> = plan
            .items
            .iter()
            .filter_map(|item| match &item.source {
                Source::Bytes(bytes) => Some((
                    item.path.clone(),
                    (hex(&Sha256::digest(bytes)), bytes.len() as u64),
                )),
                _ => None,
            })
            .collect();
        for item in &mut plan.items {
            let is_record = item.path.ends_with(".dist-info/RECORD");
            let is_conda_meta = item.path.starts_with("conda-meta/")
                && !item.path[11..].contains('/')
                && Path::new(&item.path)
                    .extension()
                    .is_some_and(|e| e == "json");
            if !is_record && !is_conda_meta {
                continue;
            }
            let bytes = match &item.source {
                Source::File(path) => fs_err::read(path).map_err(io(path))?,
                Source::Bytes(bytes) => bytes.clone(),
                Source::Dir | Source::Symlink(_) | Source::Pyc(..) => continue,
            };
            let fixed = if is_record {
                self.fix_record(item, &bytes, &rewritten)
            } else {
                self.fix_conda_meta(&bytes, &rewritten, &kept, root)
            };
            if let Some(fixed) = fixed.filter(|f| *f != bytes) {
                item.source = Source::Bytes(fixed);
            }
        }
        Ok(())
    }

    /// A wheel's `RECORD` (`path,sha256=<urlsafe base64>,size`, paths relative to the
    /// directory holding the `.dist-info`).
    fn fix_record(
        &self,
        item: &Item,
        bytes: &[u8],
        rewritten: &BTreeMap<String, (String, u64)>,
    ) -> Option<Vec<u8>> {
        let text = std::str::from_utf8(bytes).ok()?;
        let base = Path::new(&item.path).parent()?.parent()?;
        let mut out = String::with_capacity(text.len());
        for line in text.split_inclusive('\n') {
            let body = line.trim_end_matches(['\n', '\r']);
            let ending = &line[body.len()..];
            let mut fields = body.rsplitn(3, ',');
            let (size, hash, path) = (fields.next(), fields.next(), fields.next());
            let (Some(_), Some(hash), Some(path)) = (size, hash, path) else {
                out.push_str(line);
                continue;
            };
            let relative = self
                .from
                .iter()
                .find_map(|p| path.strip_prefix(p.as_str())?.strip_prefix('/'))
                .map(std::path::PathBuf::from)
                .or_else(|| normalize_relative(&base.join(path)));
            let known = relative
                .as_ref()
                .and_then(|r| rewritten.get(&r.to_string_lossy().replace('\\', "/")));
            match known {
                Some((sha, size)) if hash.starts_with("sha256=") && !path.starts_with('"') => {
                    let digest = unhex(sha);
                    let _ = write!(
                        out,
                        "{path},sha256={},{size}{ending}",
                        base64_urlsafe(&digest)
                    );
                }
                _ => out.push_str(line),
            }
        }
        Some(out.into_bytes())
    }

    /// A conda package's record in `conda-meta/`.
    fn fix_conda_meta(
        &self,
        bytes: &[u8],
        rewritten: &BTreeMap<String, (String, u64)>,
        kept: &BTreeSet<String>,
        root: &Path,
    ) -> Option<Vec<u8>> {
        let mut record: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let object = record.as_object_mut()?;
        object.remove("extracted_package_dir");
        object.remove("package_tarball_full_path");
        if let Some(link) = object.get_mut("link").and_then(|l| l.as_object_mut()) {
            link.remove("source");
        }
        if let Some(paths) = object
            .get_mut("paths_data")
            .and_then(|p| p.get_mut("paths"))
            .and_then(|p| p.as_array_mut())
        {
            for entry in paths {
                let Some(path) = entry.get("_path").and_then(|p| p.as_str()) else {
                    continue;
                };
                let left_out;
                let (sha, size) = match rewritten.get(path) {
                    Some(known) => known,
                    // Left out of the archive (headers, `*.pc`): what it would be, so the
                    // record does not depend on the prefix either.
                    None if entry.get("prefix_placeholder").is_some() && !kept.contains(path) => {
                        let Ok(bytes) = fs_err::read(root.join(path)) else {
                            continue;
                        };
                        let relocated = match entry.get("file_mode").and_then(|m| m.as_str()) {
                            Some("binary") => self.c_strings(&bytes).unwrap_or(bytes),
                            _ => self.text(&bytes),
                        };
                        left_out = (hex(&Sha256::digest(&relocated)), relocated.len() as u64);
                        &left_out
                    }
                    None => continue,
                };
                // A file with a prefix placeholder keeps the package file's `sha256`; its
                // `sha256_in_prefix` and `size_in_bytes` are the installed file's (rattler).
                let field = if entry.get("sha256_in_prefix").is_some() {
                    "sha256_in_prefix"
                } else {
                    "sha256"
                };
                entry[field] = serde_json::Value::String(sha.clone());
                entry["size_in_bytes"] = serde_json::Value::from(*size);
            }
        }
        self.replace_strings(&mut record);
        let mut out = serde_json::to_vec_pretty(&record).ok()?;
        out.push(b'\n');
        Some(out)
    }

    fn replace_strings(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text)
                if self.from.iter().any(|p| text.contains(p.as_str())) =>
            {
                *text = String::from_utf8_lossy(&self.text(text.as_bytes())).into_owned();
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    self.replace_strings(item);
                }
            }
            serde_json::Value::Object(map) => {
                for (_, item) in map.iter_mut() {
                    self.replace_strings(item);
                }
            }
            _ => {}
        }
    }
}

/// `text` with every `from` replaced by `to`.
fn replace(text: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for at in memchr::memmem::find_iter(text, from) {
        out.extend_from_slice(&text[last..at]);
        out.extend_from_slice(to);
        last = at + from.len();
    }
    out.extend_from_slice(&text[last..]);
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// URL-safe base64 without padding, as wheel `RECORD` files write hashes.
fn base64_urlsafe(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relocation() -> Relocation {
        Relocation::new(
            Path::new("/home/u/.cache/pyfunc-env/envs-v1/abc"),
            Path::new("/data/cache/envs-v1/abc"),
            None,
            "/opt/pyfunc-env/env",
        )
    }

    #[test]
    fn base64_as_wheels_write_it() {
        // `base64.urlsafe_b64encode(hashlib.sha256(b"hello").digest()).rstrip(b"=")`
        let digest = Sha256::digest(b"hello");
        assert_eq!(
            base64_urlsafe(&digest),
            "LPJNul-wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ"
        );
        assert_eq!(base64_urlsafe(b"ab"), "YWI");
        assert_eq!(base64_urlsafe(b"a"), "YQ");
        assert_eq!(unhex(&hex(&digest)), digest.to_vec());
    }

    #[test]
    fn text_and_c_strings() {
        let relocation = relocation();
        assert_eq!(
            relocation.text(b"prefix = '/home/u/.cache/pyfunc-env/envs-v1/abc'\nx = '/data/cache/envs-v1/abc/lib'\n"),
            b"prefix = '/opt/pyfunc-env/env'\nx = '/opt/pyfunc-env/env/lib'\n"
        );
        let mut binary = b"\x7fELF\0".to_vec();
        binary.extend_from_slice(b"/data/cache/envs-v1/abc/lib:/data/cache/envs-v1/abc/x\0tail\0");
        let out = relocation.c_strings(&binary).unwrap();
        assert_eq!(out.len(), binary.len());
        let mut want = b"\x7fELF\0/opt/pyfunc-env/env/lib:/opt/pyfunc-env/env/x".to_vec();
        want.resize(binary.len() - 5, 0);
        want.extend_from_slice(b"tail\0");
        assert_eq!(out, want);
        assert_eq!(relocation.search(&binary), PrefixUse::Binary);
        assert_eq!(relocation.search(b"no prefix"), PrefixUse::None);
        // A destination longer than the prefix cannot be written into a C string.
        let long = Relocation::new(Path::new("/p"), Path::new("/p"), None, "/much/longer");
        assert_eq!(long.c_strings(b"/p\0"), None);
        // A short prefix the file does not hold does not stop the others being replaced.
        let mixed = Relocation::new(
            Path::new("/p"),
            Path::new("/p"),
            Some("/builder/path"),
            "/dest",
        );
        assert_eq!(
            mixed.c_strings(b"/builder/path/lib\0"),
            Some(b"/dest/lib\0\0\0\0\0\0\0\0\0".to_vec())
        );
    }

    /// A pulled environment's binary files name the path it was built at (its manifest's
    /// binary prefix), its text files the path it is at: both become the destination, so the
    /// archive is the builder's.
    #[test]
    fn a_pulled_environment_names_its_builder_in_binary_files() {
        let pulled = Relocation::new(
            Path::new("/agent-b/cache/envs-v1/abc"),
            Path::new("/agent-b/cache/envs-v1/abc"),
            Some("/agent-a/a-longer-cache/envs-v1/abc"),
            "/opt/pyfunc-env/env",
        );
        let built = Relocation::new(
            Path::new("/agent-a/a-longer-cache/envs-v1/abc"),
            Path::new("/agent-a/a-longer-cache/envs-v1/abc"),
            None,
            "/opt/pyfunc-env/env",
        );
        let library = b"\x7fELF\0/agent-a/a-longer-cache/envs-v1/abc/share/x\0tail\0";
        assert_eq!(pulled.search(library), PrefixUse::Binary);
        assert_eq!(pulled.c_strings(library), built.c_strings(library));
        let out = pulled.c_strings(library).unwrap();
        assert!(memchr::memmem::find(&out, b"/opt/pyfunc-env/env/share/x\0").is_some());
        assert!(memchr::memmem::find(&out, b"agent-a").is_none());
        assert_eq!(
            pulled.text(b"prefix = '/agent-b/cache/envs-v1/abc'"),
            b"prefix = '/opt/pyfunc-env/env'"
        );
    }

    #[test]
    fn records_take_the_archive_hashes() {
        let relocation = relocation();
        let mut plan = Plan::default();
        let script = b"#!/opt/pyfunc-env/env/bin/python\nimport x\n".to_vec();
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("RECORD");
        fs_err::write(
            &record,
            "../../../bin/tool,sha256=old,99\nx/__init__.py,sha256=keep,3\nx-1.dist-info/RECORD,,\n",
        )
        .unwrap();
        let meta = dir.path().join("x.json");
        fs_err::write(
            &meta,
            r#"{"name": "x", "extracted_package_dir": "/home/u/.cache/pyfunc-env/pkgs-v1/x", "link": {"source": "/home/u/.cache/pyfunc-env/pkgs-v1/x", "type": 1}, "paths_data": {"paths": [{"_path": "bin/tool", "sha256": "old", "size_in_bytes": 99}, {"_path": "x.py", "sha256": "keep", "size_in_bytes": 1}, {"_path": "bin/tool2", "sha256": "package", "sha256_in_prefix": "old", "size_in_bytes": 5}]}}"#,
        )
        .unwrap();
        for (path, source) in [
            ("bin/tool", Source::Bytes(script.clone())),
            ("bin/tool2", Source::Bytes(script.clone())),
            (
                "lib/python3.11/site-packages/x-1.dist-info/RECORD",
                Source::File(record),
            ),
            ("conda-meta/x.json", Source::File(meta)),
        ] {
            plan.items.push(Item {
                path: path.into(),
                mode: 0o644,
                source,
            });
        }
        relocation.fix_records(&mut plan, dir.path()).unwrap();
        let text = |i: usize| match &plan.items[i].source {
            Source::Bytes(b) => String::from_utf8(b.clone()).unwrap(),
            _ => panic!("not rewritten"),
        };
        let sha = Sha256::digest(&script);
        assert_eq!(
            text(2),
            format!(
                "../../../bin/tool,sha256={},{}\nx/__init__.py,sha256=keep,3\nx-1.dist-info/RECORD,,\n",
                base64_urlsafe(&sha),
                script.len()
            )
        );
        let meta: serde_json::Value = serde_json::from_str(&text(3)).unwrap();
        assert_eq!(
            meta,
            serde_json::json!({"name": "x", "link": {"type": 1}, "paths_data": {"paths": [
                {"_path": "bin/tool", "sha256": hex(&sha), "size_in_bytes": script.len()},
                {"_path": "x.py", "sha256": "keep", "size_in_bytes": 1},
                {"_path": "bin/tool2", "sha256": "package", "sha256_in_prefix": hex(&sha), "size_in_bytes": script.len()},
            ]}})
        );
    }
}
