//! A multi-model `create` (`create a b`, `create --from FILE --jobs N`): the models are opened
//! here, decided and built by [`env_build::many::ensure_many`], and shown as one summary table
//! (and a `--json` list).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use env_build::many::{ManyReporter, ModelInput, ModelOutcome, OpenFailure, Severity};
use env_build::{EnvRequest, ModelEnvironment, SolveError};
use serde::Serialize;

use crate::cli::CreateArgs;
use crate::commands::open_typed;
use crate::environment::build_settings;
use crate::printer::Printer;
use crate::progress::ProgressReporter;
use crate::report::ExitStatus;
use crate::settings::Settings;

use super::summary::print_summary;

/// One model's row of a multi-model `create` (and its `--json`): the library's row, and its
/// error rendered as the report would show it.
#[derive(Serialize)]
pub(super) struct ModelResult {
    #[serde(flatten)]
    pub(super) row: ModelOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) error: Option<String>,
}

/// Builds many models' environments, `--jobs` at a time, each distinct key once: the models
/// are opened here, everything else is [`env_build::many::ensure_many`]; failures are reported
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
    for model in models {
        let started = std::time::Instant::now();
        let opened = open_typed(model, settings, quiet).await;
        inputs.push(ModelInput {
            given: model.display().to_string(),
            model: opened.map_err(OpenFailure::from),
            started,
        });
    }
    let shown = Arc::new(ShownMany::new(settings, printer));
    let outcome = env_build::many::ensure_many(
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
        printer.warn(warning);
    }
    let worst = outcome.worst();
    let results: Vec<ModelResult> = outcome.models.into_iter().map(ModelResult::from).collect();
    print_summary(&results, args.dry_run, printer);
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&results)?))?;
    }
    Ok(match worst {
        Severity::Ok => ExitStatus::Success,
        Severity::UserError => ExitStatus::Failure,
        Severity::Broken => ExitStatus::Error,
    })
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

    fn build_reporter(&self, env: &ModelEnvironment) -> Arc<dyn env_build::Reporter> {
        Arc::new(ProgressReporter::in_multi(self.multi.clone(), &env.name()))
    }

    fn on_finished(&self, _: &ModelEnvironment, result: &Result<env_build::Created, SolveError>) {
        if result.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        self.overall.inc(1);
        self.overall
            .set_message(format!("{} failed", self.failures.load(Ordering::Relaxed)));
    }
}

impl From<ModelOutcome> for ModelResult {
    fn from(row: ModelOutcome) -> Self {
        let error = row.failure.as_ref().map(|failure| report(failure.error()));
        Self { row, error }
    }
}

/// An error as the report shows it, without colour, its secrets masked.
fn report(error: &(dyn std::error::Error + 'static)) -> String {
    crate::report::render_redacted(
        Printer::new(crate::printer::Verbosity::Normal, false),
        error,
    )
}

/// The row of a single model's failed `create --json`.
pub(super) fn failed(model_dir: String, err: &anyhow::Error, elapsed: Duration) -> ModelResult {
    ModelResult {
        row: ModelOutcome::failed(model_dir, elapsed.as_secs_f64()),
        error: Some(report(err.as_ref())),
    }
}
