//! A multi-model `create` (`create a b`, `create --from FILE --jobs N`): the models are opened
//! here, decided and built by [`env_solve::many::ensure_many`], and shown as one summary table
//! (and a `--json` list).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use env_solve::many::{Failure, ManyReporter, ManyWarning, ModelInput, ModelOutcome};
use env_solve::{EnvRequest, ModelEnvironment, SolveError};
use env_spec::EnvManager;
use serde::Serialize;

use crate::cli::CreateArgs;
use crate::commands::open_model;
use crate::environment::build_settings;
use crate::printer::Printer;
use crate::progress::ProgressReporter;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// One model's outcome in a multi-model `create`.
#[derive(Serialize)]
pub(super) struct ModelResult {
    model_dir: String,
    env_manager: Option<EnvManager>,
    key: Option<String>,
    /// `built`, `cached`, `pulled` (from the remote cache), `built by another process`,
    /// `shared` (same key as a model before it), `failed`; with `--dry-run`, `to build` and
    /// `cached`.
    result: &'static str,
    seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<env_solve::Created>,
    #[serde(skip)]
    status: ExitStatus,
}

/// Builds many models' environments, `--jobs` at a time, each distinct key once: the models
/// are opened here, everything else is [`env_solve::many::ensure_many`]; failures are reported
/// at the end and do not stop the others.
pub(super) async fn create_many(
    models: &[PathBuf],
    request: &EnvRequest,
    args: &CreateArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let quiet = Printer::new(crate::printer::Verbosity::Quiet, printer.color());
    let mut inputs = Vec::with_capacity(models.len());
    // Downloaded models' locks, held until every build is done (`cache prune` keeps them).
    let mut model_locks = Vec::new();
    for model in models {
        let started = std::time::Instant::now();
        let opened = open_model(model, settings, quiet).await.map(|opened| {
            let (model, lock) = opened.into_model();
            model_locks.push(lock);
            model
        });
        inputs.push(ModelInput {
            given: model.display().to_string(),
            model: opened,
            started,
        });
    }
    let shown = Arc::new(ShownMany::new(settings, printer));
    let outcome = env_solve::many::ensure_many(
        inputs,
        request,
        &settings.cache(),
        &build_settings(&args.env, settings),
        usize::from(args.jobs),
        args.dry_run,
        shown.clone(),
    )
    .await?;
    shown.overall.finish_and_clear();
    for warning in &outcome.warnings {
        match warning {
            ManyWarning::RemoteCache(message) => printer.warn(message),
            ManyWarning::Environment { model, message } => {
                printer.warn(format!("`{}`: {message}", model.display()));
            }
        }
    }
    let results: Vec<ModelResult> = outcome.models.into_iter().map(ModelResult::from).collect();
    print_summary(&results, args.dry_run, printer);
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&results)?))?;
    }
    drop(model_locks);
    Ok(ExitStatus::worst(results.iter().map(|r| r.status)))
}

/// What a multi-model `create` shows while it runs: each model's warnings once its
/// environment is decided, and one progress bar over the distinct environments.
struct ShownMany {
    multi: indicatif::MultiProgress,
    overall: indicatif::ProgressBar,
    failures: AtomicUsize,
    printer: Printer,
}

impl ShownMany {
    fn new(settings: &Settings, printer: Printer) -> Self {
        let multi = crate::progress::shared_multi(settings, printer);
        let overall = multi.add(indicatif::ProgressBar::new(0));
        overall.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {pos}/{len} environments, {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("create");
        Self {
            multi,
            overall,
            failures: AtomicUsize::new(0),
            printer,
        }
    }
}

impl ManyReporter for ShownMany {
    fn on_resolved(&self, env: &ModelEnvironment) {
        // What a single-model `create` shows, with the model it is about.
        for warning in &env.resolved.warnings {
            self.printer
                .warn(format!("`{}`: {warning}", env.root().display()));
        }
    }

    fn on_start(&self, total: usize) {
        self.overall.set_length(total as u64);
    }

    fn build_reporter(&self, env: &ModelEnvironment) -> Arc<dyn env_solve::Reporter> {
        Arc::new(ProgressReporter::in_multi(self.multi.clone(), &env.name()))
    }

    fn on_finished(&self, _: &ModelEnvironment, result: &Result<env_solve::Created, SolveError>) {
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.overall.inc(1);
        self.overall
            .set_message(format!("{} failed", self.failures.load(Ordering::Relaxed)));
    }
}

impl From<ModelOutcome<anyhow::Error>> for ModelResult {
    fn from(row: ModelOutcome<anyhow::Error>) -> Self {
        let error = row
            .failure
            .as_deref()
            .map(|failure| -> &(dyn std::error::Error + 'static) {
                match failure {
                    Failure::Open(error) => &**error,
                    Failure::Env(error) => error,
                    Failure::Build(error) => error,
                }
            });
        let plain = Printer::new(crate::printer::Verbosity::Normal, false);
        Self {
            model_dir: row.model_dir,
            env_manager: row.env_manager,
            key: row.key,
            result: row.outcome.as_str(),
            seconds: row.seconds,
            error: error.map(|error| {
                env_solve::redact::redact(crate::report::render_of(plain, error).trim_end())
            }),
            created: row.created,
            status: error.map_or(ExitStatus::Success, crate::report::exit_status_of),
        }
    }
}

/// The row of a single model's failed `create --json`.
pub(super) fn failed(model_dir: String, err: &anyhow::Error, elapsed: Duration) -> ModelResult {
    let plain = Printer::new(crate::printer::Verbosity::Normal, false);
    ModelResult {
        model_dir,
        env_manager: None,
        key: None,
        result: "failed",
        seconds: elapsed.as_secs_f64(),
        error: Some(env_solve::redact::redact(
            crate::report::render(plain, err).trim_end(),
        )),
        created: None,
        status: crate::report::exit_status(err),
    }
}

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
        .map(|r| r.model_dir.chars().count())
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
        let model = tail_chars(&r.model_dir, width);
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
        let result = match r.result {
            "failed" => printer.red(r.result),
            other => printer.green(other),
        };
        let pad = 24usize.saturating_sub(r.result.len());
        let _ = writeln!(
            out,
            "{model:<width$}  {:<32}  {result}{}  {:>8.1}  {error}",
            r.key.as_deref().unwrap_or("-"),
            " ".repeat(pad),
            r.seconds
        );
    }
    let failed = results.iter().filter(|r| r.result == "failed").count();
    let built = results.iter().filter(|r| r.result == "built").count();
    let to_build = results.iter().filter(|r| r.result == "to build").count();
    if dry_run {
        let _ = writeln!(
            out,
            "{} models: {to_build} to build, {} cached or shared, {failed} failed (dry run)",
            results.len(),
            results.len() - to_build - failed,
        );
    } else {
        let _ = writeln!(
            out,
            "{} models: {built} built, {} cached or shared, {failed} failed",
            results.len(),
            results.len() - built - failed,
        );
    }
    out
}

fn print_summary(results: &[ModelResult], dry_run: bool, printer: Printer) {
    printer.error(summary_table(results, dry_run, printer).trim_end());
    for r in results.iter().filter(|r| r.result == "failed") {
        if let Some(error) = &r.error {
            printer.error(format!("\n{}:\n{error}", r.model_dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model_dir: String) -> ModelResult {
        ModelResult {
            model_dir,
            env_manager: Some(EnvManager::Conda),
            key: Some("0".repeat(32)),
            result: "built",
            seconds: 1.0,
            error: None,
            created: None,
            status: ExitStatus::Success,
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
                let expected = tail_chars(&r.model_dir, 60);
                assert!(expected.chars().count() <= 60, "{expected}");
                assert!(model.starts_with(&expected), "{model:?} vs {expected:?}");
                if r.model_dir.chars().count() > 60 {
                    let kept: String = expected.chars().skip(3).collect();
                    assert!(r.model_dir.ends_with(&kept));
                }
            }
        }
    }
}
