//! `pyfunc-env image`: the model and its environment as an OCI image (see the `env-image`
//! crate for what the image guarantees).

use std::path::PathBuf;

use anyhow::Context;
use env_image::{Output, Reference, RegistrySettings};
use env_solve::{Bytecode, MlflowUse, Purpose};

use crate::cli::ImageArgs;
use crate::commands::cache::human_size;
use crate::commands::create::{build_settings, ensure, env_request, print_created};
use crate::commands::open_model;
use crate::env_vars::EnvVars;
use crate::printer::Printer;
use crate::report::{ExitStatus, UserError};
use crate::settings::Settings;

/// The `created` time of every image when `SOURCE_DATE_EPOCH` is not set: 2000-01-01, as
/// `pack`'s archives; a fixed value keeps the digest reproducible.
const DEFAULT_CREATED: u64 = 946_684_800;

/// The auth files Docker and podman write, in the order podman reads them.
fn auth_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(file) = std::env::var_os(EnvVars::REGISTRY_AUTH_FILE) {
        files.push(PathBuf::from(file));
    }
    if let Some(dir) = std::env::var_os(EnvVars::XDG_RUNTIME_DIR) {
        files.push(PathBuf::from(dir).join("containers/auth.json"));
    }
    let home = std::env::var_os(EnvVars::HOME).map(PathBuf::from);
    if let Some(home) = &home {
        files.push(home.join(".config/containers/auth.json"));
    }
    match std::env::var_os(EnvVars::DOCKER_CONFIG) {
        Some(dir) => files.push(PathBuf::from(dir).join("config.json")),
        None => {
            if let Some(home) = &home {
                files.push(home.join(".docker/config.json"));
            }
        }
    }
    files
}

/// Runs `image`.
pub async fn image(
    args: &ImageArgs,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<ExitStatus> {
    let target = Reference::parse(&args.tag)?;
    let outputs = args
        .output
        .iter()
        .map(|text| {
            Output::parse(text).ok_or_else(|| {
                UserError::new(format!("Invalid `--output` `{text}`"))
                    .with_hint("Write `oci:DIR` (an OCI image layout) or `docker-archive:FILE`")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if settings.offline && args.push {
        anyhow::bail!(
            UserError::new("`--push` needs the network, and `--offline` is set")
                .with_hint("Write the image to a file with `--output` instead")
        );
    }
    let cache = settings.cache();
    cache.init()?;
    let store = env_image::BlobStore::new(&cache.bucket(env_cache::IMAGES_BUCKET)?)?;
    let registry = RegistrySettings {
        insecure: args.insecure_registry.clone(),
        credentials: args
            .username
            .clone()
            .zip(args.password.clone())
            .map(|(username, password)| env_image::Credentials { username, password }),
        auth_files: auth_files(),
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
        opened.model,
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

    let created_at = std::env::var(EnvVars::SOURCE_DATE_EPOCH)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_CREATED);
    let image_request = env_image::ImageRequest {
        prefix: created.prefix.clone(),
        key: created.key.to_string(),
        model_dir: env.root().to_path_buf(),
        model_uri: args.model.model.clone(),
        variables: env.variables(),
        target,
        push: args.push,
        outputs,
        compile: !args.env.no_compile,
        compression: match args.compression {
            crate::cli::LayerCompression::Gzip => env_image::Compression::Gzip,
            crate::cli::LayerCompression::Zstd => env_image::Compression::Zstd,
        },
        staging_dir: cache.bucket(env_cache::TMP_DIR)?,
        registry,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        created: created_at,
    };
    if !args.push && image_request.outputs.is_empty() {
        printer
            .warn("Neither `--push` nor `--output` given: the image is only written to the cache");
    }
    let report = env_image::build(&image_request, &base, &store)
        .await
        .with_context(failed)?;
    for warning in &report.warnings {
        printer.warn(warning);
    }
    let env_layer = report
        .layers
        .iter()
        .find(|l| l.layer.role == env_image::Role::Environment);
    if let Some(layer) = env_layer {
        printer.info(format!(
            "Environment layer {} ({}{})",
            &layer.layer.digest[..19.min(layer.layer.digest.len())],
            human_size(layer.layer.size),
            if report.env_layer_cached {
                ", cached".to_string()
            } else {
                format!(", written in {:.1}s", report.env_layer_seconds)
            }
        ));
    }
    for output in &report.outputs {
        printer.info(format!(
            "{} {}",
            printer.green("Wrote"),
            printer.cyan(output)
        ));
    }
    if let Some(push) = &report.push {
        let uploaded = push.blobs.iter().filter(|b| b.action == "uploaded").count();
        printer.info(format!(
            "{} {} ({} of {} blobs uploaded, {})",
            printer.green("Pushed"),
            printer.cyan(format!("{}@{}", push.reference, report.digest)),
            uploaded,
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
