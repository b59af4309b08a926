//! Tests of the error report: snippets, long lines, control characters, hints.
use pyfunc_env::printer::{Printer, Verbosity};
use pyfunc_env::report::{UserError, render};

fn render_plain(error: impl Into<anyhow::Error>) -> String {
    render(Printer::new(Verbosity::Normal, false), &error.into())
}

fn requirement_error(text: &str, start: usize, len: usize) -> env_spec::SpecError {
    env_spec::SpecError::Requirement {
        file: "requirements.txt".into(),
        line: 1,
        src: miette::NamedSource::new("requirements.txt", text.to_string()),
        span: (start, len).into(),
        message: "bad".into(),
        help: "fix it".into(),
    }
}

#[test]
fn a_label_inside_a_multibyte_character_does_not_panic() {
    // Before: `end byte index 23 is not a char boundary` (a YAML scalar span that ended
    // inside the `é` after it).
    let text = "dependencies: [\"\\L\\L\",é]\n";
    let report = render_plain(requirement_error(text, 15, 8));
    assert!(report.contains("--> requirements.txt:1:16"), "{report}");
    assert!(report.contains("é]"), "{report}");
}

#[test]
fn long_lines_are_windowed_and_long_messages_cut() {
    let long = format!("numpy==1.0 {}", "a".repeat(10 * 1024 * 1024));
    let mut error = requirement_error(&long, 0, long.len());
    if let env_spec::SpecError::Requirement { message, .. } = &mut error {
        *message = format!("`{long}` is not a valid requirement");
    }
    let report = render_plain(error);
    assert!(report.len() < 4_000, "{} bytes", report.len());
    assert!(report.contains("more characters)"), "{report}");
    assert!(report.contains("  1 | numpy==1.0 aaaa"), "{report}");
    assert!(report.contains("a…\n"), "{report}");
    assert!(report.contains("hint: fix it"), "{report}");

    // A label far into a long line is shown with the text around it.
    let line = format!("{}X{}", "a".repeat(5000), "b".repeat(5000));
    let report = render_plain(requirement_error(&line, 5000, 1));
    let shown: Vec<&str> = report.lines().filter(|l| l.contains(" | ")).collect();
    assert_eq!(shown.len(), 2, "{report}");
    let char_column = |line: &str, c: char| line.chars().position(|x| x == c).unwrap();
    assert_eq!(
        char_column(shown[1], '^'),
        char_column(shown[0], 'X'),
        "{report}"
    );
    assert!(shown[0].chars().count() < 120, "{report}");
}

#[test]
fn control_characters_from_the_model_do_not_reach_the_terminal() {
    let text = "\tnumpy\u{1b}[2J\n";
    let mut error = requirement_error(text, 1, 9);
    if let env_spec::SpecError::Requirement { message, .. } = &mut error {
        *message = "`numpy\u{1b}[2J` is not a valid requirement".into();
    }
    let report = render_plain(error);
    assert!(!report.contains('\u{1b}'), "{report:?}");
    assert!(report.contains("`numpy\u{fffd}[2J`"), "{report}");
    // The tab is shown as one space, so the `^` stays under the text it marks.
    assert!(report.contains("  1 |  numpy\u{fffd}[2J\n"), "{report}");
    assert!(report.contains("    |  ^^^^^^^^^ this line"), "{report}");
}

#[test]
fn user_errors_can_carry_a_hint() {
    let error = UserError::new("`--env-manager local` builds no environment")
        .with_hint("Use `--env-manager conda`");
    let report = render_plain(anyhow::Error::new(error).context("Failed"));
    assert_eq!(
        report,
        "error: Failed\n  Caused by: `--env-manager local` builds no environment\n\nhint: Use `--env-manager conda`\n"
    );
}

#[test]
fn a_source_the_error_did_not_keep_shows_no_snippet() {
    // Before: `--> requirements.txt:1:1` over an empty line for an error on line 2.
    let report = render_plain(requirement_error("", 0, 0));
    assert!(!report.contains("-->"), "{report}");
    assert!(report.contains("hint: fix it"), "{report}");
}
