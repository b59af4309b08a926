//! The `cache` subcommands that use the remote cache: `list --remote`, `prune --remote`,
//! `verify --remote` and `push`.

use env_cache::units::{human_size, human_time, parse_duration};
use env_remote::PushResult;
use env_remote::push::{PushEvent, Severity, Unopened};

use crate::cli::{CacheListArgs, CachePruneArgs, CachePushArgs, CacheVerifyArgs, RemoteArgs};
use crate::printer::{Printer, Verbosity};
use crate::report::ExitStatus;
use crate::settings::Settings;
use crate::table::{Column, Table};

/// `cache verify --remote KEY...`: each entry's signature and every blob's hash.
pub(super) async fn verify(
    args: &CacheVerifyArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.remote_args, settings)?;
    let mut checks = Vec::new();
    for key in &args.keys {
        let check = remote.check_entry(key).await?;
        if !args.json {
            printer.info(format!("{} {check}", printer.green("OK")));
        }
        checks.push(check);
    }
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&checks)?))?;
    }
    Ok(ExitStatus::Success)
}

/// The remote cache of `args`, or the configured one; an error when there is none.
fn remote_of(args: &RemoteArgs, settings: &Settings) -> anyhow::Result<env_remote::Remote> {
    Ok(settings.require_remote_cache(args.remote_cache.as_ref(), args.remote_cache_read_only)?)
}

/// `cache list --remote`.
pub(super) async fn list(
    args: &CacheListArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.remote_args, settings)?;
    let listing = remote.list().await?;
    let entries = &listing.entries;
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(entries)?))?;
        return Ok(ExitStatus::Success);
    }
    if entries.is_empty() {
        printer.info(format!("No environments in {}", printer.cyan(remote.url())));
        return Ok(ExitStatus::Success);
    }
    let mut table = Table::new([
        Column::left("KEY", 32),
        Column::left("PLATFORM", 9),
        Column::left("MANAGER", 10),
        Column::right("SIZE", 9),
        Column::left("PUSHED", 19),
        Column::left("SIGNED BY", 16),
        Column::left("MODEL (where built)", 0),
    ]);
    for entry in entries {
        table.row([
            entry.key.clone(),
            entry.platform.clone(),
            entry.env_manager.clone(),
            human_size(entry.size),
            human_time(Some(entry.created)),
            entry.signer(),
            entry.model.clone(),
        ]);
    }
    let mut out = String::new();
    table.render(&mut out);
    printer.data(out)?;
    printer.info(format!(
        "{} environment(s) take {} in {} ({} without sharing)",
        entries.len(),
        human_size(listing.stored),
        printer.cyan(remote.url()),
        human_size(listing.unshared())
    ));
    Ok(ExitStatus::Success)
}

/// `cache prune --remote --older-than DURATION`.
pub(super) async fn prune(
    args: &CachePruneArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.remote_args, settings)?;
    let older_than = parse_duration(args.older_than.as_deref().unwrap_or_default())?;
    let report = remote.prune(older_than, args.dry_run).await?;
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    for key in &report.removed {
        printer.info(format!("{verb} {key} from {}", remote.url()));
    }
    printer.info(format!(
        "{verb} {} environment(s) and {} pack(s) ({}) from {}; {} kept",
        report.removed.len(),
        report.packs_removed,
        human_size(report.bytes_freed),
        printer.cyan(remote.url()),
        report.kept
    ));
    Ok(ExitStatus::Success)
}

/// `cache push MODEL...`: uploads environments of the local cache (backfill).
pub(super) async fn push(
    args: &CachePushArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.env.remote, settings)?;
    let request = crate::environment::env_request(&args.env, settings)?;
    let open = |model: &str| {
        let (model, request) = (model.to_string(), &request);
        async move {
            let opened = crate::commands::open_model(&model, settings, printer).await;
            opened
                .and_then(|opened| crate::environment::resolve(opened.model, request, printer))
                .map_err(|error| Unopened {
                    message: crate::report::render_redacted(
                        Printer::new(Verbosity::Normal, false),
                        &*error,
                    ),
                    user_error: crate::report::exit_status(&error) == ExitStatus::Failure,
                })
        }
    };
    let progress = |env: &env_build::ModelEnvironment| {
        crate::progress::ProgressReporter::new(settings, printer, &env.name())
    };
    let url = printer.cyan(remote.url());
    let show = |event: PushEvent<'_>| match event {
        PushEvent::Unopened { model, row } => {
            printer.error(format!(
                "{model}: {}",
                row.message.as_deref().unwrap_or_default()
            ));
        }
        PushEvent::Pushed {
            model,
            env,
            outcome,
            row,
        } => match outcome {
            Ok(PushResult::Pushed { uploaded, stored }) => printer.info(format!(
                "{} {} ({} uploaded, {} stored) to {url}",
                printer.green("Pushed"),
                env.key,
                human_size(*uploaded),
                human_size(*stored),
            )),
            Ok(PushResult::AlreadyThere) => {
                printer.info(format!("{} is in {url} already", env.key));
            }
            Ok(PushResult::KeptOther) => printer.info(format!(
                "{} was pushed by another agent meanwhile; kept that one",
                env.key
            )),
            Ok(_) => printer.warn(format!(
                "{model}: {}",
                row.message.as_deref().unwrap_or_default()
            )),
            Err(_) => printer.error(format!(
                "{model}: {}",
                row.message.as_deref().unwrap_or_default()
            )),
        },
    };
    let report = remote
        .push_models(&settings.cache(), &args.models, open, progress, show)
        .await?;
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&report.rows)?))?;
    }
    Ok(match report.severity {
        Severity::Ok => ExitStatus::Success,
        Severity::Failure => ExitStatus::Failure,
        Severity::Error => ExitStatus::Error,
    })
}
