//! The `MLmodel` file: `mlflow.models.Model.load`, and the `python_function` flavor in it.
//!
//! Real models write the flavor's `env` three ways: a mapping `{conda: ..., virtualenv: ...}`
//! (MLflow >= 2.0), a plain string naming the conda file (MLflow < 2.0), or nothing. Everything
//! else in the file is kept as loaded (unknown keys are fine), and the fields pyfunc-env uses
//! are typed here.

use crate::diagnostics::{Warning, WarningKind, invalid, load_yaml};
use crate::error::{MlflowError, SpecError};
use crate::source::SourceFile;
use crate::yaml::{Node, Value};

/// MLflow's default file names.
pub const CONDA_FILE: &str = "conda.yaml";
/// MLflow's default python env file name.
pub const PYTHON_ENV_FILE: &str = "python_env.yaml";
/// The pip requirements file MLflow writes next to the model.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
/// The pip constraints file MLflow writes when `-c` was used at save time.
pub const CONSTRAINTS_FILE: &str = "constraints.txt";
/// The model metadata file.
pub const MLMODEL_FILE: &str = "MLmodel";

/// A loaded `MLmodel` file.
#[derive(Debug, Clone)]
pub struct MlModel {
    /// The file.
    pub file: SourceFile,
    /// The whole document as loaded.
    pub root: Node,
    /// Flavor names in file order (empty if `flavors` is missing or not a mapping).
    pub flavors: Vec<String>,
    /// The `python_function` flavor, if any. `Some(None)` when the key is present but null.
    pub python_function: Option<Option<PyFuncFlavor>>,
    /// Warnings found while reading.
    pub warnings: Vec<Warning>,
}

/// The `python_function` flavor configuration.
#[derive(Debug, Clone)]
pub struct PyFuncFlavor {
    /// The mapping as loaded.
    pub node: Node,
    /// `env`.
    pub env: EnvEntry,
}

/// What `flavors.python_function.env` says.
#[derive(Debug, Clone)]
pub enum EnvEntry {
    /// No `env` key.
    Absent,
    /// A falsy value (`null`, `""`, `{}`): MLflow falls back to default names, but
    /// `get_model_dependencies` fails.
    Empty(Node),
    /// MLflow < 2.0: the conda file name.
    CondaFile(Node),
    /// MLflow >= 2.0: a mapping.
    Mapping(Node),
    /// Something else MLflow cannot use (a list, a number).
    Invalid(Node),
}

impl MlModel {
    /// `Model.load(path)`: reads and checks the parts MLflow checks.
    pub fn parse(file: SourceFile) -> Result<Self, SpecError> {
        let Some(root) = load_yaml(&file)? else {
            return Err(SpecError::InvalidValue {
                file: file.name.clone(),
                src: file.named_source(),
                span: (0, 0).into(),
                field: "MLmodel".into(),
                expected: "a mapping of model metadata".into(),
                found: "an empty document".into(),
                help: "Write the model with `mlflow.<flavor>.save_model`".into(),
                mlflow: MlflowError::AttributeError,
            });
        };
        if root.as_map().is_none() {
            return Err(invalid(
                &file,
                &root,
                "MLmodel",
                "a mapping of model metadata",
                "Write the model with `mlflow.<flavor>.save_model`",
                MlflowError::AttributeError,
            ));
        }
        let mut warnings = Vec::new();
        let flavors_node = root.get("flavors");
        let flavors = flavors_node
            .and_then(Node::as_map)
            .map(|entries| entries.iter().map(|(k, _)| k.python_str()).collect())
            .unwrap_or_default();
        let python_function = match flavors_node.and_then(Node::as_map) {
            None => None,
            Some(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some("python_function"))
                .map(|(_, config)| -> Result<Option<PyFuncFlavor>, SpecError> {
                    if config.is_null() {
                        return Ok(None);
                    }
                    if config.as_map().is_none() {
                        return Err(invalid(
                            &file,
                            config,
                            "flavors.python_function",
                            "a mapping",
                            "The flavor configuration is a mapping with `loader_module`, `env`, ...",
                            MlflowError::AttributeError,
                        ));
                    }
                    let env = match config.get("env") {
                        None => EnvEntry::Absent,
                        Some(env) if !env.is_truthy() => EnvEntry::Empty(env.clone()),
                        Some(env) if env.as_str().is_some() => EnvEntry::CondaFile(env.clone()),
                        Some(env) if env.as_map().is_some() => EnvEntry::Mapping(env.clone()),
                        Some(env) => EnvEntry::Invalid(env.clone()),
                    };
                    Ok(Some(PyFuncFlavor {
                        node: config.clone(),
                        env,
                    }))
                })
                .transpose()?,
        };
        for (field, node) in [
            ("mlflow_version", root.get("mlflow_version")),
            (
                "flavors.python_function.python_version",
                python_function
                    .as_ref()
                    .and_then(Option::as_ref)
                    .and_then(|f| f.node.get("python_version")),
            ),
        ] {
            if let Some(node) = node
                && let Value::Float(_) = node.value
            {
                let written = node.plain_text().unwrap_or_default();
                let key = field.rsplit('.').next().unwrap_or(field);
                warnings.push(Warning::at(
                    &file,
                    node,
                    format!(
                        "`{field}` is `{written}`, the YAML float {} to MLflow; reading it as the version `{written}`. Quote it: `{key}: \"{written}\"`",
                        node.python_str()
                    ),
                    WarningKind::VersionIsFloat,
                ));
            }
        }
        Ok(Self {
            file,
            root,
            flavors,
            python_function,
            warnings,
        })
    }

    /// The `python_function` flavor, or MLflow's `Model does not have the "python_function"
    /// flavor` error.
    pub fn pyfunc(&self) -> Result<&PyFuncFlavor, SpecError> {
        match &self.python_function {
            Some(Some(flavor)) => Ok(flavor),
            Some(None) => Err(SpecError::NoPythonFunction {
                file: self.file.name.clone(),
                flavors: format!("{} (`python_function` is null)", self.flavor_list()),
            }),
            None => Err(SpecError::NoPythonFunction {
                file: self.file.name.clone(),
                flavors: self.flavor_list(),
            }),
        }
    }

    fn flavor_list(&self) -> String {
        if self.flavors.is_empty() {
            "none".to_string()
        } else {
            self.flavors
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    /// A top-level string field, as MLflow would `str()` it.
    #[must_use]
    pub fn field(&self, key: &str) -> Option<String> {
        self.root
            .get(key)
            .filter(|n| !n.is_null())
            .map(version_text)
    }

    /// A field of the `python_function` flavor, as text.
    #[must_use]
    pub fn pyfunc_field(&self, key: &str) -> Option<String> {
        let flavor = self.python_function.as_ref()?.as_ref()?;
        flavor
            .node
            .get(key)
            .filter(|n| !n.is_null())
            .map(version_text)
    }

    /// `mlflow_version` as written (a float `3.10` read back as `3.10`).
    #[must_use]
    pub fn mlflow_version(&self) -> Option<String> {
        self.field("mlflow_version")
    }

    /// `utc_time_created` (`2024-05-01 12:34:56.789012`, as MLflow writes it) as an RFC 3339
    /// timestamp (`2024-05-01T12:34:56.789012Z`), for `--exclude-newer model`. `None` when
    /// absent or not in that form.
    #[must_use]
    pub fn utc_time_created(&self) -> Option<String> {
        let text = self.field("utc_time_created")?;
        let text = text.trim();
        let (date, time) = text.split_once([' ', 'T'])?;
        let time = time.trim_end_matches('Z');
        let date_ok = date.len() == 10
            && date.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            });
        let (clock, fraction) = time.split_once('.').unwrap_or((time, ""));
        let clock_ok = clock.len() == 8
            && clock.bytes().enumerate().all(|(i, b)| {
                if i == 2 || i == 5 {
                    b == b':'
                } else {
                    b.is_ascii_digit()
                }
            });
        let fraction_ok = fraction.bytes().all(|b| b.is_ascii_digit());
        (date_ok && clock_ok && fraction_ok).then(|| format!("{date}T{time}Z"))
    }

    /// `flavors.python_function.python_version` as written.
    #[must_use]
    pub fn python_version(&self) -> Option<String> {
        self.pyfunc_field("python_version")
    }

    /// `flavors.python_function.loader_module`.
    #[must_use]
    pub fn loader_module(&self) -> Option<String> {
        self.pyfunc_field("loader_module")
    }

    /// The model signature's parts (`inputs`, `outputs`, `params`), parsed from the JSON
    /// strings MLflow stores. Parts that are not valid JSON are left out.
    #[must_use]
    pub fn signature(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        let signature = self.root.get("signature")?;
        let mut out = serde_json::Map::new();
        for (key, value) in signature.as_map()? {
            let (Some(key), Some(text)) = (key.as_str(), value.as_str()) else {
                continue;
            };
            if let Ok(json) = serde_json::from_str(text) {
                out.insert(key.to_string(), json);
            }
        }
        Some(out)
    }

    /// The file names MLflow's virtualenv/uv env manager looks for
    /// (`mlflow.utils.virtualenv._get_conda_env_file` / `_get_python_env_file`).
    pub fn env_file_names(&self) -> Result<EnvFileNames, SpecError> {
        let mut names = EnvFileNames {
            conda: CONDA_FILE.to_string(),
            virtualenv: PYTHON_ENV_FILE.to_string(),
        };
        let Some(Some(flavor)) = &self.python_function else {
            if let Some(None) = &self.python_function {
                // `config.get(...)` on None.
                let node = self
                    .root
                    .get("flavors")
                    .and_then(|f| f.get("python_function"))
                    .unwrap_or(&self.root);
                return Err(invalid(
                    &self.file,
                    node,
                    "flavors.python_function",
                    "a mapping",
                    "Remove the empty `python_function` flavor or fill it in",
                    MlflowError::AttributeError,
                ));
            }
            return Ok(names);
        };
        match &flavor.env {
            EnvEntry::Absent | EnvEntry::Empty(_) => {}
            EnvEntry::CondaFile(node) => names.conda = node.python_str(),
            EnvEntry::Mapping(node) => {
                names.conda = self.env_key(node, "conda")?;
                names.virtualenv = self.env_key(node, "virtualenv")?;
            }
            EnvEntry::Invalid(node) => {
                return Err(invalid(
                    &self.file,
                    node,
                    "flavors.python_function.env",
                    "a mapping `{conda: ..., virtualenv: ...}` or a file name",
                    "MLflow >= 2.0 writes `env: {conda: conda.yaml, virtualenv: python_env.yaml}`",
                    MlflowError::TypeError,
                ));
            }
        }
        Ok(names)
    }

    /// The conda file named by `python_function.env`, as `get_model_dependencies` and the conda
    /// env manager find it (`_extract_conda_env(flavor["env"])`); these fail where
    /// [`Self::env_file_names`] falls back to defaults.
    pub fn conda_file_name(&self) -> Result<String, SpecError> {
        let flavor = self.pyfunc()?;
        match &flavor.env {
            EnvEntry::Absent => Err(SpecError::NoEnvEntry {
                file: self.file.name.clone(),
                src: self.file.named_source(),
                span: flavor.node.span.into(),
            }),
            EnvEntry::Empty(node) => Err(SpecError::EmptyEnvEntry {
                file: self.file.name.clone(),
                src: self.file.named_source(),
                span: node.span.into(),
            }),
            EnvEntry::CondaFile(node) => Ok(node.python_str()),
            EnvEntry::Mapping(node) => self.env_key(node, "conda"),
            EnvEntry::Invalid(node) => Err(invalid(
                &self.file,
                node,
                "flavors.python_function.env",
                "a mapping `{conda: ..., virtualenv: ...}` or a file name",
                "MLflow >= 2.0 writes `env: {conda: conda.yaml, virtualenv: python_env.yaml}`",
                MlflowError::TypeError,
            )),
        }
    }

    fn env_key(&self, mapping: &Node, key: &'static str) -> Result<String, SpecError> {
        let Some(value) = mapping.get(key) else {
            return Err(SpecError::MissingEnvKey {
                file: self.file.name.clone(),
                src: self.file.named_source(),
                span: mapping.span.into(),
                key,
            });
        };
        match value.as_str() {
            Some(name) => Ok(name.to_string()),
            None => Err(invalid(
                &self.file,
                value,
                &format!("flavors.python_function.env.{key}"),
                "a file name",
                "Name a file in the model directory, e.g. `conda.yaml`",
                MlflowError::TypeError,
            )),
        }
    }
}

/// The env file names a model uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvFileNames {
    /// The conda environment file.
    pub conda: String,
    /// The `python_env` file.
    pub virtualenv: String,
}

/// A version field as text: strings as they are, YAML numbers as written in the file.
#[must_use]
pub fn version_text(node: &Node) -> String {
    match (&node.value, node.plain_text()) {
        (Value::Float(_) | Value::Int(_), Some(text)) => text.to_string(),
        _ => node.python_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MlModel, SpecError> {
        MlModel::parse(SourceFile {
            name: "MLmodel".into(),
            text: text.into(),
        })
    }

    #[test]
    fn env_as_mapping_string_or_absent() {
        let model = parse(
            "flavors:\n  python_function:\n    env:\n      conda: c.yaml\n      virtualenv: p.yaml\n    loader_module: mlflow.sklearn\n",
        )
        .unwrap();
        let names = model.env_file_names().unwrap();
        assert_eq!(
            (names.conda.as_str(), names.virtualenv.as_str()),
            ("c.yaml", "p.yaml")
        );
        assert_eq!(model.conda_file_name().unwrap(), "c.yaml");
        assert_eq!(model.loader_module().as_deref(), Some("mlflow.sklearn"));

        let model = parse("flavors:\n  python_function:\n    env: old.yaml\n").unwrap();
        let names = model.env_file_names().unwrap();
        assert_eq!(
            (names.conda.as_str(), names.virtualenv.as_str()),
            ("old.yaml", "python_env.yaml")
        );

        let model = parse("flavors:\n  python_function:\n    loader_module: x\n").unwrap();
        assert_eq!(model.env_file_names().unwrap().conda, "conda.yaml");
        assert!(matches!(
            model.conda_file_name(),
            Err(SpecError::NoEnvEntry { .. })
        ));

        let model = parse("flavors:\n  python_function:\n    env: null\n").unwrap();
        assert_eq!(model.env_file_names().unwrap().conda, "conda.yaml");
        assert!(matches!(
            model.conda_file_name(),
            Err(SpecError::EmptyEnvEntry { .. })
        ));

        let model = parse("flavors:\n  python_function:\n    env: {conda: c.yaml}\n").unwrap();
        assert!(matches!(
            model.env_file_names(),
            Err(SpecError::MissingEnvKey {
                key: "virtualenv",
                ..
            })
        ));
    }

    #[test]
    fn no_pyfunc_flavor() {
        let model = parse("flavors:\n  sklearn:\n    pickled_model: model.pkl\n").unwrap();
        assert_eq!(model.flavors, ["sklearn"]);
        let err = model.pyfunc().unwrap_err();
        assert_eq!(
            err.to_string(),
            "`MLmodel` has no `python_function` flavor (flavors: `sklearn`)"
        );
    }

    #[test]
    fn float_versions_warn_and_read_as_written() {
        let model =
            parse("mlflow_version: 3.10\nflavors:\n  python_function:\n    python_version: 3.12\n")
                .unwrap();
        assert_eq!(model.mlflow_version().as_deref(), Some("3.10"));
        assert_eq!(model.python_version().as_deref(), Some("3.12"));
        assert_eq!(model.warnings.len(), 2);
        assert!(
            model.warnings[0].message.contains("YAML float 3.1"),
            "{}",
            model.warnings[0]
        );
        assert_eq!(model.warnings[0].line, Some(1));
    }

    #[test]
    fn signature_json_strings() {
        let model = parse("signature:\n  inputs: '[{\"type\": \"double\", \"name\": \"x\"}]'\n  outputs: '[{\"type\": \"long\"}]'\n  params: null\n").unwrap();
        let signature = model.signature().unwrap();
        assert_eq!(signature["inputs"][0]["name"], "x");
        assert!(!signature.contains_key("params"));
    }

    #[test]
    fn not_a_mapping() {
        assert!(matches!(
            parse("- a\n- b\n"),
            Err(SpecError::InvalidValue { .. })
        ));
        assert!(matches!(parse(""), Err(SpecError::InvalidValue { .. })));
    }
}
