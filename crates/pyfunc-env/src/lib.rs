//! The `pyfunc-env` command-line interface.
//!
//! This crate parses arguments, resolves [`Settings`](settings::Settings) once, runs one
//! command and renders its error. Only this crate prints; the libraries below it return data
//! and typed errors.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod env_vars;
mod environment;
mod printer;
mod progress;
#[cfg(test)]
mod reference;
mod report;
mod settings;

pub use env_vars::EnvVars;

use crate::cli::{Cli, Command};
use crate::printer::{Printer, Verbosity};
use crate::report::ExitStatus;
use crate::settings::Settings;

/// Runs the CLI with the given arguments (the program name first).
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let err = without_hidden_subcommands(err);
            // clap prints help and version to stdout and usage errors to stderr. A usage
            // error is bad input (1), not "something broke" (2), which build agents retry.
            let _ = err.print();
            return if err.use_stderr() {
                ExitStatus::Failure.into()
            } else {
                ExitStatus::Success.into()
            };
        }
    };
    let settings = match Settings::resolve(&cli.global).and_then(|mut settings| {
        settings.apply_remote_args(cli.command.remote_args())?;
        Ok(settings)
    }) {
        Ok(settings) => settings,
        Err(err) => {
            let printer = Printer::new(Verbosity::Normal, false);
            printer.error(env_solve::redact::redact(
                report::render(printer, &err).trim_end(),
            ));
            return ExitStatus::Failure.into();
        }
    };
    let printer = Printer::new(settings.verbosity, settings.color);
    init_tracing(&cli, &settings);
    if cli.global.show_settings {
        let text = show_settings(&settings);
        return match printer.data(format!("{text}\n")) {
            Ok(()) => ExitStatus::Success.into(),
            Err(_) => ExitStatus::Error.into(),
        };
    }
    // The one async runtime of the process: every library call that does network or process
    // work is async and runs on it. Two workers: builds of `create --jobs 2` run in parallel,
    // and build agents often have two cores.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let err = anyhow::Error::new(err).context("Failed to start the async runtime");
            printer.error(report::render(printer, &err).trim_end());
            return ExitStatus::Error.into();
        }
    };
    let result = runtime.block_on(run(cli.command, &settings, printer));
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            printer.error(env_solve::redact::redact(
                report::render(printer, &err).trim_end(),
            ));
            report::exit_status(&err).into()
        }
    }
}

/// clap's "requires a subcommand" error lists every subcommand, hidden ones included
/// (`Command::all_subcommand_names`); list only those `--help` shows.
fn without_hidden_subcommands(err: clap::Error) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if err.kind() != ErrorKind::MissingSubcommand {
        return err;
    }
    let mut command = <Cli as clap::CommandFactory>::command();
    // Built, as clap's own error had it: the usage line and the `--help` hint need it.
    command.build();
    let visible: Vec<String> = command
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .map(|sub| sub.get_name().to_string())
        .collect();
    let mut replaced = clap::Error::new(ErrorKind::MissingSubcommand).with_cmd(&command);
    for (kind, value) in err.context() {
        let value = match (kind, value) {
            (ContextKind::ValidSubcommand, ContextValue::Strings(_)) => {
                ContextValue::Strings(visible.clone())
            }
            (_, value) => value.clone(),
        };
        replaced.insert(kind, value);
    }
    replaced
}

/// The `--show-settings` document: every string in it (mirror names and URLs, the remote
/// cache, paths) with its secrets masked, as everywhere else we print a URL; a new setting
/// is covered without remembering to.
fn show_settings(settings: &Settings) -> String {
    fn mask(value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        match value {
            Value::String(text) => Value::String(mask_text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(mask).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, value)| (mask_text(&key), mask(value)))
                    .collect(),
            ),
            other => other,
        }
    }
    fn mask_text(text: &str) -> String {
        env_solve::redact::redact(&env_solve::redact::redact_url(text))
    }
    let value = serde_json::to_value(settings).unwrap_or_default();
    serde_json::to_string_pretty(&mask(value)).unwrap_or_default()
}

/// Runs one command on the runtime of [`main`]; commands that only touch local files stay
/// synchronous.
async fn run(
    command: Command,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    match command {
        Command::Deps(args) => commands::deps::deps(&args, settings, printer).await,
        Command::Inspect(args) => commands::inspect::inspect(&args, settings, printer).await,
        Command::Create(args) => commands::create::create(&args, settings, printer).await,
        Command::Lock(args) => commands::create::lock(&args, settings, printer).await,
        Command::Cache(command) => commands::cache::cache(&command, settings, printer).await,
        Command::Run(args) => commands::run::run(&args, settings, printer).await,
        Command::CompileBytecode { prefix } => {
            env_solve::build::compile_in_this_process(&settings.cache(), &prefix)?;
            Ok(report::ExitStatus::Success)
        }
        Command::Check(args) => commands::check::check(&args, settings, printer).await,
        Command::Pack(args) => commands::pack::pack(&args, settings, printer).await,
        Command::Unpack(args) => commands::pack::unpack(&args, printer).await,
        Command::Image(args) => commands::image::image(&args, settings, printer).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "pyfunc-env",
                &mut script,
            );
            printer.data(String::from_utf8_lossy(&script))?;
            Ok(ExitStatus::Success)
        }
    }
}

fn init_tracing(cli: &Cli, settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = if let Ok(filter) = std::env::var(EnvVars::RUST_LOG) {
        EnvFilter::new(filter)
    } else {
        let level = match cli.global.verbose {
            0 => return,
            1 => "debug",
            _ => "trace",
        };
        EnvFilter::new(format!(
            "pyfunc_env={level},env_spec={level},env_cache={level},env_solve={level},env_python={level},env_bytecode={level},env_uv={level},env_run={level},env_remote={level},env_source={level},env_pack={level},env_prefix={level}"
        ))
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingWriter::default)
        .with_ansi(settings.color)
        .without_time()
        .with_target(false)
        .try_init();
}

/// A log writer that masks secrets (URL credentials, registered tokens) line by line, so
/// `-v` output never shows them whatever a library logs.
#[derive(Default)]
struct RedactingWriter {
    buffer: Vec<u8>,
}

impl std::io::Write for RedactingWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buffer.is_empty() {
            let text = env_solve::redact::redact(&String::from_utf8_lossy(&self.buffer));
            self.buffer.clear();
            std::io::stderr().lock().write_all(text.as_bytes())?;
        }
        Ok(())
    }
}

impl Drop for RedactingWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}
