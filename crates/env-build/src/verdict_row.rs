//! `cache verify`'s answer per environment: the command that repairs a damaged one, and the
//! `--json` row (a file of its own so `verify.rs` stays the checking).

use std::fmt;

use serde::Serialize;

use crate::verify::{EnvVerdict, VerifyReport};

/// What `cache verify` found for one environment, in a word (`ok`, `damaged`, `skipped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictKind {
    /// Nothing missing or changed.
    Ok,
    /// Files missing or changed.
    Damaged,
    /// Not checked: another process is building it.
    Skipped,
}

impl EnvVerdict {
    /// Which of the three it is.
    #[must_use]
    pub fn kind(&self) -> VerdictKind {
        if self.building {
            VerdictKind::Skipped
        } else if self.report.is_ok() {
            VerdictKind::Ok
        } else {
            VerdictKind::Damaged
        }
    }

    /// `MODEL --env-manager MANAGER`: the arguments of the `create --reinstall` that rebuilds
    /// it, when its metadata says what it was built for.
    #[must_use]
    pub fn repair_args(&self) -> Option<String> {
        self.built_for
            .as_ref()
            .map(|b| format!("{} --env-manager {}", b.model, b.env_manager))
    }

    /// The command that repairs it: for a damaged environment whose metadata says what it was
    /// built for (an ok or skipped one needs none).
    #[must_use]
    pub fn repair_command(&self) -> Option<String> {
        let args = self
            .repair_args()
            .filter(|_| self.kind() == VerdictKind::Damaged)?;
        Some(format!("pyfunc-env create {args} --reinstall"))
    }
}

impl fmt::Display for EnvVerdict {
    /// `KEY: 12 files ok`, `KEY: 1 missing, 0 changed of 12 files`, or that it was skipped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (key, report) = (&self.key, &self.report);
        match self.kind() {
            VerdictKind::Ok => write!(f, "{key}: {} files ok", report.checked),
            VerdictKind::Damaged => write!(
                f,
                "{key}: {} missing, {} changed of {} files",
                report.missing.len(),
                report.changed.len(),
                report.checked
            ),
            VerdictKind::Skipped => write!(
                f,
                "{key}: being built by another process, not checked; verify it again when the build is done"
            ),
        }
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ok => "ok",
            Self::Damaged => "damaged",
            Self::Skipped => "skipped",
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_says_ok_damaged_or_skipped_with_its_counts() {
        let verdict = |building, missing: &[&str]| EnvVerdict {
            key: "abc".into(),
            built_for: None,
            building,
            report: VerifyReport {
                checked: 12,
                missing: missing.iter().map(ToString::to_string).collect(),
                changed: Vec::new(),
            },
        };
        let ok = verdict(false, &[]);
        assert_eq!(
            (ok.kind(), ok.to_string()),
            (VerdictKind::Ok, "abc: 12 files ok".into())
        );
        let damaged = verdict(false, &["bin/python"]);
        assert_eq!(damaged.kind().to_string(), "damaged");
        assert_eq!(damaged.to_string(), "abc: 1 missing, 0 changed of 12 files");
        assert_eq!(damaged.repair_command(), None, "no model recorded");
        let built_for = Some(crate::verify::BuiltFor {
            model: "/models/iris".into(),
            env_manager: "conda".into(),
        });
        let repairable = EnvVerdict {
            built_for: built_for.clone(),
            ..verdict(false, &["bin/python"])
        };
        assert_eq!(
            repairable.repair_command().as_deref(),
            Some("pyfunc-env create /models/iris --env-manager conda --reinstall")
        );
        for fine in [verdict(false, &[]), verdict(true, &["bin/python"])] {
            let fine = EnvVerdict {
                built_for: built_for.clone(),
                ..fine
            };
            assert_eq!(fine.repair_command(), None, "{fine}");
        }
        let skipped = verdict(true, &[]);
        assert_eq!(skipped.kind(), VerdictKind::Skipped);
        assert!(
            skipped
                .to_string()
                .starts_with("abc: being built by another process")
        );
    }
}
