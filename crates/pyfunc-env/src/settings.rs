//! Settings, resolved once: flag, then environment variable, then configuration file, then
//! default. Every command reads [`Settings`], never the environment directly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::cli::{ColorChoice, GlobalArgs, RemoteArgs};
use crate::env_vars::EnvVars;
use crate::printer::Verbosity;

/// The configuration file (`config.toml`). Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// `cache-dir = "/var/cache/pyfunc-env"`.
    pub cache_dir: Option<PathBuf>,
    /// `offline = true`.
    pub offline: Option<bool>,
    /// `no-progress = true`.
    pub no_progress: Option<bool>,
    /// `uv = "/usr/local/bin/uv"`.
    pub uv: Option<PathBuf>,
    /// `[mirrors]` table: `"conda-forge" = "https://mirror.example/conda-forge"`.
    #[serde(default)]
    pub mirrors: BTreeMap<String, String>,
    /// `lock-timeout = 300` (seconds).
    pub lock_timeout: Option<u64>,
    /// `remote-cache = "s3://bucket/prefix"`.
    pub remote_cache: Option<String>,
    /// `remote-cache-read-only = true`.
    pub remote_cache_read_only: Option<bool>,
    /// `remote-cache-timeout = 15` (seconds).
    pub remote_cache_timeout: Option<u64>,
    /// `remote-cache-sign-key = "/secure/ci-1.secret"`.
    pub remote_cache_sign_key: Option<PathBuf>,
    /// `remote-cache-trusted-keys = ["ci-1:BASE64", "ci-2:BASE64"]`.
    pub remote_cache_trusted_keys: Option<Vec<String>>,
    /// `remote-cache-require-signed = true`.
    pub remote_cache_require_signed: Option<bool>,
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
    /// Where `remote_cache_sign_key` came from, for messages.
    #[serde(skip)]
    sign_key_from: String,
    /// Where the configuration came from, if a file was read.
    pub config_file: Option<PathBuf>,
    /// Verbosity.
    #[serde(skip)]
    pub verbosity: Verbosity,
    /// Colours on stderr.
    pub color: bool,
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The default cache root: `$XDG_CACHE_HOME/pyfunc-env`, else `~/.cache/pyfunc-env`.
fn default_cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(base) = env(EnvVars::XDG_CACHE_HOME) {
        return Ok(PathBuf::from(base).join("pyfunc-env"));
    }
    let home = env(EnvVars::HOME).context("Cannot find a cache directory: neither `XDG_CACHE_HOME` nor `HOME` is set; pass `--cache-dir`")?;
    Ok(PathBuf::from(home).join(".cache").join("pyfunc-env"))
}

fn default_config_file() -> Option<PathBuf> {
    let base = env(EnvVars::XDG_CONFIG_HOME)
        .map(PathBuf::from)
        .or_else(|| env(EnvVars::HOME).map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("pyfunc-env").join("config.toml"))
}

fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    let text = fs_err::read_to_string(path)?;
    toml::from_str(&text)
        .with_context(|| format!("Invalid configuration file `{}`", path.display()))
}

/// Parses mirror pairs `from=to`, separated by whitespace or commas.
pub fn parse_mirrors(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut mirrors = BTreeMap::new();
    for pair in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
    {
        let (from, to) = pair
            .split_once('=')
            .with_context(|| format!("Invalid mirror `{pair}`: expected `CHANNEL=URL`, e.g. `conda-forge=https://mirror.example/conda-forge`"))?;
        mirrors.insert(from.to_string(), to.to_string());
    }
    Ok(mirrors)
}

impl Settings {
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

    /// Folds the command's remote cache flags into the signing and trust settings (a flag
    /// replaces the variable and the configuration file), reads the signing key, and checks
    /// they make sense together. Every error names the setting it comes from.
    pub fn apply_remote_args(&mut self, args: Option<&RemoteArgs>) -> anyhow::Result<()> {
        if let Some(args) = args {
            if let Some(path) = &args.remote_cache_sign_key {
                self.remote_cache_sign_key = Some(path.clone());
                self.sign_key_from = "`--remote-cache-sign-key`".to_string();
            }
            if !args.remote_cache_trusted_key.is_empty() {
                self.remote_cache_trusted_keys
                    .clone_from(&args.remote_cache_trusted_key);
            }
            self.remote_cache_require_signed |= args.remote_cache_require_signed;
        }
        if let Some(path) = &self.remote_cache_sign_key {
            let key = env_remote::SecretKey::read(path)
                .with_context(|| format!("Invalid {}", self.sign_key_from))?;
            self.remote_cache_signer = Some(key);
        }
        if self.remote_cache_require_signed && self.remote_cache_trusted_keys.is_empty() {
            anyhow::bail!(crate::report::UserError::new(
                "`--remote-cache-require-signed` needs a trusted key: pass `--remote-cache-trusted-key NAME:BASE64` (the line of `NAME.public` that `pyfunc-env cache keygen NAME` wrote), or set `PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS`"
            ));
        }
        Ok(())
    }

    /// Resolves settings from the global flags, the environment and the configuration file.
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Self> {
        let explicit_config = args.config_file.clone();
        let config_path = explicit_config.clone().or_else(default_config_file);
        let (config, config_file) = match &config_path {
            Some(path) if path.is_file() => (read_config(path)?, Some(path.clone())),
            Some(path) if explicit_config.is_some() => {
                anyhow::bail!("Configuration file `{}` does not exist", path.display())
            }
            _ => (ConfigFile::default(), None),
        };
        let cache_dir = match args.cache_dir.clone().or(config.cache_dir) {
            Some(dir) => dir,
            None => default_cache_dir()?,
        };
        let cache_dir = std::path::absolute(&cache_dir)
            .with_context(|| format!("Invalid cache directory `{}`", cache_dir.display()))?;
        let mut mirrors = config.mirrors;
        if let Some(text) = env(EnvVars::PYFUNC_ENV_MIRRORS) {
            mirrors.extend(
                parse_mirrors(&text)
                    .with_context(|| format!("Invalid `{}`", EnvVars::PYFUNC_ENV_MIRRORS))?,
            );
        }
        let lock_timeout = match env(EnvVars::PYFUNC_ENV_LOCK_TIMEOUT) {
            Some(text) => text.parse::<u64>().with_context(|| {
                format!(
                    "Invalid `{}`: `{text}` is not a number of seconds",
                    EnvVars::PYFUNC_ENV_LOCK_TIMEOUT
                )
            })?,
            None => config.lock_timeout.unwrap_or(300),
        };
        let remote_cache = match env(EnvVars::PYFUNC_ENV_REMOTE_CACHE) {
            Some(text) => Some((text, EnvVars::PYFUNC_ENV_REMOTE_CACHE.to_string())),
            None => config.remote_cache.map(|text| {
                (
                    text,
                    format!(
                        "`remote-cache` in {}",
                        config_file.as_deref().unwrap_or(Path::new("")).display()
                    ),
                )
            }),
        };
        if let Some((text, from)) = &remote_cache {
            env_remote::RemoteUrl::parse(text).with_context(|| format!("Invalid {from}"))?;
        }
        let remote_cache_read_only = match env(EnvVars::PYFUNC_ENV_REMOTE_CACHE_READ_ONLY) {
            Some(text) => !matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            ),
            None => config.remote_cache_read_only.unwrap_or(false),
        };
        let remote_cache_timeout = match env(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TIMEOUT) {
            Some(text) => text.trim().parse::<u64>().with_context(|| {
                format!(
                    "Invalid `{}`: `{text}` is not a number of seconds",
                    EnvVars::PYFUNC_ENV_REMOTE_CACHE_TIMEOUT
                )
            })?,
            None => config
                .remote_cache_timeout
                .unwrap_or(env_remote::DEFAULT_TIMEOUT.as_secs()),
        };
        let (remote_cache_sign_key, sign_key_from) =
            match env(EnvVars::PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY) {
                Some(path) => (
                    Some(PathBuf::from(path)),
                    format!("`{}`", EnvVars::PYFUNC_ENV_REMOTE_CACHE_SIGN_KEY),
                ),
                None => (
                    config.remote_cache_sign_key,
                    format!(
                        "`remote-cache-sign-key` in {}",
                        config_file.as_deref().unwrap_or(Path::new("")).display()
                    ),
                ),
            };
        let remote_cache_trusted_keys = match env(EnvVars::PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS) {
            Some(text) => env_remote::PublicKey::parse_list(&text).with_context(|| {
                format!(
                    "Invalid `{}`",
                    EnvVars::PYFUNC_ENV_REMOTE_CACHE_TRUSTED_KEYS
                )
            })?,
            None => config
                .remote_cache_trusted_keys
                .unwrap_or_default()
                .iter()
                .map(|text| env_remote::PublicKey::parse(text))
                .collect::<Result<_, _>>()
                .with_context(|| {
                    format!(
                        "Invalid `remote-cache-trusted-keys` in {}",
                        config_file.as_deref().unwrap_or(Path::new("")).display()
                    )
                })?,
        };
        let remote_cache_require_signed = match env(EnvVars::PYFUNC_ENV_REMOTE_CACHE_REQUIRE_SIGNED)
        {
            Some(text) => !matches!(
                text.trim().to_ascii_lowercase().as_str(),
                "0" | "false" | "no" | "off"
            ),
            None => config.remote_cache_require_signed.unwrap_or(false),
        };
        let verbosity = match (args.quiet, args.verbose) {
            (0, 0) => Verbosity::Normal,
            (0, _) => Verbosity::Verbose,
            (1, _) => Verbosity::Quiet,
            _ => Verbosity::Silent,
        };
        let color = match args.color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                if env(EnvVars::NO_COLOR).is_some() {
                    false
                } else if env(EnvVars::FORCE_COLOR).is_some() {
                    true
                } else {
                    std::io::IsTerminal::is_terminal(&std::io::stderr())
                }
            }
        };
        Ok(Self {
            cache_dir,
            offline: args.offline || config.offline.unwrap_or(false),
            no_progress: args.no_progress || config.no_progress.unwrap_or(false),
            uv: env(EnvVars::PYFUNC_ENV_UV).map(PathBuf::from).or(config.uv),
            uv_cache_dir: env(EnvVars::PYFUNC_ENV_UV_CACHE_DIR).map(PathBuf::from),
            mirrors,
            lock_timeout: Duration::from_secs(lock_timeout),
            remote_cache: remote_cache.map(|(text, _)| text),
            remote_cache_read_only,
            remote_cache_timeout: Duration::from_secs(remote_cache_timeout),
            remote_cache_sign_key,
            remote_cache_trusted_keys,
            remote_cache_require_signed,
            remote_cache_signer: None,
            sign_key_from,
            config_file,
            verbosity,
            color,
        })
    }
}
