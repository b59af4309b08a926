//! `pyfunc-env image`: the model and its environment as an OCI image (see the `env-image`
//! crate for what the image guarantees).

use anyhow::Context;
use env_build::{Bytecode, MlflowUse, Purpose};
use env_image::{Output, Reference, RegistrySettings};

use crate::cli::ImageArgs;
use crate::commands::open_model;
use crate::environment::{build_settings, ensure, env_request, print_created};
use crate::printer::Printer;
use crate::report::ExitStatus;
use crate::settings::Settings;
use env_cache::units::human_size;

/// Runs `image`.
pub async fn image(
    args: &ImageArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let target = Reference::parse(&args.tag)?;
    let outputs: Vec<Output> = (args.output.iter().map(String::as_str))
        .map(Output::parse)
        .collect::<Result<_, _>>()?;
    env_image::check_offline(args.push, settings.offline)?;
    let credentials = env_image::Credentials::pair(args.username.clone(), args.password.clone())?;
    let cache = settings.cache();
    let store = env_image::BlobStore::open(&cache)?;
    let registry = RegistrySettings {
        insecure: args.insecure_registry.clone(),
        credentials,
        auth_files: settings.registry_auth_files.clone(),
    };
    let failed = || format!("Failed to write the image `{}`", args.tag);
    // Before the build: a bad base or a registry that is down fails in seconds.
    let base = env_image::prepare(
        args.base.as_deref().unwrap_or(env_image::DEFAULT_BASE),
        args.push.then_some(&target),
        &store,
        &registry,
    )
    .await
    .with_context(failed)?;
    let request = env_request(&args.env, settings)?;
    let opened = open_model(&args.model.model, settings, printer).await?;
    let ready = ensure(
        opened,
        &request,
        &build_settings(&args.env, settings),
        &Purpose::Use {
            bytecode: Bytecode::DuringBuild,
            mlflow: Some(MlflowUse::Serve),
        },
        settings,
        printer,
    )
    .await?;
    let (env, created) = (&ready.env, &ready.created);
    print_created(env, created, printer);

    let image_request = env_image::ImageRequest {
        contents: (&ready).into(),
        model_uri: args.model.model.clone(),
        target,
        push: args.push,
        outputs,
        compile: !args.env.no_compile,
        compression: args.compression,
        staging_dir: cache.bucket(env_cache::TMP_DIR)?,
        registry,
        source_date_epoch: settings.source_date_epoch,
    };
    for warning in image_request.warnings() {
        printer.warn(warning);
    }
    let report = env_image::build(&image_request, &base, &store)
        .await
        .with_context(failed)?;
    for warning in &report.warnings {
        printer.warn(warning);
    }
    if let Some(line) = report.environment_layer() {
        printer.info(line);
    }
    for output in &report.outputs {
        printer.info(format!(
            "{} {}",
            printer.green("Wrote"),
            printer.cyan(output)
        ));
    }
    if let Some(push) = &report.push {
        printer.info(format!(
            "{} {} ({} of {} blobs uploaded, {})",
            printer.green("Pushed"),
            printer.cyan(format!("{}@{}", push.reference, report.digest)),
            push.uploaded(),
            push.blobs.len(),
            human_size(push.uploaded_bytes)
        ));
    }
    printer.info(format!(
        "Image {} ({}) in {:.1}s",
        report.digest,
        human_size(report.size),
        report.seconds
    ));
    if args.json {
        printer.data(format!("{}\n", serde_json::to_string_pretty(&report)?))?;
    }
    Ok(ExitStatus::Success)
}
