//! The canonical environment spec and its key.
//!
//! [`EnvSpec`] holds everything that determines the environment a model gets, normalised so
//! that formatting does not matter: conda specs are re-rendered by rattler's `MatchSpec`, pip
//! requirements by `pep508_rs` (names normalised, whitespace dropped), option lists deduplicated.
//! Comments, blank lines, line endings and YAML key order never reach it. Local files a
//! requirement points at are represented by the sha256 of their contents, so a rebuilt wheel
//! changes the key while copying the model elsewhere does not.
//!
//! [`EnvSpec::key`] is sha256 over the canonical JSON of the spec plus a [`KeyContext`] (the
//! platform and what else changes the result of building it).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::requirements::PipSet;

/// Which of MLflow's env managers the spec is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum EnvManager {
    /// `env_manager="conda"`: conda.yaml's conda packages plus its `pip:` list.
    Conda,
    /// `env_manager="virtualenv"`, or `"uv"` for a model without `uv.lock`: a Python plus pip
    /// requirements.
    Virtualenv,
    /// `env_manager="uv"` for a model with `uv.lock` (MLflow 3.17+): a Python plus exactly the
    /// lock's packages for this platform ([`crate::uv_project`]). Asking for `Uv` on a model
    /// without a lock gives the `Virtualenv` spec, as MLflow builds the same environment then.
    Uv,
}

impl EnvManager {
    /// Whether the environment is a venv-style one: a Python plus packages installed by uv.
    #[must_use]
    pub fn is_venv(self) -> bool {
        matches!(self, Self::Virtualenv | Self::Uv)
    }
}

/// MLflow's `env_manager` values (the CLI's `--env-manager`; the docs of the variants are its
/// `--help`): an [`EnvManager`], or `local`, which builds no environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[expect(
    clippy::doc_markdown,
    reason = "the variants' docs are `--help` text, where backticks show as typed"
)]
pub enum EnvManagerChoice {
    /// conda.yaml: conda packages from its channels, then its `pip:` list.
    Conda,
    /// python_env.yaml (or conda.yaml's python) plus pip requirements.
    Virtualenv,
    /// The model's uv.lock if it has one (as MLflow 3's `uv sync --frozen --no-dev`), else the
    /// same environment as `virtualenv`.
    Uv,
    /// No environment: `run` uses an existing interpreter (`--python`) after a mismatch report.
    Local,
}

impl EnvManagerChoice {
    /// The spec's env manager; `None` for `local`.
    #[must_use]
    pub fn manager(self) -> Option<EnvManager> {
        match self {
            Self::Conda => Some(EnvManager::Conda),
            Self::Virtualenv => Some(EnvManager::Virtualenv),
            // The virtualenv spec unless the model has a uv.lock (`crate::uv_project`).
            Self::Uv => Some(EnvManager::Uv),
            Self::Local => None,
        }
    }
}

impl std::fmt::Display for EnvManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Conda => "conda",
            Self::Virtualenv => "virtualenv",
            Self::Uv => "uv",
        })
    }
}

/// The conda layer of a conda-mode environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct CondaLayer {
    /// Channels in priority order, as named in the file (mirrors are applied later and do not
    /// change the key: they serve the same packages).
    pub channels: Vec<String>,
    /// Normalised match specs, in file order.
    pub specs: Vec<String>,
    /// `variables:` set on activation.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
}

/// Everything that determines a model's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EnvSpec {
    /// The env manager this spec is for.
    pub env_manager: EnvManager,
    /// The Python version to provide (virtualenv mode; in conda mode python is a conda spec).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<String>,
    /// The conda packages (conda mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conda: Option<CondaLayer>,
    /// Build dependencies, installed first (virtualenv mode).
    #[serde(skip_serializing_if = "PipSet::is_empty")]
    pub build: PipSet,
    /// pip requirements, installed last.
    pub pip: PipSet,
    /// sha256 of each local file a requirement installs, by its path in the model directory.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub local_files: BTreeMap<String, String>,
    /// Constraints that keep the environment's MLflow scoring code working against today's
    /// releases of packages the model leaves open ([`crate::compat`]); applied as uv
    /// constraints to the pip layer. Empty when switched off (`--no-compat-constraints`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compat_constraints: Vec<crate::compat::CompatConstraint>,
    /// The model's uv project (`env_manager` [`EnvManager::Uv`] only): its files' digests are
    /// in the key, its texts are what uv installs from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uv_project: Option<crate::uv_project::UvProject>,
}

/// Inputs to the key besides the spec: what else changes the environment a spec produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyContext {
    /// The conda subdir of the machine, e.g. `linux-64`.
    pub platform: String,
    /// Virtual packages that solves depend on, normalised (`__glibc=2.36`, `__cuda=12.2`). The
    /// kernel version (`__linux`) is left out on purpose: it changes with every host kernel
    /// update and would make a shared cache miss across otherwise identical machines.
    pub virtual_packages: Vec<String>,
    /// Where the Python of a virtualenv-mode environment comes from (`conda`, `system`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python_source: Option<String>,
    /// Only packages published before this date (`--exclude-newer`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_newer: Option<String>,
    /// The version of uv that installs the environment's pip packages (virtualenv mode, or a
    /// conda file with a `pip:` list): two uv versions may resolve the same requirements to
    /// different files. Absent when uv is not used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uv: Option<String>,
    /// Whether `.pyc` files are compiled into the environment.
    pub compile_bytecode: bool,
    /// Version of the environment layout; bumped on any change to how environments are built.
    pub layout: u32,
}

impl KeyContext {
    /// A context for `platform` with defaults for everything else.
    #[must_use]
    pub fn for_platform(platform: &str) -> Self {
        Self {
            platform: platform.to_string(),
            virtual_packages: Vec::new(),
            python_source: None,
            exclude_newer: None,
            uv: None,
            compile_bytecode: true,
            layout: 1,
        }
    }
}

/// A key: the first 32 hex digits (128 bits) of a sha256. Short enough to keep environment
/// paths, which end up in every script's shebang, well under the kernel's limit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EnvKey(String);

impl EnvKey {
    /// The key as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key of an environment installed from a lock file made for this key: the lock pins
    /// more than the spec says, so it is a different environment.
    #[must_use]
    pub fn with_lock(&self, lock_text: &str) -> Self {
        let digest = Sha256::digest(format!("{}\0{lock_text}", self.0).as_bytes());
        Self(hex(&digest)[..32].to_string())
    }

    /// Parses a key given by a user (`--env KEY`).
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        (text.len() == 32
            && text
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| Self(text.to_string()))
    }
}

/// A text given as an environment key (`check --env KEY`) that is not one.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("`{text}` is not an environment key (32 hex digits; see `pyfunc-env cache list`)")]
pub struct InvalidKey {
    /// The text given.
    pub text: String,
}

impl InvalidKey {
    /// Always the caller's input (exit code 1).
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        let _ = self;
        true
    }
}

impl std::str::FromStr for EnvKey {
    type Err = InvalidKey;

    /// [`EnvKey::parse`], with an error that names the text.
    fn from_str(text: &str) -> Result<Self, InvalidKey> {
        Self::parse(text).ok_or_else(|| InvalidKey {
            text: text.to_string(),
        })
    }
}

impl std::fmt::Display for EnvKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Format version of the canonical serialisation itself.
const KEY_FORMAT: u32 = 1;

impl EnvSpec {
    /// The canonical serialisation that the key is computed over.
    #[must_use]
    pub fn canonical_json(&self, context: &KeyContext) -> String {
        #[derive(Serialize)]
        struct Keyed<'a> {
            format: u32,
            spec: &'a EnvSpec,
            context: &'a KeyContext,
        }
        // Serialising plain structs, vectors, strings and BTreeMaps cannot fail.
        serde_json::to_string(&Keyed {
            format: KEY_FORMAT,
            spec: self,
            context,
        })
        .expect("serialising an EnvSpec cannot fail")
    }

    /// The environment's key.
    #[must_use]
    pub fn key(&self, context: &KeyContext) -> EnvKey {
        let digest = Sha256::digest(self.canonical_json(context).as_bytes());
        let hex = hex(&digest);
        EnvKey(hex[..32].to_string())
    }
}

/// sha256 of a byte string, as lowercase hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lowercase hex of bytes.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod key_text_tests {
    use super::*;

    /// MLflow's `env_manager` names: three build an environment of their own kind, `local`
    /// none.
    #[test]
    fn every_env_manager_choice_but_local_names_a_spec() {
        assert_eq!(EnvManagerChoice::Conda.manager(), Some(EnvManager::Conda));
        assert_eq!(
            EnvManagerChoice::Virtualenv.manager(),
            Some(EnvManager::Virtualenv)
        );
        assert_eq!(EnvManagerChoice::Uv.manager(), Some(EnvManager::Uv));
        assert_eq!(EnvManagerChoice::Local.manager(), None);
    }

    /// `check --env KEY`: 32 lower-case hex digits, else an error naming the text.
    #[test]
    fn a_key_is_32_lower_case_hex_digits() {
        let key: EnvKey = "0123456789abcdef0123456789abcdef".parse().unwrap();
        assert_eq!(key.to_string(), "0123456789abcdef0123456789abcdef");
        for text in ["latest", "0123456789ABCDEF0123456789ABCDEF", "0123"] {
            let error = text.parse::<EnvKey>().unwrap_err();
            assert!(error.is_user_error());
            assert!(
                error.to_string().starts_with(&format!("`{text}`")),
                "{error}"
            );
        }
    }
}
