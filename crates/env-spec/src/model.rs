//! A model directory and the MLflow functions that read its environment.
//!
//! Each public method mirrors one MLflow code path (named in its doc comment), so the
//! conformance suite can hold each to what MLflow recorded. [`ModelDir::spec`] turns the result
//! into the canonical [`EnvSpec`].

use std::collections::BTreeMap;
use std::path::Path;

use crate::conda::CondaFile;
use crate::diagnostics::{Warning, WarningKind};
use crate::error::SpecError;
use crate::mlmodel::{CONSTRAINTS_FILE, EnvFileNames, MLMODEL_FILE, MlModel, REQUIREMENTS_FILE};
use crate::python_env::{self, PythonEnv};
use crate::requirements::{self, MlflowRequirement, Origin, PipSet, RawLine, Sources, Target};
use crate::source::{ModelFs, SourceFile};
use crate::spec::{CondaLayer, EnvManager, EnvSpec, sha256_hex};
use crate::uv_project::{PYPROJECT_FILE, PYTHON_VERSION_FILE, UV_LOCK_FILE, UvProject};
use crate::yaml::Span;

/// A model directory.
#[derive(Debug, Clone)]
pub struct ModelDir {
    fs: ModelFs,
    /// Set when the directory given was an MLflow 3 logged-model directory and the model
    /// itself is in its `artifacts/` subdirectory.
    pub artifacts_subdir: bool,
}

/// What `get_model_dependencies` returns: a file and its text.
#[derive(Debug, Clone)]
pub struct Dependencies {
    /// The file MLflow returns, relative to the model directory; `None` when MLflow writes a
    /// new file (the `pip:` list of the conda file).
    pub path: Option<String>,
    /// The file's exact text.
    pub text: String,
    /// The lines, for parsing (pip format only).
    pub lines: Vec<RawLine>,
    /// Warnings MLflow would log.
    pub warnings: Vec<Warning>,
}

/// Which files drive the virtualenv manager's environment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum VirtualenvSource {
    /// `python_env.yaml` (or the name in `env.virtualenv`).
    PythonEnv {
        /// The file.
        file: String,
    },
    /// python and build dependencies from the conda file, then `-r requirements.txt`.
    CondaAndRequirements {
        /// The conda file.
        conda: String,
        /// The requirements file.
        requirements: String,
    },
    /// Everything from the conda file.
    Conda {
        /// The conda file.
        file: String,
    },
}

/// The environment MLflow's virtualenv/uv env manager builds (`_get_python_env`).
#[derive(Debug, Clone)]
pub struct VirtualenvEnv {
    /// The `_PythonEnv`.
    pub python_env: PythonEnv,
    /// Its dependencies, parsed as MLflow does before installing.
    pub requirements: Vec<MlflowRequirement>,
    /// Where it came from.
    pub source: VirtualenvSource,
    /// Warnings.
    pub warnings: Vec<Warning>,
}

/// The canonical spec for one env manager, with how it was derived.
#[derive(Debug, Clone)]
pub struct ResolvedSpec {
    /// The spec.
    pub spec: EnvSpec,
    /// The files that determine it, relative to the model directory.
    pub files: Vec<String>,
    /// Warnings.
    pub warnings: Vec<Warning>,
}

/// Largest local directory a requirement may point at, when hashing it for the key.
const MAX_HASHED_FILES: usize = 20_000;

impl ModelDir {
    /// Opens a model directory. An MLflow 3 logged-model directory (`models/m-<id>/`, holding
    /// `artifacts/MLmodel`) is accepted for its `artifacts/` subdirectory.
    pub fn open(path: &Path) -> Result<Self, SpecError> {
        let fs = ModelFs::open(path)?;
        if !fs.is_file(MLMODEL_FILE) && fs.is_file("artifacts/MLmodel") {
            return Ok(Self {
                fs: ModelFs::open(&fs.absolute("artifacts"))?,
                artifacts_subdir: true,
            });
        }
        Ok(Self {
            fs,
            artifacts_subdir: false,
        })
    }

    /// The canonical path of the model directory.
    #[must_use]
    pub fn root(&self) -> &Path {
        self.fs.root()
    }

    /// Read access to the directory.
    #[must_use]
    pub fn fs(&self) -> &ModelFs {
        &self.fs
    }

    /// `Model.load(<dir>/MLmodel)`.
    pub fn mlmodel(&self) -> Result<MlModel, SpecError> {
        let Some(file) = self.fs.read_optional(MLMODEL_FILE)? else {
            return Err(SpecError::NoMlmodel {
                dir: self.fs.root().to_path_buf(),
            });
        };
        MlModel::parse(file)
    }

    /// `_get_conda_env_file` / `_get_python_env_file`: the env file names.
    pub fn env_file_names(&self) -> Result<EnvFileNames, SpecError> {
        self.mlmodel()?.env_file_names()
    }

    fn resolve_env_file(&self, name: &str, what: &str) -> Result<String, SpecError> {
        self.fs
            .resolve("", name, &|| format!("`{what}` in `MLmodel`"))
    }

    fn read_conda(
        &self,
        mlmodel: &MlModel,
        name: &str,
        what: &str,
    ) -> Result<CondaFile, SpecError> {
        let relative = self.resolve_env_file(name, what)?;
        let file = self.fs.read(
            &relative,
            Some(format!("`{what}` in `{}`", mlmodel.file.name)),
            "The model's `MLmodel` names an environment file that is not in the model directory; copy the whole model directory",
        )?;
        CondaFile::parse(file)
    }

    /// `mlflow.pyfunc.get_model_dependencies(model, format="pip")`.
    pub fn pip_dependencies(&self) -> Result<Dependencies, SpecError> {
        if let Some(file) = self.fs.read_optional(REQUIREMENTS_FILE)? {
            let lines = requirements::split_lines(&file.name, &file.universal_newlines());
            return Ok(Dependencies {
                path: Some(file.name.clone()),
                text: file.text,
                lines,
                warnings: Vec::new(),
            });
        }
        let mlmodel = self.mlmodel()?;
        let name = mlmodel.conda_file_name()?;
        let conda = self.read_conda(&mlmodel, &name, "flavors.python_function.env")?;
        let (lines, text, warnings) = conda.pip_section()?;
        Ok(Dependencies {
            path: None,
            text,
            lines,
            warnings,
        })
    }

    /// `mlflow.pyfunc.get_model_dependencies(model, format="conda")`.
    pub fn conda_dependencies(&self) -> Result<Dependencies, SpecError> {
        let mlmodel = self.mlmodel()?;
        let name = mlmodel.conda_file_name()?;
        let relative = self.resolve_env_file(&name, "flavors.python_function.env")?;
        let file = self.fs.read(
            &relative,
            Some(format!("`flavors.python_function.env` in `{}`", mlmodel.file.name)),
            "The model's `MLmodel` names a conda file that is not in the model directory; copy the whole model directory",
        )?;
        Ok(Dependencies {
            path: Some(file.name.clone()),
            text: file.text,
            lines: Vec::new(),
            warnings: Vec::new(),
        })
    }

    /// `_parse_requirements(<dir>/<file>)` for `requirements.txt` or `constraints.txt`, `None`
    /// if the file does not exist.
    pub fn requirements_file(
        &self,
        name: &str,
    ) -> Option<Result<Vec<MlflowRequirement>, SpecError>> {
        let file = match self.fs.read_optional(name) {
            Ok(Some(file)) => file,
            Ok(None) => return None,
            Err(err) => return Some(Err(err)),
        };
        let mut sources = Sources::default();
        Some(requirements::parse_file(
            &self.fs,
            &mut sources,
            &file,
            name == CONSTRAINTS_FILE,
        ))
    }

    /// `_PythonEnv.from_yaml(<dir>/python_env.yaml)`, `None` if the file does not exist.
    pub fn python_env_file(
        &self,
        name: &str,
    ) -> Option<Result<(PythonEnv, Vec<Warning>), SpecError>> {
        match self.fs.read_optional(name) {
            Ok(Some(file)) => Some(python_env::parse(&file)),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }

    /// Parses `lines` the way `_parse_requirements(lines, base_dir=<model dir>)` does.
    pub fn parse_requirement_lines(
        &self,
        sources: &mut Sources,
        lines: Vec<RawLine>,
    ) -> Result<Vec<MlflowRequirement>, SpecError> {
        requirements::parse_lines(&self.fs, sources, lines, false, "")
    }

    /// `mlflow.utils.virtualenv._get_python_env`: the environment the virtualenv and uv env
    /// managers build, with its requirements parsed.
    ///
    /// Where no file pins python, MLflow uses the version of the Python running MLflow; we use
    /// the MLmodel's `python_version` (the version the model was saved with) and warn.
    pub fn virtualenv_env(&self) -> Result<VirtualenvEnv, SpecError> {
        let mlmodel = self.mlmodel()?;
        let names = mlmodel.env_file_names()?;
        let mut warnings = mlmodel.warnings.clone();
        let python_env_name = self.resolve_env_file(&names.virtualenv, "env.virtualenv")?;
        let (mut python_env, source) = if self.fs.exists(&python_env_name) {
            let (env, file_warnings) = self
                .python_env_file(&python_env_name)
                .unwrap_or_else(|| unreachable_missing(&python_env_name))?;
            warnings.extend(file_warnings);
            (
                env,
                VirtualenvSource::PythonEnv {
                    file: python_env_name,
                },
            )
        } else {
            let conda = self.read_conda(&mlmodel, &names.conda, "env.conda")?;
            let (derived, conda_warnings) = conda.to_python_env()?;
            warnings.extend(conda_warnings);
            let conda_name = conda.file.name.clone();
            if self.fs.is_file(REQUIREMENTS_FILE) {
                (
                    PythonEnv {
                        python: derived.python,
                        build_dependencies: derived.build_dependencies.unwrap_or_default(),
                        dependencies: vec![RawLine {
                            text: format!("-r {REQUIREMENTS_FILE}"),
                            origin: Origin {
                                file: REQUIREMENTS_FILE.to_string(),
                                line: 0,
                                span: Span::default(),
                            },
                        }],
                    },
                    VirtualenvSource::CondaAndRequirements {
                        conda: conda_name,
                        requirements: REQUIREMENTS_FILE.to_string(),
                    },
                )
            } else {
                (
                    PythonEnv {
                        python: derived.python,
                        build_dependencies: derived.build_dependencies.unwrap_or_default(),
                        dependencies: derived.dependencies.unwrap_or_default(),
                    },
                    VirtualenvSource::Conda { file: conda_name },
                )
            }
        };
        if python_env.python.is_none() {
            match mlmodel.python_version() {
                Some(version) => {
                    warnings.push(Warning::file(
                        MLMODEL_FILE,
                        format!("No python version in the environment files; using the MLmodel's `python_version` {version} (MLflow would use the version of the Python running MLflow)"),
                        WarningKind::Other,
                    ));
                    python_env.python = Some(version);
                }
                None => warnings.push(Warning::file(
                    MLMODEL_FILE,
                    "No python version in the environment files nor in the MLmodel; pass one with `--python-version`".into(),
                    WarningKind::Other,
                )),
            }
        }
        let mut sources = Sources::default();
        let requirements = requirements::parse_lines(
            &self.fs,
            &mut sources,
            python_env.dependencies.clone(),
            false,
            "",
        )?;
        Ok(VirtualenvEnv {
            python_env,
            requirements,
            source,
            warnings,
        })
    }

    /// The env manager MLflow's CLI picks by default: virtualenv when the model has a
    /// `python_env.yaml` or `requirements.txt`, else conda.
    #[must_use]
    pub fn default_env_manager(&self) -> EnvManager {
        let names = self.env_file_names().ok();
        let python_env = names
            .as_ref()
            .map_or("python_env.yaml", |n| n.virtualenv.as_str());
        if self.fs.is_file(python_env) || self.fs.is_file(REQUIREMENTS_FILE) {
            EnvManager::Virtualenv
        } else {
            EnvManager::Conda
        }
    }

    /// The canonical spec for `manager`.
    pub fn spec(&self, manager: EnvManager) -> Result<ResolvedSpec, SpecError> {
        match manager {
            EnvManager::Virtualenv => self.virtualenv_spec(),
            EnvManager::Uv => self.uv_spec(),
            EnvManager::Conda => self.conda_spec(),
        }
    }

    /// The model's uv project (`uv.lock`, `pyproject.toml`, `.python-version`), if it has a
    /// `uv.lock` ([`UvProject::read`]).
    pub fn uv_project(&self) -> Result<Option<UvProject>, SpecError> {
        UvProject::read(&self.fs)
    }

    /// `_create_virtualenv(env_manager="uv")`: with a `uv.lock`, the Python of the virtualenv
    /// spec plus the lock (MLflow's `uv sync --frozen --no-dev`; `requirements.txt` and the
    /// build dependencies are not installed); without one, the virtualenv spec itself, so both
    /// managers share the environment as they build the same one.
    fn uv_spec(&self) -> Result<ResolvedSpec, SpecError> {
        let mut resolved = self.virtualenv_spec()?;
        let Some(project) = self.uv_project()? else {
            return Ok(resolved);
        };
        let spec = &mut resolved.spec;
        spec.env_manager = EnvManager::Uv;
        spec.build = PipSet::default();
        spec.pip = PipSet::default();
        spec.local_files.clear();
        spec.compat_constraints.clear();
        // MLflow reads only the python version from the virtualenv files here.
        resolved.files.truncate(2);
        resolved.files.push(UV_LOCK_FILE.to_string());
        if project.pyproject.is_some() {
            resolved.files.push(PYPROJECT_FILE.to_string());
        }
        if project.python_version_file.is_some() {
            resolved.files.push(PYTHON_VERSION_FILE.to_string());
        }
        spec.uv_project = Some(project);
        Ok(resolved)
    }

    fn virtualenv_spec(&self) -> Result<ResolvedSpec, SpecError> {
        let env = self.virtualenv_env()?;
        let mut sources = Sources::default();
        let build_lines = requirements::parse_lines(
            &self.fs,
            &mut sources,
            env.python_env.build_dependencies.clone(),
            false,
            "",
        )?;
        let build = requirements::interpret(&self.fs, &mut sources, &build_lines)?;
        let pip = requirements::interpret(&self.fs, &mut sources, &env.requirements)?;
        let mut files = vec![MLMODEL_FILE.to_string()];
        match &env.source {
            VirtualenvSource::PythonEnv { file } | VirtualenvSource::Conda { file } => {
                files.push(file.clone());
            }
            VirtualenvSource::CondaAndRequirements {
                conda,
                requirements,
            } => {
                files.push(conda.clone());
                files.push(requirements.clone());
            }
        }
        add_included(&mut files, &env.requirements);
        let python = env
            .python_env
            .python
            .as_deref()
            .map(|p| normalize_python(p, &self.fs, &env.source))
            .transpose()?;
        let mut spec = EnvSpec {
            env_manager: EnvManager::Virtualenv,
            python,
            conda: None,
            build,
            pip,
            local_files: BTreeMap::new(),
            compat_constraints: Vec::new(),
            uv_project: None,
        };
        spec.local_files = self.local_digests(&spec)?;
        let mut warnings = env.warnings;
        warnings.extend(editable_warnings(&spec));
        spec.refresh_compat_constraints();
        Ok(ResolvedSpec {
            spec,
            files,
            warnings,
        })
    }

    fn conda_spec(&self) -> Result<ResolvedSpec, SpecError> {
        let mlmodel = self.mlmodel()?;
        let mut warnings = mlmodel.warnings.clone();
        let name = mlmodel.conda_file_name()?;
        let conda = self.read_conda(&mlmodel, &name, "flavors.python_function.env")?;
        let env = conda.conda_env()?;
        let mut specs: Vec<String> = env.specs.iter().map(|(_, spec)| spec.to_string()).collect();
        let has_python = env.specs.iter().any(|(_, spec)| {
            spec.name
                .as_exact()
                .is_some_and(|n| n.as_normalized() == "python")
        });
        if !has_python {
            match mlmodel.python_version() {
                Some(version) => {
                    warnings.push(Warning::file(
                        &conda.file.name,
                        format!("No `python` among the conda dependencies; adding `python={version}` from the MLmodel's `python_version` so the environment can run the model"),
                        WarningKind::Other,
                    ));
                    specs.insert(0, format!("python {version}.*"));
                }
                None => warnings.push(Warning::file(
                    &conda.file.name,
                    "No `python` among the conda dependencies and no `python_version` in the MLmodel; the environment may have no Python".into(),
                    WarningKind::Other,
                )),
            }
        }
        let mut sources = Sources::default();
        sources.add(conda.file.clone());
        let pip_lines = requirements::parse_lines(
            &self.fs,
            &mut sources,
            env.pip.clone().unwrap_or_default(),
            false,
            "",
        )?;
        let pip = requirements::interpret(&self.fs, &mut sources, &pip_lines)?;
        let mut files = vec![MLMODEL_FILE.to_string(), conda.file.name.clone()];
        add_included(&mut files, &pip_lines);
        let mut spec = EnvSpec {
            env_manager: EnvManager::Conda,
            python: None,
            conda: Some(CondaLayer {
                channels: env.channels,
                specs,
                variables: env.variables,
            }),
            build: PipSet::default(),
            pip,
            local_files: BTreeMap::new(),
            compat_constraints: Vec::new(),
            uv_project: None,
        };
        spec.local_files = self.local_digests(&spec)?;
        warnings.extend(editable_warnings(&spec));
        spec.refresh_compat_constraints();
        Ok(ResolvedSpec {
            spec,
            files,
            warnings,
        })
    }

    /// sha256 of every local file or directory the spec installs, editable ones included:
    /// the environment holds a copy of their contents (issue 15, item 3), so two copies of a
    /// model with different local source must get different environments.
    fn local_digests(&self, spec: &EnvSpec) -> Result<BTreeMap<String, String>, SpecError> {
        let mut digests = BTreeMap::new();
        for requirement in spec.build.requirements.iter().chain(&spec.pip.requirements) {
            let Target::Path(path) = &requirement.target else {
                continue;
            };
            let path = path.split('[').next().unwrap_or(path);
            let absolute = self.fs.absolute(path);
            let digest = if absolute.is_dir() {
                hash_tree(&absolute)?
            } else {
                let bytes = fs_err::read(&absolute).map_err(|err| SpecError::Read {
                    path: absolute.clone(),
                    source: err,
                })?;
                sha256_hex(&bytes)
            };
            digests.insert(path.to_string(), digest);
        }
        Ok(digests)
    }
}

/// Editable requirements are installed as regular packages from a copy of their directory:
/// an environment in the cache must not depend on (or write into) one model directory that
/// other copies of the model share a key with, or that may be deleted.
fn editable_warnings(spec: &EnvSpec) -> Vec<Warning> {
    spec.build
        .requirements
        .iter()
        .chain(&spec.pip.requirements)
        .filter(|r| r.editable)
        .map(|r| {
            let message = format!(
                "`{}` is installed as a regular (non-editable) package, from a copy of its directory taken now: a cached environment must not depend on the model directory (a changed source makes a new environment)",
                r.written.trim()
            );
            let mut warning = Warning::file(
                r.origin.as_ref().map_or("", |o| o.file.as_str()),
                message,
                WarningKind::Other,
            );
            if let Some(origin) = &r.origin {
                warning.line = Some(origin.line);
            } else {
                warning.file = None;
            }
            warning
        })
        .collect()
}

fn unreachable_missing(name: &str) -> Result<(PythonEnv, Vec<Warning>), SpecError> {
    Err(SpecError::MissingFile {
        file: name.to_string(),
        referenced_from: None,
        help: "The file disappeared while it was being read".into(),
    })
}

fn add_included(files: &mut Vec<String>, requirements: &[MlflowRequirement]) {
    for requirement in requirements {
        if requirement.origin.line > 0 && !files.contains(&requirement.origin.file) {
            files.push(requirement.origin.file.clone());
        }
    }
}

/// Checks the python version is a version (`3.11.7`, `3.8`); MLflow passes it on verbatim.
fn normalize_python(
    text: &str,
    fs: &ModelFs,
    source: &VirtualenvSource,
) -> Result<String, SpecError> {
    let trimmed = text.trim();
    match pep440_rs::Version::from_str_strict(trimmed) {
        Some(version) if !version.release().is_empty() && version.release()[0] >= 2 => {
            Ok(version.to_string())
        }
        _ => {
            let file = match source {
                VirtualenvSource::PythonEnv { file }
                | VirtualenvSource::Conda { file }
                | VirtualenvSource::CondaAndRequirements { conda: file, .. } => file.clone(),
            };
            let src = fs
                .read_optional(&file)
                .ok()
                .flatten()
                .unwrap_or(SourceFile {
                    name: file.clone(),
                    text: String::new(),
                });
            Err(SpecError::InvalidValue {
                file: file.clone(),
                src: src.named_source(),
                span: src
                    .universal_newlines()
                    .find(trimmed)
                    .map_or((0, 0), |i| (i, trimmed.len()))
                    .into(),
                field: "python".into(),
                expected: "a Python version like `3.11.7`".into(),
                found: format!("`{text}`"),
                help: "Write the version the model needs, e.g. `python: \"3.11.7\"`".into(),
                mlflow: crate::error::MlflowError::None,
            })
        }
    }
}

trait StrictVersion {
    fn from_str_strict(text: &str) -> Option<pep440_rs::Version>;
}

impl StrictVersion for pep440_rs::Version {
    fn from_str_strict(text: &str) -> Option<pep440_rs::Version> {
        use std::str::FromStr;
        if text.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'+')
        {
            return None;
        }
        pep440_rs::Version::from_str(text).ok()
    }
}

/// sha256 over a directory tree: sorted relative paths, each followed by its contents' digest.
fn hash_tree(root: &Path) -> Result<String, SpecError> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let read = fs_err::read_dir(&dir).map_err(|err| SpecError::Read {
            path: dir.clone(),
            source: err,
        })?;
        for entry in read {
            let entry = entry.map_err(|err| SpecError::Read {
                path: dir.clone(),
                source: err,
            })?;
            let path = entry.path();
            let name = entry.file_name();
            if name == ".git" || name == "__pycache__" {
                continue;
            }
            let file_type = entry.file_type().map_err(|err| SpecError::Read {
                path: path.clone(),
                source: err,
            })?;
            if file_type.is_dir() {
                stack.push(path);
            } else if file_type.is_file() {
                let bytes = fs_err::read(&path).map_err(|err| SpecError::Read {
                    path: path.clone(),
                    source: err,
                })?;
                let relative = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                entries.push((relative, sha256_hex(&bytes)));
                if entries.len() > MAX_HASHED_FILES {
                    return Err(SpecError::TooLarge {
                        file: root.to_string_lossy().into_owned(),
                        size: entries.len() as u64,
                        limit: MAX_HASHED_FILES as u64,
                    });
                }
            }
        }
    }
    entries.sort();
    let mut joined = String::new();
    for (path, digest) in &entries {
        joined.push_str(path);
        joined.push('\0');
        joined.push_str(digest);
        joined.push('\n');
    }
    Ok(sha256_hex(joined.as_bytes()))
}
