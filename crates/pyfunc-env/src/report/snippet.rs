//! The source line a diagnostic points at, rustc style, cut to one screen width around its
//! label.

use std::fmt::Write as _;

use miette::Diagnostic;

use super::printable;
use crate::printer::Printer;

/// The source line a diagnostic points at, rustc style.
pub(super) fn snippet(printer: Printer, diagnostic: &dyn Diagnostic, out: &mut String) {
    let (Some(source), Some(mut labels)) = (diagnostic.source_code(), diagnostic.labels()) else {
        return;
    };
    let Some(label) = labels.next() else {
        return;
    };
    // With unlimited context lines, miette hands back the whole document.
    let Ok(whole) = source.read_span(&(0, 0).into(), usize::MAX, usize::MAX) else {
        return;
    };
    let text = String::from_utf8_lossy(whole.data());
    // Nothing to show (a source the error did not keep), or a label past its end: the message
    // names the file and line; a made-up `1 |` line would mislead.
    if text.is_empty() || label.offset() > text.len() {
        return;
    }
    let name = whole.name().unwrap_or("<input>").to_string();
    let offset = floor_char_boundary(&text, label.offset());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line_text = text[line_start..line_end].trim_end_matches('\r');
    let line_number = text[..line_start].matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    let label_end = floor_char_boundary(&text, (offset + label.len()).min(line_end)).max(offset);
    let underline = text[offset..label_end].chars().count().max(1);
    let (line_text, marker_column, underline) =
        window(line_text, column - 1, underline, SNIPPET_CHARS);
    let width = line_number.to_string().len();
    let pad = " ".repeat(width);
    let marker = format!("{}{}", " ".repeat(marker_column), "^".repeat(underline));
    let _ = writeln!(
        out,
        "  {pad}{} {name}:{line_number}:{column}",
        printer.cyan("-->")
    );
    let _ = writeln!(out, "  {pad} {}", printer.cyan("|"));
    let _ = writeln!(
        out,
        "  {} {} {line_text}",
        printer.cyan(line_number),
        printer.cyan("|")
    );
    let label_text = label.label().unwrap_or_default();
    let _ = writeln!(
        out,
        "  {pad} {} {} {label_text}",
        printer.cyan("|"),
        printer.red(marker)
    );
}

/// Widest source line a snippet shows, in characters.
const SNIPPET_CHARS: usize = 100;

/// The largest char boundary at or before `index`.
fn floor_char_boundary(text: &str, index: usize) -> usize {
    let mut index = index.min(text.len());
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// At most `width` characters of `line` around the label at character `column` (0-based),
/// with `…` where it is cut; returns the text, the label's column in it and the underline
/// length, clipped to what is shown.
fn window(line: &str, column: usize, underline: usize, width: usize) -> (String, usize, usize) {
    // A tab is one column here but up to eight on the terminal, which would move the `^` off
    // its place; other control characters must not reach the terminal at all.
    let line: String = line
        .chars()
        .map(|c| if c == '\t' { ' ' } else { printable(c) })
        .collect();
    let total = line.chars().count();
    if total <= width {
        return (line, column, underline);
    }
    // Keep a little context before the label, the rest after it.
    let start = column
        .saturating_sub(width / 4)
        .min(total.saturating_sub(width));
    let end = (start + width).min(total);
    let mut shown: String = line.chars().skip(start).take(end - start).collect();
    let mut marker_column = column - start;
    if start > 0 {
        shown.insert(0, '…');
        marker_column += 1;
    }
    if end < total {
        shown.push('…');
    }
    let underline = underline.min(end.saturating_sub(column)).max(1);
    (shown, marker_column, underline)
}
