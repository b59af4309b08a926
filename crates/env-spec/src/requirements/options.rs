//! Layer 2: each line read the way pip reads it under `pip install -r`: its options, the
//! requirement and what it installs.

use std::collections::BTreeSet;

use serde::Serialize;

use super::lines::{MlflowRequirement, Origin, Sources, Stack, include_file, is_python_space};
use super::pep508::{arbitrary_equality, parse_marker, parse_pep508};
use super::{abbreviate, first_line, is_conflict_marker};
use crate::error::SpecError;
use crate::source::ModelFs;

/// What a requirement installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// A PEP 508 requirement (`name[extras] specifiers ; markers` or `name @ url`), normalised.
    #[serde(serialize_with = "crate::redact::serialize_url")]
    Named(String),
    /// A URL without a name (`https://.../pkg.whl`, `git+https://...`), as written.
    #[serde(serialize_with = "crate::redact::serialize_url")]
    Url(String),
    /// A local file or directory, relative to the model directory, normalised.
    Path(String),
}

/// One installable requirement, normalised for the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PipRequirement {
    /// What to install.
    pub target: Target,
    /// `-e` / `--editable`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub editable: bool,
    /// Environment marker of an unnamed requirement (`./pkg ; python_version < "3.9"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub marker: Option<String>,
    /// `--hash` values, sorted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<String>,
    /// The line as written (for messages; not part of the key).
    #[serde(skip)]
    pub written: String,
    /// Where it came from (not part of the key).
    #[serde(skip)]
    pub origin: Option<Origin>,
}

impl PipRequirement {
    /// A named requirement from a PEP 508 string (`mlflow==2.9.2`).
    pub fn named(text: &str) -> Result<Self, String> {
        let requirement = parse_pep508(text).map_err(|e| first_line(&e).to_string())?;
        Ok(Self {
            target: Target::Named(requirement.to_string()),
            editable: false,
            marker: None,
            hashes: Vec::new(),
            written: text.to_string(),
            origin: None,
        })
    }

    /// The package name, when the requirement names one.
    #[must_use]
    pub fn name(&self) -> Option<String> {
        match &self.target {
            Target::Named(text) => parse_pep508(text).ok().map(|r| r.name.to_string()),
            Target::Url(_) | Target::Path(_) => None,
        }
    }

    /// The line to give pip or uv, with local paths made absolute under `model_root`.
    #[must_use]
    pub fn to_requirement_line(&self, model_root: &std::path::Path) -> String {
        let mut line = String::new();
        if self.editable {
            line.push_str("-e ");
        }
        match &self.target {
            Target::Named(text) | Target::Url(text) => line.push_str(text),
            Target::Path(path) => line.push_str(&model_root.join(path).to_string_lossy()),
        }
        if let Some(marker) = &self.marker {
            line.push_str(" ; ");
            line.push_str(marker);
        }
        for hash in &self.hashes {
            line.push_str(" --hash=");
            line.push_str(hash);
        }
        line
    }
}

/// Index and resolver options found in requirement lines (pip's file-level options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IndexOptions {
    /// `-i` / `--index-url` (the last one wins, as in pip).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "crate::redact::serialize_option_url"
    )]
    pub index_url: Option<String>,
    /// `--extra-index-url`, in order.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::redact::serialize_urls"
    )]
    pub extra_index_urls: Vec<String>,
    /// `--no-index`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_index: bool,
    /// `-f` / `--find-links` (URLs as written, local directories relative to the model).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "crate::redact::serialize_urls"
    )]
    pub find_links: Vec<String>,
    /// `--pre`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub pre: bool,
    /// `--no-binary` values (`:all:`, `:none:` or package names).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub no_binary: Vec<String>,
    /// `--only-binary` values.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub only_binary: Vec<String>,
    /// `--prefer-binary`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub prefer_binary: bool,
    /// `--trusted-host` values (sorted, deduplicated).
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub trusted_hosts: BTreeSet<String>,
    /// `--require-hashes`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_hashes: bool,
}

impl IndexOptions {
    /// Whether no option is set.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Requirements for one install step, read with pip's rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PipSet {
    /// What to install, in order.
    pub requirements: Vec<PipRequirement>,
    /// Constraints (`-c` files).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<PipRequirement>,
    /// Index and resolver options.
    #[serde(skip_serializing_if = "IndexOptions::is_empty")]
    pub index: IndexOptions,
}

impl PipSet {
    /// Whether there is nothing to install.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
}

/// Options pip accepts in requirements files that we pass through, and those it rejects.
pub(super) const PIP_ONLY_OPTIONS: &[&str] = &[
    "--use-feature",
    "--global-option",
    "--config-settings",
    "-C",
];

/// Reads MLflow's requirement lines with pip's rules into a [`PipSet`].
pub fn interpret(
    fs: &ModelFs,
    sources: &mut Sources,
    lines: &[MlflowRequirement],
) -> Result<PipSet, SpecError> {
    let mut set = PipSet::default();
    let mut pending: Vec<MlflowRequirement> = lines.to_vec();
    pending.reverse();
    let mut seen_includes: BTreeSet<String> = BTreeSet::new();
    while let Some(line) = pending.pop() {
        // The lines may come from a parse whose `Sources` the caller no longer has (the
        // virtualenv manager parses `python_env.yaml`'s list in one step and interprets it in
        // another); an error must still show the line it is about, not an empty file.
        if sources.get(&line.origin.file).is_none()
            && let Ok(Some(file)) = fs.read_optional(&line.origin.file)
        {
            sources.add(file);
        }
        match interpret_line(fs, sources, &line, &mut set)? {
            Interpreted::Done => {}
            // `--requirement=x` / `-rx` forms, which MLflow leaves to pip.
            Interpreted::Include {
                target,
                is_constraint,
            } => {
                let base = line.base_dir.clone();
                if !seen_includes.insert(format!("{is_constraint}:{target}")) {
                    continue;
                }
                let mut nested = Vec::new();
                let mut stack: Stack = vec![(line.origin.file.clone(), None)];
                include_file(
                    fs,
                    sources,
                    &target,
                    &base,
                    is_constraint,
                    &line.origin,
                    &mut stack,
                    &mut nested,
                )?;
                for requirement in nested.into_iter().rev() {
                    pending.push(requirement);
                }
            }
        }
    }
    Ok(set)
}

pub(super) enum Interpreted {
    Done,
    Include { target: String, is_constraint: bool },
}

pub(super) fn split_option(token: &str) -> (&str, Option<&str>) {
    if let Some((name, value)) = token.split_once('=')
        && name.starts_with("--")
    {
        return (name, Some(value));
    }
    // Short options with the value attached: `-ihttps://...`, `-rfile.txt`. The option letter
    // may be any character (`-Ӗx` is an unknown option, not a panic: found by `fuzz/`).
    if let Some(rest) = token.strip_prefix('-')
        && let Some(letter) = rest.chars().next()
        && letter != '-'
    {
        let split = 1 + letter.len_utf8();
        if token.len() > split {
            return (&token[..split], Some(&token[split..]));
        }
    }
    (token, None)
}

pub(super) fn interpret_line(
    fs: &ModelFs,
    sources: &mut Sources,
    line: &MlflowRequirement,
    set: &mut PipSet,
) -> Result<Interpreted, SpecError> {
    let origin = &line.origin;
    let text = line.req_str.as_str();
    let err = |message: String, help: &str| sources.error(origin, message, help.to_string());
    let tokens: Vec<&str> = text
        .split(is_python_space)
        .filter(|t| !t.is_empty())
        .collect();

    if tokens.first().is_some_and(|t| t.starts_with('-'))
        && !text.starts_with("-e")
        && !text.starts_with("--editable")
    {
        // A line of options.
        let mut i = 0;
        while i < tokens.len() {
            let (name, attached) = split_option(tokens[i]);
            i += 1;
            if PIP_ONLY_OPTIONS.contains(&name) {
                return Err(err(
                    format!("`{name}` is not supported"),
                    "pyfunc-env installs with uv, which has no equivalent of this pip option in requirements files; remove the line",
                ));
            }
            let takes_value = matches!(
                name,
                "-i" | "--index-url"
                    | "--extra-index-url"
                    | "-f"
                    | "--find-links"
                    | "--no-binary"
                    | "--only-binary"
                    | "--trusted-host"
                    | "-r"
                    | "--requirement"
                    | "-c"
                    | "--constraint"
            );
            let value = if takes_value {
                match attached {
                    Some(value) => Some(value.to_string()),
                    None => {
                        let Some(value) = tokens.get(i) else {
                            return Err(err(
                                format!("`{name}` needs a value"),
                                "Write it as `--option VALUE` or `--option=VALUE`",
                            ));
                        };
                        i += 1;
                        Some((*value).to_string())
                    }
                }
            } else {
                if attached.is_some() && name.starts_with("--") {
                    return Err(err(
                        format!("`{name}` takes no value"),
                        "Remove the `=...` part",
                    ));
                }
                None
            };
            let value = value.unwrap_or_default();
            match name {
                "-i" | "--index-url" => set.index.index_url = Some(value),
                "--extra-index-url" => {
                    if !set.index.extra_index_urls.contains(&value) {
                        set.index.extra_index_urls.push(value);
                    }
                }
                "--no-index" => set.index.no_index = true,
                "-f" | "--find-links" => {
                    let link = if looks_like_url(&value) {
                        value
                    } else {
                        fs.resolve(&line.base_dir, &value, &|| {
                            format!("`--find-links` in {origin}")
                        })?
                    };
                    if !set.index.find_links.contains(&link) {
                        set.index.find_links.push(link);
                    }
                }
                "--pre" => set.index.pre = true,
                "--no-binary" => set.index.no_binary.push(value),
                "--only-binary" => set.index.only_binary.push(value),
                "--prefer-binary" => set.index.prefer_binary = true,
                "--trusted-host" => {
                    set.index.trusted_hosts.insert(value);
                }
                "--require-hashes" => set.index.require_hashes = true,
                "-r" | "--requirement" => {
                    return Ok(Interpreted::Include {
                        target: value,
                        is_constraint: false,
                    });
                }
                "-c" | "--constraint" => {
                    return Ok(Interpreted::Include {
                        target: value,
                        is_constraint: true,
                    });
                }
                other => {
                    return Err(err(
                        format!("unknown pip option `{other}`"),
                        "Requirements files may use -r, -c, -e, -i/--index-url, --extra-index-url, --no-index, -f/--find-links, --pre, --no-binary, --only-binary, --prefer-binary, --trusted-host, --require-hashes and --hash",
                    ));
                }
            }
        }
        return Ok(Interpreted::Done);
    }

    // A requirement, possibly editable, possibly followed by per-requirement options.
    let (editable, rest) = if let Some(rest) = text.strip_prefix("--editable") {
        (
            true,
            rest.trim_start_matches('=')
                .trim_start_matches(is_python_space),
        )
    } else if let Some(rest) = text.strip_prefix("-e") {
        (true, rest.trim_start_matches(is_python_space))
    } else {
        (false, text)
    };
    if editable && rest.is_empty() {
        return Err(err(
            "`-e` needs a path or URL".into(),
            "Write `-e ./path/to/project`",
        ));
    }
    let (requirement_text, options) = split_requirement_options(rest);
    let mut hashes = Vec::new();
    let option_tokens: Vec<&str> = options
        .split(is_python_space)
        .filter(|t| !t.is_empty())
        .collect();
    let mut i = 0;
    while i < option_tokens.len() {
        let (name, attached) = split_option(option_tokens[i]);
        i += 1;
        match name {
            "--hash" => {
                let value = match attached {
                    Some(value) => value.to_string(),
                    None => {
                        let Some(value) = option_tokens.get(i) else {
                            return Err(err(
                                "`--hash` needs a value".into(),
                                "Write `--hash=sha256:<hex digest>`",
                            ));
                        };
                        i += 1;
                        (*value).to_string()
                    }
                };
                if !value.contains(':') {
                    return Err(err(
                        format!("`--hash={value}` has no algorithm"),
                        "Write `--hash=sha256:<hex digest>`",
                    ));
                }
                hashes.push(value);
            }
            other if PIP_ONLY_OPTIONS.contains(&other) => {
                return Err(err(
                    format!("`{other}` is not supported"),
                    "pyfunc-env installs with uv, which has no per-requirement equivalent of this pip option; remove it",
                ));
            }
            other => {
                return Err(err(
                    format!("unknown per-requirement option `{other}`"),
                    "Only `--hash` may follow a requirement on its line",
                ));
            }
        }
    }
    hashes.sort();
    hashes.dedup();

    let (target, marker) = read_target(fs, sources, origin, requirement_text)?;
    let requirement = PipRequirement {
        target,
        editable,
        marker,
        hashes,
        written: text.to_string(),
        origin: Some(origin.clone()),
    };
    if line.is_constraint {
        if editable {
            return Err(err(
                "editable requirements cannot be constraints".into(),
                "Move the `-e` line from the constraints file into the requirements",
            ));
        }
        set.constraints.push(requirement);
    } else {
        set.requirements.push(requirement);
    }
    Ok(Interpreted::Done)
}

/// pip's `break_args_options`: the requirement ends at the first token starting with `-`.
pub(super) fn split_requirement_options(text: &str) -> (&str, &str) {
    let mut offset = 0;
    for token in text.split_inclusive(is_python_space) {
        if token.trim_start_matches(is_python_space).starts_with('-') && offset > 0 {
            return (
                text[..offset].trim_end_matches(is_python_space),
                &text[offset..],
            );
        }
        offset += token.len();
    }
    (text, "")
}

pub(super) const URL_SCHEMES: &[&str] = &[
    "http://", "https://", "file:", "ftp://", "git+", "hg+", "svn+", "bzr+",
];

pub(super) fn looks_like_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    URL_SCHEMES.iter().any(|scheme| lower.starts_with(scheme))
}

pub(super) const ARCHIVE_SUFFIXES: &[&str] = &[
    ".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar",
];

pub(super) fn looks_like_path(text: &str) -> bool {
    text.contains('/')
        || text.starts_with('.')
        || ARCHIVE_SUFFIXES
            .iter()
            .any(|suffix| text.to_ascii_lowercase().ends_with(suffix))
}

pub(super) fn read_target(
    fs: &ModelFs,
    sources: &Sources,
    origin: &Origin,
    text: &str,
) -> Result<(Target, Option<String>), SpecError> {
    let err = |message: String, help: &str| sources.error(origin, message, help.to_string());
    // `name @ url` and plain PEP 508 requirements.
    let first = text.split(is_python_space).next().unwrap_or_default();
    let unnamed = looks_like_url(first)
        || (looks_like_path(first) && !first.contains('@') && !text.contains(" @ "));
    if !unnamed {
        return match parse_pep508(text) {
            Ok(requirement) => {
                if let Some(pep508_rs::VersionOrUrl::Url(url)) = &requirement.version_or_url {
                    check_file_url(fs, origin, url.raw().as_str())?;
                }
                Ok((Target::Named(requirement.to_string()), None))
            }
            Err(error) => match arbitrary_equality(text) {
                Some(normalized) => Ok((Target::Named(normalized), None)),
                None => Err(err(
                    format!(
                        "`{}` is not a valid requirement: {}",
                        abbreviate(text),
                        abbreviate(first_line(&error))
                    ),
                    if is_conflict_marker(text) {
                        "This is a git merge-conflict marker (`<<<<<<<`, `=======`, `>>>>>>>`); resolve the conflict"
                    } else {
                        "Requirements look like `numpy==1.26.4`, `pandas>=2,<3 ; python_version >= \"3.9\"`, `pkg @ https://host/pkg.whl`, `./local/pkg.whl` or `-e ./project`"
                    },
                )),
            },
        };
    }
    // pip separates an environment marker from a URL or path with `;` (after whitespace for URLs).
    let (location, marker) = match text.split_once(';') {
        Some((location, marker)) => (location.trim(), Some(marker.trim().to_string())),
        None => (text.trim(), None),
    };
    if let Some(marker) = &marker
        && let Err(error) = parse_marker(marker)
    {
        return Err(err(
            format!(
                "invalid environment marker `{}`: {}",
                abbreviate(marker),
                abbreviate(first_line(&error))
            ),
            "Markers look like `python_version >= \"3.9\"`",
        ));
    }

    if looks_like_url(location) {
        check_file_url(fs, origin, location)?;
        if url::Url::parse(
            location
                .split_once('+')
                .filter(|(vcs, _)| ["git", "hg", "svn", "bzr"].contains(vcs))
                .map_or(location, |(_, rest)| rest),
        )
        .is_err()
        {
            return Err(err(
                format!("`{location}` is not a valid URL"),
                "Check the URL",
            ));
        }
        return Ok((Target::Url(location.to_string()), marker));
    }
    // A local path: `./dist/pkg.whl`, `../x` (refused), `.`, `pkg[extra]` paths keep extras.
    let (path, extras) = match location.rfind('[') {
        Some(i) if location.ends_with(']') => (&location[..i], &location[i..]),
        _ => (location, ""),
    };
    let relative = fs.resolve("", path, &|| format!("requirement at {origin}"))?;
    if !fs.exists(&relative) {
        return Err(SpecError::MissingFile {
            file: relative,
            referenced_from: Some(origin.to_string()),
            help: "Local requirements must be files or directories inside the model directory"
                .into(),
        });
    }
    Ok((Target::Path(format!("{relative}{extras}")), marker))
}

pub(super) fn check_file_url(fs: &ModelFs, origin: &Origin, url: &str) -> Result<(), SpecError> {
    let Some(rest) = url.strip_prefix("file:") else {
        return Ok(());
    };
    let path = rest.trim_start_matches("//");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    if !std::path::Path::new(&path).starts_with(fs.root()) {
        return Err(SpecError::PathEscape {
            path: url.to_string(),
            what: format!("`file:` requirement at {origin}"),
        });
    }
    Ok(())
}
