//! `cache verify`'s answer per environment: the command that repairs a damaged one, and the
//! `--json` row (a file of its own so `verify.rs` stays the checking).

use serde::Serialize;

use crate::verify::{EnvVerdict, VerifyReport};

impl EnvVerdict {
    /// `MODEL --env-manager MANAGER`: the arguments of the `create --reinstall` that rebuilds
    /// it, when its metadata says what it was built for.
    #[must_use]
    pub fn repair_args(&self) -> Option<String> {
        self.built_for
            .as_ref()
            .map(|b| format!("{} --env-manager {}", b.model, b.env_manager))
    }
}

/// A `cache verify --json` row.
#[derive(Debug, Serialize)]
pub struct VerdictRow<'a> {
    /// The key.
    pub key: &'a str,
    /// `MODEL --env-manager MANAGER`, what `create` repairs it with.
    pub model: Option<String>,
    /// Nothing missing or changed.
    pub ok: bool,
    /// Not checked: a build of it is running (it is checked once complete).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub building: bool,
    /// What was found.
    #[serde(flatten)]
    pub report: &'a VerifyReport,
}

impl<'a> From<&'a EnvVerdict> for VerdictRow<'a> {
    fn from(verdict: &'a EnvVerdict) -> Self {
        Self {
            key: &verdict.key,
            model: verdict.repair_args(),
            ok: verdict.is_ok(),
            building: verdict.building,
            report: &verdict.report,
        }
    }
}
