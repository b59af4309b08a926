//! `cache push MODEL...` (backfill): one [`PushRow`] per model, and the exit policy of the
//! list. A model that cannot be read, or whose environment is not built or not shareable, is
//! reported and the others are still pushed (like `create` of many models); the list exits with
//! the worst outcome: something broken (a store error) over bad input over success.

use std::future::Future;

use serde::Serialize;

use crate::{PushResult, Remote, RemoteError, one_screen};

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
        env: &env_build::ModelEnvironment,
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

/// A model `cache push` could not open, or whose environment it could not decide: the
/// caller's rendered error and its class.
#[derive(Debug, Clone)]
pub struct Unopened {
    /// The error, rendered on a few lines (secrets masked).
    pub message: String,
    /// Whether it is the user's to fix (exit 1) rather than something broken (exit 2).
    pub user_error: bool,
}

/// What happened to one model of [`Remote::push_models`], as it happens.
#[derive(Debug)]
pub enum PushEvent<'a> {
    /// The model could not be opened (the row's `message` says why).
    Unopened {
        /// The model as given.
        model: &'a str,
        /// Its row.
        row: &'a PushRow,
    },
    /// The environment was pushed, found there already, or why not.
    Pushed {
        /// The model as given.
        model: &'a str,
        /// Its environment.
        env: &'a env_build::ModelEnvironment,
        /// What the push did.
        outcome: &'a Result<PushResult, RemoteError>,
        /// Its row (with the message shown for a model not pushed).
        row: &'a PushRow,
    },
}

impl Remote {
    /// `cache push MODEL...`: pushes the environment of each model the local cache has
    /// complete, holding the cache's shared lock throughout so `cache clean` waits instead of
    /// deleting an environment mid-pack (issue 23). `open` opens a model and decides its
    /// environment (the caller shows downloads and warnings); a model it cannot open is
    /// reported and the others are still pushed. `reporter` gives each push its progress.
    ///
    /// # Errors
    /// [`RemoteError::ReadOnly`] for a read-only remote cache, or the cache's lock; each model's
    /// own failure is in the [`PushReport`] instead.
    pub async fn push_models<R, Open, Opening>(
        &self,
        cache: &env_cache::Cache,
        models: &[String],
        mut open: Open,
        reporter: impl Fn(&env_build::ModelEnvironment) -> R,
        mut on_event: impl FnMut(PushEvent<'_>),
    ) -> Result<PushReport, RemoteError>
    where
        R: env_build::Reporter,
        Open: FnMut(&str) -> Opening,
        Opening: Future<Output = Result<env_build::ModelEnvironment, Unopened>>,
    {
        if self.read_only() {
            return Err(RemoteError::ReadOnly {
                url: self.url().to_string(),
            });
        }
        let _cache_lock = env_build::hold_cache(cache).await?;
        let mut report = PushReport::default();
        for model in models {
            let env = match open(model).await {
                Ok(env) => env,
                Err(unopened) => {
                    let row = report.failed(model, unopened.message, unopened.user_error);
                    on_event(PushEvent::Unopened { model, row });
                    continue;
                }
            };
            let reporter = reporter(&env);
            let outcome = self.push_model(cache, &env, &reporter).await;
            env_build::Reporter::on_finish(&reporter);
            let row = report.record(model, &env, &outcome);
            on_event(PushEvent::Pushed {
                model,
                env: &env,
                outcome: &outcome,
                row,
            });
        }
        Ok(report)
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
