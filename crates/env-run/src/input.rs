//! `run -- predict -i FILE`: a missing input file is reported before anything is built or
//! downloaded; when the model (a local directory) cannot be read either, both problems are
//! named, not only the first one found. This policy was the CLI's (`commands/run.rs`) before
//! issue 24.

use std::path::{Path, PathBuf};

/// A missing input file. Both are the caller's to fix (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The input file does not exist.
    #[error("Input file `{}` does not exist", input.display())]
    Missing {
        /// The input file as given.
        input: PathBuf,
    },
    /// The input file does not exist, and the model cannot be read either.
    #[error(
        "Input file `{}` does not exist, and the model at `{}` cannot be read: {reason}",
        input.display(),
        model.display()
    )]
    MissingAndModelUnreadable {
        /// The input file as given.
        input: PathBuf,
        /// The model directory.
        model: PathBuf,
        /// Why the model cannot be read.
        reason: String,
    },
    /// `predict --params` is not JSON.
    #[error("`--params` is not valid JSON: {message}")]
    ParamsNotJson {
        /// The parser's message.
        message: String,
    },
    /// `predict --params` is JSON, but not an object.
    #[error("`--params` must be a JSON object, e.g. '{{\"temperature\": 0.5}}'")]
    ParamsNotObject,
}

impl InputError {
    /// Every one is the caller's to fix (exit code 1); the method says so where the CLI
    /// classifies errors.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// `predict --params`: a JSON object (MLflow merges it into the input's `params`), refused
/// before anything is built or downloaded when it is not one.
pub fn check_params(text: &str) -> Result<(), InputError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| InputError::ParamsNotJson {
            message: error.to_string(),
        })?;
    if value.is_object() {
        Ok(())
    } else {
        Err(InputError::ParamsNotObject)
    }
}

/// `predict -r x==1.0,y==2.0`: MLflow's comma-separated requirements, blanks dropped.
#[must_use]
pub fn split_requirements(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect()
}

/// `predict -i`'s file: `-i -` is stdin, as no `-i` is (MLflow's reading).
pub(crate) fn input_file(given: Option<&Path>) -> Option<&Path> {
    given.filter(|path| path.as_os_str() != "-")
}

/// Checks the input file of `predict` (`-i` as given; `None` or `-`: stdin) before anything is
/// built. `model` is the
/// model as given: a directory (or a `file:` URI naming one) is named too when it cannot be
/// read; a model URI is never fetched to report a missing input. (Deciding which was the
/// CLI's, `commands/run/`, before issue 24.)
pub fn check_input(input: Option<&Path>, model: &str) -> Result<(), InputError> {
    let Some(input) = input_file(input).filter(|input| !input.is_file()) else {
        return Ok(());
    };
    let input = input.to_path_buf();
    let local_model = env_source::ModelUri::local_path(model);
    match local_model.map(|model| {
        let opened = env_spec::ModelDir::open(&model);
        (model, opened)
    }) {
        Some((model, Err(error))) => Err(InputError::MissingAndModelUnreadable {
            input,
            model,
            reason: error.to_string(),
        }),
        _ => Err(InputError::Missing { input }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_input_names_an_unreadable_model_too() {
        let dir = tempfile::tempdir().unwrap();
        let input = Path::new("nosuch.json");
        let model = dir.path().join("no-model");
        let model_text = model.to_str().unwrap();
        let error = check_input(Some(input), model_text).unwrap_err();
        assert!(
            matches!(&error, InputError::MissingAndModelUnreadable { model: m, .. } if *m == model),
            "{error:?}"
        );
        fs_err::create_dir_all(&model).unwrap();
        fs_err::write(model.join("MLmodel"), "flavors: {}\n").unwrap();
        let error = check_input(Some(input), model_text).unwrap_err();
        assert_eq!(error.to_string(), "Input file `nosuch.json` does not exist");
        // A model URI is not fetched to report a missing input: only the input is named.
        assert!(matches!(
            check_input(Some(input), "models:/iris@champion"),
            Err(InputError::Missing { .. })
        ));
        // Stdin (no `-i`, or `-i -`) and an existing file: nothing to report.
        check_input(None, model_text).unwrap();
        check_input(Some(Path::new("-")), model_text).unwrap();
        check_input(Some(&model.join("MLmodel")), "models:/iris/1").unwrap();
    }

    /// `--params` must be a JSON object; `-r` is split at commas, blanks dropped. (Both were
    /// the CLI's, in `commands/run/action.rs`.)
    #[test]
    fn params_are_an_object_and_requirements_are_comma_separated() {
        check_params(r#"{"temperature": 0.5}"#).unwrap();
        assert_eq!(
            check_params("[1]").unwrap_err().to_string(),
            r#"`--params` must be a JSON object, e.g. '{"temperature": 0.5}'"#
        );
        let error = check_params("{").unwrap_err();
        assert!(
            matches!(error, InputError::ParamsNotJson { .. }),
            "{error:?}"
        );
        assert!(error.is_user_error());
        assert_eq!(split_requirements("x==1.0, y==2.0,,"), ["x==1.0", "y==2.0"]);
        assert!(split_requirements(" , ").is_empty());
    }
}
