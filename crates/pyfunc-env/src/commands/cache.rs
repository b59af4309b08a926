//! `pyfunc-env cache dir | list | prune | clean`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use env_cache::{Cache, EnvState, KNOWN_BUCKETS, LockKind, LockedFile};
use serde::Serialize;

use crate::cli::{CacheCleanArgs, CacheCommand, CachePruneArgs, CacheVerifyArgs};
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// Runs a `cache` subcommand.
pub fn cache(
    command: &CacheCommand,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let cache = Cache::new(&settings.cache_dir);
    match command {
        CacheCommand::Dir => {
            printer.data(format!("{}\n", cache.root().display()))?;
            Ok(ExitStatus::Success)
        }
        CacheCommand::List(args) => list(&cache, args.json, printer),
        CacheCommand::Prune(args) => prune(&cache, args, printer),
        CacheCommand::Clean(args) => clean(&cache, args, settings, printer),
        CacheCommand::Verify(args) => verify(&cache, args, printer),
    }
}

#[derive(Debug, Serialize)]
struct Row {
    key: String,
    state: &'static str,
    env_manager: Option<String>,
    model: Option<String>,
    python: Option<String>,
    size: u64,
    created: Option<u64>,
    last_used: Option<u64>,
    in_use: bool,
}

fn unix(time: Option<SystemTime>) -> Option<u64> {
    time?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

fn rows(cache: &Cache) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for env in cache.envs()? {
        let state = env.state();
        let metadata = env.metadata().ok();
        let in_use = match env.try_lock_exclusive()? {
            Some(lock) => {
                drop(lock);
                false
            }
            None => true,
        };
        let mut seen = HashSet::new();
        rows.push(Row {
            key: env.key().to_string(),
            state: match state {
                EnvState::Complete(_) => "complete",
                EnvState::Incomplete if in_use => "building",
                EnvState::Incomplete => "incomplete",
                EnvState::Missing => "missing",
            },
            env_manager: metadata.as_ref().map(|m| m.env_manager.clone()),
            model: metadata.as_ref().map(|m| m.model.clone()),
            python: metadata.as_ref().and_then(|m| m.python_version.clone()),
            size: env_cache::disk_usage(env.dir(), &mut seen),
            created: metadata.as_ref().map(|m| m.created),
            last_used: unix(env.last_used()),
            in_use,
        });
    }
    rows.retain(|r| r.state != "missing");
    Ok(rows)
}

/// `1.2 GiB`.
#[must_use]
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    #[expect(clippy::cast_precision_loss, reason = "display only")]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_time(seconds: Option<u64>) -> String {
    seconds.map_or_else(
        || "-".to_string(),
        |s| {
            humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs(s))
                .to_string()
                .replace('T', " ")
                .trim_end_matches('Z')
                .to_string()
        },
    )
}

fn list(cache: &Cache, json: bool, printer: Printer) -> anyhow::Result<ExitStatus> {
    let rows = rows(cache)?;
    if json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitStatus::Success);
    }
    let models = env_source::entries(cache);
    let models: Vec<_> = models.iter().filter_map(|m| Some((m, m.info()?))).collect();
    if rows.is_empty() && models.is_empty() {
        printer.info(format!(
            "No environments in {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32}  {:<10}  {:<10}  {:>9}  {:<19}  {:<19}  MODEL",
        "KEY", "STATE", "MANAGER", "SIZE", "CREATED", "LAST USED"
    );
    for row in &rows {
        let _ = writeln!(
            out,
            "{:<32}  {:<10}  {:<10}  {:>9}  {:<19}  {:<19}  {}",
            row.key,
            row.state,
            row.env_manager.as_deref().unwrap_or("-"),
            human_size(row.size),
            human_time(row.created),
            human_time(row.last_used),
            row.model.as_deref().unwrap_or("-"),
        );
    }
    if !models.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<32}  {:>9}  {:<19}  {:<8}  MODEL URI",
            "DOWNLOADED MODEL", "SIZE", "LAST USED", "VERSION"
        );
        for (model, info) in &models {
            let _ = writeln!(
                out,
                "{:<32}  {:>9}  {:<19}  {:<8}  {}",
                model.key(),
                human_size(env_cache::disk_usage(model.dir(), &mut HashSet::new())),
                human_time(unix(model.last_used())),
                info.version.as_deref().unwrap_or("-"),
                info.uri,
            );
        }
    }
    printer.data(out)?;
    Ok(ExitStatus::Success)
}

/// Parses `90s`, `15m`, `12h`, `30d`, `2w`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| {
        UserError::new(format!(
            "Invalid duration `{text}`: expected a number and a unit, e.g. `30d`, `12h`"
        ))
    })?;
    let seconds = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" | "" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(UserError::new(format!(
                "Invalid duration unit `{other}` in `{text}`: use s, m, h, d or w"
            ))
            .into());
        }
    };
    Ok(Duration::from_secs(number * seconds))
}

/// Parses `500MB`, `20GiB`, `1.5G`, `1048576`.
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        UserError::new(format!(
            "Invalid size `{text}`: expected e.g. `500MB` or `20GiB`"
        ))
    })?;
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "tib" => 1024.0_f64.powi(4),
        other => {
            return Err(UserError::new(format!("Invalid size unit `{other}` in `{text}`")).into());
        }
    };
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "sizes are positive and far below 2^64"
    )]
    Ok((number * factor) as u64)
}

/// Staging entries older than this are leftovers of killed processes.
const STAGING_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

fn prune(cache: &Cache, args: &CachePruneArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    if !cache.root().join("CACHEDIR.TAG").is_file() {
        printer.info(format!(
            "No cache at {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    let older_than = args.older_than.as_deref().map(parse_duration).transpose()?;
    let max_size = args.max_size.as_deref().map(parse_size).transpose()?;
    let _shared = cache.lock_shared()?;
    let tmp = cache.bucket(env_cache::TMP_DIR)?;
    let now = SystemTime::now();
    let mut removed = 0;
    let mut freed = 0;
    let mut skipped_in_use = 0;
    let mut remaining: Vec<(SystemTime, u64, env_cache::EnvEntry)> = Vec::new();
    let verb = if args.dry_run {
        "Would remove"
    } else {
        "Removed"
    };
    for env in cache.envs()? {
        let last_used = env.last_used().unwrap_or(SystemTime::UNIX_EPOCH);
        let size = env_cache::disk_usage(env.dir(), &mut HashSet::new());
        let state = env.state();
        let stale =
            older_than.is_some_and(|age| now.duration_since(last_used).unwrap_or_default() > age);
        let leftover = !matches!(state, EnvState::Complete(_));
        if !(stale || leftover) {
            remaining.push((last_used, size, env));
            continue;
        }
        let Some(lock) = env.try_lock_exclusive()? else {
            skipped_in_use += 1;
            continue;
        };
        let why = if leftover { "incomplete" } else { "unused" };
        printer.info(format!(
            "{verb} {why} environment {} ({})",
            env.key(),
            human_size(size)
        ));
        if !args.dry_run {
            env.remove(&tmp)?;
        }
        drop(lock);
        removed += 1;
        freed += size;
    }
    // Downloaded models: unused for longer than `--older-than`, and not in use.
    for model in env_source::entries(cache) {
        let last_used = model.last_used().unwrap_or(SystemTime::UNIX_EPOCH);
        let incomplete = model.dir().exists() && model.info().is_none();
        let stale =
            older_than.is_some_and(|age| now.duration_since(last_used).unwrap_or_default() > age);
        if !(stale || incomplete) {
            continue;
        }
        let Some(lock) = model.try_lock_exclusive()? else {
            skipped_in_use += 1;
            continue;
        };
        let size = env_cache::disk_usage(model.dir(), &mut HashSet::new());
        let what = model
            .info()
            .map_or_else(|| "incomplete".to_string(), |i| format!("`{}`", i.uri));
        printer.info(format!(
            "{verb} downloaded model {what} {} ({})",
            model.key(),
            human_size(size)
        ));
        if !args.dry_run {
            model.remove(&tmp)?;
        }
        drop(lock);
        freed += size;
    }
    if let Some(budget) = max_size {
        remaining.sort_by_key(|(used, _, _)| *used);
        let mut total: u64 = remaining.iter().map(|(_, size, _)| size).sum();
        for (_, size, env) in &remaining {
            if total <= budget {
                break;
            }
            let Some(lock) = env.try_lock_exclusive()? else {
                skipped_in_use += 1;
                continue;
            };
            printer.info(format!(
                "{verb} least recently used environment {} ({})",
                env.key(),
                human_size(*size)
            ));
            if !args.dry_run {
                env.remove(&tmp)?;
            }
            drop(lock);
            total -= size;
            removed += 1;
            freed += size;
        }
    }
    // Buckets of other layout versions, and staging leftovers.
    if let Ok(entries) = fs_err::read_dir(cache.root()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !entry.path().is_dir()
                || name.starts_with('.')
                || KNOWN_BUCKETS.contains(&name.as_str())
            {
                continue;
            }
            printer.info(format!("{verb} unknown cache bucket `{name}`"));
            if !args.dry_run {
                fs_err::remove_dir_all(entry.path())?;
            }
        }
    }
    // Staging left by killed processes (`pack`'s bytecode staging, half-removed environments).
    // Nothing stages for hours, so anything older is abandoned.
    if let Ok(entries) = fs_err::read_dir(&tmp) {
        for entry in entries.flatten() {
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or_default();
            if age < STAGING_MAX_AGE {
                continue;
            }
            let size = env_cache::disk_usage(&entry.path(), &mut HashSet::new());
            printer.info(format!(
                "{verb} abandoned staging `tmp/{}` ({})",
                entry.file_name().to_string_lossy(),
                human_size(size)
            ));
            if !args.dry_run {
                let removed = if entry.path().is_dir() {
                    fs_err::remove_dir_all(entry.path())
                } else {
                    fs_err::remove_file(entry.path())
                };
                if removed.is_ok() {
                    freed += size;
                }
            }
        }
    }
    if !args.dry_run {
        // Bytecode that no environment links to any more.
        freed += env_solve::bytecode::prune_store(&cache.root().join(env_cache::PYC_BUCKET));
    }
    if skipped_in_use > 0 {
        printer.info(format!(
            "Kept {skipped_in_use} environment(s) in use by other processes"
        ));
    }
    printer.info(format!(
        "{} {removed} environment(s), {}",
        if args.dry_run {
            "Would prune"
        } else {
            "Pruned"
        },
        human_size(freed)
    ));
    Ok(ExitStatus::Success)
}

fn clean(
    cache: &Cache,
    args: &CacheCleanArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    if !cache.root().join("CACHEDIR.TAG").is_file() {
        printer.info(format!(
            "No cache at {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    let lock = if args.force {
        None
    } else {
        Some(LockedFile::acquire(
            &cache.lock_path(),
            LockKind::Exclusive,
            Some(settings.lock_timeout),
            Duration::from_secs(30),
            |waited| {
                if waited.is_zero() {
                    printer.info("Cache is in use, waiting (use `--force` to override)");
                } else {
                    printer.info(format!(
                        "Still waiting for the cache lock ({}s)",
                        waited.as_secs()
                    ));
                }
            },
        )?)
    };
    let mut freed = 0;
    let mut seen = HashSet::new();
    for entry in fs_err::read_dir(cache.root())?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "CACHEDIR.TAG" | ".gitignore" | ".lock") {
            continue;
        }
        freed += env_cache::disk_usage(&entry.path(), &mut seen);
        if entry.path().is_dir() {
            fs_err::remove_dir_all(entry.path())
                .with_context(|| format!("Failed to remove `{}`", entry.path().display()))?;
        } else {
            fs_err::remove_file(entry.path())?;
        }
    }
    drop(lock);
    printer.info(format!(
        "Removed everything in {} ({})",
        printer.cyan(cache.root().display()),
        human_size(freed)
    ));
    Ok(ExitStatus::Success)
}

#[derive(Serialize)]
struct VerifyRow {
    key: String,
    model: Option<String>,
    ok: bool,
    #[serde(flatten)]
    report: env_solve::verify::VerifyReport,
}

fn verify(cache: &Cache, args: &CacheVerifyArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    let _shared = cache.lock_shared()?;
    let mut envs = Vec::new();
    if args.keys.is_empty() {
        envs = cache
            .envs()?
            .into_iter()
            .filter(|e| matches!(e.state(), EnvState::Complete(_)))
            .collect();
    } else {
        for key in &args.keys {
            let entry = cache.env(key)?;
            if !matches!(entry.state(), EnvState::Complete(_)) {
                anyhow::bail!(UserError::new(format!(
                    "No complete environment `{key}` in {}",
                    cache.root().display()
                )));
            }
            envs.push(entry);
        }
    }
    let mut rows = Vec::new();
    for env in envs {
        let _lock = env.lock_shared(|_| {})?;
        let report = env_solve::verify::verify(env.dir(), args.hash);
        let model = env
            .metadata()
            .ok()
            .map(|m| format!("{} --env-manager {}", m.model, m.env_manager));
        rows.push(VerifyRow {
            key: env.key().to_string(),
            model,
            ok: report.is_ok(),
            report,
        });
    }
    let damaged = rows.iter().filter(|r| !r.ok).count();
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
    } else {
        let mut out = String::new();
        for row in &rows {
            if row.ok {
                let _ = writeln!(
                    out,
                    "{} {}: {} files ok",
                    printer.green("ok"),
                    row.key,
                    row.report.checked
                );
            } else {
                let _ = writeln!(
                    out,
                    "{} {}: {} missing, {} changed of {} files",
                    printer.red("damaged"),
                    row.key,
                    row.report.missing.len(),
                    row.report.changed.len(),
                    row.report.checked
                );
                for path in row.report.missing.iter().take(10) {
                    let _ = writeln!(out, "    missing {path}");
                }
                for path in row.report.changed.iter().take(10) {
                    let _ = writeln!(out, "    changed {path}");
                }
                if let Some(model) = &row.model {
                    let _ = writeln!(out, "    repair: pyfunc-env create {model} --reinstall");
                }
            }
        }
        printer.data(out)?;
    }
    Ok(if damaged > 0 {
        ExitStatus::Failure
    } else {
        ExitStatus::Success
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30d").unwrap().as_secs(), 30 * 86_400);
        assert_eq!(parse_duration("12h").unwrap().as_secs(), 12 * 3600);
        assert!(parse_duration("soon").is_err());
        assert_eq!(parse_size("500MB").unwrap(), 500_000_000);
        assert_eq!(parse_size("2GiB").unwrap(), 2 * 1024 * 1024 * 1024);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("lots").is_err());
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
