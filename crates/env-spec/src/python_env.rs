//! `python_env.yaml`: MLflow's `_PythonEnv.from_yaml`.
//!
//! The file is `{python: "3.11.7", build_dependencies: [...], dependencies: [...]}`. MLflow
//! raises `TypeError` when `python` is not a string, which is what PyYAML makes of an unquoted
//! `python: 3.9`. We read such a value as the version written in the file and warn (see
//! `DEVIATIONS.md`): the text `3.9` or `3.10` says exactly what was meant, while MLflow would see
//! the float `3.1` for the latter.

use crate::diagnostics::{Warning, WarningKind, invalid, load_yaml};
use crate::error::{MlflowError, SpecError};
use crate::requirements::{Origin, RawLine};
use crate::source::{LineIndex, SourceFile};
use crate::yaml::{Node, Value};

/// MLflow's `_PythonEnv`: a python version and two lists of pip requirement lines.
#[derive(Debug, Clone, Default)]
pub struct PythonEnv {
    /// The python version; `None` where MLflow would use the version of the Python running it.
    pub python: Option<String>,
    /// Installed first (`pip`, `setuptools`, `wheel` pins).
    pub build_dependencies: Vec<RawLine>,
    /// Installed after the build dependencies.
    pub dependencies: Vec<RawLine>,
}

impl PythonEnv {
    /// `_PythonEnv.to_dict()`, for comparison with MLflow.
    #[must_use]
    pub fn to_json(&self, current_python: &str) -> serde_json::Value {
        let list =
            |lines: &[RawLine]| -> Vec<String> { lines.iter().map(|l| l.text.clone()).collect() };
        serde_json::json!({
            "python": self.python.as_deref().unwrap_or(current_python),
            "build_dependencies": list(&self.build_dependencies),
            "dependencies": list(&self.dependencies),
        })
    }
}

/// Reads `python_env.yaml`.
pub fn parse(file: &SourceFile) -> Result<(PythonEnv, Vec<Warning>), SpecError> {
    let root = load_yaml(file)?;
    let Some(root) = root.filter(|r| r.as_map().is_some()) else {
        let help = "A python_env.yaml looks like `python: \"3.11.7\"`, `build_dependencies: [pip]`, `dependencies: [-r requirements.txt]`";
        return Err(match load_yaml(file)? {
            Some(node) => invalid(
                file,
                &node,
                "python_env",
                "a mapping",
                help,
                MlflowError::TypeError,
            ),
            None => SpecError::InvalidValue {
                file: file.name.clone(),
                src: file.named_source(),
                span: (0, 0).into(),
                field: "python_env".into(),
                expected: "a mapping".into(),
                found: "an empty file".into(),
                help: help.into(),
                mlflow: MlflowError::TypeError,
            },
        });
    };
    let mut warnings = Vec::new();
    let mut env = PythonEnv::default();
    for (key, value) in root.as_map().unwrap_or_default() {
        match key.as_str() {
            Some("python") => env.python = python_version(file, value, &mut warnings)?,
            Some("build_dependencies") => {
                env.build_dependencies = lines(file, value, "build_dependencies")?;
            }
            Some("dependencies") => env.dependencies = lines(file, value, "dependencies")?,
            _ => {
                return Err(invalid(
                    file,
                    key,
                    "python_env",
                    "only the keys `python`, `build_dependencies` and `dependencies`",
                    "MLflow rejects other keys (`_PythonEnv() got an unexpected keyword argument`); remove it",
                    MlflowError::TypeError,
                ));
            }
        }
    }
    Ok((env, warnings))
}

fn python_version(
    file: &SourceFile,
    value: &Node,
    warnings: &mut Vec<Warning>,
) -> Result<Option<String>, SpecError> {
    match &value.value {
        Value::Null => Ok(None),
        Value::Str(s) if s.is_empty() => Ok(None),
        Value::Str(s) => Ok(Some(s.clone())),
        Value::Float(_) => {
            let written = value.plain_text().unwrap_or_default().to_string();
            warnings.push(Warning::at(
                file,
                value,
                format!(
                    "`python: {written}` is the YAML float {} and MLflow rejects it (`python` must be a string); reading it as the version `{written}`. Quote it: `python: \"{written}\"`",
                    value.python_str()
                ),
                WarningKind::VersionIsFloat,
            ));
            Ok(Some(written))
        }
        _ => Err(invalid(
            file,
            value,
            "python",
            "a version string",
            "Write the version in quotes, e.g. `python: \"3.11.7\"`",
            MlflowError::TypeError,
        )),
    }
}

fn lines(file: &SourceFile, value: &Node, field: &str) -> Result<Vec<RawLine>, SpecError> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let Some(items) = value.as_seq() else {
        return Err(invalid(
            file,
            value,
            field,
            "a list of pip requirements",
            &format!("Write `{field}: [...]`"),
            MlflowError::TypeError,
        ));
    };
    let lines = LineIndex::new(&file.universal_newlines());
    items
        .iter()
        .map(|item| {
            let Some(line) = item.as_str() else {
                return Err(invalid(
                    file,
                    item,
                    &format!("{field}[]"),
                    "a pip requirement string",
                    "Quote the requirement, e.g. `- \"numpy==1.26.4\"`",
                    MlflowError::TypeError,
                ));
            };
            Ok(RawLine {
                text: line.to_string(),
                origin: Origin {
                    file: file.name.clone(),
                    line: lines.line(item.span.start),
                    span: item.span,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<(PythonEnv, Vec<Warning>), SpecError> {
        parse(&SourceFile {
            name: "python_env.yaml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn mlflow_written_file() {
        let (env, warnings) = parse_text(
            "python: 3.11.7\nbuild_dependencies:\n- pip==23.3.1\n- setuptools==68.2.2\n- wheel==0.41.2\ndependencies:\n- -r requirements.txt\n",
        )
        .unwrap();
        assert_eq!(env.python.as_deref(), Some("3.11.7"));
        assert_eq!(env.build_dependencies.len(), 3);
        assert_eq!(env.dependencies[0].text, "-r requirements.txt");
        assert_eq!(env.dependencies[0].origin.line, 7);
        assert!(warnings.is_empty());
    }

    #[test]
    fn float_python_warns_and_keeps_the_text() {
        let (env, warnings) = parse_text("python: 3.10\n").unwrap();
        assert_eq!(env.python.as_deref(), Some("3.10"));
        assert_eq!(warnings[0].kind, WarningKind::VersionIsFloat);
        assert!(warnings[0].message.contains("YAML float 3.1"));
    }

    #[test]
    fn wrong_shapes_fail_like_mlflow() {
        for text in [
            "",
            "- a\n",
            "python: 3\n",
            "python: [3]\n",
            "dependencies: numpy\n",
            "extra: 1\n",
            "dependencies: [1.5]\n",
        ] {
            let err = parse_text(text).unwrap_err();
            assert_eq!(
                err.mlflow_equivalent(),
                MlflowError::TypeError,
                "{text}: {err}"
            );
        }
        let (env, _) = parse_text("python:\ndependencies: null\n").unwrap();
        assert_eq!(env.python, None);
    }
}
