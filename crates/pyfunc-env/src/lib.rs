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
mod logging;
pub mod printer;
mod progress;
pub mod report;
mod settings;
mod table;

pub use env_vars::EnvVars;

use crate::cli::{Cli, Command};
use crate::printer::{Printer, Verbosity};
use crate::report::ExitStatus;
use crate::settings::Settings;

/// The clap definition of the whole CLI, built (global flags propagated), for generated docs
/// such as `docs/reference/cli.md` (`tests/render/reference.rs`).
#[must_use]
pub fn cli_command() -> clap::Command {
    let mut command = <Cli as clap::CommandFactory>::command();
    command.build();
    command
}

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
    let settings = match cli.global.settings(cli.command.remote_args()) {
        Ok(settings) => settings,
        Err(err) => {
            let printer = Printer::new(Verbosity::Normal, false);
            printer.error(report::render_redacted(printer, &err));
            return ExitStatus::Failure.into();
        }
    };
    let printer = Printer::new(cli.global.verbosity(), settings.color);
    logging::init_tracing(cli.global.verbose, settings.color);
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
            printer.error(report::render_redacted(printer, &*err));
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

/// The `--show-settings` document, its secrets masked ([`env_settings::mask_secrets`]).
fn show_settings(settings: &Settings) -> String {
    let value = serde_json::to_value(settings).unwrap_or_default();
    serde_json::to_string_pretty(&env_settings::mask_secrets(value)).unwrap_or_default()
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
            env_build::build::compile_in_this_process(&settings.cache(), &prefix)?;
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
