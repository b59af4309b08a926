//! PEP 508 parsing through `pep508_rs`, guarded against the inputs it panics on.

use std::str::FromStr;

/// `pep508_rs::Requirement::from_str`, refusing first the requirements it panics on.
///
/// `pep508_rs` 0.9.2 checks that a package name or extra does not end in `.`, `-` or `_` only at
/// the end of the input; elsewhere (`tensorflow-=2.19.0`, `pkg[extra-]`) it hits its own
/// `expect("... validation should match PEP 508 parsing")`. Found by `fuzz/` (`requirements`).
pub(super) fn parse_pep508(
    text: &str,
) -> Result<pep508_rs::Requirement<pep508_rs::VerbatimUrl>, String> {
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
pub(super) fn parse_marker(marker: &str) -> Result<pep508_rs::MarkerTree, String> {
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
pub(super) fn non_ascii_marker(marker: &str) -> Option<String> {
    marker
        .chars()
        .find(|c| !c.is_ascii() && !c.is_whitespace())
        .map(|c| format!("Unexpected character `{c}` in the environment marker; markers are ASCII"))
}

/// Where the marker of a PEP 508 requirement starts (after its `;`), as `pep508_rs` finds it:
/// the first `;`, except that in `name @ url` a `;` inside the URL (not after whitespace)
/// belongs to the URL.
pub(super) fn marker_start(text: &str) -> Option<usize> {
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
pub(super) fn unterminated_identifier(text: &str) -> Option<String> {
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
pub(super) fn arbitrary_equality(text: &str) -> Option<String> {
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
