//! Errors of `env-spec`: one variant per way a model directory can be unusable.
//!
//! Each variant names the file (relative to the model directory) and, where the problem is
//! inside a file, carries the file's text and a span so the CLI can point at the line. Every
//! variant also maps to what MLflow raises for the same input ([`SpecError::mlflow_equivalent`]),
//! which the conformance suite checks against MLflow's recorded behaviour.

use std::path::PathBuf;

use miette::{Diagnostic, NamedSource, SourceSpan};

/// A problem with a model directory's environment files.
#[derive(Debug, thiserror::Error, Diagnostic)]
pub enum SpecError {
    /// The model directory does not exist.
    #[error("Model directory `{}` does not exist", path.display())]
    #[diagnostic(help("Pass the directory that contains the model's `MLmodel` file"))]
    ModelDirNotFound {
        /// The path given.
        path: PathBuf,
    },

    /// The model path is not a directory.
    #[error("`{}` is not a directory", path.display())]
    #[diagnostic(help(
        "Pass the directory that contains the model's `MLmodel` file, not the file itself"
    ))]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },

    /// A file could not be read.
    #[error("Failed to read `{}`", path.display())]
    #[diagnostic(help("Check that the model directory is complete and readable by this user"))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A path the model reads as a file is a directory.
    #[error("`{file}` is a directory, not a file")]
    #[diagnostic(help(
        "MLflow reads `{file}` as a text file; replace the directory with the file"
    ))]
    NotAFile {
        /// The path, relative to the model directory.
        file: String,
    },

    /// A file is not UTF-8 text.
    #[error("`{file}` is not UTF-8 text (invalid byte at line {line}, offset {offset})")]
    #[diagnostic(help("MLflow reads environment files as UTF-8; re-save `{file}` as UTF-8"))]
    NotUtf8 {
        /// The file, relative to the model directory.
        file: String,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },

    /// A file is larger than any real environment file.
    #[error("`{file}` is {size} bytes, more than the {limit} bytes an environment file may have")]
    #[diagnostic(help("This does not look like an MLflow environment file"))]
    TooLarge {
        /// The file, relative to the model directory.
        file: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// The model directory has no `MLmodel` file.
    #[error("`{}` has no `MLmodel` file", dir.display())]
    #[diagnostic(help(
        "Pass a directory written by `mlflow.<flavor>.save_model` (or a downloaded model artifact); \
         for a run, that is the artifact directory holding `MLmodel`"
    ))]
    NoMlmodel {
        /// The model directory.
        dir: PathBuf,
    },

    /// A file the model refers to does not exist.
    #[error("`{file}` does not exist{}", referenced_from.as_ref().map(|r| format!(" (referenced from {r})")).unwrap_or_default())]
    #[diagnostic(help("{help}"))]
    MissingFile {
        /// The missing file, relative to the model directory.
        file: String,
        /// Where it was referenced (`MLmodel`, `requirements.txt line 3`, ...).
        referenced_from: Option<String>,
        /// What to do.
        help: String,
    },

    /// A uv project file (`uv.lock`, `pyproject.toml`) could not be read as uv reads it.
    #[error("Invalid `{file}`: {message}")]
    #[diagnostic(help(
        "The model's uv project files are used by `--env-manager uv` (as MLflow's `uv sync --frozen`); fix `{file}` or use `--env-manager virtualenv`, which installs `requirements.txt`"
    ))]
    UvLock {
        /// The file, relative to the model directory.
        file: String,
        /// The TOML parser's message.
        message: String,
    },

    /// A YAML file could not be parsed.
    #[error("Invalid YAML in `{file}` at line {line}, column {column}: {message}")]
    #[diagnostic(help("{help}"))]
    Yaml {
        /// The file, relative to the model directory.
        file: String,
        /// The file's text.
        #[source_code]
        src: NamedSource<String>,
        /// Where.
        #[label("here")]
        span: SourceSpan,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
        /// What to do.
        help: String,
    },

    /// A value in a file has the wrong type or form.
    #[error("Invalid `{field}` in `{file}`: expected {expected}, found {found}")]
    #[diagnostic(help("{help}"))]
    InvalidValue {
        /// The file, relative to the model directory.
        file: String,
        /// The file's text.
        #[source_code]
        src: NamedSource<String>,
        /// Where.
        #[label("this value")]
        span: SourceSpan,
        /// The field, e.g. `flavors.python_function.env`.
        field: String,
        /// What MLflow expects.
        expected: String,
        /// What the file has.
        found: String,
        /// What to do.
        help: String,
        /// What MLflow raises for this input.
        mlflow: MlflowError,
    },

    /// The model has no `python_function` flavor.
    #[error("`{file}` has no `python_function` flavor (flavors: {flavors})")]
    #[diagnostic(help(
        "Only models that MLflow can load with `mlflow.pyfunc.load_model` have an environment to \
         build; re-save the model with a flavor that adds `python_function`"
    ))]
    NoPythonFunction {
        /// The MLmodel file.
        file: String,
        /// The flavors it has.
        flavors: String,
    },

    /// The `python_function` flavor has no `env` entry.
    #[error(
        "The `python_function` flavor in `{file}` has no `env` entry, so MLflow cannot find the model's environment file"
    )]
    #[diagnostic(help(
        "Add `env: {{conda: conda.yaml, virtualenv: python_env.yaml}}` under \
         `flavors.python_function` in `{file}`, naming files that exist in the model directory"
    ))]
    NoEnvEntry {
        /// The MLmodel file.
        file: String,
        /// Its text.
        #[source_code]
        src: NamedSource<String>,
        /// The flavor mapping.
        #[label("this flavor")]
        span: SourceSpan,
    },

    /// `python_function.env` is null or empty.
    #[error(
        "`flavors.python_function.env` in `{file}` is empty, so MLflow cannot find the model's environment file"
    )]
    #[diagnostic(help(
        "Set it to `{{conda: conda.yaml, virtualenv: python_env.yaml}}`, naming files that exist in the model directory"
    ))]
    EmptyEnvEntry {
        /// The MLmodel file.
        file: String,
        /// Its text.
        #[source_code]
        src: NamedSource<String>,
        /// The value.
        #[label("empty")]
        span: SourceSpan,
    },

    /// `python_function.env` is a mapping without the needed key.
    #[error("`flavors.python_function.env` in `{file}` has no `{key}` entry")]
    #[diagnostic(help(
        "Add `{key}: <file name>` to it (MLflow writes `conda: conda.yaml` and `virtualenv: python_env.yaml`)"
    ))]
    MissingEnvKey {
        /// The MLmodel file.
        file: String,
        /// Its text.
        #[source_code]
        src: NamedSource<String>,
        /// The mapping.
        #[label("this mapping")]
        span: SourceSpan,
        /// `conda` or `virtualenv`.
        key: &'static str,
    },

    /// The conda file has no `pip:` section and there is no requirements.txt.
    #[error(
        "`{file}` has no `pip:` section and the model has no `requirements.txt`, so it has no pip requirements"
    )]
    #[diagnostic(help(
        "Use `--format conda` for this model, or add `- pip: [...]` to the dependencies in `{file}`"
    ))]
    NoPipSection {
        /// The conda file.
        file: String,
    },

    /// A conda dependency pins python in a way MLflow rejects.
    #[error("Invalid python dependency `{dependency}` in `{file}`: {reason}")]
    #[diagnostic(help("Pin python exactly, e.g. `python=3.11.7`"))]
    InvalidPythonPin {
        /// The conda file.
        file: String,
        /// Its text.
        #[source_code]
        src: NamedSource<String>,
        /// The entry.
        #[label("this dependency")]
        span: SourceSpan,
        /// The dependency as written.
        dependency: String,
        /// Why it is rejected.
        reason: String,
    },

    /// A conda match spec does not parse.
    #[error("Invalid conda dependency `{dependency}` in `{file}`")]
    #[diagnostic(help(
        "Conda specs look like `numpy >=1.24,<2`, `python=3.11.7` or `conda-forge::pandas`"
    ))]
    CondaSpec {
        /// The conda file.
        file: String,
        /// Its text.
        #[source_code]
        src: NamedSource<String>,
        /// The entry.
        #[label("this entry")]
        span: SourceSpan,
        /// The dependency as written.
        dependency: String,
        /// The parser's complaint.
        #[source]
        source: rattler_conda_types::ParseMatchSpecError,
    },

    /// A line of a pip requirements file is not understood.
    #[error("Invalid requirement in `{file}` at line {line}: {message}")]
    #[diagnostic(help("{help}"))]
    Requirement {
        /// The file (relative to the model directory), or the YAML file holding the pip list.
        file: String,
        /// 1-based line.
        line: usize,
        /// The file's text.
        #[source_code]
        src: NamedSource<String>,
        /// Where.
        #[label("this line")]
        span: SourceSpan,
        /// What is wrong.
        message: String,
        /// What to do.
        help: String,
    },

    /// `-r`/`-c` files include each other.
    #[error("Requirements files include each other: {chain}")]
    #[diagnostic(help("Remove one of the `-r`/`-c` lines in the cycle"))]
    RequirementsCycle {
        /// `a.txt line 1 -> b.txt line 3 -> a.txt`.
        chain: String,
    },

    /// `-r`/`-c` lines include files more often than any model needs (each line reads its file
    /// again, so a few files can include each other exponentially often).
    #[error("Requirements files include too much: more than {limit}, stopped at {origin}")]
    #[diagnostic(help("Each `-r`/`-c` line reads its file again; include each file once"))]
    TooManyIncludes {
        /// The `-r`/`-c` line that went over the limit.
        origin: String,
        /// The limit, with its unit.
        limit: String,
    },

    /// A path from the model leaves the model directory.
    #[error("`{path}` ({what}) leaves the model directory")]
    #[diagnostic(help(
        "Model files are untrusted input: paths in them must stay inside the model directory \
         (no `..`, no absolute paths, no symlinks pointing outside)"
    ))]
    PathEscape {
        /// The offending path as written.
        path: String,
        /// Where it came from (`-r` in `requirements.txt` line 2, `env.conda` in `MLmodel`, ...).
        what: String,
    },
}

/// The exception MLflow raises for an input, as recorded in the conformance corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlflowError {
    /// `FileNotFoundError`.
    FileNotFound,
    /// A PyYAML `ScannerError` / `ParserError` / `ComposerError` / `ConstructorError`.
    Yaml,
    /// `TypeError`.
    TypeError,
    /// `KeyError`.
    KeyError,
    /// `AttributeError`.
    AttributeError,
    /// `MlflowException`.
    MlflowException,
    /// `UnicodeDecodeError`.
    UnicodeDecodeError,
    /// `RecursionError`.
    RecursionError,
    /// MLflow does not fail here: the error is ours (pyfunc-env validates more strictly).
    None,
}

impl MlflowError {
    /// The Python exception class names this corresponds to.
    #[must_use]
    pub fn python_types(self) -> &'static [&'static str] {
        match self {
            Self::FileNotFound => &["FileNotFoundError"],
            Self::Yaml => &[
                "ScannerError",
                "ParserError",
                "ComposerError",
                "ConstructorError",
                "ReaderError",
            ],
            Self::TypeError => &["TypeError"],
            Self::KeyError => &["KeyError"],
            Self::AttributeError => &["AttributeError"],
            Self::MlflowException => &["MlflowException"],
            Self::UnicodeDecodeError => &["UnicodeDecodeError"],
            Self::RecursionError => &["RecursionError"],
            Self::None => &[],
        }
    }
}

impl SpecError {
    /// Whether the model's files are at fault (exit code 1) rather than the machine (an
    /// unreadable file: exit code 2). Listed one by one, so a new variant has to be
    /// classified here.
    #[must_use]
    pub fn is_user_error(&self) -> bool {
        match self {
            Self::Read { .. } => false,
            Self::ModelDirNotFound { .. }
            | Self::NotADirectory { .. }
            | Self::NotAFile { .. }
            | Self::NotUtf8 { .. }
            | Self::TooLarge { .. }
            | Self::NoMlmodel { .. }
            | Self::MissingFile { .. }
            | Self::Yaml { .. }
            | Self::UvLock { .. }
            | Self::InvalidValue { .. }
            | Self::NoPythonFunction { .. }
            | Self::NoEnvEntry { .. }
            | Self::EmptyEnvEntry { .. }
            | Self::MissingEnvKey { .. }
            | Self::NoPipSection { .. }
            | Self::InvalidPythonPin { .. }
            | Self::CondaSpec { .. }
            | Self::Requirement { .. }
            | Self::RequirementsCycle { .. }
            | Self::TooManyIncludes { .. }
            | Self::PathEscape { .. } => true,
        }
    }

    /// What MLflow raises for the same input.
    #[must_use]
    pub fn mlflow_equivalent(&self) -> MlflowError {
        match self {
            Self::ModelDirNotFound { .. } | Self::NoMlmodel { .. } | Self::MissingFile { .. } => {
                MlflowError::FileNotFound
            }
            Self::NotADirectory { .. }
            | Self::NotAFile { .. }
            | Self::Read { .. }
            | Self::TooLarge { .. }
            | Self::TooManyIncludes { .. } => MlflowError::None,
            Self::NotUtf8 { .. } => MlflowError::UnicodeDecodeError,
            Self::Yaml { .. } => MlflowError::Yaml,
            Self::InvalidValue { mlflow, .. } => *mlflow,
            Self::NoPythonFunction { .. }
            | Self::NoPipSection { .. }
            | Self::InvalidPythonPin { .. } => MlflowError::MlflowException,
            Self::NoEnvEntry { .. } | Self::MissingEnvKey { .. } => MlflowError::KeyError,
            Self::EmptyEnvEntry { .. } => MlflowError::TypeError,
            Self::RequirementsCycle { .. } => MlflowError::RecursionError,
            Self::CondaSpec { .. }
            | Self::Requirement { .. }
            | Self::PathEscape { .. }
            | Self::UvLock { .. } => MlflowError::None,
        }
    }
}
