//! YAML read the way MLflow reads it: PyYAML's `yaml.safe_load`, i.e. YAML 1.1 scalar resolution.
//!
//! MLflow loads every environment file with PyYAML, whose implicit resolvers follow YAML 1.1:
//! `python: 3.10` is the float `3.1`, `on`/`off`/`yes`/`no` are booleans, `010` is octal 8,
//! `1:30` is the sexagesimal integer 90, `1e5` (no dot) is a *string*. A YAML 1.2 loader
//! (`serde_yaml`, which the rattler crates use) disagrees with PyYAML on all of these, so this module
//! builds its own tree from the events of `yaml-rust2`'s parser and resolves plain scalars with
//! PyYAML's regular expressions (`yaml/resolver.py`, PyYAML 6.0).
//!
//! Every node keeps its byte span and, for scalars, the text as written and its quoting style, so a
//! caller can say "`python: 3.10` is the float 3.1 to MLflow; you almost certainly meant `3.10`"
//! and point at the exact place in the file.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, ScanError, TScalarStyle};

/// A byte range in the source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    /// Offset of the first byte.
    pub start: usize,
    /// Offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// Whether the span is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> Self {
        (span.start, span.len()).into()
    }
}

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    /// Unquoted: subject to implicit type resolution.
    Plain,
    /// `'single'` or `"double"` quoted, or a `|`/`>` block: always a string.
    Quoted,
}

/// A loaded YAML value, typed as PyYAML's `SafeLoader` types it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `null`, `~`, or nothing.
    Null,
    /// YAML 1.1 booleans (`true`, `yes`, `on`, ...).
    Bool(bool),
    /// An integer (decimal, octal `0o`-less `017`, hex, binary, sexagesimal).
    Int(i128),
    /// A float (`3.10` is `3.1`).
    Float(f64),
    /// A string.
    Str(String),
    /// A YAML timestamp, kept as written (PyYAML makes a `datetime`).
    Timestamp(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order; a repeated key keeps its first position and takes the last
    /// value, as a Python `dict` does.
    Map(Vec<(Node, Node)>),
}

/// A value with its location in the source.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The typed value.
    pub value: Value,
    /// Where it is in the source.
    pub span: Span,
    /// For scalars: the text as written (after YAML unescaping) and its style.
    pub scalar: Option<(String, ScalarStyle)>,
}

impl Node {
    fn new(value: Value, span: Span) -> Self {
        Self {
            value,
            span,
            scalar: None,
        }
    }

    /// The string value, if this node is a string.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The mapping entries, if this node is a mapping.
    #[must_use]
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The sequence items, if this node is a sequence.
    #[must_use]
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is `null`.
    #[must_use]
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Looks up a string key in a mapping (`dict.get(key)`).
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// Python's truthiness of the value (`if env:`).
    #[must_use]
    pub fn is_truthy(&self) -> bool {
        match &self.value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Float(f) => *f != 0.0,
            Value::Str(s) | Value::Timestamp(s) => !s.is_empty(),
            Value::Seq(items) => !items.is_empty(),
            Value::Map(entries) => !entries.is_empty(),
        }
    }

    /// The Python type name MLflow would see (`str`, `float`, `dict`, ...), for messages.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "NoneType",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Timestamp(_) => "datetime",
            Value::Seq(_) => "list",
            Value::Map(_) => "dict",
        }
    }

    /// The text as written in the file, for plain (unquoted) scalars.
    #[must_use]
    pub fn plain_text(&self) -> Option<&str> {
        match &self.scalar {
            Some((text, ScalarStyle::Plain)) => Some(text),
            _ => None,
        }
    }

    /// Python's `str(value)`, as MLflow would format this value into a string.
    #[must_use]
    pub fn python_str(&self) -> String {
        match &self.value {
            Value::Null => "None".to_string(),
            Value::Bool(true) => "True".to_string(),
            Value::Bool(false) => "False".to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => python_float_repr(*f),
            Value::Str(s) | Value::Timestamp(s) => s.clone(),
            Value::Seq(_) | Value::Map(_) => self.python_repr(),
        }
    }

    /// Python's `repr(value)`.
    #[must_use]
    pub fn python_repr(&self) -> String {
        match &self.value {
            Value::Str(s) => python_str_repr(s),
            Value::Seq(items) => {
                let inner: Vec<String> = items.iter().map(Node::python_repr).collect();
                format!("[{}]", inner.join(", "))
            }
            Value::Map(entries) => {
                let inner: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}: {}", k.python_repr(), v.python_repr()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            _ => self.python_str(),
        }
    }

    /// The value as JSON, with the conventions of the conformance corpus: floats that JSON
    /// cannot hold and timestamps are tagged objects, non-string keys become `str(key)`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => i64::try_from(*i).map_or_else(|_| J::String(i.to_string()), J::from),
            Value::Float(f) if f.is_finite() => {
                serde_json::Number::from_f64(*f).map_or(J::Null, J::Number)
            }
            Value::Float(f) => serde_json::json!({ "__float__": python_float_repr(*f) }),
            Value::Str(s) => J::String(s.clone()),
            Value::Timestamp(s) => serde_json::json!({ "__timestamp__": s }),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.python_str(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// Python's `repr(float)`: shortest round-trip digits, always with a `.0` or exponent.
#[must_use]
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Python switches to exponent notation outside [1e-4, 1e16).
        let s = format!("{f:e}");
        let (mantissa, exponent) = s.split_once('e').unwrap_or((&s, "0"));
        let exponent: i32 = exponent.parse().unwrap_or(0);
        return format!(
            "{mantissa}e{}{:02}",
            if exponent < 0 { '-' } else { '+' },
            exponent.abs()
        );
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

/// Python's `repr(str)` (single quotes unless the string holds a single quote and no double one).
#[must_use]
pub fn python_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// Why a document could not be loaded, with the position PyYAML would report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    /// What went wrong (PyYAML's wording where it has one).
    pub message: String,
    /// Where (byte range).
    pub span: Span,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.line, self.column
        )
    }
}

impl std::error::Error for YamlError {}

/// Maps yaml-rust2's character offsets to byte offsets and line/column numbers.
struct Positions<'a> {
    text: &'a str,
    /// Byte offset of each char, plus one entry for the end.
    char_to_byte: Vec<usize>,
}

impl<'a> Positions<'a> {
    fn new(text: &'a str) -> Self {
        let mut char_to_byte: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        char_to_byte.push(text.len());
        Self { text, char_to_byte }
    }

    fn byte(&self, marker: Marker) -> usize {
        self.char_to_byte
            .get(marker.index())
            .copied()
            .unwrap_or(self.text.len())
    }

    fn line_col(&self, byte: usize) -> (usize, usize) {
        let before = &self.text[..byte.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        (line, before[line_start..].chars().count() + 1)
    }

    fn error(&self, message: impl Into<String>, span: Span) -> YamlError {
        let (line, column) = self.line_col(span.start);
        YamlError {
            message: message.into(),
            span,
            line,
            column,
        }
    }

    /// The span of a scalar that starts at `start`: up to the end of its text on that line.
    fn scalar_span(&self, start: usize, value: &str, style: TScalarStyle) -> Span {
        let rest = &self.text[start.min(self.text.len())..];
        let quotes = usize::from(matches!(
            style,
            TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted
        )) * 2;
        let want = value.len() + quotes;
        // Only the part of the line the span can cover is searched for its end: searching to
        // the end of the line from every scalar made a one-line flow list of n items cost n^2
        // (60 KB took 37 s in the `yaml` fuzz target).
        let window = &rest.as_bytes()[..want.max(1).min(rest.len())];
        let line_end = window
            .iter()
            .position(|b| matches!(b, b'\n' | b'\r'))
            .unwrap_or(window.len());
        let mut len = want.min(line_end).max(usize::from(line_end > 0));
        // The unescaped value can be longer than its source (`"\L"` is 2 bytes written, 3
        // decoded), so the estimate may end inside a multi-byte character.
        while len > 0 && !rest.is_char_boundary(len) {
            len -= 1;
        }
        Span {
            start,
            end: start + len,
        }
    }

    /// The end of a collection whose end event is at `end`: one past a closing `]`/`}` (the
    /// event points at the bracket), else `end`.
    fn collection_end(&self, end: usize) -> usize {
        match self.text.as_bytes().get(end) {
            Some(b']' | b'}') => end + 1,
            _ => end,
        }
    }
}

/// Loads one YAML document as `yaml.safe_load` does. An empty stream is `None` (Python's `None`).
pub fn load(text: &str) -> Result<Option<Node>, YamlError> {
    let positions = Positions::new(text);
    check_printable(text, &positions)?;
    let mut loader = Loader {
        parser: Parser::new_from_str(text),
        positions: &positions,
        anchors: Vec::new(),
        depth: 0,
        copied: 0,
    };
    let document = loader.document()?;
    check_duplicate_anchors(text, &positions)?;
    Ok(document)
}

/// PyYAML's reader refuses control characters before it parses anything (`ReaderError:
/// unacceptable character #x0000: special characters are not allowed`); yaml-rust2 reads them as
/// text, so a NUL byte or other binary debris would end up in a package name.
fn check_printable(text: &str, positions: &Positions<'_>) -> Result<(), YamlError> {
    // PyYAML's `Reader.NON_PRINTABLE`, minus the surrogates a `str` cannot hold.
    let printable = |c: char| {
        matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{85}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
            || c >= '\u{10000}'
    };
    match text.char_indices().find(|(_, c)| !printable(*c)) {
        None => Ok(()),
        Some((start, c)) => Err(positions.error(
            format!(
                "unacceptable character #x{:04x}: special characters are not allowed",
                u32::from(c)
            ),
            Span {
                start,
                end: start + c.len_utf8(),
            },
        )),
    }
}

/// PyYAML's composer refuses an anchor defined twice (`found duplicate anchor 'x'; first
/// occurrence ... second occurrence ...`); yaml-rust2 lets the second one win, and its events
/// carry anchor ids, not names, so this scans the tokens for the names.
fn check_duplicate_anchors(text: &str, positions: &Positions<'_>) -> Result<(), YamlError> {
    if !text.contains('&') {
        return Ok(());
    }
    let mut seen: Vec<(String, usize)> = Vec::new();
    for token in yaml_rust2::scanner::Scanner::new(text.chars()) {
        let yaml_rust2::scanner::Token(marker, yaml_rust2::scanner::TokenType::Anchor(name)) =
            token
        else {
            continue;
        };
        let start = positions.byte(marker);
        if let Some((_, first)) = seen.iter().find(|(seen_name, _)| *seen_name == name) {
            let (line, column) = positions.line_col(*first);
            let end = start + 1 + name.len();
            return Err(positions.error(
                format!(
                    "found duplicate anchor {}; first occurrence at line {line}, column {column}",
                    python_str_repr(&name)
                ),
                Span {
                    start,
                    end: end.min(text.len()),
                },
            ));
        }
        seen.push((name, start));
    }
    Ok(())
}

/// PyYAML refuses nothing for depth, but a recursion limit protects us from stack overflow on
/// hostile input (`[[[[...]]]]`); Python itself stops at ~1000 frames.
const MAX_DEPTH: usize = 512;

/// PyYAML shares the object an alias refers to; we copy it, so ten aliases of ten aliases of ...
/// (the "billion laughs", 430 bytes for 10^9 nodes) would exhaust memory, and nested anchors
/// copy their subtrees once per level. A plain file of `MAX_FILE_SIZE` (16 MB) holds a few
/// million nodes, so anchors and aliases may copy one million more, not exponentially many.
/// Found by `fuzz/` (`yaml`).
const MAX_COPIED_NODES: usize = 1_000_000;

struct Loader<'a> {
    parser: Parser<std::str::Chars<'a>>,
    positions: &'a Positions<'a>,
    anchors: Vec<(usize, Node)>,
    depth: usize,
    /// Nodes copied so far for anchors and aliases, bounded by [`MAX_COPIED_NODES`].
    copied: usize,
}

impl Loader<'_> {
    fn next(&mut self) -> Result<(Event, Marker), YamlError> {
        self.parser.next_token().map_err(|err: ScanError| {
            let start = self.positions.byte(*err.marker());
            if err.info() == "while parsing node, found unknown anchor" {
                // PyYAML: `found undefined alias 'name'`, pointing at `*name`.
                let alias = &self.positions.text[start..];
                let name: &str = alias
                    .strip_prefix('*')
                    .map(|rest| {
                        rest.split([' ', '\t', '\n', ',', ']', '}'])
                            .next()
                            .unwrap_or(rest)
                    })
                    .unwrap_or_default();
                return self.positions.error(
                    format!("found undefined alias {}", python_str_repr(name)),
                    Span {
                        start,
                        end: start + usize::from(alias.starts_with('*')) + name.len(),
                    },
                );
            }
            let message = scan_error_message(&err);
            self.positions.error(message, Span { start, end: start })
        })
    }

    fn document(&mut self) -> Result<Option<Node>, YamlError> {
        let (event, _) = self.next()?;
        debug_assert_eq!(event, Event::StreamStart);
        let (event, marker) = self.next()?;
        match event {
            Event::StreamEnd => return Ok(None),
            Event::DocumentStart => {}
            other => {
                let start = self.positions.byte(marker);
                return Err(self
                    .positions
                    .error(format!("unexpected {other:?}"), Span { start, end: start }));
            }
        }
        let (event, marker) = self.next()?;
        let node = self.node(event, marker)?;
        let (event, _) = self.next()?;
        debug_assert_eq!(event, Event::DocumentEnd);
        let (event, marker) = self.next()?;
        if event != Event::StreamEnd {
            let start = self.positions.byte(marker);
            return Err(self.positions.error(
                "expected a single document in the stream, but found another document",
                Span { start, end: start },
            ));
        }
        Ok(Some(node))
    }

    fn node(&mut self, event: Event, marker: Marker) -> Result<Node, YamlError> {
        let start = self.positions.byte(marker);
        let node = match event {
            Event::Alias(id) => return self.alias(id, start),
            Event::Scalar(value, style, anchor, tag) => {
                let span = self.positions.scalar_span(start, &value, style);
                let node = self.scalar(value, style, tag.as_ref(), span)?;
                self.remember(anchor, &node)?;
                return Ok(node);
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), "seq", start)?;
                self.enter(start)?;
                let mut items = Vec::new();
                let end = loop {
                    let (event, marker) = self.next()?;
                    if event == Event::SequenceEnd {
                        break self.positions.byte(marker);
                    }
                    items.push(self.node(event, marker)?);
                };
                self.depth -= 1;
                let node = Node::new(
                    Value::Seq(items),
                    Span {
                        start,
                        end: self.positions.collection_end(end).max(start),
                    },
                );
                self.remember(anchor, &node)?;
                node
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_ref(), "map", start)?;
                self.enter(start)?;
                // yaml-rust2 starts a block mapping at the `:` of its first key; the mapping
                // starts at that key.
                let mut start = start;
                let mut map = MapBuilder::default();
                let end = loop {
                    let (event, marker) = self.next()?;
                    if event == Event::MappingEnd {
                        break self.positions.byte(marker);
                    }
                    let key = self.node(event, marker)?;
                    start = start.min(key.span.start);
                    let (event, marker) = self.next()?;
                    let value = self.node(event, marker)?;
                    if key.plain_text() == Some("<<") {
                        self.merge(&value, &mut map)?;
                        continue;
                    }
                    if matches!(key.value, Value::Seq(_) | Value::Map(_)) {
                        return Err(self.positions.error("found unhashable key", key.span));
                    }
                    map.insert(key, value);
                };
                self.depth -= 1;
                let node = Node::new(
                    Value::Map(map.finish()),
                    Span {
                        start,
                        end: self.positions.collection_end(end).max(start),
                    },
                );
                self.remember(anchor, &node)?;
                node
            }
            other => {
                return Err(self
                    .positions
                    .error(format!("unexpected {other:?}"), Span { start, end: start }));
            }
        };
        Ok(node)
    }

    /// A copy of the node anchored as `id`. Kept out of [`Self::node`], whose frame is paid
    /// once per nesting level.
    fn alias(&mut self, id: usize, start: usize) -> Result<Node, YamlError> {
        let Some((_, node)) = self.anchors.iter().rev().find(|(anchor, _)| *anchor == id) else {
            return Err(self
                .positions
                .error("found undefined alias", Span { start, end: start }));
        };
        let (count, height) = extent(node);
        // The copy sits inside the collections open here, and must not nest deeper than parsed
        // ones may (recursive walks of the tree rely on that).
        if self.depth + height > MAX_DEPTH {
            return Err(self.positions.error(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                Span { start, end: start },
            ));
        }
        self.copied += count;
        if self.copied > MAX_COPIED_NODES {
            return Err(too_many_copies(self.positions, start));
        }
        Ok(node.clone())
    }

    fn enter(&mut self, start: usize) -> Result<(), YamlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.positions.error(
                format!("nesting deeper than {MAX_DEPTH} levels"),
                Span { start, end: start },
            ));
        }
        Ok(())
    }

    fn merge(&self, value: &Node, map: &mut MapBuilder) -> Result<(), YamlError> {
        let sources: Vec<&Node> = match &value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items.iter().collect(),
            _ => {
                return Err(self.positions.error(
                    "expected a mapping or list of mappings for merging",
                    value.span,
                ));
            }
        };
        for source in sources {
            let Some(entries) = source.as_map() else {
                return Err(self
                    .positions
                    .error("expected a mapping for merging", source.span));
            };
            for (key, value) in entries {
                map.merge(key, value);
            }
        }
        Ok(())
    }

    fn remember(&mut self, anchor: usize, node: &Node) -> Result<(), YamlError> {
        if anchor > 0 {
            self.copied += extent(node).0;
            if self.copied > MAX_COPIED_NODES {
                return Err(too_many_copies(self.positions, node.span.start));
            }
            self.anchors.push((anchor, node.clone()));
        }
        Ok(())
    }

    fn check_collection_tag(
        &self,
        tag: Option<&Tag>,
        kind: &str,
        start: usize,
    ) -> Result<(), YamlError> {
        match tag {
            None => Ok(()),
            Some(tag) if tag.handle == "!!" && tag.suffix == kind => Ok(()),
            Some(tag) if tag.handle == "tag:yaml.org,2002:" && tag.suffix == kind => Ok(()),
            Some(tag) => Err(self.positions.error(
                format!(
                    "could not determine a constructor for the tag '{}{}'",
                    tag.handle, tag.suffix
                ),
                Span { start, end: start },
            )),
        }
    }

    fn scalar(
        &self,
        text: String,
        style: TScalarStyle,
        tag: Option<&Tag>,
        span: Span,
    ) -> Result<Node, YamlError> {
        let plain = style == TScalarStyle::Plain;
        let kind = match tag {
            None if plain => resolve_plain(&text),
            None => Kind::Str,
            Some(tag) if tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:" => {
                match tag.suffix.as_str() {
                    "str" => Kind::Str,
                    "int" => Kind::Int,
                    "float" => Kind::Float,
                    "bool" => Kind::Bool,
                    "null" => Kind::Null,
                    "timestamp" => Kind::Timestamp,
                    other => {
                        return Err(self.positions.error(
                            format!("could not determine a constructor for the tag 'tag:yaml.org,2002:{other}'"),
                            span,
                        ));
                    }
                }
            }
            // A lone `!` is the non-specific tag: the scalar is a string.
            Some(tag) if tag.handle == "!" && tag.suffix.is_empty() => Kind::Str,
            Some(tag) => {
                return Err(self.positions.error(
                    format!(
                        "could not determine a constructor for the tag '{}{}'",
                        tag.handle, tag.suffix
                    ),
                    span,
                ));
            }
        };
        let invalid = |what: &str| {
            self.positions.error(
                format!("invalid {what} value: {}", python_str_repr(&text)),
                span,
            )
        };
        let value = match kind {
            Kind::Null => Value::Null,
            Kind::Bool => Value::Bool(match text.to_ascii_lowercase().as_str() {
                "yes" | "true" | "on" => true,
                "no" | "false" | "off" => false,
                _ => return Err(invalid("bool")),
            }),
            Kind::Int => Value::Int(construct_int(&text).ok_or_else(|| invalid("int"))?),
            Kind::Float => Value::Float(construct_float(&text).ok_or_else(|| invalid("float"))?),
            Kind::Timestamp => Value::Timestamp(text.clone()),
            Kind::Str => Value::Str(text.clone()),
            Kind::YamlValue => {
                return Err(self.positions.error(
                    "could not determine a constructor for the tag 'tag:yaml.org,2002:value'",
                    span,
                ));
            }
        };
        Ok(Node {
            value,
            span,
            scalar: Some((
                text,
                if plain {
                    ScalarStyle::Plain
                } else {
                    ScalarStyle::Quoted
                },
            )),
        })
    }
}

/// The entries of a mapping being loaded, with its keys indexed: a linear search for each key
/// made a mapping of n keys cost n^2 comparisons (20,000 keys took 28 s in the `yaml` fuzz
/// target).
/// Kept out of [`Loader::node`], whose frame is paid once per nesting level.
#[derive(Default)]
struct MapBuilder {
    entries: Vec<(Node, Node)>,
    /// Where each key is in `entries`, by Python dict equality.
    index: HashMap<KeyId, usize>,
    /// Entries of `<<` merge keys, the first of each key (compared as values).
    merged: Vec<(Node, Node)>,
    merged_keys: HashSet<KeyId>,
}

impl MapBuilder {
    /// A repeated key keeps its first position and takes the last value, as in a Python dict.
    fn insert(&mut self, key: Node, value: Node) {
        match KeyId::dict(&key.value) {
            Some(id) => match self.index.entry(id) {
                std::collections::hash_map::Entry::Occupied(slot) => {
                    self.entries[*slot.get()].1 = value;
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(self.entries.len());
                    self.entries.push((key, value));
                }
            },
            // NaN equals nothing, not even itself: every NaN key is a new entry, as in Python.
            None => self.entries.push((key, value)),
        }
    }

    fn merge(&mut self, key: &Node, value: &Node) {
        // A key equal to nothing (NaN) is always new, as with `==`.
        if KeyId::exact(&key.value).is_none_or(|id| self.merged_keys.insert(id)) {
            self.merged.push((key.clone(), value.clone()));
        }
    }

    /// Merged keys come first and never override explicit ones (PyYAML's `flatten_mapping`).
    fn finish(self) -> Vec<(Node, Node)> {
        let Self {
            entries,
            mut merged,
            ..
        } = self;
        if merged.is_empty() {
            return entries;
        }
        let explicit: HashSet<KeyId> = entries
            .iter()
            .filter_map(|(key, _)| KeyId::exact(&key.value))
            .collect();
        merged.retain(|(key, _)| KeyId::exact(&key.value).is_none_or(|id| !explicit.contains(&id)));
        merged.extend(entries);
        merged
    }
}

/// A scalar key as a hashable value, so that mappings index their keys.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyId {
    Null,
    Bool(bool),
    Int(i128),
    /// The bits of a float, `-0.0` as `0.0` (they are equal).
    Float(u64),
    Str(String),
    Timestamp(String),
}

impl KeyId {
    /// Python dict key equality: `1 == 1.0 == True`, so every number is a float here. `None`
    /// for a key equal to nothing (NaN) and for collections, which are not keys.
    fn dict(value: &Value) -> Option<Self> {
        #[expect(clippy::cast_precision_loss, reason = "only compares small YAML keys")]
        match value {
            Value::Bool(b) => Self::float(f64::from(u8::from(*b))),
            Value::Int(i) => Self::float(*i as f64),
            _ => Self::exact(value),
        }
    }

    /// `Value` equality (`1` and `1.0` differ), which merge keys use.
    fn exact(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(Self::Null),
            Value::Bool(b) => Some(Self::Bool(*b)),
            Value::Int(i) => Some(Self::Int(*i)),
            Value::Float(f) => Self::float(*f),
            Value::Str(s) => Some(Self::Str(s.clone())),
            Value::Timestamp(s) => Some(Self::Timestamp(s.clone())),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    fn float(f: f64) -> Option<Self> {
        // `-0.0 + 0.0` is `0.0`: the two zeros, which compare equal, get one id.
        (!f.is_nan()).then(|| Self::Float((f + 0.0).to_bits()))
    }
}

/// The number of nodes in `node` and how many levels of collections it nests.
fn extent(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Seq(items) => items.iter().fold((1, 1), |(count, height), item| {
            let (c, h) = extent(item);
            (count + c, height.max(h + 1))
        }),
        Value::Map(entries) => entries
            .iter()
            .fold((1, 1), |(count, height), (key, value)| {
                let (kc, kh) = extent(key);
                let (vc, vh) = extent(value);
                (count + kc + vc, height.max(kh.max(vh) + 1))
            }),
        _ => (1, 0),
    }
}

fn too_many_copies(positions: &Positions<'_>, start: usize) -> YamlError {
    positions.error(
        format!("anchors and aliases expand to more than {MAX_COPIED_NODES} nodes"),
        Span { start, end: start },
    )
}

fn scan_error_message(err: &ScanError) -> String {
    let info = err.info();
    // yaml-rust2 words the commonest failure of hand-edited files (a line without `key:` inside
    // a mapping, e.g. git merge-conflict markers) tersely; say it the way PyYAML does.
    if info == "simple key expect ':'" {
        return "could not find expected ':'".to_string();
    }
    info.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    Timestamp,
    YamlValue,
}

/// PyYAML's implicit resolvers (`yaml/resolver.py`), applied to a plain scalar's text.
fn resolve_plain(text: &str) -> Kind {
    if matches!(text, "" | "~" | "null" | "Null" | "NULL") {
        return Kind::Null;
    }
    if matches!(
        text,
        "yes"
            | "Yes"
            | "YES"
            | "no"
            | "No"
            | "NO"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    ) {
        return Kind::Bool;
    }
    if text == "=" {
        return Kind::YamlValue;
    }
    if is_yaml11_int(text) {
        return Kind::Int;
    }
    if is_yaml11_float(text) {
        return Kind::Float;
    }
    if is_yaml11_timestamp(text) {
        return Kind::Timestamp;
    }
    Kind::Str
}

fn strip_sign(text: &str) -> (bool, &str) {
    match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    }
}

fn all(text: &str, pred: impl Fn(u8) -> bool) -> bool {
    !text.is_empty() && text.bytes().all(pred)
}

/// `[-+]?0b[0-1_]+ | [-+]?0[0-7_]+ | [-+]?(?:0|[1-9][0-9_]*) | [-+]?0x[0-9a-fA-F_]+ |
/// [-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+`
fn is_yaml11_int(text: &str) -> bool {
    let (_, body) = strip_sign(text);
    if let Some(bits) = body.strip_prefix("0b") {
        return all(bits, |b| matches!(b, b'0' | b'1' | b'_'));
    }
    if let Some(hex) = body.strip_prefix("0x") {
        return all(hex, |b| b.is_ascii_hexdigit() || b == b'_');
    }
    if body == "0" {
        return true;
    }
    if let Some(octal) = body.strip_prefix('0') {
        return all(octal, |b| matches!(b, b'0'..=b'7' | b'_'));
    }
    let mut parts = body.split(':');
    let first = parts.next().unwrap_or("");
    if !(first
        .as_bytes()
        .first()
        .is_some_and(|b| (b'1'..=b'9').contains(b))
        && all(first, |b| b.is_ascii_digit() || b == b'_'))
    {
        return false;
    }
    parts.all(is_sexagesimal_part)
}

/// `[0-5]?[0-9]`
fn is_sexagesimal_part(part: &str) -> bool {
    match part.as_bytes() {
        [d] => d.is_ascii_digit(),
        [a, d] => (b'0'..=b'5').contains(a) && d.is_ascii_digit(),
        _ => false,
    }
}

/// `[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)? | \.[0-9][0-9_]*(?:[eE][-+][0-9]+)? |
/// [-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]* | [-+]?\.(?:inf|Inf|INF) | \.(?:nan|NaN|NAN)`
fn is_yaml11_float(text: &str) -> bool {
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (_, body) = strip_sign(text);
    if matches!(body, ".inf" | ".Inf" | ".INF") {
        return true;
    }
    // Split off an exponent `[eE][-+][0-9]+`.
    let (mantissa, exponent_ok) = match body.find(['e', 'E']) {
        Some(i) => {
            let exp = &body[i + 1..];
            let ok = matches!(exp.as_bytes().first(), Some(b'-' | b'+'))
                && all(&exp[1..], |b| b.is_ascii_digit());
            (&body[..i], ok)
        }
        None => (body, true),
    };
    if !exponent_ok {
        return false;
    }
    let has_exponent = mantissa.len() != body.len();
    let Some((int_part, frac_part)) = mantissa.split_once('.') else {
        return false;
    };
    if !all(frac_part, |b| b.is_ascii_digit() || b == b'_') && !frac_part.is_empty() {
        return false;
    }
    if int_part.is_empty() {
        // `\.[0-9][0-9_]*` (the unsigned form only).
        return text.as_bytes()[0] == b'.'
            && frac_part.as_bytes().first().is_some_and(u8::is_ascii_digit);
    }
    if int_part.contains(':') {
        if has_exponent {
            return false;
        }
        let mut parts = int_part.split(':');
        let first = parts.next().unwrap_or("");
        return first.as_bytes().first().is_some_and(u8::is_ascii_digit)
            && all(first, |b| b.is_ascii_digit() || b == b'_')
            && parts.all(is_sexagesimal_part);
    }
    int_part.as_bytes()[0].is_ascii_digit() && all(int_part, |b| b.is_ascii_digit() || b == b'_')
}

/// `[0-9]{4}-[0-9]{2}-[0-9]{2}` or the full date-time form.
fn is_yaml11_timestamp(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    if b.len() == 10
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
    {
        return true;
    }
    // Date with 1-2 digit month/day followed by a time.
    let mut i = 0;
    let take_digits = |i: &mut usize, min: usize, max: usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() && *i - start < max {
            *i += 1;
        }
        *i - start >= min
    };
    let expect = |i: &mut usize, c: u8| {
        if b.get(*i) == Some(&c) {
            *i += 1;
            true
        } else {
            false
        }
    };
    if !(take_digits(&mut i, 4, 4)
        && expect(&mut i, b'-')
        && take_digits(&mut i, 1, 2)
        && expect(&mut i, b'-')
        && take_digits(&mut i, 1, 2))
    {
        return false;
    }
    if matches!(b.get(i), Some(b'T' | b't')) {
        i += 1;
    } else {
        let start = i;
        while matches!(b.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    if !(take_digits(&mut i, 1, 2)
        && expect(&mut i, b':')
        && take_digits(&mut i, 2, 2)
        && expect(&mut i, b':')
        && take_digits(&mut i, 2, 2))
    {
        return false;
    }
    if expect(&mut i, b'.') {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    if i == b.len() {
        return true;
    }
    if expect(&mut i, b'Z') {
        return i == b.len();
    }
    if !matches!(b.get(i), Some(b'-' | b'+')) {
        return false;
    }
    i += 1;
    if !take_digits(&mut i, 1, 2) {
        return false;
    }
    if expect(&mut i, b':') && !take_digits(&mut i, 2, 2) {
        return false;
    }
    i == b.len()
}

/// PyYAML's `construct_yaml_int`.
fn construct_int(text: &str) -> Option<i128> {
    let cleaned = text.replace('_', "");
    let (negative, body) = strip_sign(&cleaned);
    let magnitude = if body == "0" {
        0
    } else if let Some(bits) = body.strip_prefix("0b") {
        i128::from_str_radix(bits, 2).ok()?
    } else if let Some(hex) = body.strip_prefix("0x") {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(octal) = body.strip_prefix('0') {
        i128::from_str_radix(octal, 8).ok()?
    } else if body.contains(':') {
        body.split(':').try_fold(0i128, |acc, part| {
            Some(acc.checked_mul(60)? + part.parse::<i128>().ok()?)
        })?
    } else {
        body.parse().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// PyYAML's `construct_yaml_float`.
fn construct_float(text: &str) -> Option<f64> {
    let cleaned = text.replace('_', "").to_ascii_lowercase();
    let (negative, body) = strip_sign(&cleaned);
    let sign = if negative { -1.0 } else { 1.0 };
    if body == ".inf" {
        return Some(sign * f64::INFINITY);
    }
    if body == ".nan" {
        return Some(f64::NAN);
    }
    if body.contains(':') {
        let mut value = 0.0;
        for part in body.split(':') {
            value = value * 60.0 + part.parse::<f64>().ok()?;
        }
        return Some(sign * value);
    }
    body.parse::<f64>().ok().map(|v| sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Value {
        load(text).unwrap().unwrap().value
    }

    #[test]
    fn yaml11_scalars_resolve_like_pyyaml() {
        assert_eq!(value("3.10"), Value::Float(3.1));
        assert_eq!(value("3.9"), Value::Float(3.9));
        assert_eq!(value("'3.10'"), Value::Str("3.10".into()));
        assert_eq!(value("3.10.4"), Value::Str("3.10.4".into()));
        assert_eq!(value("1e5"), Value::Str("1e5".into()));
        assert_eq!(value("1.0e+5"), Value::Float(100_000.0));
        assert_eq!(value("yes"), Value::Bool(true));
        assert_eq!(value("Off"), Value::Bool(false));
        assert_eq!(value("010"), Value::Int(8));
        assert_eq!(value("0x1F"), Value::Int(31));
        assert_eq!(value("1:30"), Value::Int(90));
        assert_eq!(value("1_000"), Value::Int(1000));
        assert_eq!(value("~"), Value::Null);
        assert_eq!(value("2024-01-02"), Value::Timestamp("2024-01-02".into()));
        assert_eq!(
            value("2024-01-02 10:11:12.5"),
            Value::Timestamp("2024-01-02 10:11:12.5".into())
        );
        assert_eq!(value("2.5.1.dev0"), Value::Str("2.5.1.dev0".into()));
        assert_eq!(value("!!str 3.10"), Value::Str("3.10".into()));
        assert!(matches!(value(".nan"), Value::Float(f) if f.is_nan()));
        assert_eq!(value("-.inf"), Value::Float(f64::NEG_INFINITY));
        assert_eq!(value("3."), Value::Float(3.0));
        assert_eq!(value(".5"), Value::Float(0.5));
        assert_eq!(value("+12"), Value::Int(12));
        assert_eq!(value("0.0.0"), Value::Str("0.0.0".into()));
    }

    #[test]
    fn plain_text_is_kept_for_floats() {
        let node = load("python: 3.10").unwrap().unwrap();
        let python = node.get("python").unwrap();
        assert_eq!(python.value, Value::Float(3.1));
        assert_eq!(python.plain_text(), Some("3.10"));
        assert_eq!(&"python: 3.10"[python.span.start..python.span.end], "3.10");
    }

    #[test]
    fn duplicate_keys_keep_first_position_last_value() {
        let node = load("a: 1\nb: 2\na: 3\n").unwrap().unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map.len(), 2);
        assert_eq!(map[0].0.as_str(), Some("a"));
        assert_eq!(map[0].1.value, Value::Int(3));
    }

    #[test]
    fn merge_keys_and_aliases() {
        let node = load("base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n")
            .unwrap()
            .unwrap();
        let derived = node.get("derived").unwrap();
        assert_eq!(derived.get("x").unwrap().value, Value::Int(1));
        assert_eq!(derived.get("y").unwrap().value, Value::Int(3));
    }

    #[test]
    fn empty_document_is_none() {
        assert_eq!(load("").unwrap(), None);
        assert_eq!(load("# just a comment\n").unwrap(), None);
    }

    #[test]
    fn errors_have_positions() {
        let err = load("a: 1\n<<<<<<< HEAD\nb: 2\n").unwrap_err();
        assert!(err.line >= 2, "{err}");
        let err = load("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("single document"), "{err}");
        let err = load("a: !!python/object:os.system x").unwrap_err();
        assert!(err.message.contains("constructor"), "{err}");
    }

    #[test]
    fn duplicate_anchors_are_refused_like_pyyaml() {
        // PyYAML: ComposerError "found duplicate anchor 'x'; first occurrence ...".
        let text = "a: &x 1\nb: &x 2\n";
        let err = load(text).unwrap_err();
        assert_eq!(
            err.message,
            "found duplicate anchor 'x'; first occurrence at line 1, column 4"
        );
        assert_eq!((err.line, err.column), (2, 4));
        assert_eq!(&text[err.span.start..err.span.end], "&x");
        // Distinct anchors, and aliases of one anchor, are fine.
        assert!(load("a: &x 1\nb: &y 2\nc: *x\nd: *x\n").is_ok());
    }

    #[test]
    fn collection_spans_cover_the_whole_collection() {
        let text = "flavors:\n  python_function:\n    loader_module: x\n    data: y\nc: [1, 2]\nd: {a: b}\n";
        let node = load(text).unwrap().unwrap();
        let flavor = node.get("flavors").unwrap().get("python_function").unwrap();
        // A block mapping starts at its first key, not at the `:` after it.
        assert!(text[flavor.span.start..].starts_with("loader_module: x"));
        let list = node.get("c").unwrap();
        assert_eq!(&text[list.span.start..list.span.end], "[1, 2]");
        let map = node.get("d").unwrap();
        assert_eq!(&text[map.span.start..map.span.end], "{a: b}");
    }

    #[test]
    fn scalar_spans_end_on_a_char_boundary() {
        // `"\L\L"` is 6 bytes written and 6 decoded (two U+2028), so value + quotes (8 bytes)
        // would end inside the `é` after the comma.
        let text = "dependencies: [\"\\L\\L\",é]\n";
        let node = load(text).unwrap().unwrap();
        for item in node.get("dependencies").unwrap().as_seq().unwrap() {
            assert!(text.is_char_boundary(item.span.start), "{item:?}");
            assert!(text.is_char_boundary(item.span.end), "{item:?}");
        }
    }

    #[test]
    fn control_characters_are_refused_like_pyyaml() {
        // PyYAML: ReaderError "unacceptable character #x0000: special characters are not allowed".
        let err = load("python: 3.11.7\0\ndependencies: []\n").unwrap_err();
        assert_eq!(
            err.message,
            "unacceptable character #x0000: special characters are not allowed"
        );
        assert_eq!((err.line, err.column), (1, 15));
        assert!(load("a: \u{7f}\n").is_err());
        assert!(load("a: \u{1b}[31m\n").is_err());
        // Tabs, CR, NEL, BOM and non-ASCII text are fine.
        let text = "\u{feff}a:\tb\r\nc: é \u{85}\nd: 😀\n";
        assert!(check_printable(text, &Positions::new(text)).is_ok());
        assert!(load("a: é\r\nb: 😀\n").is_ok());
    }

    #[test]
    fn undefined_aliases_are_named_like_pyyaml() {
        let text = "a: 1\nb: [*nope, 2]\n";
        let err = load(text).unwrap_err();
        assert_eq!(err.message, "found undefined alias 'nope'");
        assert_eq!(&text[err.span.start..err.span.end], "*nope");
    }

    #[test]
    fn a_line_without_colon_is_worded_like_pyyaml() {
        let err = load("a: 1\n<<<<<<< HEAD\nb: 2\n").unwrap_err();
        assert_eq!(err.message, "could not find expected ':'");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "[".repeat(10_000);
        assert!(load(&text).is_err());
    }

    /// Ten aliases of ten aliases of ...: 430 bytes that expand to 10^9 nodes (a `yaml` fuzz
    /// target timeout).
    #[test]
    fn fuzz_regression_billion_laughs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let aliases = vec![format!("*a{}", i - 1); 10].join(", ");
            writeln!(text, "a{i}: &a{i} [{aliases}]").unwrap();
        }
        let err = load(&text).unwrap_err();
        assert!(err.message.contains("expand to more than"), "{err}");
        // A few levels stay fine.
        let node = load("a: &a [x, x]\nb: &b [*a, *a]\nc: [*b, *b]\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            node.get("c")
                .unwrap()
                .to_json()
                .to_string()
                .matches('x')
                .count(),
            8
        );
    }

    /// Each anchor keeps a copy of its subtree, so anchors nested 250 deep (yaml-rust2 allows
    /// 256) over a long list copied it 250 times.
    #[test]
    fn fuzz_regression_nested_anchors_are_bounded() {
        let depth = 250;
        let mut text = String::new();
        for i in 0..depth {
            write!(text, "&a{i} [").unwrap();
        }
        text.push_str(&"x, ".repeat(5_000));
        text.push_str(&"]".repeat(depth));
        let err = load(&text).unwrap_err();
        assert!(err.message.contains("expand to more than"), "{err}");
    }

    /// An alias copies its anchor's subtree; chaining them must not nest deeper than parsed
    /// collections may, or recursive walks (`to_json`, `Drop`) overflow the stack.
    #[test]
    fn fuzz_regression_aliases_nest_no_deeper_than_parsing() {
        let nested = |depth: usize, inner: &str| {
            format!("{}{inner}{}", "[".repeat(depth), "]".repeat(depth))
        };
        // yaml-rust2 stops parsing at 256 levels; each alias here adds 200.
        let text = format!(
            "- &a {}\n- &b {}\n- {}\n",
            nested(200, "x"),
            nested(200, "*a"),
            nested(200, "*b")
        );
        let err = load(&text).unwrap_err();
        assert!(err.message.contains("nesting deeper than"), "{err}");
        let text = format!("- &a {}\n- {}\n", nested(200, "x"), nested(200, "*a"));
        assert!(load(&text).is_ok());
    }

    #[test]
    fn large_mappings_load_in_linear_time() {
        // 200,000 keys took minutes when each key was compared with every earlier one.
        let mut text = String::new();
        for i in 0..200_000 {
            writeln!(text, "k{i}: {i}").unwrap();
        }
        text.push_str("k7: last\n");
        let node = load(&text).unwrap().unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map.len(), 200_000);
        assert_eq!(map[7].1.as_str(), Some("last"));
        // Python dict equality: 1 == 1.0 == True, -0.0 == 0, NaN equals nothing.
        let node = load("{1: a, 1.0: b, true: c, .nan: d, .nan: e, -0.0: f, 0: g, '1': h}")
            .unwrap()
            .unwrap();
        assert_eq!(
            node.python_repr(),
            "{1: 'c', nan: 'd', nan: 'e', -0.0: 'g', '1': 'h'}"
        );
        // Merged keys compare as values: an explicit `1.0` does not hide a merged `1`.
        let node = load("m: &m {1: x, 2: y}\nd: {<<: *m, 1.0: z, 2: w}\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            node.get("d").unwrap().python_repr(),
            "{1: 'x', 1.0: 'z', 2: 'w'}"
        );
    }

    #[test]
    fn python_reprs() {
        assert_eq!(python_float_repr(3.1), "3.1");
        assert_eq!(python_float_repr(3.0), "3.0");
        assert_eq!(python_float_repr(1e20), "1e+20");
        assert_eq!(python_str_repr("it's"), "\"it's\"");
        assert_eq!(python_str_repr("a"), "'a'");
    }
}
