//! The CLI's settings: [`env_settings::Settings`] (flag, then variable, then configuration
//! file, then default; resolved in `env-settings`) with how this run prints. The CLI only maps
//! its flags to [`env_settings::Options`].

use serde::Serialize;

use crate::cli::{ColorChoice, GlobalArgs, RemoteArgs};
use crate::printer::Verbosity;

pub use env_settings::SettingsError;

/// Resolved settings: the library's, and how this run prints.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// Everything commands read (the cache, the remote cache, mirrors, uv, timeouts).
    #[serde(flatten)]
    pub resolved: env_settings::Settings,
    /// Verbosity.
    #[serde(skip)]
    pub verbosity: Verbosity,
    /// Colours on stderr.
    pub color: bool,
}

impl std::ops::Deref for Settings {
    type Target = env_settings::Settings;

    fn deref(&self) -> &Self::Target {
        &self.resolved
    }
}

impl Settings {
    /// Resolves settings from the global flags and the command's remote-cache flags, the
    /// environment and the configuration file.
    pub fn resolve(args: &GlobalArgs, remote: Option<&RemoteArgs>) -> Result<Self, SettingsError> {
        let options = env_settings::Options {
            cache_dir: args.cache_dir.clone(),
            config_file: args.config_file.clone(),
            offline: args.offline,
            no_progress: args.no_progress,
            remote_cache_sign_key: remote.and_then(|r| r.remote_cache_sign_key.clone()),
            remote_cache_trusted_keys: remote
                .map(|r| r.remote_cache_trusted_key.clone())
                .unwrap_or_default(),
            remote_cache_require_signed: remote.is_some_and(|r| r.remote_cache_require_signed),
        };
        let resolved = env_settings::Settings::resolve(&options, |name| std::env::var(name).ok())?;
        let verbosity = match (args.quiet, args.verbose) {
            (0, 0) => Verbosity::Normal,
            (0, _) => Verbosity::Verbose,
            (1, _) => Verbosity::Quiet,
            _ => Verbosity::Silent,
        };
        let color = env_settings::use_color(
            match args.color {
                ColorChoice::Always => Some(true),
                ColorChoice::Never => Some(false),
                ColorChoice::Auto => None,
            },
            |name| std::env::var_os(name).map(|value| value.to_string_lossy().into_owned()),
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        );
        Ok(Self {
            resolved,
            verbosity,
            color,
        })
    }
}
