//! `conda.yaml`, read three ways, each as the MLflow code path that reads it:
//!
//! - [`CondaFile::conda_env`]: what `env_manager="conda"` gives to `conda env create`: channels,
//!   conda match specs and the `pip:` list;
//! - [`CondaFile::to_python_env`]: `_PythonEnv.get_dependencies_from_conda_yaml`, the virtualenv
//!   manager's fallback when there is no `python_env.yaml` (python, pip, setuptools and wheel
//!   are kept; other conda packages are dropped with a warning);
//! - [`CondaFile::pip_section`]: `get_model_dependencies(format="pip")` without a
//!   `requirements.txt` (the `pip:` list; other dependencies excluded with a warning).

use std::collections::BTreeMap;

use rattler_conda_types::{MatchSpec, ParseStrictness};

use crate::diagnostics::{Warning, WarningKind, invalid, load_yaml};
use crate::error::{MlflowError, SpecError};
use crate::requirements::{Origin, RawLine};
use crate::source::{LineIndex, SourceFile};
use crate::yaml::{Node, Value, python_str_repr};

/// A parsed conda environment file.
#[derive(Debug, Clone)]
pub struct CondaFile {
    /// The file.
    pub file: SourceFile,
    /// Its document (`None` for an empty file).
    pub root: Option<Node>,
    /// Line numbers of the text the document was loaded from (universal newlines).
    lines: LineIndex,
}

/// What the conda env manager builds from the file.
#[derive(Debug, Clone)]
pub struct CondaEnv {
    /// `channels`, in order.
    pub channels: Vec<String>,
    /// Conda dependencies: the spec as written, parsed.
    pub specs: Vec<(String, MatchSpec)>,
    /// The `pip:` list (the last one, as MLflow takes it), if any.
    pub pip: Option<Vec<RawLine>>,
    /// `variables:`, set when the environment is activated.
    pub variables: BTreeMap<String, String>,
}

/// `_PythonEnv.get_dependencies_from_conda_yaml`'s result.
#[derive(Debug, Clone)]
pub struct CondaPythonEnv {
    /// The python version of the first matching `python` pin, if any.
    pub python: Option<String>,
    /// `pip`, `setuptools`, `wheel` (and extra `python`) pins, `=` rewritten to `==`.
    pub build_dependencies: Option<Vec<RawLine>>,
    /// The `pip:` list.
    pub dependencies: Option<Vec<RawLine>>,
}

/// MLflow's `_CONDA_DEPENDENCY_REGEX`:
/// `^(?P<package>python|pip|setuptools|wheel)(?P<operator><|>|<=|>=|=|==|!=)?(?P<version>[\d.]+)?$`
fn match_build_dependency(dep: &str) -> Option<(&str, Option<&str>, Option<&str>)> {
    let package = ["python", "pip", "setuptools", "wheel"]
        .into_iter()
        .find(|p| dep.starts_with(p))?;
    let rest = &dep[package.len()..];
    // Try operators longest first; the regex backtracks to the same result.
    let (operator, version) = match ["<=", ">=", "==", "!=", "<", ">", "="]
        .into_iter()
        .find(|op| rest.starts_with(op))
    {
        Some(op) => (Some(op), &rest[op.len()..]),
        None => (None, rest),
    };
    if !version.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    Some((package, operator, (!version.is_empty()).then_some(version)))
}

impl CondaFile {
    /// Parses the YAML of a conda file.
    pub fn parse(file: SourceFile) -> Result<Self, SpecError> {
        let root = load_yaml(&file)?;
        let lines = LineIndex::new(&file.universal_newlines());
        Ok(Self { file, root, lines })
    }

    fn origin(&self, node: &Node) -> Origin {
        Origin {
            file: self.file.name.clone(),
            line: self.lines.line(node.span.start),
            span: node.span,
        }
    }

    /// The top-level mapping, or MLflow's `AttributeError` on `conda_env.get(...)`.
    fn mapping(&self) -> Result<&Node, SpecError> {
        match &self.root {
            Some(root) if root.as_map().is_some() => Ok(root),
            Some(root) => Err(invalid(
                &self.file,
                root,
                "conda environment",
                "a mapping with `channels` and `dependencies`",
                "A conda environment file looks like `channels: [conda-forge]` and `dependencies: [python=3.11.7, pip, {pip: [...]}]`",
                MlflowError::AttributeError,
            )),
            None => Err(SpecError::InvalidValue {
                file: self.file.name.clone(),
                src: self.file.named_source(),
                span: (0, 0).into(),
                field: "conda environment".into(),
                expected: "a mapping with `channels` and `dependencies`".into(),
                found: "an empty file".into(),
                help: "Write the model's conda environment into the file, or remove it".into(),
                mlflow: MlflowError::AttributeError,
            }),
        }
    }

    /// `conda_env.get("dependencies", [])`, which must be a list.
    fn dependencies(&self) -> Result<&[Node], SpecError> {
        let root = self.mapping()?;
        match root.get("dependencies") {
            None => Ok(&[]),
            Some(node) => node.as_seq().ok_or_else(|| {
                invalid(
                    &self.file,
                    node,
                    "dependencies",
                    "a list",
                    "List the conda packages, e.g. `dependencies: [python=3.11.7, pip]`",
                    MlflowError::TypeError,
                )
            }),
        }
    }

    fn pip_list(&self, node: &Node) -> Result<Vec<RawLine>, SpecError> {
        let list = node.as_seq().ok_or_else(|| {
            invalid(
                &self.file,
                node,
                "dependencies.pip",
                "a list of pip requirements",
                "Write `- pip: [numpy==1.26.4, ...]`",
                MlflowError::TypeError,
            )
        })?;
        list.iter()
            .map(|item| match item.as_str() {
                Some(text) => Ok(RawLine {
                    text: text.to_string(),
                    origin: self.origin(item),
                }),
                None => Err(invalid(
                    &self.file,
                    item,
                    "dependencies.pip[]",
                    "a pip requirement string",
                    "Quote the requirement, e.g. `- \"numpy==1.26.4\"`",
                    MlflowError::TypeError,
                )),
            })
            .collect()
    }

    fn is_pip_entry(node: &Node) -> bool {
        node.get("pip").is_some()
    }

    /// `_PythonEnv.get_dependencies_from_conda_yaml`, with MLflow's warnings.
    pub fn to_python_env(&self) -> Result<(CondaPythonEnv, Vec<Warning>), SpecError> {
        let mut python: Option<String> = None;
        let mut build: Option<Vec<RawLine>> = None;
        let mut unmatched: Vec<String> = Vec::new();
        let mut dependencies = None;
        let mut warnings = Vec::new();
        for dep in self.dependencies()? {
            if let Some(text) = dep.as_str() {
                let Some((package, operator, version)) = match_build_dependency(text) else {
                    unmatched.push(text.to_string());
                    continue;
                };
                if python.as_deref().is_none_or(str::is_empty) && package == "python" {
                    match operator {
                        None => {
                            return Err(SpecError::InvalidPythonPin {
                                file: self.file.name.clone(),
                                src: self.file.named_source(),
                                span: dep.span.into(),
                                dependency: text.to_string(),
                                reason: "it must be pinned (e.g. `python=3.8.13`)".into(),
                            });
                        }
                        Some(op @ ("<" | ">" | "!=")) => {
                            return Err(SpecError::InvalidPythonPin {
                                file: self.file.name.clone(),
                                src: self.file.named_source(),
                                span: dep.span.into(),
                                dependency: text.to_string(),
                                reason: format!(
                                    "the comparator `{op}` cannot pick a version; use one of `<=`, `>=`, `=`, `==`"
                                ),
                            });
                        }
                        Some(_) => python = version.map(str::to_string),
                    }
                    continue;
                }
                let operator = if operator == Some("=") {
                    Some("==")
                } else {
                    operator
                };
                build.get_or_insert_with(Vec::new).push(RawLine {
                    text: format!(
                        "{package}{}{}",
                        operator.unwrap_or(""),
                        version.unwrap_or("")
                    ),
                    origin: self.origin(dep),
                });
            } else if Self::is_pip_entry(dep) {
                dependencies = Some(self.pip_list(dep.get("pip").unwrap_or(dep))?);
            } else {
                return Err(invalid(
                    &self.file,
                    dep,
                    "dependencies[]",
                    "a conda spec string or `{pip: [...]}`",
                    "Each dependency is a conda spec like `numpy=1.26` or a `pip:` list",
                    MlflowError::MlflowException,
                ));
            }
        }
        if python.is_none() {
            warnings.push(Warning::file(
                &self.file.name,
                "does not include a python version specification (MLflow would use the Python running MLflow)".into(),
                WarningKind::NoPythonPin,
            ));
        }
        if !unmatched.is_empty() {
            let list: Vec<String> = unmatched.iter().map(|d| python_str_repr(d)).collect();
            warnings.push(Warning::file(
                &self.file.name,
                format!(
                    "The following conda dependencies will not be installed in the resulting environment: [{}]",
                    list.join(", ")
                ),
                WarningKind::DroppedCondaDependencies(unmatched),
            ));
        }
        Ok((
            CondaPythonEnv {
                python,
                build_dependencies: build,
                dependencies,
            },
            warnings,
        ))
    }

    /// The `pip:` list as `get_model_dependencies(format="pip")` writes it
    /// (`"\n".join(pip) + "\n"`), with its warning about the excluded conda dependencies.
    pub fn pip_section(&self) -> Result<(Vec<RawLine>, String, Vec<Warning>), SpecError> {
        let deps = self.dependencies()?;
        let Some(index) = deps
            .iter()
            .position(|d| d.as_map().is_some() && Self::is_pip_entry(d))
        else {
            return Err(SpecError::NoPipSection {
                file: self.file.name.clone(),
            });
        };
        let lines = self.pip_list(deps[index].get("pip").unwrap_or(&deps[index]))?;
        let mut text: String = lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        text.push('\n');
        let rest: Vec<&Node> = deps
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, d)| d)
            .collect();
        let mut warnings = Vec::new();
        if !rest.is_empty() {
            let names = rest
                .iter()
                .map(|d| {
                    d.as_str().map(str::to_string).ok_or_else(|| {
                        invalid(
                            &self.file,
                            d,
                            "dependencies[]",
                            "a conda spec string",
                            "Only one `pip:` entry is allowed",
                            MlflowError::TypeError,
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            warnings.push(Warning::file(
                &self.file.name,
                format!(
                    "The following conda dependencies have been excluded from the environment file: {}.",
                    names.join(", ")
                ),
                WarningKind::ExcludedCondaDependencies(names),
            ));
        }
        Ok((lines, text, warnings))
    }

    /// What the conda env manager installs.
    pub fn conda_env(&self) -> Result<CondaEnv, SpecError> {
        let root = self.mapping()?;
        let mut channels = Vec::new();
        if let Some(node) = root.get("channels").filter(|n| !n.is_null()) {
            let list = node.as_seq().ok_or_else(|| {
                invalid(
                    &self.file,
                    node,
                    "channels",
                    "a list of channel names or URLs",
                    "Write `channels: [conda-forge]`",
                    MlflowError::None,
                )
            })?;
            for item in list {
                let Some(channel) = item.as_str() else {
                    return Err(invalid(
                        &self.file,
                        item,
                        "channels[]",
                        "a channel name or URL",
                        "Write `channels: [conda-forge]`",
                        MlflowError::None,
                    ));
                };
                if !channels.iter().any(|c| c == channel) {
                    channels.push(channel.to_string());
                }
            }
        }
        let mut specs = Vec::new();
        let mut pip = None;
        for dep in self.dependencies()? {
            if let Some(text) = dep.as_str() {
                let spec =
                    MatchSpec::from_str(text, ParseStrictness::Lenient).map_err(|source| {
                        SpecError::CondaSpec {
                            file: self.file.name.clone(),
                            src: self.file.named_source(),
                            span: dep.span.into(),
                            dependency: text.to_string(),
                            source,
                        }
                    })?;
                specs.push((text.to_string(), spec));
            } else if Self::is_pip_entry(dep) {
                pip = Some(self.pip_list(dep.get("pip").unwrap_or(dep))?);
            } else {
                return Err(invalid(
                    &self.file,
                    dep,
                    "dependencies[]",
                    "a conda spec string or `{pip: [...]}`",
                    "Each dependency is a conda spec like `numpy=1.26` or a `pip:` list",
                    MlflowError::MlflowException,
                ));
            }
        }
        let mut variables = BTreeMap::new();
        if let Some(node) = root.get("variables").filter(|n| !n.is_null()) {
            let entries = node.as_map().ok_or_else(|| {
                invalid(
                    &self.file,
                    node,
                    "variables",
                    "a mapping of environment variables",
                    "Write `variables: {NAME: value}`",
                    MlflowError::None,
                )
            })?;
            for (key, value) in entries {
                let value = match &value.value {
                    Value::Seq(_) | Value::Map(_) => {
                        return Err(invalid(
                            &self.file,
                            value,
                            "variables",
                            "a string value",
                            "Write `variables: {NAME: value}`",
                            MlflowError::None,
                        ));
                    }
                    _ => crate::mlmodel::version_text(value),
                };
                variables.insert(key.python_str(), value);
            }
        }
        Ok(CondaEnv {
            channels,
            specs,
            pip,
            variables,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conda(text: &str) -> CondaFile {
        CondaFile::parse(SourceFile {
            name: "conda.yaml".into(),
            text: text.into(),
        })
        .unwrap()
    }

    fn texts(lines: Option<&Vec<RawLine>>) -> Vec<&str> {
        lines
            .map(|l| l.iter().map(|l| l.text.as_str()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn build_dependency_regex() {
        assert_eq!(
            match_build_dependency("python=3.8.5"),
            Some(("python", Some("="), Some("3.8.5")))
        );
        assert_eq!(
            match_build_dependency("pip<=23.3"),
            Some(("pip", Some("<="), Some("23.3")))
        );
        assert_eq!(match_build_dependency("pip"), Some(("pip", None, None)));
        assert_eq!(
            match_build_dependency("python=3.10.8=h257c98d_0_cpython"),
            None
        );
        assert_eq!(match_build_dependency("python >=3.8"), None);
        assert_eq!(match_build_dependency("pipx"), None);
        assert_eq!(
            match_build_dependency("wheel=="),
            Some(("wheel", Some("=="), None))
        );
    }

    #[test]
    fn to_python_env_like_mlflow() {
        let file = conda(
            "channels: [conda-forge]\ndependencies:\n- python=3.8.5\n- pip<=23.3\n- setuptools=65.0\n- scikit-learn=1.0\n- pip:\n  - mlflow==2.9.2\n  - numpy\n",
        );
        let (env, warnings) = file.to_python_env().unwrap();
        assert_eq!(env.python.as_deref(), Some("3.8.5"));
        assert_eq!(
            texts(env.build_dependencies.as_ref()),
            ["pip<=23.3", "setuptools==65.0"]
        );
        assert_eq!(texts(env.dependencies.as_ref()), ["mlflow==2.9.2", "numpy"]);
        assert_eq!(
            warnings[0].kind,
            WarningKind::DroppedCondaDependencies(vec!["scikit-learn=1.0".into()])
        );
        assert!(warnings[0].message.ends_with("['scikit-learn=1.0']"));
    }

    #[test]
    fn unpinned_python_is_an_error() {
        for dep in ["python", "python<3.9", "python!=3.8"] {
            let file = conda(&format!("dependencies:\n- {dep}\n"));
            assert!(
                matches!(
                    file.to_python_env(),
                    Err(SpecError::InvalidPythonPin { .. })
                ),
                "{dep}"
            );
        }
        let file = conda("dependencies:\n- numpy\n");
        let (env, warnings) = file.to_python_env().unwrap();
        assert_eq!(env.python, None);
        assert_eq!(warnings[0].kind, WarningKind::NoPythonPin);
    }

    #[test]
    fn pip_section_text_and_exclusions() {
        let file = conda("dependencies:\n- python=3.8\n- pip\n- pip: [a==1, b]\n");
        let (_, text, warnings) = file.pip_section().unwrap();
        assert_eq!(text, "a==1\nb\n");
        assert_eq!(
            warnings[0].message,
            "The following conda dependencies have been excluded from the environment file: python=3.8, pip."
        );
        let file = conda("dependencies:\n- python=3.8\n");
        assert!(matches!(
            file.pip_section(),
            Err(SpecError::NoPipSection { .. })
        ));
    }

    #[test]
    fn conda_env_specs_channels_variables() {
        let file = conda(
            "name: x\nchannels:\n- conda-forge\n- defaults\n- conda-forge\ndependencies:\n- python=3.11.7\n- abseil-cpp=20211102.0=h27087fc_1\n- pip:\n  - six\nvariables:\n  OMP_NUM_THREADS: 1\n",
        );
        let env = file.conda_env().unwrap();
        assert_eq!(env.channels, ["conda-forge", "defaults"]);
        assert_eq!(env.specs.len(), 2);
        assert_eq!(env.specs[0].1.to_string(), "python 3.11.7.*");
        assert_eq!(texts(env.pip.as_ref()), ["six"]);
        assert_eq!(env.variables["OMP_NUM_THREADS"], "1");
    }

    #[test]
    fn bad_shapes() {
        assert!(conda("").conda_env().is_err());
        assert!(conda("dependencies: numpy\n").conda_env().is_err());
        assert!(
            conda("dependencies:\n- {conda: x}\n")
                .to_python_env()
                .is_err()
        );
        assert!(matches!(
            conda("dependencies:\n- 'numpy >>= 1'\n").conda_env(),
            Err(SpecError::CondaSpec { .. })
        ));
        assert!(conda("dependencies:\n- pip: [1.5]\n").conda_env().is_err());
    }
}
