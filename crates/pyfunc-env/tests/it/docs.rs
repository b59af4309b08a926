//! The doc check: every ```` ```console ```` block in `README.md` and `docs/**/*.md` is run here
//! and its output compared with what the page shows, or it is marked as not runnable here with a
//! reason. The convention (CONTRIBUTING.md, "Docs that are run"):
//!
//! - a block with no marker is run offline (no PyPI; the local conda channel is the mirror of
//!   `conda-forge` and `defaults`) by [`the_offline_examples_print_what_the_docs_show`];
//! - `<!-- doc-check: pypi -->` on the line before the fence: run with PyPI by
//!   [`pypi_the_examples_that_build_environments_print_what_the_docs_show`];
//! - `<!-- doc-check: skip REASON -->`: not run, for the reason given (a cloud account, a
//!   server that must keep running); [`every_console_block_is_run_or_says_why_not`] refuses an
//!   unmarked reason.
//!
//! The blocks of a page run in one `bash` (so `export` and `$VAR` carry from line to line and from
//! block to block) in a sandbox:
//! `HOME` is a temporary `/home/me`, the working directory is `/home/me/pyfunc-env` with the
//! repository's `fixtures/` and a `model/` (a copy of `fixtures/models/conda-channels`), the
//! cache is the default `~/.cache/pyfunc-env`, and `$CHANNEL` is the local test channel. A page's
//! blocks run in order, so a page can build an environment in one block and list it in the next. Output is stdout and stderr interleaved, as a terminal shows them.
//!
//! Comparison: the sandbox's paths are spelled as the docs spell them (`/home/me/...`); then on
//! both sides times, sizes, dates, keys, hashes, file counts and our commit are replaced with
//! placeholders (so the page can show real numbers), runs of spaces are squeezed (table columns
//! follow the widest cell), and trailing spaces are dropped. In the page, a line that is just `...`
//! stands for any number of lines and `[..]` for any text within a line (as in trycmd).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use regex::Regex;

use crate::common::{TestContext, repo_root};

/// How a block is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Marker {
    Offline,
    Pypi,
    Skip(String),
}

/// One `$ command` of a block and the lines the page shows after it.
#[derive(Debug, Clone)]
struct Example {
    line: usize,
    command: String,
    expected: Vec<String>,
}

#[derive(Debug, Clone)]
struct Block {
    file: String,
    line: usize,
    marker: Marker,
    examples: Vec<Example>,
}

/// The pages the check reads: the README and everything under `docs/` (whose generated CLI
/// reference has no console blocks).
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = fs_err::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                out.push(path);
            }
        }
    }
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    walk(&root.join("docs"), &mut pages);
    pages
}

/// The console blocks of one page, or what is malformed about them.
fn parse_page(file: &str, text: &str) -> Result<Vec<Block>, String> {
    let marker_re = Regex::new(r"^<!--\s*doc-check:\s*(.*?)\s*-->$").unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let fence = lines[index].trim_end();
        if !fence.starts_with("```") {
            index += 1;
            continue;
        }
        let info = fence.trim_start_matches('`').trim();
        let start = index;
        index += 1;
        let body_start = index;
        while index < lines.len() && !lines[index].trim_end().starts_with("```") {
            index += 1;
        }
        let body = &lines[body_start..index.min(lines.len())];
        index += 1;
        let previous = lines[..start]
            .iter()
            .rev()
            .find(|line| !line.trim().is_empty())
            .map(|line| line.trim());
        let marker_text = previous
            .and_then(|line| marker_re.captures(line))
            .map(|c| c[1].to_string());
        if info.split_whitespace().next() != Some("console") {
            if marker_text.is_some() {
                return Err(format!(
                    "{file}:{}: a doc-check marker before a ```{info} block (only console blocks are run)",
                    start + 1
                ));
            }
            continue;
        }
        let marker = match marker_text.as_deref() {
            None => Marker::Offline,
            Some("pypi") => Marker::Pypi,
            Some(rest) if rest.starts_with("skip") => {
                let reason = rest["skip".len()..].trim().trim_start_matches(':').trim();
                if reason.is_empty() {
                    return Err(format!(
                        "{file}:{}: `doc-check: skip` needs a reason (`<!-- doc-check: skip needs an Azure account -->`)",
                        start + 1
                    ));
                }
                Marker::Skip(reason.to_string())
            }
            Some(other) => {
                return Err(format!(
                    "{file}:{}: unknown doc-check marker `{other}` (expected `pypi` or `skip REASON`)",
                    start + 1
                ));
            }
        };
        let mut examples: Vec<Example> = Vec::new();
        let mut continued = false;
        for (offset, line) in body.iter().enumerate() {
            let line_no = body_start + offset + 1;
            if continued {
                let example = examples.last_mut().unwrap();
                example.command.push('\n');
                example.command.push_str(line);
                continued = line.trim_end().ends_with('\\');
            } else if let Some(command) = line.strip_prefix("$ ") {
                examples.push(Example {
                    line: line_no,
                    command: command.to_string(),
                    expected: Vec::new(),
                });
                continued = command.trim_end().ends_with('\\');
            } else if let Some(example) = examples.last_mut() {
                example.expected.push((*line).to_string());
            } else {
                return Err(format!(
                    "{file}:{line_no}: a console block must start with a `$ command` line"
                ));
            }
        }
        if marker != Marker::Offline || !examples.is_empty() {
            blocks.push(Block {
                file: file.to_string(),
                line: start + 1,
                marker,
                examples,
            });
        }
    }
    Ok(blocks)
}

fn all_blocks() -> Vec<Block> {
    let root = repo_root();
    let mut blocks = Vec::new();
    for page in pages() {
        let file = page.strip_prefix(&root).unwrap().display().to_string();
        let text = fs_err::read_to_string(&page).unwrap();
        blocks.extend(parse_page(&file, &text).unwrap_or_else(|error| panic!("{error}")));
    }
    blocks
}

/// The placeholders both sides get: what differs between runs and machines.
fn normalise(text: &str) -> String {
    static FILTERS: &[(&str, &str)] = &[
        (r"\b[0-9a-f]{64}\b", "[HASH]"),
        (r"\bsha256:[0-9a-f]{12}\b", "sha256:[HASH]"),
        (r"\b[0-9a-f]{32}\b", "[KEY]"),
        // Our version's commit and date (`pyfunc-env 0.1.0 (45e136fc4 2026-11-29)`).
        (
            r"\([0-9a-f]{7,40} [0-9]{4}-[0-9]{2}-[0-9]{2}\)",
            "([COMMIT])",
        ),
        (
            r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9:]+)?",
            "[DATE]",
        ),
        (
            r#""(wait|solve|conda_install|pip_install|compile|total|seconds|build_seconds|reused|compiled|size|created|last_used)": [0-9.e-]+"#,
            r#""$1": [N]"#,
        ),
        (r"\b[0-9]+(\.[0-9]+)? ?(ms|s|min|h)\b( ago)?", "[TIME]"),
        (r"\b[0-9]+(\.[0-9]+)? ?(B|KiB|MiB|GiB|kB|MB|GB)\b", "[SIZE]"),
        (r"\b[0-9]+ files\b", "[N] files"),
        // Table columns are as wide as their widest cell.
        (r"(\S)  +", "$1 "),
        (r"[ \t]+$", ""),
    ];
    let mut lines = Vec::new();
    for line in text.lines() {
        let mut line = line.to_string();
        for (pattern, replacement) in FILTERS {
            line = Regex::new(pattern)
                .unwrap()
                .replace_all(&line, *replacement)
                .into_owned();
        }
        lines.push(line);
    }
    lines.join("\n")
}

/// Whether one normalised output line matches one normalised page line (`[..]` is any text).
fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("[..]").collect();
    if parts.len() == 1 {
        return expected == actual;
    }
    let (first, rest) = parts.split_first().unwrap();
    let Some(mut remaining) = actual.strip_prefix(first) else {
        return false;
    };
    let (last, middle) = rest.split_last().unwrap();
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.ends_with(last)
}

/// Whether the output lines match the page's lines (a `...` line is any number of lines).
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => actual
            .split_first()
            .is_some_and(|(line, more)| line_matches(first, line) && lines_match(rest, more)),
    }
}

/// Where a block runs: a `/home/me` of its own, shared by the blocks of one test.
struct Sandbox {
    ctx: TestContext,
    home: PathBuf,
    work: PathBuf,
    bin: PathBuf,
}

impl Sandbox {
    fn new(online: bool) -> Self {
        let ctx = if online {
            TestContext::new().online()
        } else {
            TestContext::new()
        };
        let home = ctx.path().join("me");
        let work = home.join("pyfunc-env");
        let bin = ctx.path().join("bin");
        fs_err::create_dir_all(&work).unwrap();
        fs_err::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(repo_root().join("fixtures"), work.join("fixtures")).unwrap();
        crate::common::copy_dir(
            &crate::common::fixture("conda-channels"),
            &work.join("model"),
        );
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pyfunc-env"), bin.join("pyfunc-env"))
            .unwrap();
        Self {
            ctx,
            home,
            work,
            bin,
        }
    }

    /// Runs the blocks' commands in one shell; returns each command's output.
    fn run(&self, blocks: &[&Block]) -> Vec<String> {
        const SEPARATOR: &str = "<<<doc-check: next command>>>";
        let mut script = String::from("exec 2>&1\ncd \"$DOC_CHECK_WORK\"\n");
        let examples: Vec<&Example> = blocks.iter().flat_map(|block| &block.examples).collect();
        for example in &examples {
            writeln!(script, "printf '\\n%s\\n' '{SEPARATOR}'").unwrap();
            writeln!(script, "{}", example.command).unwrap();
        }
        let channel = env_test::test_channel().unwrap().file_url();
        let mut command = self.ctx.command_for(Path::new("bash"));
        command
            .args(["--noprofile", "--norc", "-c", &script])
            .env_remove("PYFUNC_ENV_CACHE_DIR")
            .env_remove("XDG_CACHE_HOME")
            .env("HOME", &self.home)
            .env("DOC_CHECK_WORK", &self.work)
            .env("CHANNEL", channel.as_str())
            .env(
                "PYFUNC_ENV_MIRRORS",
                format!("conda-forge={channel} defaults={channel}"),
            )
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            );
        let output = command.output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut parts: Vec<String> = text
            .split(&format!("\n{SEPARATOR}\n"))
            .map(str::to_string)
            .collect();
        // Before the first separator: nothing (the shell's own setup).
        let before = parts.remove(0);
        assert!(
            before.is_empty(),
            "the shell printed `{before}` before the first command"
        );
        assert_eq!(parts.len(), examples.len(), "{text}");
        parts
    }

    /// The output as the docs would show it: this sandbox's paths spelled `/home/me/...`.
    fn as_in_docs(&self, output: &str) -> String {
        let mut text = output.to_string();
        let mut paths = vec![(self.home.clone(), "/home/me".to_string())];
        if let Ok(canonical) = self.home.canonicalize() {
            paths.push((canonical, "/home/me".to_string()));
        }
        paths.push((repo_root(), "/home/me/pyfunc-env".to_string()));
        paths.push((self.bin.clone(), "/home/me/.local/bin".to_string()));
        for (path, spelled) in paths {
            text = text.replace(&path.display().to_string(), &spelled);
        }
        text.trim_end_matches('\n').to_string()
    }
}

/// Runs the blocks (of one page, in one shell) and returns one report per command whose output
/// differs from its page.
fn check(sandbox: &Sandbox, blocks: &[&Block]) -> Vec<String> {
    let mut failures = Vec::new();
    let mut outputs = sandbox.run(blocks).into_iter();
    for block in blocks {
        for (example, output) in block.examples.iter().zip(outputs.by_ref()) {
            let actual = sandbox.as_in_docs(&output);
            let expected_lines: Vec<String> = normalise(&example.expected.join("\n"))
                .lines()
                .map(str::to_string)
                .collect();
            let actual_lines: Vec<String> =
                normalise(&actual).lines().map(str::to_string).collect();
            if !lines_match(&expected_lines, &actual_lines) {
                failures.push(format!(
                    "{}:{}: `$ {}`\n--- the page shows:\n{}\n--- the command printed:\n{}\n",
                    block.file,
                    example.line,
                    example.command,
                    example.expected.join("\n"),
                    actual
                ));
            }
        }
    }
    failures
}

fn run_marked(marker: &Marker, online: bool) {
    let blocks = all_blocks();
    let selected: Vec<&Block> = blocks
        .iter()
        .filter(|block| &block.marker == marker)
        .collect();
    assert!(
        !selected.is_empty(),
        "no console block is marked {marker:?}"
    );
    // One sandbox per page: a page's blocks run in order and see each other's environments.
    let mut failures = Vec::new();
    let mut files: Vec<&str> = selected.iter().map(|block| block.file.as_str()).collect();
    files.dedup();
    for file in files {
        let sandbox = Sandbox::new(online);
        let page: Vec<&Block> = selected
            .iter()
            .copied()
            .filter(|block| block.file == file)
            .collect();
        failures.extend(check(&sandbox, &page));
    }
    assert!(
        failures.is_empty(),
        "{} doc example(s) differ from what the binary prints (fix the page with the real \
         output, or the binary):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_console_block_is_run_or_says_why_not() {
    let blocks = all_blocks();
    let run = blocks
        .iter()
        .filter(|block| !matches!(block.marker, Marker::Skip(_)))
        .count();
    assert!(run >= 5, "only {run} console blocks are run: {blocks:#?}");
    for block in &blocks {
        if !matches!(block.marker, Marker::Skip(_)) {
            assert!(
                !block.examples.is_empty(),
                "{}:{}: a console block without commands",
                block.file,
                block.line
            );
        }
        for example in &block.examples {
            // A server left running in the background would outlive the check.
            assert!(
                matches!(block.marker, Marker::Skip(_))
                    || !example
                        .command
                        .trim_end()
                        .split('#')
                        .next()
                        .unwrap()
                        .trim_end()
                        .ends_with('&'),
                "{}:{}: `{}` runs in the background: mark its block `<!-- doc-check: skip REASON -->`",
                block.file,
                example.line,
                example.command
            );
        }
    }
}

#[test]
fn the_markers_and_wildcards_mean_what_contributing_says() {
    let page = "text\n<!-- doc-check: skip needs an Azure account -->\n```console\n$ a\nb\n```\n\
                ```console\n$ c \\\n    --d\ne [..] f\n...\n$ g\n```\n<!-- doc-check: pypi -->\n\
                ```console\n$ h\n```\n```sh\nnot run\n```\n";
    let blocks = parse_page("page.md", page).unwrap();
    assert_eq!(blocks.len(), 3);
    assert_eq!(
        blocks[0].marker,
        Marker::Skip("needs an Azure account".into())
    );
    assert_eq!(blocks[1].marker, Marker::Offline);
    assert_eq!(blocks[1].examples[0].command, "c \\\n    --d");
    assert_eq!(blocks[1].examples[0].expected, ["e [..] f", "..."]);
    assert_eq!(blocks[1].examples[1].command, "g");
    assert_eq!(blocks[2].marker, Marker::Pypi);
    assert!(parse_page("p.md", "<!-- doc-check: skip -->\n```console\n$ a\n```\n").is_err());
    assert!(parse_page("p.md", "<!-- doc-check: maybe -->\n```console\n$ a\n```\n").is_err());
    assert!(parse_page("p.md", "```console\noutput first\n```\n").is_err());

    let lines =
        |text: &str| -> Vec<String> { normalise(text).lines().map(str::to_string).collect() };
    // Numbers that differ between runs are placeholders on both sides.
    assert!(lines_match(
        &lines(
            "Created virtualenv environment in 25.6s: /home/me/.cache/pyfunc-env/envs-v1/486ea171f0ddd81e79be0bea4dc1e301"
        ),
        &lines(
            "Created virtualenv environment in 3.0s: /home/me/.cache/pyfunc-env/envs-v1/0c540e79f50f8ae349cdc5d46162eb5f"
        ),
    ));
    // Words do not: a changed message fails.
    assert!(!lines_match(
        &lines("Created virtualenv environment in 25.6s: /x"),
        &lines("Created conda environment in 25.6s: /x"),
    ));
    assert!(lines_match(&lines("a\n...\nz"), &lines("a\nb\nc\nz")));
    assert!(lines_match(&lines("a\n...\nz"), &lines("a\nz")));
    assert!(!lines_match(&lines("a\n...\nz"), &lines("a\nb")));
    assert!(!lines_match(&lines("a"), &lines("a\nb")));
    assert!(lines_match(&lines("x [..] z"), &lines("x y y z")));
    assert!(!lines_match(&lines("x [..] z"), &lines("x y y")));
}

#[test]
fn the_offline_examples_print_what_the_docs_show() {
    run_marked(&Marker::Offline, false);
}

/// A doc example whose output drifts from the binary's fails the check: the first offline
/// example of `docs/reference/commands.md` with one output line changed.
#[test]
fn a_drifted_example_fails_the_check() {
    let blocks = all_blocks();
    let block = blocks
        .iter()
        .find(|block| {
            block.marker == Marker::Offline
                && block.file == "docs/reference/commands.md"
                && block
                    .examples
                    .iter()
                    .any(|example| !example.expected.is_empty())
        })
        .expect("commands.md has an offline example with output");
    let sandbox = Sandbox::new(false);
    assert_eq!(check(&sandbox, &[block]), Vec::<String>::new());
    let mut drifted = block.clone();
    let example = drifted
        .examples
        .iter_mut()
        .find(|example| !example.expected.is_empty())
        .unwrap();
    example.expected[0].push_str(" (drifted)");
    let failures = check(&sandbox, &[&drifted]);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert!(failures[0].contains("(drifted)"), "{}", failures[0]);
}

#[test]
fn pypi_the_examples_that_build_environments_print_what_the_docs_show() {
    run_marked(&Marker::Pypi, true);
}
