//! One-line summaries of a model's parts for people (`pyfunc-env inspect`): a requirement, a
//! signature's columns, where a virtualenv's spec comes from.

use crate::compat::CompatConstraint;
use crate::uv_project::UvProject;
use crate::{
    IndexOptions, ModelDir, PipRequirement, SpecError, VirtualenvSource, requirements::Target,
};

/// A requirement as the model's file writes it: `-e ./pkg`, `numpy==1.26.4`, a URL.
#[must_use]
pub fn requirement_text(requirement: &PipRequirement) -> String {
    let mut text = String::new();
    if requirement.editable {
        text.push_str("-e ");
    }
    match &requirement.target {
        Target::Named(s) | Target::Url(s) => text.push_str(s),
        Target::Path(p) => {
            text.push_str("./");
            text.push_str(p);
        }
    }
    text
}

/// An MLmodel signature's inputs or outputs: `x (double), y (long)`, or the number of columns
/// when there are many.
#[must_use]
pub fn schema_summary(schema: &serde_json::Value) -> String {
    let Some(columns) = schema.as_array() else {
        return schema.to_string();
    };
    let parts: Vec<String> = columns
        .iter()
        .map(|c| {
            let kind = c.get("type").and_then(|t| t.as_str()).unwrap_or("?");
            let kind = if kind == "tensor" {
                let dtype = c
                    .pointer("/tensor-spec/dtype")
                    .and_then(|d| d.as_str())
                    .unwrap_or("?");
                let shape = c
                    .pointer("/tensor-spec/shape")
                    .map(ToString::to_string)
                    .unwrap_or_default();
                format!("tensor {dtype} {shape}")
            } else {
                kind.to_string()
            };
            match c.get("name").and_then(|n| n.as_str()) {
                Some(name) => format!("{name} ({kind})"),
                None => kind,
            }
        })
        .collect();
    if parts.len() > 8 {
        format!("{} columns: {}, ...", parts.len(), parts[..6].join(", "))
    } else {
        parts.join(", ")
    }
}

/// Each index option that is set, as its field name written as a flag (`--extra-index-urls`)
/// and its value as JSON (`["https://…"]`, `true`), in the order of [`IndexOptions`];
/// credentials in URLs are masked as in its serialisation.
#[must_use]
pub fn index_options(options: &IndexOptions) -> Vec<(String, String)> {
    // Its serialisation skips what is unset and masks URLs: exactly the options to show.
    let value = serde_json::to_value(options).unwrap_or_default();
    let fields = value.as_object().into_iter().flatten();
    fields
        .map(|(name, value)| (format!("--{}", name.replace('_', "-")), value.to_string()))
        .collect()
}

/// A model's environment files, as `inspect` names them.
#[derive(Debug)]
pub struct EnvFiles {
    /// What the virtualenv and uv env managers read ([`VirtualenvSource::describe`]); when
    /// that cannot be read, the file name MLflow looks for and why.
    pub virtualenv: Result<String, (String, SpecError)>,
    /// The conda file: the one `python_function.env` names, else MLflow's default name
    /// ([`crate::MlModel::env_file_names`]).
    pub conda: String,
}

impl EnvFiles {
    /// `model`'s environment files.
    ///
    /// # Errors
    /// `MLmodel` cannot be read, or its `python_function` entry is malformed.
    pub fn of(model: &ModelDir) -> Result<Self, SpecError> {
        let names = model.env_file_names()?;
        Ok(Self {
            virtualenv: model
                .virtualenv_env()
                .map(|env| env.source.describe())
                .map_err(|error| (names.virtualenv, error)),
            conda: names.conda,
        })
    }
}

impl VirtualenvSource {
    /// The files a virtualenv's spec is read from, and what each gives.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::PythonEnv { file } => file.clone(),
            Self::CondaAndRequirements {
                conda,
                requirements,
            } => format!("{conda} (python and build dependencies) + {requirements}"),
            Self::Conda { file } => {
                format!("{file} (python, pip, setuptools, wheel and its pip list)")
            }
        }
    }
}

impl UvProject {
    /// How many packages its lock pins and how they are installed (MLflow's `uv sync`, which
    /// `env_uv::uv_lock` reproduces).
    #[must_use]
    pub fn describe(&self) -> String {
        format!(
            "{} packages, installed as `uv sync --frozen --no-dev` (default groups, no extras)",
            self.packages.len()
        )
    }
}

impl std::fmt::Display for CompatConstraint {
    /// `setuptools<82 (setuptools-pkg-resources, for mlflow 2.9.2)`: the constraint, its row
    /// of the compatibility table and the MLflow version it was chosen for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, for mlflow {})",
            self.constraint, self.id, self.mlflow
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conda file `python_function.env` names, else MLflow's default; the virtualenv's
    /// sources, else the file MLflow looks for and why it cannot be read.
    #[test]
    fn env_files_name_the_models_own_files_or_mlflows_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let named = dir.path().join("named");
        fs_err::create_dir_all(&named).unwrap();
        fs_err::write(
            named.join("MLmodel"),
            "flavors:\n  python_function:\n    loader_module: m\n    env:\n      conda: env.yaml\n      virtualenv: py.yaml\n",
        )
        .unwrap();
        fs_err::write(
            named.join("env.yaml"),
            "dependencies:\n- python=3.11.7\n- pip\n- pip:\n  - numpy\n",
        )
        .unwrap();
        let files = EnvFiles::of(&ModelDir::open(&named).unwrap()).unwrap();
        assert_eq!(files.conda, "env.yaml");
        assert!(
            files.virtualenv.as_ref().unwrap().contains("env.yaml"),
            "{files:?}"
        );
        let bare = dir.path().join("bare");
        fs_err::create_dir_all(&bare).unwrap();
        fs_err::write(
            bare.join("MLmodel"),
            "flavors:\n  python_function:\n    loader_module: m\n",
        )
        .unwrap();
        let files = EnvFiles::of(&ModelDir::open(&bare).unwrap()).unwrap();
        assert_eq!(files.conda, "conda.yaml");
        let (name, _) = files.virtualenv.unwrap_err();
        assert_eq!(name, "python_env.yaml");
    }

    #[test]
    fn a_compat_constraint_names_its_row_and_mlflow() {
        let constraint = CompatConstraint {
            constraint: "setuptools<82".into(),
            id: "setuptools-pkg-resources".into(),
            mlflow: "2.9.2".into(),
        };
        assert_eq!(
            constraint.to_string(),
            "setuptools<82 (setuptools-pkg-resources, for mlflow 2.9.2)"
        );
    }

    #[test]
    fn index_options_are_the_set_ones_as_pip_flags_with_secrets_masked() {
        let options = IndexOptions {
            extra_index_urls: vec!["https://user:secret@pypi.example/simple".into()],
            no_index: true,
            ..IndexOptions::default()
        };
        let shown = index_options(&options);
        let flags: Vec<&str> = shown.iter().map(|(flag, _)| flag.as_str()).collect();
        assert_eq!(flags, ["--extra-index-urls", "--no-index"]);
        assert_eq!(shown[1].1, "true");
        assert!(!shown[0].1.contains("secret"), "{shown:?}");
        assert!(index_options(&IndexOptions::default()).is_empty());
    }

    #[test]
    fn schemas_name_their_columns_and_count_many() {
        let schema = serde_json::json!([
            {"name": "x", "type": "double"},
            {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 4]}},
        ]);
        assert_eq!(schema_summary(&schema), "x (double), tensor float32 [-1,4]");
        let many = serde_json::Value::Array(
            (0..9)
                .map(|i| serde_json::json!({"name": format!("c{i}"), "type": "long"}))
                .collect(),
        );
        assert_eq!(
            schema_summary(&many),
            "9 columns: c0 (long), c1 (long), c2 (long), c3 (long), c4 (long), c5 (long), ..."
        );
    }
}
