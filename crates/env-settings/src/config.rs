//! The configuration file (`config.toml`) and the text forms settings share with their
//! variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::SettingsError;

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

impl ConfigFile {
    /// Reads and parses `path`; unknown keys are an error (a misspelt key must not be
    /// silently ignored).
    pub fn read(path: &Path) -> Result<Self, SettingsError> {
        let text = fs_err::read_to_string(path).map_err(SettingsError::ReadConfig)?;
        toml::from_str(&text).map_err(|source| SettingsError::ParseConfig {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// A mirror pair that is not `CHANNEL=URL`.
#[derive(Debug, thiserror::Error)]
#[error(
    "Invalid mirror `{pair}`: expected `CHANNEL=URL`, e.g. `conda-forge=https://mirror.example/conda-forge`"
)]
pub struct MirrorError {
    /// The pair as written.
    pub pair: String,
}

/// Parses mirror pairs `from=to`, separated by whitespace or commas.
pub fn parse_mirrors(text: &str) -> Result<BTreeMap<String, String>, MirrorError> {
    let mut mirrors = BTreeMap::new();
    for pair in text
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|p| !p.is_empty())
    {
        let (from, to) = pair.split_once('=').ok_or_else(|| MirrorError {
            pair: pair.to_string(),
        })?;
        mirrors.insert(from.to_string(), to.to_string());
    }
    Ok(mirrors)
}

/// A boolean variable: set and not `0`, `false`, `no` or `off`.
pub(crate) fn truthy(text: &str) -> bool {
    !matches!(
        text.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_split_on_whitespace_and_commas() {
        let mirrors = parse_mirrors("a=https://m/a, b=https://m/b\nc=https://m/c=d").unwrap();
        assert_eq!(mirrors.len(), 3);
        assert_eq!(mirrors["c"], "https://m/c=d");
        let error = parse_mirrors("a=https://m/a nonsense").unwrap_err();
        assert_eq!(error.pair, "nonsense");
        assert!(error.to_string().contains("CHANNEL=URL"), "{error}");
    }

    #[test]
    fn false_spellings_are_false_and_anything_else_true() {
        for text in ["0", "false", "No", " OFF "] {
            assert!(!truthy(text), "{text}");
        }
        for text in ["1", "true", "yes", "anything"] {
            assert!(truthy(text), "{text}");
        }
    }

    #[test]
    fn an_unknown_key_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        fs_err::write(&path, "cache_dir = \"/x\"\n").unwrap();
        let error = ConfigFile::read(&path).unwrap_err();
        assert!(
            matches!(error, SettingsError::ParseConfig { .. }),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("Invalid configuration file `{}`", path.display())
        );
    }
}
