//! Progress bars on stderr: a spinner naming the current step, one bar per download, a bar
//! for linking. Hidden when stderr is not a terminal and under `-q`, `-v` or `--no-progress`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::printer::{Printer, Verbosity};
use crate::settings::Settings;

/// The progress area on stderr, hidden unless wanted (see the module docs).
#[must_use]
pub fn shared_multi(settings: &Settings, printer: Printer) -> MultiProgress {
    let visible = !settings.no_progress
        && printer.verbosity() == Verbosity::Normal
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let target = if visible {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    MultiProgress::with_draw_target(target)
}

/// Draws [`env_build::Reporter`] events.
pub struct ProgressReporter {
    multi: MultiProgress,
    spinner: ProgressBar,
    downloads: Mutex<HashMap<usize, ProgressBar>>,
    next_id: Mutex<usize>,
    link: Mutex<Option<ProgressBar>>,
    label: String,
    /// Prints lock waits when no progress is drawn: a silent wait looks like a hang.
    printer: Option<Printer>,
}

impl ProgressReporter {
    /// A reporter for building `label`; invisible unless progress is wanted and stderr is a
    /// terminal.
    #[must_use]
    pub fn new(settings: &Settings, printer: Printer, label: &str) -> Self {
        Self::printing(shared_multi(settings, printer), printer, label)
    }

    /// [`Self::new`] drawing into `multi` (from [`shared_multi`]).
    #[must_use]
    pub fn printing(multi: MultiProgress, printer: Printer, label: &str) -> Self {
        let mut reporter = Self::in_multi(multi, label);
        reporter.printer = Some(printer);
        reporter
    }

    /// A reporter drawing into an existing [`MultiProgress`] (one line per concurrent build).
    #[must_use]
    pub fn in_multi(multi: MultiProgress, label: &str) -> Self {
        let spinner = multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("{spinner} {prefix} {msg:.dim}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_prefix(label.to_string());
        spinner.enable_steady_tick(Duration::from_millis(100));
        Self {
            multi,
            spinner,
            downloads: Mutex::new(HashMap::new()),
            next_id: Mutex::new(0),
            link: Mutex::new(None),
            label: label.to_string(),
            printer: None,
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl env_build::Reporter for ProgressReporter {
    fn on_phase(&self, phase: &str) {
        self.spinner.set_prefix(format!("{}: {phase}", self.label));
        self.spinner.set_message("");
    }

    fn on_download_start(&self, name: &str) -> usize {
        let mut next = lock(&self.next_id);
        *next += 1;
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("  {msg:20} [{bar:30}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(name.to_string());
        lock(&self.downloads).insert(*next, bar);
        *next
    }

    fn on_download_progress(&self, id: usize, bytes: u64, total: Option<u64>) {
        if let Some(bar) = lock(&self.downloads).get(&id) {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(bytes);
        }
    }

    fn on_download_complete(&self, id: usize) {
        if let Some(bar) = lock(&self.downloads).remove(&id) {
            bar.finish_and_clear();
        }
    }

    fn on_link_start(&self, total: usize) {
        let bar = self.multi.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("  linking {pos}/{len} packages [{bar:30}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        *lock(&self.link) = Some(bar);
    }

    fn on_link_complete(&self, _name: &str) {
        if let Some(bar) = lock(&self.link).as_ref() {
            bar.inc(1);
            if bar.position() >= bar.length().unwrap_or(0) {
                bar.finish_and_clear();
            }
        }
    }

    fn on_tool_output(&self, line: &str) {
        let line = line.trim();
        if !line.is_empty() {
            self.spinner.set_message(env_build::redact::redact(line));
        }
    }

    fn on_wait(&self, what: &str) {
        self.spinner.set_message(format!("waiting: {what}"));
        if let Some(printer) = self.printer
            && self.multi.is_hidden()
        {
            printer.info(format!("Waiting: {what}"));
        }
    }

    fn on_finish(&self) {
        if let Some(bar) = lock(&self.link).take() {
            bar.finish_and_clear();
        }
        self.spinner.finish_and_clear();
        self.multi.remove(&self.spinner);
    }
}

/// Model downloads draw like package downloads: one bar per model, its files summed.
impl env_source::Reporter for ProgressReporter {
    fn on_download_start(&self, name: &str) -> usize {
        env_build::Reporter::on_download_start(self, name)
    }

    fn on_download_progress(&self, id: usize, bytes: u64, total: Option<u64>) {
        env_build::Reporter::on_download_progress(self, id, bytes, total);
    }

    fn on_download_complete(&self, id: usize) {
        env_build::Reporter::on_download_complete(self, id);
    }

    /// Printed at once, above the progress bars: a retried request can take minutes.
    fn on_warning(&self, message: &str) {
        if let Some(printer) = self.printer {
            self.multi.suspend(|| printer.warn(message));
        }
    }
}
