//! `cache push MODEL...` (backfill): one [`PushRow`] per model, and the exit policy of the
//! list. A model that cannot be read, or whose environment is not built or not shareable, is
//! reported and the others are still pushed (like `create` of many models); the list exits with
//! the worst outcome: something broken (a store error) over bad input over success.

use serde::Serialize;

use crate::{PushResult, RemoteError, one_screen};

/// What happened to one model: a `cache push --json` row.
#[derive(Debug, Clone, Serialize)]
pub struct PushRow {
    /// The model's directory (the argument, when the model could not be opened).
    pub model_dir: String,
    /// The environment's key (empty when the model could not be opened).
    pub key: String,
    /// `pushed`, `already there`, `kept another agent's`, `not shareable`, `not built`, `failed`.
    pub result: &'static str,
    /// Why it was not pushed, on a few lines (secrets masked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// How bad one model's outcome is; ordered, so the list's is the maximum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Pushed, or there already.
    #[default]
    Ok,
    /// The user's to fix (exit 1): a model that cannot be read, not built, not shareable.
    Failure,
    /// Something broke (exit 2): the store failed.
    Error,
}

/// The rows of a `cache push` and the worst [`Severity`] so far.
#[derive(Debug, Default)]
pub struct PushReport {
    /// One per model, in the order given.
    pub rows: Vec<PushRow>,
    /// The worst outcome.
    pub severity: Severity,
}

impl PushReport {
    /// A model that could not be opened or whose environment could not be decided: `message`
    /// is the rendered error, `user_error` its class.
    pub fn failed(&mut self, model: &str, message: String, user_error: bool) -> &PushRow {
        self.add(
            PushRow {
                model_dir: model.to_string(),
                key: String::new(),
                result: "failed",
                message: Some(message),
            },
            if user_error {
                Severity::Failure
            } else {
                Severity::Error
            },
        )
    }

    /// The outcome of [`crate::Remote::push_model`] for `model` (as given on the command line),
    /// whose environment is `env`.
    pub fn record(
        &mut self,
        model: &str,
        env: &env_solve::ModelEnvironment,
        outcome: &Result<PushResult, RemoteError>,
    ) -> &PushRow {
        let (result, message, severity) = match outcome {
            Ok(PushResult::Pushed { .. }) => ("pushed", None, Severity::Ok),
            Ok(PushResult::AlreadyThere) => ("already there", None, Severity::Ok),
            Ok(PushResult::KeptOther) => ("kept another agent's", None, Severity::Ok),
            Ok(PushResult::NotBuilt) => (
                "not built",
                Some(format!(
                    "not in the local cache; build it first: pyfunc-env create {model}"
                )),
                Severity::Failure,
            ),
            Ok(PushResult::NotShareable { reason }) => {
                ("not shareable", Some(reason.clone()), Severity::Failure)
            }
            Err(error) => ("failed", Some(one_screen(error)), Severity::Error),
        };
        self.add(
            PushRow {
                model_dir: env.root().display().to_string(),
                key: env.key.to_string(),
                result,
                message,
            },
            severity,
        )
    }

    fn add(&mut self, row: PushRow, severity: Severity) -> &PushRow {
        self.severity = self.severity.max(severity);
        self.rows.push(row);
        // Just pushed.
        &self.rows[self.rows.len() - 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list exits with its worst outcome: a store error over a model that cannot be read,
    /// over success, whatever the order.
    #[test]
    fn the_worst_outcome_wins() {
        let mut report = PushReport::default();
        assert_eq!(report.severity, Severity::Ok);
        report.failed("a", "broken".into(), true);
        assert_eq!(report.severity, Severity::Failure);
        report.failed("b", "broken".into(), false);
        report.failed("c", "broken".into(), true);
        assert_eq!(report.severity, Severity::Error);
        assert_eq!(report.rows.len(), 3);
        assert_eq!(report.rows[1].result, "failed");
        assert_eq!(report.rows[1].key, "");
    }
}
