//! `pyfunc-env cache dir | list | prune | clean | verify | keygen`; the subcommands that use the
//! remote cache (`--remote`, `push`) are in [`remote`].

mod remote;

use std::fmt::Write as _;

use env_build::prune::PrunePolicy;
use env_build::verdict_row::{VerdictKind, VerdictRow};
use env_cache::Cache;
use env_cache::units::{human_size, human_time, parse_duration, parse_size};
use env_source::listing::CacheListing;

use crate::cli::{CacheCleanArgs, CacheCommand, CacheKeygenArgs, CachePruneArgs, CacheVerifyArgs};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;
use crate::table::{Column, Table};

/// Runs a `cache` subcommand.
pub async fn cache(
    command: &CacheCommand,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let cache = settings.cache();
    let local = matches!(command, CacheCommand::Clean(_))
        || matches!(command, CacheCommand::Prune(args) if !args.remote);
    if local && !cache.exists() {
        printer.info(format!(
            "No cache at {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    match command {
        CacheCommand::Dir => {
            printer.data(format!("{}\n", cache.root().display()))?;
            Ok(ExitStatus::Success)
        }
        CacheCommand::List(args) if args.remote => remote::list(args, settings, printer).await,
        CacheCommand::List(args) => list(&cache, args.json, printer),
        CacheCommand::Prune(args) if args.remote => remote::prune(args, settings, printer).await,
        CacheCommand::Prune(args) => prune(&cache, args, printer),
        CacheCommand::Push(args) => remote::push(args, settings, printer).await,
        CacheCommand::Clean(args) => clean(&cache, args, printer),
        CacheCommand::Verify(args) if args.remote => remote::verify(args, settings, printer).await,
        CacheCommand::Verify(args) => verify(&cache, args, printer),
        CacheCommand::Keygen(args) => keygen(args, printer),
    }
}

/// `cache keygen NAME`: the public key line on stdout, the files on stderr.
fn keygen(args: &CacheKeygenArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    let pair =
        env_remote::sign::keygen(&args.name, &args.output).map_err(env_remote::RemoteError::Key)?;
    printer.info(format!(
        "Wrote the secret key {} (keep it with CI only) and the public key {}",
        printer.cyan(pair.secret.display()),
        printer.cyan(pair.public_file.display())
    ));
    printer.data(format!("{}\n", pair.public))?;
    Ok(ExitStatus::Success)
}

fn list(cache: &Cache, json: bool, printer: Printer) -> anyhow::Result<ExitStatus> {
    let listing = CacheListing::read(cache)?;
    if json {
        printer.data(format!(
            "{}\n",
            serde_json::to_string_pretty(&listing.to_json()?)?
        ))?;
        return Ok(ExitStatus::Success);
    }
    let envs = &listing.envs;
    let models: Vec<_> = listing.downloaded().collect();
    if listing.nothing_to_show() {
        printer.info(format!(
            "No environments in {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    let mut out = String::new();
    if !envs.is_empty() {
        let mut table = Table::new([
            Column::left("KEY", 32),
            Column::left("STATE", 10),
            Column::left("MANAGER", 10),
            Column::right("SIZE", 9),
            Column::left("CREATED", 19),
            Column::left("LAST USED", 19),
            Column::left("MODEL", 0),
        ]);
        for row in envs {
            table.row([
                row.key.clone(),
                row.state.to_string(),
                row.env_manager.clone().unwrap_or_else(|| "-".into()),
                human_size(row.size),
                human_time(row.created),
                human_time(row.last_used),
                row.model.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        table.render(&mut out);
    }
    if !models.is_empty() {
        if !envs.is_empty() {
            out.push('\n');
        }
        let mut table = Table::new([
            Column::left("DOWNLOADED MODEL", 32),
            Column::right("SIZE", 9),
            Column::left("LAST USED", 19),
            Column::left("VERSION", 8),
            Column::left("MODEL URI", 0),
        ]);
        for (model, uri) in &models {
            table.row([
                model.key.clone(),
                human_size(model.size),
                human_time(model.last_used),
                model.version.clone().unwrap_or_else(|| "-".into()),
                (*uri).to_string(),
            ]);
        }
        table.render(&mut out);
    }
    printer.data(out)?;
    Ok(ExitStatus::Success)
}

fn prune(cache: &Cache, args: &CachePruneArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    let policy = PrunePolicy {
        older_than: args.older_than.as_deref().map(parse_duration).transpose()?,
        max_size: args.max_size.as_deref().map(parse_size).transpose()?,
        dry_run: args.dry_run,
    };
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    let report = env_build::prune::prune(cache, &policy, &mut |removal| {
        printer.info(format!("{verb} {removal}"));
    })?;
    if report.skipped_in_use > 0 {
        printer.info(format!(
            "Kept {} environment(s) in use by other processes",
            report.skipped_in_use
        ));
    }
    if report.models_skipped_in_use > 0 {
        printer.info(format!(
            "Kept {} downloaded model(s) in use by other processes",
            report.models_skipped_in_use
        ));
    }
    if !report.unknown_buckets_kept.is_empty() {
        printer.info(format!(
            "Kept unknown cache bucket(s) {} while other processes use the cache (an older pyfunc-env may be running a model from one)",
            report
                .unknown_buckets_kept
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    printer.info(format!(
        "{} {} environment(s), {}",
        if args.dry_run {
            "Would prune"
        } else {
            "Pruned"
        },
        report.removed,
        human_size(report.freed)
    ));
    Ok(ExitStatus::Success)
}

fn clean(cache: &Cache, args: &CacheCleanArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    let freed = env_build::prune::clean(cache, args.force, &mut |waited| {
        if waited.is_zero() {
            printer.info("Cache is in use, waiting (use `--force` to override)");
        } else {
            printer.info(format!(
                "Still waiting for the cache lock ({}s)",
                waited.as_secs()
            ));
        }
    })?;
    printer.info(format!(
        "Removed everything in {} ({})",
        printer.cyan(cache.root().display()),
        human_size(freed)
    ));
    Ok(ExitStatus::Success)
}

fn verify(cache: &Cache, args: &CacheVerifyArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    let verdicts = env_build::verify::verify_cache(cache, &args.keys, args.hash)?;
    if args.json {
        let rows: Vec<_> = verdicts.iter().map(VerdictRow::from).collect();
        printer.data(format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
    } else {
        let mut out = String::new();
        for verdict in &verdicts {
            let kind = verdict.kind();
            let word = match kind {
                VerdictKind::Ok => printer.green(kind),
                VerdictKind::Damaged => printer.red(kind),
                VerdictKind::Skipped => printer.yellow(kind),
            };
            let _ = writeln!(out, "{word} {verdict}");
            for path in verdict.report.missing.iter().take(10) {
                let _ = writeln!(out, "    missing {path}");
            }
            for path in verdict.report.changed.iter().take(10) {
                let _ = writeln!(out, "    changed {path}");
            }
            if let Some(command) = verdict.repair_command() {
                let _ = writeln!(out, "    repair: {command}");
            }
        }
        printer.data(out)?;
    }
    Ok(
        if verdicts.iter().all(env_build::verify::EnvVerdict::is_ok) {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        },
    )
}
