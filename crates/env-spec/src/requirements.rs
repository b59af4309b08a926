//! pip requirements, read in two layers.
//!
//! 1. [`parse_lines`] is MLflow's `mlflow.utils.requirements_utils._parse_requirements`, line for
//!    line: strip each line, cut an inline comment at `" #"`, join `\` continuations, drop
//!    comments and blank lines, follow `-r FILE` / `-c FILE` (relative to the including file),
//!    flag constraint lines. Its output, [`MlflowRequirement`], is what MLflow reports and what
//!    the conformance corpus records. Unlike MLflow, it remembers where each line came from,
//!    detects `-r` cycles (MLflow recurses until `RecursionError`) and refuses include paths
//!    that leave the model directory.
//! 2. [`interpret`] reads each of those lines the way pip does when MLflow hands them to
//!    `pip install -r`: options (`--index-url`, `--find-links`, `--pre`, ...), PEP 508
//!    requirements, `name @ url`, bare URLs and paths, `-e`, `--hash`. A line neither pip nor we
//!    understand is an error naming the file and line, never a silent skip.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde::Serialize;

use crate::error::SpecError;
use crate::source::{ModelFs, SourceFile};
use crate::yaml::Span;

/// Where a requirement line came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file, relative to the model directory.
    pub file: String,
    /// 1-based line of the (first physical) line.
    pub line: usize,
    /// Byte span in the file's universal-newline text.
    pub span: Span,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            // A line MLflow adds itself (`-r requirements.txt` when there is no python_env.yaml).
            write!(f, "the `-r {}` MLflow adds", self.file)
        } else {
            write!(f, "`{}` line {}", self.file, self.line)
        }
    }
}

/// One requirement line as MLflow's `_parse_requirements` yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlflowRequirement {
    /// The line, stripped and joined, as MLflow passes it on.
    pub req_str: String,
    /// Whether it came (through `-c`) from a constraints file.
    pub is_constraint: bool,
    /// Where it came from.
    pub origin: Origin,
    /// The directory (relative to the model root) that relative paths on this line resolve
    /// against: the including file's directory for lines of requirements files, the model
    /// directory for lines from YAML lists (MLflow hands those to pip in a file in the model
    /// directory).
    pub base_dir: String,
}

/// A raw input line: a physical line of a file, or one item of a YAML list.
#[derive(Debug, Clone)]
pub struct RawLine {
    /// The text.
    pub text: String,
    /// Where it is.
    pub origin: Origin,
}

/// Python's `str.splitlines()`: every line boundary Python knows, with spans into `text`.
#[must_use]
pub fn split_lines(file: &str, text: &str) -> Vec<RawLine> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let is_break = matches!(
            c,
            '\n' | '\r'
                | '\x0b'
                | '\x0c'
                | '\x1c'
                | '\x1d'
                | '\x1e'
                | '\u{85}'
                | '\u{2028}'
                | '\u{2029}'
        );
        if !is_break {
            continue;
        }
        lines.push(RawLine {
            text: text[start..i].to_string(),
            origin: Origin {
                file: file.to_string(),
                line,
                span: Span { start, end: i },
            },
        });
        let mut next = i + c.len_utf8();
        if c == '\r' && chars.peek().is_some_and(|(_, c)| *c == '\n') {
            chars.next();
            next += 1;
        }
        start = next;
        line += 1;
    }
    if start < text.len() {
        lines.push(RawLine {
            text: text[start..].to_string(),
            origin: Origin {
                file: file.to_string(),
                line,
                span: Span {
                    start,
                    end: text.len(),
                },
            },
        });
    }
    lines
}

/// Python's `str.isspace()` for one character.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || matches!(c, '\x1c'..='\x1f')
}

/// Most `-r`/`-c` lines one parse follows, and most bytes it reads through them.
///
/// MLflow reads a file again for every line that includes it, so files that each include the
/// next one twice (`a.txt`: `-r b.txt` twice, `b.txt`: `-r c.txt` twice, ...) are read 2^n
/// times: a model directory of 30 small files would never finish. Real models include a
/// handful of small files.
pub const MAX_INCLUDES: usize = 10_000;
/// See [`MAX_INCLUDES`]: one environment file's worth of text.
pub const MAX_INCLUDED_BYTES: usize = 16 * 1024 * 1024;

/// The files read while following `-r`/`-c`, kept for error messages.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    files: Vec<SourceFile>,
    /// `-r`/`-c` lines followed so far, and the bytes read through them.
    includes: usize,
    included_bytes: usize,
}

impl Sources {
    /// Registers a file.
    pub fn add(&mut self, file: SourceFile) {
        if !self.files.iter().any(|f| f.name == file.name) {
            self.files.push(file);
        }
    }

    /// Looks a file up by name.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.name == name)
    }

    fn error(&self, origin: &Origin, message: String, help: String) -> SpecError {
        let src = self.get(&origin.file).map_or_else(
            || miette::NamedSource::new(&origin.file, String::new()),
            SourceFile::named_source,
        );
        SpecError::Requirement {
            file: origin.file.clone(),
            line: origin.line,
            src,
            span: origin.span.into(),
            message,
            help,
        }
    }
}

/// The include stack while following `-r`/`-c`, to report cycles.
type Stack = Vec<(String, Option<Origin>)>;

/// MLflow's `_parse_requirements(lines, is_constraint, base_dir)`.
///
/// `base_dir` is the directory (relative to the model root) that `-r`/`-c` paths in `lines` are
/// relative to: the model directory for lists from YAML files, the including file's directory
/// for nested files.
pub fn parse_lines(
    fs: &ModelFs,
    sources: &mut Sources,
    lines: Vec<RawLine>,
    is_constraint: bool,
    base_dir: &str,
) -> Result<Vec<MlflowRequirement>, SpecError> {
    let mut stack = Stack::new();
    let mut out = Vec::new();
    parse_lines_inner(
        fs,
        sources,
        lines,
        is_constraint,
        base_dir,
        &mut stack,
        &mut out,
    )?;
    Ok(out)
}

/// MLflow's `_parse_requirements(path, is_constraint)` on a file of the model directory.
pub fn parse_file(
    fs: &ModelFs,
    sources: &mut Sources,
    file: &SourceFile,
    is_constraint: bool,
) -> Result<Vec<MlflowRequirement>, SpecError> {
    let mut stack: Stack = vec![(file.name.clone(), None)];
    let mut out = Vec::new();
    sources.add(file.clone());
    let base_dir = parent_dir(&file.name);
    let lines = split_lines(&file.name, &file.universal_newlines());
    parse_lines_inner(
        fs,
        sources,
        lines,
        is_constraint,
        &base_dir,
        &mut stack,
        &mut out,
    )?;
    Ok(out)
}

fn parent_dir(name: &str) -> String {
    name.rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default()
}

fn parse_lines_inner(
    fs: &ModelFs,
    sources: &mut Sources,
    lines: Vec<RawLine>,
    is_constraint: bool,
    base_dir: &str,
    stack: &mut Stack,
    out: &mut Vec<MlflowRequirement>,
) -> Result<(), SpecError> {
    // map(str.strip) -> map(_strip_inline_comment) -> _join_continued_lines
    let mut joined: Vec<(String, Origin)> = Vec::new();
    let mut pending: Option<(String, Origin)> = None;
    for raw in lines {
        let mut line = raw.text.trim_matches(is_python_space).to_string();
        if let Some(i) = line.find(" #") {
            line.truncate(i);
            let trimmed = line.trim_end_matches(is_python_space).len();
            line.truncate(trimmed);
        }
        if let Some(stripped) = line.strip_suffix('\\') {
            let stripped = stripped.trim_end_matches('\\');
            match &mut pending {
                Some((text, _)) => text.push_str(stripped),
                None => pending = Some((stripped.to_string(), raw.origin)),
            }
            continue;
        }
        match pending.take() {
            Some((mut text, mut origin)) => {
                text.push_str(&line);
                origin.span.end = raw.origin.span.end;
                joined.push((text, origin));
            }
            None => joined.push((line, raw.origin)),
        }
    }
    if let Some(last) = pending {
        joined.push(last);
    }

    for (line, origin) in joined {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let include = if line.starts_with("-r ") || line.starts_with("--requirement ") {
            Some(false)
        } else if line.starts_with("-c ") || line.starts_with("--constraint ") {
            Some(true)
        } else {
            None
        };
        let Some(include_is_constraint) = include else {
            out.push(MlflowRequirement {
                req_str: line,
                is_constraint,
                origin,
                base_dir: base_dir.to_string(),
            });
            continue;
        };
        // `line.split(maxsplit=1)[1]`
        let target = line
            .split_once(is_python_space)
            .map(|(_, rest)| rest.trim_start_matches(is_python_space))
            .unwrap_or_default()
            .to_string();
        include_file(
            fs,
            sources,
            &target,
            base_dir,
            include_is_constraint,
            &origin,
            stack,
            out,
        )?;
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "the recursion state of `_parse_requirements`"
)]
fn include_file(
    fs: &ModelFs,
    sources: &mut Sources,
    target: &str,
    base_dir: &str,
    is_constraint: bool,
    origin: &Origin,
    stack: &mut Stack,
    out: &mut Vec<MlflowRequirement>,
) -> Result<(), SpecError> {
    let flag = if is_constraint { "-c" } else { "-r" };
    let relative = fs.resolve(base_dir, target, &|| format!("`{flag}` in {origin}"))?;
    if stack.iter().any(|(name, _)| *name == relative) {
        let mut chain: Vec<String> = stack
            .iter()
            .skip_while(|(name, _)| *name != relative)
            .map(|(name, _)| format!("`{name}`"))
            .collect();
        chain.push(format!("`{relative}` ({flag} at {origin})"));
        return Err(SpecError::RequirementsCycle {
            chain: chain.join(" -> "),
        });
    }
    let file = fs.read(
        &relative,
        Some(origin.to_string()),
        &format!("Add `{relative}` to the model directory or remove the `{flag}` line"),
    )?;
    sources.includes += 1;
    sources.included_bytes += file.text.len();
    if sources.includes > MAX_INCLUDES || sources.included_bytes > MAX_INCLUDED_BYTES {
        return Err(SpecError::TooManyIncludes {
            origin: origin.to_string(),
            limit: if sources.includes > MAX_INCLUDES {
                format!("{MAX_INCLUDES} `-r`/`-c` lines")
            } else {
                format!("{MAX_INCLUDED_BYTES} bytes")
            },
        });
    }
    sources.add(file.clone());
    stack.push((relative.clone(), Some(origin.clone())));
    let lines = split_lines(&file.name, &file.universal_newlines());
    parse_lines_inner(
        fs,
        sources,
        lines,
        is_constraint,
        &parent_dir(&relative),
        stack,
        out,
    )?;
    stack.pop();
    Ok(())
}

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
const PIP_ONLY_OPTIONS: &[&str] = &[
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

enum Interpreted {
    Done,
    Include { target: String, is_constraint: bool },
}

fn split_option(token: &str) -> (&str, Option<&str>) {
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

fn interpret_line(
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
fn split_requirement_options(text: &str) -> (&str, &str) {
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

const URL_SCHEMES: &[&str] = &[
    "http://", "https://", "file:", "ftp://", "git+", "hg+", "svn+", "bzr+",
];

fn looks_like_url(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    URL_SCHEMES.iter().any(|scheme| lower.starts_with(scheme))
}

const ARCHIVE_SUFFIXES: &[&str] = &[
    ".whl", ".zip", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar",
];

fn looks_like_path(text: &str) -> bool {
    text.contains('/')
        || text.starts_with('.')
        || ARCHIVE_SUFFIXES
            .iter()
            .any(|suffix| text.to_ascii_lowercase().ends_with(suffix))
}

fn read_target(
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

/// `pep508_rs::Requirement::from_str`, refusing first the requirements it panics on.
///
/// `pep508_rs` 0.9.2 checks that a package name or extra does not end in `.`, `-` or `_` only at
/// the end of the input; elsewhere (`tensorflow-=2.19.0`, `pkg[extra-]`) it hits its own
/// `expect("... validation should match PEP 508 parsing")`. Found by `fuzz/` (`requirements`).
fn parse_pep508(text: &str) -> Result<pep508_rs::Requirement<pep508_rs::VerbatimUrl>, String> {
    if let Some(message) = unterminated_identifier(text) {
        return Err(message);
    }
    if let Some(start) = marker_start(text)
        && let Some(message) = non_ascii_marker(&text[start..])
    {
        return Err(message);
    }
    pep508_rs::Requirement::<pep508_rs::VerbatimUrl>::from_str(text).map_err(|e| e.to_string())
}

/// `pep508_rs::MarkerTree::from_str`, refusing first the markers it panics on.
fn parse_marker(marker: &str) -> Result<pep508_rs::MarkerTree, String> {
    if let Some(message) = non_ascii_marker(marker) {
        return Err(message);
    }
    pep508_rs::MarkerTree::from_str(marker).map_err(|e| e.to_string())
}

/// `pep508_rs` 0.9.2 takes the word after each marker expression (to see whether it is `and` or
/// `or`) by its length in characters but slices it in bytes (`Cursor::peek_while`), so a
/// non-ASCII character there panics: `six ; python_version < "3.9"€` (found by `fuzz/`,
/// `requirements`). Marker syntax is ASCII, and so are the values real markers compare
/// (versions, platform and implementation names, extras), so a marker with a non-ASCII
/// character other than whitespace is refused before `pep508_rs` sees it.
fn non_ascii_marker(marker: &str) -> Option<String> {
    marker
        .chars()
        .find(|c| !c.is_ascii() && !c.is_whitespace())
        .map(|c| format!("Unexpected character `{c}` in the environment marker; markers are ASCII"))
}

/// Where the marker of a PEP 508 requirement starts (after its `;`), as `pep508_rs` finds it:
/// the first `;`, except that in `name @ url` a `;` inside the URL (not after whitespace)
/// belongs to the URL.
fn marker_start(text: &str) -> Option<usize> {
    let at = text.find('@');
    text.match_indices(';')
        .map(|(i, _)| i)
        .find(|&i| at.is_none_or(|at| i < at) || text[..i].ends_with(char::is_whitespace))
        .map(|i| i + 1)
}

/// The error for a name or extra of `text` that ends in `.`, `-` or `_`, found the way `pep508_rs`
/// reads them: the name is the leading run of name characters after whitespace, an extra the
/// leading run of each `,`-separated item of a `[...]` that follows it. `pep508_rs` accepts no
/// such requirement, so refusing it here never refuses a valid one.
fn unterminated_identifier(text: &str) -> Option<String> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    // The leading run of name characters of `s` (after whitespace, as `Cursor::eat_whitespace`)
    // if it starts like an identifier, and its last character if that is not alphanumeric.
    let leading_run = |s: &str| -> (usize, Option<char>) {
        let s = s.trim_start();
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return (0, None);
        }
        let run = &s[..s.find(|c| !is_name_char(c)).unwrap_or(s.len())];
        let last = run.chars().last().filter(|c| !c.is_ascii_alphanumeric());
        (run.len(), last)
    };
    let rest = text.trim_start();
    let (name_len, last) = leading_run(rest);
    if name_len == 0 {
        return None;
    }
    if let Some(last) = last {
        return Some(format!(
            "Package name must end with an alphanumeric character, not `{last}`"
        ));
    }
    let extras = rest[name_len..].trim_start().strip_prefix('[')?;
    let extras = &extras[..extras.find(']').unwrap_or(extras.len())];
    extras.split(',').find_map(|item| {
        leading_run(item)
            .1
            .map(|last| format!("Extra name must end with an alphanumeric character, not `{last}`"))
    })
}

/// PEP 440's arbitrary equality, `name===anything`, compares strings and so accepts versions
/// that are not PEP 440 (`distro-info===1.1build1`, written by `pip freeze` on Debian), which
/// `pep508_rs` refuses. Returns the normalised requirement.
fn arbitrary_equality(text: &str) -> Option<String> {
    let (requirement, marker) = match text.split_once(';') {
        Some((requirement, marker)) => (requirement, Some(marker.trim())),
        None => (text, None),
    };
    let (name, version) = requirement.split_once("===")?;
    let version = version.trim();
    if version.is_empty()
        || version.contains(char::is_whitespace)
        || version.contains([',', '=', '<', '>'])
    {
        return None;
    }
    let name = name.trim();
    let (name, extras) = match name.split_once('[') {
        Some((name, extras)) => (name.trim(), format!("[{}", extras.trim())),
        None => (name, String::new()),
    };
    let name = pep508_rs::PackageName::new(name.to_string()).ok()?;
    let mut out = format!("{name}{extras}==={version}");
    if let Some(marker) = marker {
        let marker = parse_marker(marker).ok()?;
        if let Some(contents) = marker.contents() {
            out.push_str(" ; ");
            out.push_str(&contents.to_string());
        }
    }
    Some(out)
}

fn check_file_url(fs: &ModelFs, origin: &Origin, url: &str) -> Result<(), SpecError> {
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

/// A line git writes around a merge conflict.
fn is_conflict_marker(text: &str) -> bool {
    text.starts_with("<<<<<<<") || text.starts_with(">>>>>>>") || text.starts_with("=======")
}

/// Longest quoted text in a message, in characters.
const MAX_QUOTED_CHARS: usize = 120;

/// `text`, cut to [`MAX_QUOTED_CHARS`] characters with `…`: a message quotes the offending line
/// (and the parser quotes it again), and a line can be 10 MB long.
fn abbreviate(text: &str) -> String {
    match text.char_indices().nth(MAX_QUOTED_CHARS) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Model {
        dir: tempfile::TempDir,
    }

    impl Model {
        fn new(files: &[(&str, &str)]) -> Self {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in files {
                let path = dir.path().join(name);
                fs_err::create_dir_all(path.parent().unwrap()).unwrap();
                fs_err::write(path, text).unwrap();
            }
            Self { dir }
        }

        fn fs(&self) -> ModelFs {
            ModelFs::open(self.dir.path()).unwrap()
        }

        fn mlflow(&self, name: &str) -> Result<Vec<(String, bool)>, SpecError> {
            let fs = self.fs();
            let file = fs.read(name, None, "").unwrap();
            let mut sources = Sources::default();
            Ok(parse_file(&fs, &mut sources, &file, false)?
                .into_iter()
                .map(|r| (r.req_str, r.is_constraint))
                .collect())
        }

        fn pip(&self, name: &str) -> Result<PipSet, SpecError> {
            let fs = self.fs();
            let file = fs.read(name, None, "").unwrap();
            let mut sources = Sources::default();
            let lines = parse_file(&fs, &mut sources, &file, false)?;
            interpret(&fs, &mut sources, &lines)
        }
    }

    fn names(set: &PipSet) -> Vec<String> {
        set.requirements
            .iter()
            .map(|r| match &r.target {
                Target::Named(s) | Target::Url(s) | Target::Path(s) => s.clone(),
            })
            .collect()
    }

    #[test]
    fn comments_blank_lines_and_inline_comments() {
        let model = Model::new(&[(
            "requirements.txt",
            "# a comment\n\n  numpy==1.26.4  # pinned\npandas#not-a-comment\n   \n",
        )]);
        assert_eq!(
            model.mlflow("requirements.txt").unwrap(),
            vec![
                ("numpy==1.26.4".into(), false),
                ("pandas#not-a-comment".into(), false)
            ]
        );
    }

    #[test]
    fn continuations_and_crlf() {
        let model = Model::new(&[(
            "requirements.txt",
            "scikit-learn\\\r\n>=1.3,\\\r\n<1.4\r\nsix\r\nlast\\",
        )]);
        assert_eq!(
            model.mlflow("requirements.txt").unwrap(),
            vec![
                ("scikit-learn>=1.3,<1.4".into(), false),
                ("six".into(), false),
                ("last".into(), false)
            ]
        );
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(set.requirements[0].origin.as_ref().unwrap().line, 1);
        assert_eq!(set.requirements[1].origin.as_ref().unwrap().line, 4);
    }

    #[test]
    fn includes_are_relative_to_the_including_file() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "-r reqs/base.txt\n-c constraints.txt\nmlflow\n",
            ),
            ("reqs/base.txt", "-r more.txt\nnumpy\n"),
            ("reqs/more.txt", "six\n"),
            ("constraints.txt", "numpy<2\n"),
        ]);
        assert_eq!(
            model.mlflow("requirements.txt").unwrap(),
            vec![
                ("six".into(), false),
                ("numpy".into(), false),
                ("numpy<2".into(), true),
                ("mlflow".into(), false)
            ]
        );
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(names(&set), ["six", "numpy", "mlflow"]);
        assert_eq!(set.constraints.len(), 1);
        assert_eq!(set.constraints[0].target, Target::Named("numpy<2".into()));
    }

    #[test]
    fn include_cycles_are_detected() {
        let model = Model::new(&[("a.txt", "-r b.txt\n"), ("b.txt", "six\n-r a.txt\n")]);
        let err = model.mlflow("a.txt").unwrap_err();
        assert!(matches!(err, SpecError::RequirementsCycle { .. }), "{err}");
        assert!(
            err.to_string().contains("`a.txt` -> `b.txt` -> `a.txt`"),
            "{err}"
        );
    }

    #[test]
    fn include_escapes_are_refused() {
        let model = Model::new(&[("requirements.txt", "-r ../../etc/passwd\n")]);
        assert!(matches!(
            model.mlflow("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
        let model = Model::new(&[("requirements.txt", "-c /etc/passwd\n")]);
        assert!(matches!(
            model.mlflow("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
    }

    #[test]
    fn missing_include_names_the_line() {
        let model = Model::new(&[("requirements.txt", "six\n-r nope.txt\n")]);
        let err = model.mlflow("requirements.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "`nope.txt` does not exist (referenced from `requirements.txt` line 2)"
        );
    }

    #[test]
    fn index_options() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "--index-url https://pypi.example/simple\n-i https://mirror.example/simple\n--extra-index-url=https://extra.example/simple\n--find-links https://pypi.python.org/simple/index.html\n-f wheels\n--pre\n--no-binary :all:\n--only-binary=numpy\n--prefer-binary\n--trusted-host example.com\n--no-index\n--require-hashes\nsix\n",
            ),
            ("wheels/x.txt", ""),
        ]);
        let set = model.pip("requirements.txt").unwrap();
        let index = &set.index;
        assert_eq!(
            index.index_url.as_deref(),
            Some("https://mirror.example/simple")
        );
        assert_eq!(index.extra_index_urls, ["https://extra.example/simple"]);
        assert_eq!(
            index.find_links,
            ["https://pypi.python.org/simple/index.html", "wheels"]
        );
        assert!(index.pre && index.no_index && index.prefer_binary && index.require_hashes);
        assert_eq!(index.no_binary, [":all:"]);
        assert_eq!(index.only_binary, ["numpy"]);
        assert!(index.trusted_hosts.contains("example.com"));
        assert_eq!(names(&set), ["six"]);
    }

    #[test]
    fn requirement_forms() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "Scikit_Learn >= 1.3 , <1.4 ; python_version >= \"3.8\"\nmlflow[gateway]==2.12.2\npkg @ https://host.example/pkg-1.0-py3-none-any.whl\nhttps://host.example/other-1.0.tar.gz\ngit+https://github.com/org/repo@v1#egg=repo\n./dist/local-1.0-py3-none-any.whl\n-e ./project\n--editable=./project[extra]\nrequests==2.31.0 --hash=sha256:bbb --hash sha256:aaa\n./dist/local-1.0-py3-none-any.whl ; python_version < \"3.9\"\nDistro_Info===1.1build1\n",
            ),
            ("dist/local-1.0-py3-none-any.whl", "not really a wheel"),
            ("project/pyproject.toml", ""),
        ]);
        let set = model.pip("requirements.txt").unwrap();
        let r = &set.requirements;
        assert_eq!(
            r[0].target,
            Target::Named("scikit-learn>=1.3,<1.4 ; python_full_version >= '3.8'".into())
        );
        assert_eq!(r[1].target, Target::Named("mlflow[gateway]==2.12.2".into()));
        assert_eq!(
            r[2].target,
            Target::Named("pkg @ https://host.example/pkg-1.0-py3-none-any.whl".into())
        );
        assert_eq!(
            r[3].target,
            Target::Url("https://host.example/other-1.0.tar.gz".into())
        );
        assert_eq!(
            r[4].target,
            Target::Url("git+https://github.com/org/repo@v1#egg=repo".into())
        );
        assert_eq!(
            r[5].target,
            Target::Path("dist/local-1.0-py3-none-any.whl".into())
        );
        assert!(r[6].editable);
        assert_eq!(r[6].target, Target::Path("project".into()));
        assert!(r[7].editable);
        assert_eq!(r[7].target, Target::Path("project[extra]".into()));
        assert_eq!(r[8].hashes, ["sha256:aaa", "sha256:bbb"]);
        assert_eq!(r[9].marker.as_deref(), Some("python_version < \"3.9\""));
        assert_eq!(
            r[10].target,
            Target::Named("distro-info===1.1build1".into())
        );
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        for (text, needle) in [
            ("six\nnumpy===\n", "line 2"),
            ("--frobnicate\n", "unknown pip option `--frobnicate`"),
            ("six --install-option=x\n", "unknown per-requirement option"),
            ("--index-url\n", "needs a value"),
            (
                "numpy ; python_version >>> '3'\n",
                "not a valid requirement",
            ),
            ("-e\n", "needs a path"),
            ("--use-feature=fast-deps\n", "not supported"),
        ] {
            let model = Model::new(&[("requirements.txt", text)]);
            let err = model.pip("requirements.txt").unwrap_err();
            assert!(
                matches!(err, SpecError::Requirement { .. }),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn errors_point_at_their_line_when_the_parse_sources_are_gone() {
        // The virtualenv manager parses in one step and interprets with fresh `Sources`.
        let model = Model::new(&[("requirements.txt", "numpy\nnumpy>=>1\n")]);
        let fs = model.fs();
        let file = fs.read("requirements.txt", None, "").unwrap();
        let lines = parse_file(&fs, &mut Sources::default(), &file, false).unwrap();
        let err = interpret(&fs, &mut Sources::default(), &lines).unwrap_err();
        let SpecError::Requirement {
            src, span, line, ..
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(*line, 2);
        let text = miette::SourceCode::read_span(src, span, 0, 0).unwrap();
        assert_eq!(std::str::from_utf8(text.data()).unwrap(), "numpy>=>1");
    }

    #[test]
    fn long_lines_are_abbreviated_in_messages() {
        let line = format!("numpy==1.0 {}", "a".repeat(1_000_000));
        let model = Model::new(&[("requirements.txt", &line)]);
        let err = model.pip("requirements.txt").unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes", err.len());
        assert!(err.contains("aaa…` is not a valid requirement: "), "{err}");
    }

    #[test]
    fn conflict_markers_get_their_own_hint() {
        let model = Model::new(&[(
            "requirements.txt",
            "numpy\n<<<<<<< HEAD\npandas==1\n=======\npandas==2\n>>>>>>> main\n",
        )]);
        let err = model.pip("requirements.txt").unwrap_err();
        let help = miette::Diagnostic::help(&err).unwrap().to_string();
        assert!(help.contains("merge-conflict"), "{help}");
    }

    #[test]
    fn local_paths_must_stay_inside() {
        let model = Model::new(&[("requirements.txt", "../outside.whl\n")]);
        assert!(matches!(
            model.pip("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
        let model = Model::new(&[("requirements.txt", "pkg @ file:///etc/passwd\n")]);
        assert!(matches!(
            model.pip("requirements.txt").unwrap_err(),
            SpecError::PathEscape { .. }
        ));
        let model = Model::new(&[("requirements.txt", "./missing.whl\n")]);
        assert!(matches!(
            model.pip("requirements.txt").unwrap_err(),
            SpecError::MissingFile { .. }
        ));
    }

    #[test]
    fn pip_style_includes_are_followed() {
        let model = Model::new(&[
            (
                "requirements.txt",
                "--requirement=base.txt\n-cconstraints.txt\n",
            ),
            ("base.txt", "six\n"),
            ("constraints.txt", "six<2\n"),
        ]);
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(names(&set), ["six"]);
        assert_eq!(set.constraints.len(), 1);
    }

    /// `pep508_rs` 0.9.2 panicked on a name or extra ending in `.`, `-` or `_` that is not at the
    /// end of the line (`fuzz/artifacts/requirements/crash-a1008397…`, minimised).
    #[test]
    fn fuzz_regression_name_ending_in_separator() {
        for text in [
            "tensorflow-=2.19.0",
            "numpy_ >=1",
            "pkg. ; python_version > '3'",
            "pkg-[extra]",
            "pkg[extra-]",
            "pkg[extra_ ]==1",
            "pkg[a, b. ]",
            "pkg[a,b- c]",
            "pkg [a-",
            "pkg-",
            "pkg_ @ https://example.org/pkg.whl",
        ] {
            let model = Model::new(&[("requirements.txt", text)]);
            let err = model.pip("requirements.txt").unwrap_err();
            assert!(
                matches!(err, SpecError::Requirement { .. }),
                "{text}: {err:?}"
            );
            assert!(
                err.to_string()
                    .contains("must end with an alphanumeric character"),
                "{text}: {err}"
            );
            assert!(PipRequirement::named(text).is_err(), "{text}");
        }
        // Separators inside names and extras are fine.
        let model = Model::new(&[(
            "requirements.txt",
            "a.b-c_d>=1\npkg[a-b, c.d_e]==1 ; python_version > '3'\nzope.interface\n",
        )]);
        let set = model.pip("requirements.txt").unwrap();
        assert_eq!(set.requirements.len(), 3);
    }

    /// Files that include the next one twice, 40 deep: 2^40 reads. Not found by the fuzz target
    /// (its include files are fixed), but the same kind of bug as the YAML alias bombs.
    #[test]
    fn fuzz_regression_include_fan_out_is_bounded() {
        let mut files: Vec<(String, String)> = (0..40)
            .map(|i| {
                (
                    format!("r{i}.txt"),
                    format!("-r r{}.txt\n-r r{}.txt\n", i + 1, i + 1),
                )
            })
            .collect();
        files.push(("r40.txt".into(), "six\n".into()));
        files.push(("requirements.txt".into(), "-r r0.txt\n".into()));
        let files: Vec<(&str, &str)> = files
            .iter()
            .map(|(name, text)| (name.as_str(), text.as_str()))
            .collect();
        let model = Model::new(&files);
        let err = model.mlflow("requirements.txt").unwrap_err();
        assert!(matches!(err, SpecError::TooManyIncludes { .. }), "{err:?}");
        assert!(err.to_string().contains("10000 `-r`/`-c` lines"), "{err}");
        // A few repeated includes are fine, as in MLflow.
        let model = Model::new(&[
            ("requirements.txt", "-r a.txt\n-r a.txt\n-c a.txt\n"),
            ("a.txt", "six\n"),
        ]);
        assert_eq!(model.mlflow("requirements.txt").unwrap().len(), 3);
    }

    /// `pep508_rs` 0.9.2 sliced the word after a marker expression at its length in characters
    /// as bytes (`fuzz/artifacts/requirements/crash-19391af0…`, minimised).
    #[test]
    fn fuzz_regression_non_ascii_after_a_marker() {
        for text in [
            "six ; python_version < \"3.9\"€",
            "six;python_version<'3'aé",
            "six ; python_version < \"3\" x\"é\"",
            "six @ https://example.org/six.whl ; os_name == \"nt\" ǅ",
            "./pkg ; python_version < \"3.9\"€",
            "six===1.0 ; python_version < \"3.9\"€",
        ] {
            let model = Model::new(&[("requirements.txt", text), ("pkg/setup.py", "")]);
            let err = model.pip("requirements.txt").unwrap_err();
            assert!(
                matches!(err, SpecError::Requirement { .. }),
                "{text}: {err:?}"
            );
            assert!(
                err.to_string().contains("markers are ASCII"),
                "{text}: {err}"
            );
        }
        // Non-ASCII elsewhere is left to pep508_rs, and non-ASCII whitespace is whitespace.
        assert!(parse_pep508("six @ https://example.org/a;é/six.whl").is_ok());
        assert!(parse_pep508("six ;\u{a0}python_version\u{a0}<\u{a0}'3'").is_ok());
        assert_eq!(marker_start("six>=1 ; os_name == '@'"), Some(8));
        assert_eq!(
            marker_start("six @ https://h/a;b.whl ; os_name == 'nt'"),
            Some(25)
        );
        assert_eq!(marker_start("six @ https://h/a;b.whl"), None);
    }

    /// A short option with a non-ASCII letter was split inside the letter
    /// (`fuzz/artifacts/requirements/crash-356dfde7…`, minimised).
    #[test]
    fn fuzz_regression_non_ascii_short_option() {
        assert_eq!(split_option("-Ӗd3"), ("-Ӗ", Some("d3")));
        assert_eq!(split_option("-Ӗ"), ("-Ӗ", None));
        assert_eq!(split_option("-rfile.txt"), ("-r", Some("file.txt")));
        assert_eq!(split_option("-r"), ("-r", None));
        assert_eq!(split_option("--pre"), ("--pre", None));
        let model = Model::new(&[("requirements.txt", "-Ӗd3\n")]);
        let err = model.pip("requirements.txt").unwrap_err();
        assert!(matches!(err, SpecError::Requirement { .. }), "{err:?}");
    }

    #[test]
    fn python_splitlines_boundaries() {
        let lines = split_lines("f", "a\r\nb\rc\x0bd\u{2028}e\n");
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c", "d", "e"]);
        assert_eq!(lines[4].origin.line, 5);
    }
}
