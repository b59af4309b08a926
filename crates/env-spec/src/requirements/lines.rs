//! Layer 1: MLflow's `_parse_requirements`, line for line, with `-r`/`-c` followed (see the
//! parent module).

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
pub(super) fn is_python_space(c: char) -> bool {
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

    pub(super) fn error(&self, origin: &Origin, message: String, help: String) -> SpecError {
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
pub(super) type Stack = Vec<(String, Option<Origin>)>;

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

pub(super) fn parent_dir(name: &str) -> String {
    name.rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default()
}

pub(super) fn parse_lines_inner(
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
pub(super) fn include_file(
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
