//! `pyfunc-env pack` and `pyfunc-env unpack`: the model's environment as an archive that runs
//! wherever it is extracted (see the `env-pack` crate for what the archive guarantees).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use env_pack::{Format, PackOptions};

use crate::cli::{PackArgs, PackFormatArg, UnpackArgs};
use crate::commands::cache::human_size;
use env_solve::{Bytecode, Purpose};

use crate::commands::create::{build_settings, ensure, env_request, print_created};
use crate::commands::open_model;
use crate::env_vars::EnvVars;
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// The mtime of every entry when `SOURCE_DATE_EPOCH` is not set: 2000-01-01T00:00:00Z. Any
/// fixed value makes the archive reproducible; pack-time bytecode does not depend on mtimes.
const DEFAULT_MTIME: u64 = 946_684_800;

/// gzip level 6: the prototype measured level 9 at 0.8 % smaller for 3x the time, level 1 at
/// 14 % larger (notes/spark-and-pack.md).
const COMPRESSION_LEVEL: u32 = 6;

/// `--for spark[=VERSION]`: the Spark version.
fn spark_target(target: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(target) = target else {
        return Ok(None);
    };
    let (name, version) = match target.split_once('=') {
        Some((name, version)) => (name, version.trim()),
        None => (target, env_pack::spark::DEFAULT_SPARK_VERSION),
    };
    if !name.trim().eq_ignore_ascii_case("spark") {
        anyhow::bail!(
            UserError::new(format!("Unknown `--for` target `{name}`"))
                .with_hint("The only target is Spark: `--for spark` or `--for spark=3.5.1`")
        );
    }
    if version.is_empty() || !version.starts_with(|c: char| c.is_ascii_digit()) {
        anyhow::bail!(UserError::new(format!(
            "Invalid Spark version `{version}` in `--for`; write e.g. `--for spark=3.5.1`"
        )));
    }
    Ok(Some(version.to_string()))
}

/// The Spark driver's Python: `PYSPARK_DRIVER_PYTHON`, else `python3` on PATH.
fn driver_python() -> String {
    std::env::var(EnvVars::PYSPARK_DRIVER_PYTHON)
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// Runs `pack`.
pub async fn pack(
    args: &PackArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let spark = spark_target(args.target.as_deref())?;
    let format = match (args.format, &args.output) {
        (Some(PackFormatArg::TarGz), _) | (None, None) => Format::TarGz,
        (Some(PackFormatArg::Tar), _) => Format::Tar,
        (Some(PackFormatArg::Zip), _) => Format::Zip,
        (None, Some(output)) => Format::from_path(output),
    };
    let request = env_request(&args.env, settings)?;
    let (model, _model_lock) = open_model(&args.model.model, settings, printer)
        .await?
        .into_model();
    // Held while packing, so `cache prune` cannot remove the environment meanwhile.
    let ready = ensure(
        model,
        &request,
        &build_settings(&args.env, settings),
        &Purpose::Use {
            bytecode: Bytecode::DuringBuild,
            mlflow: None,
        },
        settings,
        printer,
    )
    .await?;
    let (env, created) = (&ready.env, &ready.created);
    print_created(env, created, printer);
    let failed = || {
        format!(
            "Failed to pack the {} environment of `{}`",
            env.manager, args.model.model
        )
    };
    let environment = env_pack::inspect(&created.prefix).with_context(failed)?;

    if let Some(version) = &spark {
        let driver = env_pack::spark::driver_python_minor(driver_python().as_ref());
        if driver.is_none() {
            printer.info(format!(
                "Could not run `{}` (or `python3`) to compare the driver's Python version with the archive's ({})",
                EnvVars::PYSPARK_DRIVER_PYTHON,
                environment.python_minor
            ));
        }
        let minor = driver.as_deref();
        for warning in env_pack::spark::preflight(&environment, version, minor) {
            printer.warn(warning);
        }
    }

    let mtime = std::env::var(EnvVars::SOURCE_DATE_EPOCH)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MTIME);
    let options = PackOptions {
        format,
        compile: !args.env.no_compile,
        reuse_bytecode: false,
        keep_tests: args.keep_tests,
        exclude_distributions: if spark.is_some() {
            env_pack::spark::PROVIDED_BY_SPARK
                .iter()
                .map(ToString::to_string)
                .collect()
        } else {
            Vec::new()
        },
        model: args.with_model.then(|| env.root().to_path_buf()),
        staging_dir: settings.cache().bucket(env_cache::TMP_DIR)?,
        full_prefix: false,
        mtime,
        compression_level: COMPRESSION_LEVEL,
    };
    let Some(output) = &args.output else {
        return pack_cached(env, created, &options, settings, printer, failed).await;
    };
    printer.info(format!(
        "Packing {} into {}",
        printer.cyan(created.prefix.display()),
        printer.cyan(output.display())
    ));
    let report = env_pack::pack(&created.prefix, output, &options).with_context(failed)?;
    for warning in &report.warnings {
        printer.warn(warning);
    }
    printer.info(format!(
        "{} Python {} into {} ({format}, {}; {} files, {} unpacked) in {:.1}s",
        printer.green("Packed"),
        report.python,
        printer.cyan(output.display()),
        human_size(report.archive_bytes),
        report.files,
        human_size(report.unpacked_bytes),
        report.timings.total,
    ));
    let excluded = &report.excluded;
    let parts: Vec<String> = [
        ("tests", excluded.tests),
        ("headers, static libraries, docs", excluded.dev_files),
        ("IDLE, tkinter, ensurepip", excluded.gui_and_installers),
        ("pyspark, py4j", excluded.distributions),
        (
            if options.compile {
                "timestamp bytecode (replaced)"
            } else {
                "timestamp bytecode"
            },
            excluded.stale_bytecode,
        ),
    ]
    .into_iter()
    .filter(|(_, counted)| counted.files > 0)
    .map(|(what, counted)| format!("{what} {}", human_size(counted.bytes)))
    .collect();
    if !parts.is_empty() {
        printer.info(format!("Left out: {}", parts.join(", ")));
    }
    if spark.is_some() {
        let name = output
            .file_name()
            .map_or_else(|| "env.tar.gz".into(), |n| n.to_string_lossy().into_owned());
        printer.info(env_pack::spark::recipe(
            &name,
            &report.python_minor,
            report.with_model,
        ));
    }
    if args.json {
        let mut document = serde_json::to_value(&report)?;
        document["key"] = serde_json::Value::String(created.key.to_string());
        document["prefix"] = serde_json::Value::String(created.prefix.display().to_string());
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    }
    Ok(ExitStatus::Success)
}

/// `pack --cached`: the archive in the cache's `packs-v1/`, packed now or reused, and (with
/// `--json`) what a Spark driver needs to ship it: its path, the model directory, the key and
/// the archive's Python.
async fn pack_cached(
    env: &env_solve::ModelEnvironment,
    created: &env_solve::Created,
    options: &PackOptions,
    settings: &Settings,
    printer: Printer,
    failed: impl Fn() -> String,
) -> anyhow::Result<ExitStatus> {
    let dir = settings.cache().bucket(env_cache::PACKS_BUCKET)?;
    let key = created.key.to_string();
    let cached = {
        let (prefix, options, dir, key) = (
            created.prefix.clone(),
            options.clone(),
            dir.clone(),
            key.clone(),
        );
        tokio::task::spawn_blocking(move || {
            env_pack::cached::pack_cached(&prefix, &key, &dir, &options)
        })
        .await
        .context("The pack task failed")?
        .with_context(failed)?
    };
    for warning in &cached.summary.warnings {
        printer.warn(warning);
    }
    printer.info(format!(
        "{} Python {} in {} ({})",
        printer.green(if cached.reused { "Reusing" } else { "Packed" }),
        cached.summary.python,
        printer.cyan(cached.path.display()),
        human_size(cached.summary.archive_bytes),
    ));
    let document = serde_json::json!({
        "archive": cached.path,
        "reused": cached.reused,
        "key": key,
        "prefix": created.prefix,
        "model": env.root(),
        "python": cached.summary.python,
        "python_minor": cached.summary.python_minor,
        "archive_bytes": cached.summary.archive_bytes,
        "warnings": cached.summary.warnings,
    });
    printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    Ok(ExitStatus::Success)
}

/// Runs `unpack`. SIGINT stops it at the next read of the archive, removes what it wrote and
/// exits with 130.
pub async fn unpack(args: &UnpackArgs, printer: Printer) -> anyhow::Result<ExitStatus> {
    let started = std::time::Instant::now();
    let cancel = Arc::new(AtomicBool::new(false));
    let listener = tokio::spawn({
        let cancel = cancel.clone();
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    });
    let limits = env_pack::UnpackLimits {
        cancel: Some(cancel.clone()),
        ..env_pack::UnpackLimits::default()
    };
    let (archive, dir) = (args.archive.clone(), args.dir.clone());
    let result =
        tokio::task::spawn_blocking(move || env_pack::unpack_with(&archive, &dir, &limits)).await;
    listener.abort();
    let context = || {
        format!(
            "Failed to unpack `{}` into `{}`",
            args.archive.display(),
            args.dir.display()
        )
    };
    let report = match result.context("The unpack task failed")? {
        Ok(report) => report,
        Err(error @ env_pack::PackError::Interrupted { .. }) => {
            let error = anyhow::Error::new(error).context(context());
            printer.error(crate::report::render(printer, &error).trim_end());
            return Ok(ExitStatus::External(130));
        }
        Err(error) => return Err(anyhow::Error::new(error).context(context())),
    };
    printer.info(format!(
        "{} {} files ({}) into {} in {:.1}s",
        printer.green("Unpacked"),
        report.files,
        human_size(report.bytes),
        printer.cyan(report.dir.display()),
        started.elapsed().as_secs_f64()
    ));
    printer.info(format!(
        "Python {} runs there: sys.prefix is {}",
        report.python,
        printer.cyan(&report.prefix)
    ));
    if report.has_model {
        printer.info(format!(
            "The model is in {}",
            printer.cyan(report.dir.join("model").display())
        ));
    }
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    }
    Ok(ExitStatus::Success)
}
