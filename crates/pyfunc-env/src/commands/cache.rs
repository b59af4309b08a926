//! `pyfunc-env cache dir | list | prune | clean`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use env_cache::{Cache, EnvSummary, ListedState};
use env_solve::prune::{PrunePolicy, Reason, Removal};
use env_source::{ModelState, ModelSummary};
use serde::Serialize;

use crate::cli::{
    CacheCleanArgs, CacheCommand, CacheKeygenArgs, CacheListArgs, CachePruneArgs, CachePushArgs,
    CacheVerifyArgs, RemoteArgs,
};
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// Runs a `cache` subcommand.
pub async fn cache(
    command: &CacheCommand,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let cache = settings.cache();
    match command {
        CacheCommand::Dir => {
            printer.data(format!("{}\n", cache.root().display()))?;
            Ok(ExitStatus::Success)
        }
        CacheCommand::List(args) if args.remote => list_remote(args, settings, printer).await,
        CacheCommand::List(args) => list(&cache, args.json, printer),
        CacheCommand::Prune(args) if args.remote => prune_remote(args, settings, printer).await,
        CacheCommand::Prune(args) => prune(&cache, args, printer),
        CacheCommand::Push(args) => push(args, settings, printer).await,
        CacheCommand::Clean(args) => clean(&cache, args, printer),
        CacheCommand::Verify(args) if args.remote => verify_remote(args, settings, printer).await,
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

/// `cache verify --remote KEY...`: each entry's signature and every blob's hash.
async fn verify_remote(
    args: &CacheVerifyArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.remote_args, settings)?;
    let mut checks = Vec::new();
    for key in &args.keys {
        let check = remote.check_entry(key).await?;
        if !args.json {
            let signed = match (&check.verified_by, check.signed_by.as_slice()) {
                (Some(key), _) => format!("signed by `{key}` (verified)"),
                (None, []) => "unsigned".to_string(),
                (None, names) => format!(
                    "signed by {} (not checked: no trusted key configured)",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            printer.info(format!(
                "{} {}: {signed}; {} files ({}) match their sha256",
                printer.green("OK"),
                check.key,
                check.blobs,
                human_size(check.bytes)
            ));
        }
        checks.push(check);
    }
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&checks)?))?;
    }
    Ok(ExitStatus::Success)
}

/// A `cache list --json` row of an environment.
#[derive(Debug, Serialize)]
struct Row<'a> {
    /// `environment` (rows of downloaded models say `model`).
    kind: &'static str,
    key: &'a str,
    state: &'static str,
    env_manager: Option<&'a str>,
    model: Option<&'a str>,
    python: Option<&'a str>,
    size: u64,
    created: Option<u64>,
    last_used: Option<u64>,
    in_use: bool,
}

impl<'a> Row<'a> {
    fn new(env: &'a EnvSummary) -> Self {
        Self {
            kind: "environment",
            key: &env.key,
            state: match env.state {
                ListedState::Complete => "complete",
                ListedState::Building => "building",
                ListedState::Incomplete => "incomplete",
            },
            env_manager: env.env_manager.as_deref(),
            model: env.model.as_deref(),
            python: env.python_version.as_deref(),
            size: env.size,
            created: env.created,
            last_used: unix(env.last_used),
            in_use: env.in_use,
        }
    }
}

fn unix(time: Option<SystemTime>) -> Option<u64> {
    time?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
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

/// A downloaded model in `cache list --json`: the same array as the environments, told apart
/// by `kind`, so existing readers of the environment rows keep working.
#[derive(Debug, Serialize)]
struct ModelRow<'a> {
    kind: &'static str,
    key: &'a str,
    /// `complete`, `downloading` (another process holds it) or `incomplete`.
    state: &'static str,
    /// The URI it was first downloaded for, the artifact location, and the registered name
    /// and version (for `models:/`).
    uri: Option<&'a str>,
    source: Option<&'a str>,
    name: Option<&'a str>,
    version: Option<&'a str>,
    dir: &'a std::path::Path,
    size: u64,
    created: Option<u64>,
    last_used: Option<u64>,
    in_use: bool,
}

impl<'a> ModelRow<'a> {
    fn new(model: &'a ModelSummary) -> Self {
        let info = model.info.as_ref();
        Self {
            kind: "model",
            key: &model.key,
            state: match model.state {
                ModelState::Complete => "complete",
                ModelState::Downloading => "downloading",
                ModelState::Incomplete => "incomplete",
            },
            uri: info.map(|i| i.uri.as_str()),
            source: info.map(|i| i.source.as_str()),
            name: info.and_then(|i| i.name.as_deref()),
            version: info.and_then(|i| i.version.as_deref()),
            dir: &model.model_dir,
            size: model.size,
            created: info.map(|i| i.created),
            last_used: unix(model.last_used),
            in_use: model.in_use,
        }
    }
}

fn list(cache: &Cache, json: bool, printer: Printer) -> anyhow::Result<ExitStatus> {
    let envs = cache.list_envs()?;
    let models = env_source::list_models(cache)?;
    if json {
        let mut all: Vec<serde_json::Value> = envs
            .iter()
            .map(|env| serde_json::to_value(Row::new(env)))
            .collect::<Result<_, _>>()?;
        for model in &models {
            all.push(serde_json::to_value(ModelRow::new(model))?);
        }
        printer.data(format!("{}\n", serde_json::to_string_pretty(&all)?))?;
        return Ok(ExitStatus::Success);
    }
    let models: Vec<_> = models
        .iter()
        .filter_map(|m| Some((m, m.info.as_ref()?)))
        .collect();
    if envs.is_empty() && models.is_empty() {
        printer.info(format!(
            "No environments in {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    let mut out = String::new();
    if !envs.is_empty() {
        let _ = writeln!(
            out,
            "{:<32}  {:<10}  {:<10}  {:>9}  {:<19}  {:<19}  MODEL",
            "KEY", "STATE", "MANAGER", "SIZE", "CREATED", "LAST USED"
        );
    }
    for env in &envs {
        let row = Row::new(env);
        let _ = writeln!(
            out,
            "{:<32}  {:<10}  {:<10}  {:>9}  {:<19}  {:<19}  {}",
            row.key,
            row.state,
            row.env_manager.unwrap_or("-"),
            human_size(row.size),
            human_time(row.created),
            human_time(row.last_used),
            row.model.unwrap_or("-"),
        );
    }
    if !models.is_empty() {
        if !envs.is_empty() {
            out.push('\n');
        }
        let _ = writeln!(
            out,
            "{:<32}  {:>9}  {:<19}  {:<8}  MODEL URI",
            "DOWNLOADED MODEL", "SIZE", "LAST USED", "VERSION"
        );
        for (model, info) in &models {
            let _ = writeln!(
                out,
                "{:<32}  {:>9}  {:<19}  {:<8}  {}",
                model.key,
                human_size(model.size),
                human_time(unix(model.last_used)),
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

fn prune(cache: &Cache, args: &CachePruneArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    if !cache.root().join("CACHEDIR.TAG").is_file() {
        printer.info(format!(
            "No cache at {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
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
    let report = env_solve::prune::prune(cache, &policy, &mut |removal| {
        printer.info(match removal {
            Removal::Environment { key, reason, size } => format!(
                "{verb} {} environment {key} ({})",
                match reason {
                    Reason::Incomplete => "incomplete",
                    Reason::Unused => "unused",
                    Reason::LeastRecentlyUsed => "least recently used",
                },
                human_size(*size)
            ),
            Removal::UnknownBucket { name } => format!("{verb} unknown cache bucket `{name}`"),
            Removal::Archive { name, size } => format!(
                "{verb} packed archive `packs-v1/{name}` of a removed environment ({})",
                human_size(*size)
            ),
            Removal::Staging { name, size } => format!(
                "{verb} abandoned staging `tmp/{name}` ({})",
                human_size(*size)
            ),
        });
    })?;
    if report.skipped_in_use > 0 {
        printer.info(format!(
            "Kept {} environment(s) in use by other processes",
            report.skipped_in_use
        ));
    }
    // Downloaded models (`models-v1/`): unused for longer than `--older-than`, or incomplete.
    let models = env_source::prune_models(cache, policy.older_than, args.dry_run, &mut |model| {
        printer.info(format!(
            "{verb} downloaded model {} {} ({})",
            model
                .uri
                .as_deref()
                .map_or_else(|| "(incomplete)".to_string(), |uri| format!("`{uri}`")),
            model.key,
            human_size(model.size)
        ));
    })?;
    if models.skipped_in_use > 0 {
        printer.info(format!(
            "Kept {} downloaded model(s) in use by other processes",
            models.skipped_in_use
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
        human_size(report.freed + models.freed)
    ));
    Ok(ExitStatus::Success)
}

fn clean(cache: &Cache, args: &CacheCleanArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    if !cache.root().join("CACHEDIR.TAG").is_file() {
        printer.info(format!(
            "No cache at {}",
            printer.cyan(cache.root().display())
        ));
        return Ok(ExitStatus::Success);
    }
    let freed = env_solve::prune::clean(cache, args.force, &mut |waited| {
        if waited.is_zero() {
            printer.info("Cache is in use, waiting (use `--force` to override)");
        } else {
            printer.info(format!(
                "Still waiting for the cache lock ({}s)",
                waited.as_secs()
            ));
        }
    })
    .map_err(|error| match error {
        // The cache's own error: a lock timeout with its holder and hint.
        env_solve::SolveError::Cache(error) => anyhow::Error::new(error),
        error => anyhow::Error::new(error),
    })?;
    printer.info(format!(
        "Removed everything in {} ({})",
        printer.cyan(cache.root().display()),
        human_size(freed)
    ));
    Ok(ExitStatus::Success)
}

/// A `cache verify --json` row.
#[derive(Serialize)]
struct VerifyRow<'a> {
    key: &'a str,
    /// `MODEL --env-manager MANAGER`, what `create` repairs it with.
    model: Option<String>,
    ok: bool,
    /// Not checked: a build of it is running (it is checked once complete).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    building: bool,
    #[serde(flatten)]
    report: &'a env_solve::verify::VerifyReport,
}

fn verify(cache: &Cache, args: &CacheVerifyArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    use env_solve::verify::VerifyError;
    let verdicts =
        env_solve::verify::verify_cache(cache, &args.keys, args.hash).map_err(|error| {
            match error {
                VerifyError::NotComplete { .. } => {
                    anyhow::Error::new(UserError::new(error.to_string()))
                }
                // The cache's own error, whose diagnostic (a lock timeout's help) the report shows.
                VerifyError::Cache(error) => anyhow::Error::new(error),
            }
        })?;
    let model = |verdict: &env_solve::verify::EnvVerdict| {
        verdict
            .built_for
            .as_ref()
            .map(|b| format!("{} --env-manager {}", b.model, b.env_manager))
    };
    if args.json {
        let rows: Vec<VerifyRow> = verdicts
            .iter()
            .map(|verdict| VerifyRow {
                key: &verdict.key,
                model: model(verdict),
                ok: verdict.is_ok(),
                building: verdict.building,
                report: &verdict.report,
            })
            .collect();
        printer.data(format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
    } else {
        let mut out = String::new();
        for verdict in &verdicts {
            let report = &verdict.report;
            if verdict.building {
                let _ = writeln!(
                    out,
                    "{} {}: being built by another process, not checked; verify it again when the build is done",
                    printer.yellow("skipped"),
                    verdict.key
                );
            } else if verdict.is_ok() {
                let _ = writeln!(
                    out,
                    "{} {}: {} files ok",
                    printer.green("ok"),
                    verdict.key,
                    report.checked
                );
            } else {
                let _ = writeln!(
                    out,
                    "{} {}: {} missing, {} changed of {} files",
                    printer.red("damaged"),
                    verdict.key,
                    report.missing.len(),
                    report.changed.len(),
                    report.checked
                );
                for path in report.missing.iter().take(10) {
                    let _ = writeln!(out, "    missing {path}");
                }
                for path in report.changed.iter().take(10) {
                    let _ = writeln!(out, "    changed {path}");
                }
                if let Some(model) = model(verdict) {
                    let _ = writeln!(out, "    repair: pyfunc-env create {model} --reinstall");
                }
            }
        }
        printer.data(out)?;
    }
    Ok(
        if verdicts.iter().all(env_solve::verify::EnvVerdict::is_ok) {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        },
    )
}

/// The remote cache of `args`, or the configured one; an error when there is none.
fn remote_of(args: &RemoteArgs, settings: &Settings) -> anyhow::Result<env_remote::Remote> {
    settings
        .remote_cache(args.remote_cache.as_ref(), args.remote_cache_read_only)
        .ok_or_else(|| {
            let why = if settings.offline {
                " (`--offline` leaves out a remote cache reached over the network)"
            } else {
                ""
            };
            anyhow::Error::new(UserError::new(format!(
                "No remote cache{why}: pass `--remote-cache URL`, or set `PYFUNC_ENV_REMOTE_CACHE` or `remote-cache` in the configuration file"
            )))
        })
}

/// `cache list --remote`.
async fn list_remote(
    args: &CacheListArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.remote_args, settings)?;
    let (entries, stored) = remote.list().await?;
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&entries)?))?;
        return Ok(ExitStatus::Success);
    }
    if entries.is_empty() {
        printer.info(format!("No environments in {}", printer.cyan(remote.url())));
        return Ok(ExitStatus::Success);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<32}  {:<9}  {:<10}  {:>9}  {:<19}  {:<16}  MODEL (where built)",
        "KEY", "PLATFORM", "MANAGER", "SIZE", "PUSHED", "SIGNED BY"
    );
    for entry in &entries {
        let _ = writeln!(
            out,
            "{:<32}  {:<9}  {:<10}  {:>9}  {:<19}  {:<16}  {}",
            entry.key,
            entry.platform,
            entry.env_manager,
            human_size(entry.size),
            human_time(Some(entry.created)),
            signed_by(entry),
            entry.model,
        );
    }
    printer.data(out)?;
    // Environments share packs: the store holds less than the sum of their sizes.
    let unshared: u64 = entries.iter().map(|e| e.size).sum();
    printer.info(format!(
        "{} environment(s) take {} in {} ({} without sharing)",
        entries.len(),
        human_size(stored),
        printer.cyan(remote.url()),
        human_size(unshared)
    ));
    Ok(ExitStatus::Success)
}

/// Who signed a remote entry: the verified key, or the claimed names with `?` when this agent
/// trusts no key (nothing checked), `!` when none verifies; `unsigned`.
fn signed_by(entry: &env_remote::RemoteEntry) -> String {
    match (&entry.verified_by, &entry.untrusted) {
        (Some(key), _) => key.clone(),
        _ if entry.signed_by.is_empty() => "unsigned".to_string(),
        (None, Some(_)) => format!("{} (bad)", entry.signed_by.join(",")),
        (None, None) => format!("{}?", entry.signed_by.join(",")),
    }
}

/// `cache prune --remote --older-than DURATION`.
async fn prune_remote(
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

#[derive(Serialize)]
struct PushRow {
    model_dir: String,
    key: String,
    /// `pushed`, `already there`, `kept another agent's`, `not shareable`, `not built`, `failed`.
    result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// The worse of two outcomes of a list: something broken (2) over bad input (1) over success.
fn worse(a: ExitStatus, b: ExitStatus) -> ExitStatus {
    match (a, b) {
        (ExitStatus::Error, _) | (_, ExitStatus::Error) => ExitStatus::Error,
        (ExitStatus::Failure, _) | (_, ExitStatus::Failure) => ExitStatus::Failure,
        (a, _) => a,
    }
}

/// `cache push MODEL...`: uploads environments of the local cache (backfill).
async fn push(
    args: &CachePushArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let remote = remote_of(&args.env.remote, settings)?;
    if remote.read_only() {
        anyhow::bail!(UserError::new(format!(
            "The remote cache {} is read-only here: `cache push` writes to it",
            remote.url()
        )));
    }
    let request = crate::commands::create::env_request(&args.env, settings)?;
    let cache = settings.cache();
    // Held while the environments are packed, like every command holds it: `cache clean`
    // waits instead of deleting an environment mid-pack (issue 23).
    let _cache_lock = env_solve::hold_cache(&cache).await?;
    let mut rows = Vec::new();
    let mut status = ExitStatus::Success;
    for model in &args.models {
        // A model that cannot be read is reported, and the others are pushed (like `create`).
        let opened = crate::commands::open_model(model, settings, printer)
            .await
            .and_then(|opened| {
                crate::commands::create::resolve(opened.model, &request, printer)
                    .map(|env| (env, opened.source))
            });
        let (env, _source) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let text = env_solve::redact::redact(
                    crate::report::render(
                        Printer::new(crate::printer::Verbosity::Normal, false),
                        &error,
                    )
                    .trim_end(),
                );
                printer.error(format!("{model}: {text}"));
                status = worse(status, crate::report::exit_status(&error));
                rows.push(PushRow {
                    model_dir: model.clone(),
                    key: String::new(),
                    result: "failed",
                    message: Some(text),
                });
                continue;
            }
        };
        let mut row = PushRow {
            model_dir: env.root().display().to_string(),
            key: env.key.to_string(),
            result: "pushed",
            message: None,
        };
        let reporter = crate::progress::ProgressReporter::new(settings, printer, &env.name());
        let outcome = remote.push_model(&cache, &env, &reporter).await;
        env_solve::Reporter::on_finish(&reporter);
        match outcome {
            Ok(env_remote::PushResult::NotBuilt) => {
                row.result = "not built";
                row.message = Some(format!(
                    "not in the local cache; build it first: pyfunc-env create {model}"
                ));
                printer.warn(format!(
                    "{model}: {}",
                    row.message.as_deref().unwrap_or_default()
                ));
                status = worse(status, ExitStatus::Failure);
            }
            Ok(env_remote::PushResult::Pushed { uploaded, stored }) => {
                printer.info(format!(
                    "{} {} ({} uploaded, {} stored) to {}",
                    printer.green("Pushed"),
                    env.key,
                    human_size(uploaded),
                    human_size(stored),
                    printer.cyan(remote.url())
                ));
            }
            Ok(env_remote::PushResult::AlreadyThere) => {
                row.result = "already there";
                printer.info(format!(
                    "{} is in {} already",
                    env.key,
                    printer.cyan(remote.url())
                ));
            }
            Ok(env_remote::PushResult::KeptOther) => {
                row.result = "kept another agent's";
                printer.info(format!(
                    "{} was pushed by another agent meanwhile; kept that one",
                    env.key
                ));
            }
            Ok(env_remote::PushResult::NotShareable { reason }) => {
                row.result = "not shareable";
                printer.warn(format!("{model}: {reason}"));
                row.message = Some(reason);
                status = worse(status, ExitStatus::Failure);
            }
            Err(error) => {
                row.result = "failed";
                let text = env_remote::one_screen(&error);
                printer.error(format!("{model}: {text}"));
                row.message = Some(text);
                status = ExitStatus::Error;
            }
        }
        rows.push(row);
    }
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
    }
    Ok(status)
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
