//! pyfunc-env's settings, resolved once: flag, then environment variable, then configuration
//! file, then default (as uv's `uv-settings` does for uv). The CLI maps its flags to
//! [`Options`] and calls [`Settings::resolve`]; every command then reads [`Settings`], never the
//! environment directly. A bad value is a [`SettingsError`] naming where it came from (the
//! flag, the variable, or the key and the file), so the user knows what to fix.
//!
//! Variables other tools define and pyfunc-env honours (`SOURCE_DATE_EPOCH`,
//! `PYSPARK_DRIVER_PYTHON`, and `REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `DOCKER_CONFIG` for
//! the registry auth files) are read here too, so no command reads the environment itself.
//! They have no flag and no configuration key, and `--show-settings` leaves them out: it shows
//! pyfunc-env's own settings.
#![warn(missing_docs)]

mod config;
mod env_vars;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use config::{ConfigFile, MirrorError, parse_mirrors};
pub use env_vars::EnvVars;

use config::truthy;

/// What the command line gave: each flag (or the variable clap reads for it) as a plain value,
/// unset when not given.
#[derive(Debug, Default, Clone)]
pub struct Options {
    /// `--cache-dir` (`PYFUNC_ENV_CACHE_DIR`).
    pub cache_dir: Option<PathBuf>,
    /// `--config-file` (`PYFUNC_ENV_CONFIG_FILE`): a file that must exist.
    pub config_file: Option<PathBuf>,
    /// `--offline` (`PYFUNC_ENV_OFFLINE`).
    pub offline: bool,
    /// `--no-progress` (`PYFUNC_ENV_NO_PROGRESS`).
    pub no_progress: bool,
    /// `--remote-cache-sign-key`: replaces the variable and the file.
    pub remote_cache_sign_key: Option<PathBuf>,
    /// `--remote-cache-trusted-key` (repeated): replaces the variable and the file when given.
    pub remote_cache_trusted_keys: Vec<env_remote::PublicKey>,
    /// `--remote-cache-require-signed`.
    pub remote_cache_require_signed: bool,
    /// `--color`.
    pub color: ColorChoice,
    /// Whether stderr is a terminal (colours under `--color auto`).
    pub stderr_is_terminal: bool,
}

/// When to use colours (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Where a setting's value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// A command-line flag, e.g. `--remote-cache-sign-key`.
    Flag(&'static str),
    /// An environment variable.
    Variable(&'static str),
    /// A key of the configuration file.
    ConfigKey {
        /// The key, e.g. `remote-cache`.
        key: &'static str,
        /// The file.
        file: PathBuf,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flag(name) | Self::Variable(name) => write!(f, "`{name}`"),
            Self::ConfigKey { key, file } => write!(f, "`{key}` in {}", file.display()),
        }
    }
}

/// A setting that cannot be used; every one is the user's to fix (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// Neither a cache directory nor a home to put the default one in.
    #[error(
        "Cannot find a cache directory: neither `XDG_CACHE_HOME` nor `HOME` is set; pass `--cache-dir`"
    )]
    NoCacheDir,
    /// `--config-file` names a file that is not there.
    #[error("Configuration file `{}` does not exist", path.display())]
    NoConfigFile {
        /// The file.
        path: PathBuf,
    },
    /// The configuration file cannot be read (the error names it).
    #[error(transparent)]
    ReadConfig(std::io::Error),
    /// The configuration file is not valid TOML or has an unknown key.
    #[error("Invalid configuration file `{}`", path.display())]
    ParseConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: toml::de::Error,
    },
    /// The cache directory cannot be made absolute.
    #[error("Invalid cache directory `{}`", path.display())]
    CacheDir {
        /// The directory as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Mirror pairs that are not `CHANNEL=URL`.
    #[error("Invalid {origin}")]
    Mirrors {
        /// Where they came from.
        origin: Origin,
        /// The bad pair.
        #[source]
        source: MirrorError,
    },
    /// A duration that is not a whole number of seconds.
    #[error("Invalid {origin}: `{text}` is not a number of seconds")]
    Seconds {
        /// Where it came from.
        origin: Origin,
        /// The value as given.
        text: String,
        /// Why it does not parse.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A remote cache URL we cannot use.
    #[error("Invalid {origin}")]
    RemoteCache {
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        #[source]
        source: env_remote::RemoteError,
    },
    /// A signing or trusted key that cannot be read or parsed.
    #[error("Invalid {origin}")]
    Key {
        /// Where it came from.
        origin: Origin,
        /// What is wrong with it.
        #[source]
        source: env_remote::KeyError,
    },
    /// Signatures are required but no key is trusted, so nothing could ever be pulled.
    #[error(
        "`--remote-cache-require-signed` needs a trusted key: pass `--remote-cache-trusted-key NAME:BASE64` (the line of `NAME.public` that `pyfunc-env cache keygen NAME` wrote), or set `PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS`"
    )]
    RequireSignedWithoutKeys,
}

/// Resolved settings.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    /// The cache root.
    pub cache_dir: PathBuf,
    /// No network access.
    pub offline: bool,
    /// No progress bars.
    pub no_progress: bool,
    /// The `uv` binary to use, if configured.
    pub uv: Option<PathBuf>,
    /// uv's cache directory, if not the one inside the cache root.
    pub uv_cache_dir: Option<PathBuf>,
    /// Channel mirrors: channel name or URL prefix -> replacement URL.
    pub mirrors: BTreeMap<String, String>,
    /// How long to wait for locks held by other processes.
    #[serde(with = "seconds")]
    pub lock_timeout: Duration,
    /// The remote cache (`PYFUNC_ENV_REMOTE_CACHE`, `remote-cache`), checked; `--remote-cache`
    /// on a command replaces it.
    pub remote_cache: Option<String>,
    /// Pull from the remote cache, never push.
    pub remote_cache_read_only: bool,
    /// How long each remote-cache request may take.
    #[serde(with = "seconds")]
    pub remote_cache_timeout: Duration,
    /// The secret key file pushes sign with.
    pub remote_cache_sign_key: Option<PathBuf>,
    /// The public keys pulls trust (`NAME:BASE64`).
    #[serde(serialize_with = "display_all")]
    pub remote_cache_trusted_keys: Vec<env_remote::PublicKey>,
    /// With trusted keys, an unsigned entry is an error rather than a miss.
    pub remote_cache_require_signed: bool,
    /// The signing key, read from `remote_cache_sign_key` (never printed).
    #[serde(skip)]
    pub remote_cache_signer: Option<env_remote::SecretKey>,
    /// Where the configuration came from, if a file was read.
    pub config_file: Option<PathBuf>,
    /// Colours on stderr ([`use_color`]).
    pub color: bool,
    /// `SOURCE_DATE_EPOCH`: the time `pack` gives every archive entry and `image` its config
    /// (<https://reproducible-builds.org/specs/source-date-epoch/>); `None` when unset or not a
    /// whole number of seconds (each then uses its own fixed default, as before).
    #[serde(skip)]
    pub source_date_epoch: Option<u64>,
    /// `PYSPARK_DRIVER_PYTHON`: the Spark driver's Python, which `pack --for spark` compares
    /// with the archive's.
    #[serde(skip)]
    pub spark_driver_python: Option<String>,
    /// The registry auth files `image` reads, in the order podman reads them, then Docker's
    /// (from `REGISTRY_AUTH_FILE`, `XDG_RUNTIME_DIR`, `HOME`, `DOCKER_CONFIG`:
    /// [`env_image::auth_files::AuthFileVars`]).
    #[serde(skip)]
    pub registry_auth_files: Vec<PathBuf>,
}

mod seconds {
    pub fn serialize<S: serde::Serializer>(
        value: &std::time::Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_secs())
    }
}

fn display_all<S: serde::Serializer>(
    keys: &[env_remote::PublicKey],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(keys.iter().map(ToString::to_string))
}

/// The default cache root: `$XDG_CACHE_HOME/pyfunc-env`, else `~/.cache/pyfunc-env`.
fn default_cache_dir(var: &dyn Fn(&str) -> Option<String>) -> Result<PathBuf, SettingsError> {
    if let Some(base) = var(EnvVars::XDG_CACHE_HOME) {
        return Ok(PathBuf::from(base).join("pyfunc-env"));
    }
    let home = var(EnvVars::HOME).ok_or(SettingsError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache").join("pyfunc-env"))
}

/// The default configuration file: `$XDG_CONFIG_HOME/pyfunc-env/config.toml`, else
/// `~/.config/pyfunc-env/config.toml`.
fn default_config_file(var: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = var(EnvVars::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| var(EnvVars::HOME).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("pyfunc-env").join("config.toml"))
}

/// The registry auth files, from the variables that place them.
fn registry_auth_files(var: &dyn Fn(&str) -> Option<String>) -> Vec<PathBuf> {
    let path = |name| var(name).map(PathBuf::from);
    env_image::auth_files::AuthFileVars {
        registry_auth_file: path(EnvVars::REGISTRY_AUTH_FILE),
        xdg_runtime_dir: path(EnvVars::XDG_RUNTIME_DIR),
        home: path(EnvVars::HOME),
        docker_config: path(EnvVars::DOCKER_CONFIG),
    }
    .files()
}

/// Whole seconds in `parsed`; the error quotes `text`, the value as given, and where it came
/// from.
fn seconds(parsed: &str, text: &str, origin: Origin) -> Result<u64, SettingsError> {
    parsed
        .parse::<u64>()
        .map_err(|source| SettingsError::Seconds {
            origin,
            text: text.to_string(),
            source,
        })
}

impl Settings {
    /// Resolves settings from the command line's `options`, the environment (`var` reads one
    /// variable; an empty value counts as unset) and the configuration file: flag, then
    /// variable, then file, then default. The signing key is read here, so a bad one fails
    /// before any work.
    pub fn resolve(
        options: &Options,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SettingsError> {
        let var = move |name: &str| var(name).filter(|value| !value.is_empty());
        let var: &dyn Fn(&str) -> Option<String> = &var;
        let explicit_config = options.config_file.clone();
        let config_path = explicit_config.clone().or_else(|| default_config_file(var));
        let (config, config_file) = match &config_path {
            Some(path) if path.is_file() => (ConfigFile::read(path)?, Some(path.clone())),
            Some(path) if explicit_config.is_some() => {
                return Err(SettingsError::NoConfigFile { path: path.clone() });
            }
            _ => (ConfigFile::default(), None),
        };
        let in_file = |key: &'static str| Origin::ConfigKey {
            key,
            file: config_file.clone().unwrap_or_default(),
        };
        let cache_dir = match options.cache_dir.clone().or(config.cache_dir) {
            Some(dir) => dir,
            None => default_cache_dir(var)?,
        };
        let cache_dir =
            std::path::absolute(&cache_dir).map_err(|source| SettingsError::CacheDir {
                path: cache_dir.clone(),
                source,
            })?;
        let mut mirrors = config.mirrors;
        if let Some(text) = var(EnvVars::PYFUNC_ENV_MIRRORS) {
            mirrors.extend(
                parse_mirrors(&text).map_err(|source| SettingsError::Mirrors {
                    origin: Origin::Variable(EnvVars::PYFUNC_ENV_MIRRORS),
                    source,
                })?,
            );
        }
        let lock_timeout = match var(EnvVars::PYFUNC_ENV_LOCK_TIMEOUT) {
            Some(text) => seconds(
                &text,
                &text,
                Origin::Variable(EnvVars::PYFUNC_ENV_LOCK_TIMEOUT),
            )?,
            None => config.lock_timeout.unwrap_or(300),
        };
        let remote_cache = match var(EnvVars::PYFUNC_ENV_REMOTE_CACHE) {
            Some(text) => Some((text, Origin::Variable(EnvVars::PYFUNC_ENV_REMOTE_CACHE))),
            None => config
                .remote_cache
                .map(|text| (text, in_file("remote-cache"))),
        };
        if let Some((text, origin)) = &remote_cache {
            env_remote::RemoteUrl::parse(text).map_err(|source| SettingsError::RemoteCache {
                origin: origin.clone(),
                source,
            })?;
        }
        let remote_cache_read_only = match var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_READ_ONLY) {
            Some(text) => truthy(&text),
            None => config.remote_cache_read_only.unwrap_or(false),
        };
        let remote_cache_timeout = match var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TIMEOUT) {
            Some(text) => seconds(
                text.trim(),
                &text,
                Origin::Variable(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TIMEOUT),
            )?,
            None => config
                .remote_cache_timeout
                .unwrap_or(env_remote::DEFAULT_TIMEOUT.as_secs()),
        };
        let (remote_cache_sign_key, sign_key_from) = match (
            &options.remote_cache_sign_key,
            var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY),
        ) {
            (Some(path), _) => (Some(path.clone()), Origin::Flag("--remote-cache-sign-key")),
            (None, Some(path)) => (
                Some(PathBuf::from(path)),
                Origin::Variable(EnvVars::PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY),
            ),
            (None, None) => (
                config.remote_cache_sign_key,
                in_file("remote-cache-sign-key"),
            ),
        };
        let remote_cache_trusted_keys = if !options.remote_cache_trusted_keys.is_empty() {
            options.remote_cache_trusted_keys.clone()
        } else if let Some(text) = var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS) {
            env_remote::PublicKey::parse_list(&text).map_err(|source| SettingsError::Key {
                origin: Origin::Variable(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS),
                source,
            })?
        } else {
            config
                .remote_cache_trusted_keys
                .unwrap_or_default()
                .iter()
                .map(|text| env_remote::PublicKey::parse(text))
                .collect::<Result<_, _>>()
                .map_err(|source| SettingsError::Key {
                    origin: in_file("remote-cache-trusted-keys"),
                    source,
                })?
        };
        let remote_cache_require_signed = options.remote_cache_require_signed
            || match var(EnvVars::PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED) {
                Some(text) => truthy(&text),
                None => config.remote_cache_require_signed.unwrap_or(false),
            };
        let remote_cache_signer =
            match &remote_cache_sign_key {
                Some(path) => Some(env_remote::SecretKey::read(path).map_err(|source| {
                    SettingsError::Key {
                        origin: sign_key_from,
                        source,
                    }
                })?),
                None => None,
            };
        if remote_cache_require_signed && remote_cache_trusted_keys.is_empty() {
            return Err(SettingsError::RequireSignedWithoutKeys);
        }
        Ok(Self {
            cache_dir,
            offline: options.offline || config.offline.unwrap_or(false),
            no_progress: options.no_progress || config.no_progress.unwrap_or(false),
            uv: var(EnvVars::PYFUNC_ENV_UV).map(PathBuf::from).or(config.uv),
            uv_cache_dir: var(EnvVars::PYFUNC_ENV_UV_CACHE_DIR).map(PathBuf::from),
            mirrors,
            lock_timeout: Duration::from_secs(lock_timeout),
            remote_cache: remote_cache.map(|(text, _)| text),
            remote_cache_read_only,
            remote_cache_timeout: Duration::from_secs(remote_cache_timeout),
            remote_cache_sign_key,
            remote_cache_trusted_keys,
            remote_cache_require_signed,
            remote_cache_signer,
            config_file,
            color: use_color(options.color, var, options.stderr_is_terminal),
            source_date_epoch: var(EnvVars::SOURCE_DATE_EPOCH)
                .and_then(|text| text.trim().parse().ok()),
            spark_driver_python: var(EnvVars::PYSPARK_DRIVER_PYTHON),
            registry_auth_files: registry_auth_files(var),
        })
    }

    /// The cache, with this run's lock timeout (`PYFUNC_ENV_LOCK_TIMEOUT`) for every lock
    /// wait in it.
    pub fn cache(&self) -> env_cache::Cache {
        env_cache::Cache::new(&self.cache_dir).with_lock_timeout(self.lock_timeout)
    }

    /// The remote cache a command uses: its `--remote-cache` (and `--remote-cache-read-only`)
    /// flags, else `PYFUNC_ENV_REMOTE_CACHE` or the configuration file. `--offline` leaves out
    /// a remote reached over the network (a `file://` one stays).
    pub fn remote_cache(
        &self,
        flag: Option<&env_remote::RemoteUrl>,
        read_only_flag: bool,
    ) -> Option<env_remote::Remote> {
        let url = match flag {
            Some(url) => url.clone(),
            None => env_remote::RemoteUrl::parse(self.remote_cache.as_deref()?).ok()?,
        };
        if self.offline && url.is_network() {
            tracing::debug!("--offline: not using the remote cache {url}");
            return None;
        }
        Some(
            env_remote::Remote::new(url, read_only_flag || self.remote_cache_read_only)
                .with_timeout(self.remote_cache_timeout)
                .with_signing_key(self.remote_cache_signer.clone())
                .with_trust(env_remote::Trust {
                    keys: self.remote_cache_trusted_keys.clone(),
                    require_signed: self.remote_cache_require_signed,
                }),
        )
    }

    /// [`Self::remote_cache`] for a command that needs one (`cache push`, `cache list
    /// --remote`, ...).
    ///
    /// # Errors
    /// [`env_remote::RemoteError::NotConfigured`] when there is none (or `--offline` left out
    /// a network one).
    pub fn require_remote_cache(
        &self,
        flag: Option<&env_remote::RemoteUrl>,
        read_only_flag: bool,
    ) -> Result<env_remote::Remote, env_remote::RemoteError> {
        self.remote_cache(flag, read_only_flag)
            .ok_or(env_remote::RemoteError::NotConfigured {
                offline: self.offline,
            })
    }
}

/// Whether stderr gets colours: `--color always|never` wins; under `auto`, a non-empty
/// `NO_COLOR` turns them off, then a non-empty `FORCE_COLOR` on, else only a terminal gets
/// them (<https://no-color.org>, <https://force-color.org>).
#[must_use]
pub fn use_color(
    choice: ColorChoice,
    var: impl Fn(&str) -> Option<String>,
    terminal: bool,
) -> bool {
    let set = |name: &str| var(name).is_some_and(|value| !value.is_empty());
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto if set(EnvVars::NO_COLOR) => false,
        ColorChoice::Auto => set(EnvVars::FORCE_COLOR) || terminal,
    }
}

/// A settings document (`--show-settings`) with the secrets in every string masked, keys
/// included (a mirror's prefix can hold credentials): URL user information, tokens and
/// signatures, as everywhere else a URL is shown. A new setting is covered without remembering
/// to.
#[must_use]
pub fn mask_secrets(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    fn mask_text(text: &str) -> String {
        env_spec::redact::redact(&env_spec::redact::redact_url(text))
    }
    match value {
        Value::String(text) => Value::String(mask_text(&text)),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_secrets).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (mask_text(&key), mask_secrets(value)))
                .collect(),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests;
