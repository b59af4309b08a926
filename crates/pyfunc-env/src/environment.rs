//! What `create`, `lock`, `run`, `pack`, `image` and `cache push` share: the flags as the
//! library's [`EnvRequest`] and [`BuildSettings`], the one call [`ensure`], and how its result
//! is shown. Logic lives in `env-build` (precedence and defaults in [`RequestFlags`]); this
//! module only maps flags and renders.

use std::sync::Arc;

use env_build::many::{Outcome, RemoteNote};
use env_build::request::RequestFlags;
use env_build::{BuildSettings, Created, Ensured, EnvRequest, ModelEnvironment, Purpose};

use crate::cli::EnvArgs;
use crate::commands::print_warnings;
use crate::printer::Printer;
use crate::progress::ProgressReporter;
use crate::settings::Settings;

/// The flags that decide the environment, as the library's [`EnvRequest`]
/// ([`RequestFlags::into_request`] decides precedence and defaults).
pub fn env_request(args: &EnvArgs, settings: &Settings) -> anyhow::Result<EnvRequest> {
    Ok(request_flags(args, settings).into_request()?)
}

/// The flags that decide the environment, field by field.
pub fn request_flags<'a>(args: &'a EnvArgs, settings: &'a Settings) -> RequestFlags<'a> {
    RequestFlags {
        manager: args
            .env_manager
            .and_then(env_spec::EnvManagerChoice::manager),
        local: args.env_manager == Some(env_spec::EnvManagerChoice::Local),
        python_version: args.python_version.clone(),
        install_mlflow: args.install_mlflow.clone(),
        mirrors: &args.mirrors,
        configured_mirrors: Some(&settings.mirrors),
        channels: args.channels.clone(),
        override_channels: args.override_channels,
        no_compile: args.no_compile,
        exclude_newer: args.exclude_newer.clone(),
        python_source: args.python_source,
        locked: args.locked.clone(),
        no_lock: args.no_lock,
        uv: args.uv.clone(),
        configured_uv: settings.uv.clone(),
        pip_requirements_override: args.pip_requirements_override.clone(),
        no_compat_constraints: args.no_compat_constraints,
    }
}

/// The settings that change how, not what, is built.
pub fn build_settings(args: &EnvArgs, settings: &Settings) -> BuildSettings {
    BuildSettings {
        offline: settings.offline,
        uv_cache_dir: settings.uv_cache_dir.clone(),
        reinstall: args.reinstall,
        remote: settings
            .remote_cache(
                args.remote.remote_cache.as_ref(),
                args.remote.remote_cache_read_only,
            )
            .map(|remote| Arc::new(remote) as Arc<dyn env_build::remote::RemoteCache>),
    }
}

/// Prints what deciding a model's environment found: the model's warnings and the lock file
/// installed from.
pub fn print_resolved(env: &ModelEnvironment, printer: Printer) {
    print_warnings(printer, &env.resolved.warnings);
    if let Some((path, _)) = &env.lock {
        printer.info(format!("Using lock file {}", printer.cyan(path.display())));
    }
}

/// Decides the environment of an opened model (spec, key, lock) without building it, printing
/// the model's warnings: `create --dry-run` and `cache push`.
pub fn resolve(
    model: env_spec::ModelDir,
    request: &EnvRequest,
    printer: Printer,
) -> anyhow::Result<ModelEnvironment> {
    let env = ModelEnvironment::resolve(model, request)?;
    print_resolved(&env, printer);
    Ok(env)
}

/// What the CLI shows of [`ModelEnvironment::ensure`]: the model's warnings and lock file once
/// the environment is decided, the build's progress, and waits for the environment.
struct Shown {
    multi: indicatif::MultiProgress,
    printer: Printer,
}

impl env_build::EnsureReporter for Shown {
    fn on_resolved(&self, env: &ModelEnvironment) -> Arc<dyn env_build::Reporter> {
        print_resolved(env, self.printer);
        Arc::new(ProgressReporter::printing(
            self.multi.clone(),
            self.printer,
            &env.name(),
        ))
    }

    fn on_wait(&self, message: &str) {
        self.printer.info(message);
    }
}

/// The one library call of `create`, `lock`, `run` and `pack`: decides the opened model's
/// environment under `request`, builds or reuses it for `purpose`, and holds it (and the
/// cache's shared lock) while the result lives; progress and the model's warnings are shown.
pub async fn ensure(
    model: env_source::OpenedModel,
    request: &EnvRequest,
    build: &BuildSettings,
    purpose: &Purpose,
    settings: &Settings,
    printer: Printer,
) -> anyhow::Result<Ensured> {
    let shown = Shown {
        multi: crate::progress::shared_multi(settings, printer),
        printer,
    };
    let ensured = ModelEnvironment::ensure(
        model,
        request,
        &settings.cache(),
        build,
        purpose,
        Arc::new(shown),
    )
    .await?;
    Ok(ensured)
}

/// Where the environment came from ([`Outcome::of`]): `Created conda environment in 1.2s:
/// PREFIX`, `Pulled ...`, `Using cached environment: PREFIX`, ...
pub fn origin_line(env: &ModelEnvironment, created: &Created, printer: Printer) -> String {
    let (prefix, manager) = (printer.cyan(created.prefix.display()), env.manager);
    match Outcome::of(created) {
        Outcome::Cached => format!("Using cached environment: {prefix}"),
        Outcome::BuiltByOther => format!("Using environment built by another process: {prefix}"),
        Outcome::Pulled => format!(
            "{} {manager} environment from the remote cache: {prefix}",
            printer.green("Pulled")
        ),
        _ => format!(
            "{} {manager} environment in {:.1}s: {prefix}",
            printer.green("Created"),
            created.timings.total
        ),
    }
}

/// The build's warnings, then where a remote hit came from or that the build was pushed.
pub fn print_build_notes(created: &Created, build: &BuildSettings, printer: Printer) {
    for warning in &created.warnings {
        printer.warn(warning);
    }
    let note = (build.remote.as_ref()).and_then(|remote| RemoteNote::of(created, remote.url()));
    if let Some(note) = note {
        printer.info(note);
    }
}

/// For a command that uses the environment (`run`, `pack`): the build's warnings, and a line
/// when the environment was built or pulled now (a reused one is not worth a line there).
pub fn print_created(env: &ModelEnvironment, created: &Created, printer: Printer) {
    for warning in &created.warnings {
        printer.warn(warning);
    }
    if Outcome::of(created).made_here() {
        printer.info(origin_line(env, created, printer));
    }
}
