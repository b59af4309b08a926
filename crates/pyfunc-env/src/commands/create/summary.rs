//! The summary table of a multi-model `create`: one row per model (its key, what happened,
//! how long it took, the last cause of a failure), then the counts, then each failure in full.

use env_build::many::{Outcome, Tally};

use super::many::ModelResult;
use crate::printer::Printer;

/// `text` cut to its last `width` characters (not bytes: a model path can be any Unicode),
/// with `...` in front when cut.
fn tail_chars(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_string();
    }
    let keep = width.saturating_sub(3);
    let tail: String = text.chars().skip(count - keep).collect();
    format!("...{tail}")
}

fn summary_table(results: &[ModelResult], dry_run: bool, printer: Printer) -> String {
    use std::fmt::Write as _;
    let width = results
        .iter()
        .map(|r| r.row.model_dir.chars().count())
        .max()
        .unwrap_or(5)
        .clamp(5, 60);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<width$}  {:<32}  {:<24}  {:>8}  ERROR",
        "MODEL", "KEY", "RESULT", "SECONDS"
    );
    for r in results {
        let model = tail_chars(&r.row.model_dir, width);
        let error = r
            .error
            .as_deref()
            .map(|e| {
                e.lines()
                    .rev()
                    .find(|l| l.trim_start().starts_with("Caused by:"))
                    .or_else(|| e.lines().next())
                    .unwrap_or_default()
                    .trim()
                    .trim_start_matches("Caused by:")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        let word = r.row.outcome.as_str();
        let result = match r.row.outcome {
            Outcome::Failed => printer.red(word),
            _ => printer.green(word),
        };
        let pad = 24usize.saturating_sub(word.len());
        let _ = writeln!(
            out,
            "{model:<width$}  {:<32}  {result}{}  {:>8.1}  {error}",
            r.row.key.as_deref().unwrap_or("-"),
            " ".repeat(pad),
            r.row.seconds
        );
    }
    let tally = Tally::of(results.iter().map(|r| &r.row), dry_run);
    let _ = writeln!(out, "{tally}");
    out
}

pub(super) fn print_summary(results: &[ModelResult], dry_run: bool, printer: Printer) {
    printer.error(summary_table(results, dry_run, printer).trim_end());
    for r in results.iter().filter(|r| r.row.outcome == Outcome::Failed) {
        if let Some(error) = &r.error {
            printer.error(format!("\n{}:\n{error}", r.row.model_dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use env_build::many::ModelOutcome;
    use env_spec::EnvManager;

    use super::*;

    fn row(model_dir: String) -> ModelResult {
        ModelResult {
            row: ModelOutcome {
                env_manager: Some(EnvManager::Conda),
                key: Some("0".repeat(32)),
                outcome: Outcome::Built,
                ..ModelOutcome::failed(model_dir, 1.0)
            },
            error: None,
        }
    }

    /// Property: for any model paths (any Unicode, any length), the table renders, and each
    /// model column holds at most 60 characters, ending with the path's last characters.
    #[test]
    fn the_summary_table_takes_any_unicode_path() {
        // Multi-byte characters of every UTF-8 length, a combining mark and a wide one.
        const ALPHABET: &[char] = &[
            'a', '/', ' ', 'é', 'ж', 'ß', '日', '本', '\u{301}', '🦀', '𝔘', '-', '\u{200b}',
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            // xorshift64: deterministic, so a failure reproduces.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let printer = Printer::new(crate::printer::Verbosity::Normal, false);
        for _ in 0..300 {
            let rows: Vec<ModelResult> = (0..=(next() % 4))
                .map(|_| {
                    let length = usize::try_from(next() % 150).unwrap();
                    let path: String = (0..length)
                        .map(|_| ALPHABET[usize::try_from(next()).unwrap() % ALPHABET.len()])
                        .collect();
                    row(path)
                })
                .collect();
            let table = summary_table(&rows, false, printer);
            for (line, r) in table.lines().skip(1).zip(&rows) {
                let model: String = line.chars().take(60).collect();
                let expected = tail_chars(&r.row.model_dir, 60);
                assert!(expected.chars().count() <= 60, "{expected}");
                assert!(model.starts_with(&expected), "{model:?} vs {expected:?}");
                if r.row.model_dir.chars().count() > 60 {
                    let kept: String = expected.chars().skip(3).collect();
                    assert!(r.row.model_dir.ends_with(&kept));
                }
            }
        }
    }
}
