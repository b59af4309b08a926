//! `pyfunc-env pack` and `pyfunc-env unpack`: the model's environment as an archive that runs
//! wherever it is extracted (see the `env-pack` crate for what the archive guarantees).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use env_pack::PackOptions;
use env_pack::policy::PackPolicy;

use crate::cli::{PackArgs, UnpackArgs};
use env_build::{Bytecode, Purpose};
use env_cache::units::human_size;

use crate::commands::open_model;
use crate::environment::{build_settings, ensure, env_request, print_created};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;

/// Runs `pack`.
pub async fn pack(
    args: &PackArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let policy = PackPolicy::new(
        args.format,
        args.output.as_deref(),
        args.target.as_deref(),
        !args.env.no_compile,
        args.keep_tests,
        settings.source_date_epoch,
    )?;
    let request = env_request(&args.env, settings)?;
    let opened = open_model(&args.model.model, settings, printer).await?;
    // Held while packing, so `cache prune` cannot remove the environment (or a downloaded
    // model, for `--with-model`) meanwhile.
    let ready = ensure(
        opened,
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

    if let Some(check) = policy.spark_check(&environment, settings.spark_driver_python.clone()) {
        if let Some(note) = check.note {
            printer.info(note);
        }
        for warning in check.warnings {
            printer.warn(warning);
        }
    }
    let options = policy.options(
        args.with_model.then(|| env.root().to_path_buf()),
        settings.cache().bucket(env_cache::TMP_DIR)?,
    );
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
        "{} Python {} into {} ({}, {}; {} files, {} unpacked) in {:.1}s",
        printer.green("Packed"),
        report.python,
        printer.cyan(output.display()),
        policy.format,
        human_size(report.archive_bytes),
        report.files,
        human_size(report.unpacked_bytes),
        report.timings.total,
    ));
    if let Some(left_out) = report.excluded.summary(options.compile) {
        printer.info(format!("Left out: {left_out}"));
    }
    if let Some(recipe) = policy.spark_recipe(&report) {
        printer.info(recipe);
    }
    if args.json {
        let document = report.document(created.key.as_str(), &created.prefix)?;
        printer.data(format!("{}\n", serde_json::to_string_pretty(&document)?))?;
    }
    Ok(ExitStatus::Success)
}

/// `pack --cached`: the archive in the cache's `packs-v1/`, packed now or reused, and (with
/// `--json`) what a Spark driver needs to ship it: its path, the model directory, the key and
/// the archive's Python.
async fn pack_cached(
    env: &env_build::ModelEnvironment,
    created: &env_build::Created,
    options: &PackOptions,
    settings: &Settings,
    printer: Printer,
    failed: impl Fn() -> String,
) -> anyhow::Result<ExitStatus> {
    let key = created.key.to_string();
    let cached = env_pack::cached::pack_cached(&created.prefix, &key, &settings.cache(), options)
        .await
        .with_context(failed)?;
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
    let document = cached.document(&key, &created.prefix, env.root());
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
    let result = env_pack::unpack_interruptible(&args.archive, &args.dir, cancel).await;
    listener.abort();
    let context = || {
        format!(
            "Failed to unpack `{}` into `{}`",
            args.archive.display(),
            args.dir.display()
        )
    };
    let report = match result {
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
