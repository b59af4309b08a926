//! Warnings: things MLflow would do silently (or warn about in its log) that a user should know.

use serde::Serialize;

use crate::error::SpecError;
use crate::source::SourceFile;
use crate::yaml::{Node, YamlError};

/// A warning about a model's environment files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Warning {
    /// What happened, in one line.
    pub message: String,
    /// The file it is about, relative to the model directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line in that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The kind, for programs.
    #[serde(skip)]
    pub kind: WarningKind,
}

/// The machine-readable part of a [`Warning`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WarningKind {
    /// Conda dependencies that MLflow's virtualenv manager drops (`The following conda
    /// dependencies will not be installed in the resulting environment: [...]`).
    DroppedCondaDependencies(Vec<String>),
    /// Conda dependencies left out of `get_model_dependencies(format="pip")` (`The following
    /// conda dependencies have been excluded from the environment file: ...`).
    ExcludedCondaDependencies(Vec<String>),
    /// The conda file pins no python (`... does not include a python version specification`).
    NoPythonPin,
    /// A version was written as a YAML number, which MLflow reads as a float.
    VersionIsFloat,
    /// Anything else.
    #[default]
    Other,
}

impl Warning {
    /// A warning about a place in a file.
    #[must_use]
    pub fn at(file: &SourceFile, node: &Node, message: String, kind: WarningKind) -> Self {
        let text = file.universal_newlines();
        let line = text[..node.span.start.min(text.len())]
            .matches('\n')
            .count()
            + 1;
        Self {
            message,
            file: Some(file.name.clone()),
            line: Some(line),
            kind,
        }
    }

    /// A warning about a whole file.
    #[must_use]
    pub fn file(file: &str, message: String, kind: WarningKind) -> Self {
        Self {
            message,
            file: Some(file.to_string()),
            line: None,
            kind,
        }
    }
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: {}", self.message),
            (Some(file), None) => write!(f, "{file}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

/// Parses a YAML file, turning a syntax error into a [`SpecError::Yaml`] that points at it.
pub fn load_yaml(file: &SourceFile) -> Result<Option<Node>, SpecError> {
    let text = file.universal_newlines();
    crate::yaml::load(&text).map_err(|err: YamlError| {
        let conflict = text.lines().position(|line| {
            line.starts_with("<<<<<<<") || line.starts_with(">>>>>>>") || line == "======="
        });
        let help = if let Some(index) = conflict {
            // The parser stops on a line after the marker; name the marker's own line.
            format!(
                "`{}` contains git merge-conflict markers (`<<<<<<<`, `=======`, `>>>>>>>`, first at line {}); resolve the conflict",
                file.name,
                index + 1
            )
        } else {
            format!("Fix the YAML syntax of `{}`; MLflow cannot read it either", file.name)
        };
        SpecError::Yaml {
            file: file.name.clone(),
            src: file.named_source(),
            span: err.span.into(),
            line: err.line,
            column: err.column,
            message: err.message,
            help,
        }
    })
}

/// A type error about a value, with MLflow's equivalent exception.
#[must_use]
pub fn invalid(
    file: &SourceFile,
    node: &Node,
    field: &str,
    expected: &str,
    help: &str,
    mlflow: crate::error::MlflowError,
) -> SpecError {
    let found = match node.scalar.as_ref() {
        Some((text, _)) if !text.is_empty() => format!("{} `{text}`", article(node.type_name())),
        _ => article(node.type_name()),
    };
    SpecError::InvalidValue {
        file: file.name.clone(),
        src: file.named_source(),
        span: node.span.into(),
        field: field.to_string(),
        expected: expected.to_string(),
        found,
        help: help.to_string(),
        mlflow,
    }
}

fn article(python_type: &str) -> String {
    match python_type {
        "NoneType" => "null".to_string(),
        "str" => "a string".to_string(),
        "int" => "an integer".to_string(),
        "float" => "a float".to_string(),
        "bool" => "a boolean".to_string(),
        "list" => "a list".to_string(),
        "dict" => "a mapping".to_string(),
        "datetime" => "a timestamp".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_conflicts_are_named_with_their_line() {
        let file = SourceFile {
            name: "MLmodel".into(),
            text: "flavors: {}\nmlflow_version: 2\n<<<<<<< HEAD\nrun_id: a\n=======\nrun_id: b\n>>>>>>> main\n".into(),
        };
        let err = load_yaml(&file).unwrap_err();
        let help = miette::Diagnostic::help(&err).unwrap().to_string();
        assert!(help.contains("merge-conflict markers"), "{help}");
        assert!(help.contains("first at line 3"), "{help}");
    }
}
