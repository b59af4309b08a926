//! Runs scoring and commands inside a pyfunc-env environment.
//!
//! - [`Environment::command`] builds a command with the environment activated: its `bin/` first
//!   on `PATH`, `CONDA_PREFIX` or `VIRTUAL_ENV`, the conda file's `variables:`, and the conda
//!   activation scripts packages ship (`etc/conda/activate.d/*.sh`, sourced by `/bin/sh`).
//! - [`predict_command`] and [`serve_command`] run small scripts shipped in this binary with
//!   the environment's own Python, so scoring goes through the model's own mlflow.
//! - [`exec`] replaces this process with the command (Unix), so the model's exit code and
//!   signals need no forwarding and the tool adds nothing to a long-running server; the
//!   environment's locks are handed down to it so the environment cannot be pruned while the
//!   model runs.
//! - [`Launch`] is what `run` starts (`predict`, `serve` or a command), and [`prepare_local`]
//!   the checks of MLflow's `local` env manager before it starts in an interpreter as it is.
//! - [`check`] compares a model's requirements with what an interpreter has installed, with
//!   the rules of the warning `mlflow.pyfunc.load_model` prints.
#![warn(missing_docs)]

mod check;
mod check_warnings;
pub mod input;
mod launch;
pub mod local;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

pub use launch::{Launch, LocalRun, LocalRunError, exec_in, prepare_local};

pub use check::{
    CheckError, CheckPython, CheckReport, Interpreter, Mismatch, check, check_model,
    inspect_interpreter,
};

/// Errors of `env-run`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum RunError {
    /// The program could not be started.
    #[error("Failed to run `{program}`")]
    #[diagnostic(help(
        "Check the command name; inside the environment, `PATH` starts with `{bindir}`"
    ))]
    Spawn {
        /// The program.
        program: String,
        /// The environment's bin directory.
        bindir: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// An interpreter could not be inspected.
    #[error("Failed to inspect the Python interpreter `{}`: {message}", python.display())]
    #[diagnostic(help("Pass a working interpreter with `--python`"))]
    Inspect {
        /// The interpreter.
        python: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl RunError {
    /// The exit code a shell gives for this error, if it has one: 127 for a program that does
    /// not exist, 126 for one that cannot be run. Other errors are the tool's own (exit 2).
    #[must_use]
    pub fn exit_code(&self) -> Option<u8> {
        match self {
            Self::Spawn { source, .. } => Some(match source.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            }),
            Self::Inspect { .. } => None,
        }
    }
}

/// What kind of environment a prefix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// A conda prefix (`conda-meta/` present).
    Conda,
    /// A virtual environment (`pyvenv.cfg`).
    Venv,
    /// A plain interpreter outside any environment (`--env-manager local`).
    System,
}

/// An environment to run things in.
#[derive(Debug, Clone)]
pub struct Environment {
    /// The prefix (for `System`, the interpreter's `sys.prefix`).
    pub prefix: PathBuf,
    /// The interpreter.
    pub python: PathBuf,
    /// The kind.
    pub kind: EnvKind,
    /// Variables to set on activation (`variables:` of the conda file).
    pub variables: BTreeMap<String, String>,
}

/// Variables that would make the environment's Python look elsewhere.
const CLEARED: &[&str] = &[
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "PYTHONNOUSERSITE_OVERRIDE",
    "__PYVENV_LAUNCHER__",
];

impl Environment {
    /// An environment in a prefix built by pyfunc-env.
    #[must_use]
    pub fn from_prefix(prefix: &Path, variables: BTreeMap<String, String>) -> Self {
        let kind = if prefix.join("conda-meta").is_dir() {
            EnvKind::Conda
        } else {
            EnvKind::Venv
        };
        Self {
            prefix: prefix.to_path_buf(),
            python: prefix.join("bin").join("python"),
            kind,
            variables,
        }
    }

    /// A plain interpreter, run without any activation.
    #[must_use]
    pub fn system(python: &Path) -> Self {
        Self {
            prefix: python
                .parent()
                .and_then(Path::parent)
                .unwrap_or(Path::new("/"))
                .to_path_buf(),
            python: python.to_path_buf(),
            kind: EnvKind::System,
            variables: BTreeMap::new(),
        }
    }

    /// The environment's `bin/`.
    #[must_use]
    pub fn bindir(&self) -> PathBuf {
        self.prefix.join("bin")
    }

    /// The conda activation scripts packages installed, in the order conda runs them.
    #[must_use]
    pub fn activation_scripts(&self) -> Vec<PathBuf> {
        let dir = self.prefix.join("etc").join("conda").join("activate.d");
        let Ok(read) = fs_err::read_dir(&dir) else {
            return Vec::new();
        };
        let mut scripts: Vec<PathBuf> = read
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "sh"))
            .collect();
        scripts.sort();
        scripts
    }

    /// The variables activation sets (`Some`) and removes (`None`).
    #[must_use]
    pub fn activation_vars(&self) -> Vec<(OsString, Option<OsString>)> {
        let mut vars: Vec<(OsString, Option<OsString>)> =
            CLEARED.iter().map(|k| (OsString::from(k), None)).collect();
        if self.kind == EnvKind::System {
            return vars;
        }
        let mut path = self.bindir().into_os_string();
        if let Some(existing) = std::env::var_os("PATH") {
            path.push(":");
            path.push(existing);
        }
        vars.push(("PATH".into(), Some(path)));
        match self.kind {
            EnvKind::Conda => {
                vars.push((
                    "CONDA_PREFIX".into(),
                    Some(self.prefix.clone().into_os_string()),
                ));
                vars.push((
                    "CONDA_DEFAULT_ENV".into(),
                    Some(self.prefix.clone().into_os_string()),
                ));
                vars.push(("CONDA_SHLVL".into(), Some("1".into())));
                vars.push(("VIRTUAL_ENV".into(), None));
            }
            EnvKind::Venv => {
                vars.push((
                    "VIRTUAL_ENV".into(),
                    Some(self.prefix.clone().into_os_string()),
                ));
                vars.push(("CONDA_PREFIX".into(), None));
            }
            EnvKind::System => {}
        }
        for (key, value) in &self.variables {
            vars.push((key.into(), Some(value.into())));
        }
        vars
    }

    /// A command running `program args` with the environment activated. `program` is looked
    /// up on the activated `PATH`.
    #[must_use]
    pub fn command(&self, program: &OsStr, args: &[OsString]) -> Command {
        let scripts = self.activation_scripts();
        let mut command = if scripts.is_empty() {
            let resolved = self.resolve_program(program);
            let mut command = Command::new(resolved);
            command.args(args);
            command
        } else {
            // Source the activation scripts, then replace the shell with the program.
            let mut script = String::new();
            for path in &scripts {
                script.push_str(". '");
                script.push_str(&path.to_string_lossy().replace('\'', "'\\''"));
                script.push_str("' || exit 1\n");
            }
            // The same error, exit code and hint as a direct exec (`RunError::Spawn`), checked
            // after the scripts since they may change `PATH`.
            script.push_str(
                "command -v -- \"$1\" >/dev/null 2>&1 || { printf 'error: Failed to run `%s`\\n  Caused by: No such file or directory (os error 2)\\n\\nhint: Check the command name; inside the environment, `PATH` starts with `%s`\\n' \"$1\" \"${PATH%%:*}\" >&2; exit 127; }\n",
            );
            script.push_str("exec \"$@\"\n");
            let mut command = Command::new("/bin/sh");
            command
                .arg("-c")
                .arg(script)
                .arg("sh")
                .arg(program)
                .args(args);
            command
        };
        for (key, value) in self.activation_vars() {
            match value {
                Some(value) => command.env(key, value),
                None => command.env_remove(key),
            };
        }
        command
    }

    /// `program` as found first in the environment's `bin/`, else as given (then `PATH`).
    fn resolve_program(&self, program: &OsStr) -> PathBuf {
        let as_path = Path::new(program);
        if self.kind != EnvKind::System && as_path.components().count() == 1 {
            let candidate = self.bindir().join(program);
            if candidate.is_file() {
                return candidate;
            }
        }
        as_path.to_path_buf()
    }
}

/// Options of `run -- predict`.
#[derive(Debug, Clone, Default)]
pub struct PredictOptions {
    /// Input file (stdin if `None`).
    pub input: Option<PathBuf>,
    /// Output file (stdout if `None`).
    pub output: Option<PathBuf>,
    /// `json`, `csv` or `parquet`.
    pub content_type: String,
    /// `--params` JSON object.
    pub params: Option<String>,
}

impl PredictOptions {
    /// The options of MLflow's `predict` flags as given: `-i -` is stdin, as no `-i` is, and
    /// the input and output files are made absolute, so the scoring process reads and writes
    /// the files the user named wherever it runs. (Was the CLI's, in `commands/run/action.rs`.)
    #[must_use]
    pub fn from_flags(
        input: Option<&Path>,
        output: Option<PathBuf>,
        content_type: String,
        params: Option<String>,
    ) -> Self {
        let absolute = |path: PathBuf| std::path::absolute(&path).unwrap_or(path);
        Self {
            input: input::input_file(input)
                .map(Path::to_path_buf)
                .map(absolute),
            output: output.map(absolute),
            content_type,
            params,
        }
    }
}

/// A path to `model_dir` that the environment's MLflow reads as the same directory.
///
/// MLflow parses a model path as a URI: 1.x/2.x `urlparse` a plain path (a `#` starts a
/// fragment), 3.x splits it into a root and a last component and rejects a last component with
/// `#` or decodes its `%41` (`Invalid path`, `No such artifact`), and the `file://` URIs `serve`
/// builds are percent-encoded and not decoded on load. A directory whose path has such
/// characters is reached through a symlink with a plain name, in a per-user directory under the
/// temporary directory that nobody else can write, named by a digest of the path so repeated
/// runs reuse it, and given with a trailing `/`: MLflow 3 then takes the link itself as the root
/// (it refuses a last component that resolves outside its root). Falls back to the path itself
/// if the link cannot be made safely.
#[must_use]
pub fn mlflow_safe_model_path(model_dir: &Path) -> PathBuf {
    let text = model_dir.as_os_str().as_encoded_bytes();
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"/._-+@~=, ".contains(b);
    if text.iter().all(plain) {
        return model_dir.to_path_buf();
    }
    #[cfg(unix)]
    {
        if let Some(link) = private_link(model_dir) {
            let mut with_slash = link.into_os_string();
            with_slash.push("/");
            return PathBuf::from(with_slash);
        }
    }
    model_dir.to_path_buf()
}

#[cfg(unix)]
fn private_link(model_dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // SAFETY: getuid has no preconditions and cannot fail.
    #[expect(unsafe_code, reason = "no safe API for the user id")]
    let uid = unsafe { libc::getuid() };
    let dir = std::env::temp_dir().join(format!("pyfunc-env-models-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    // Only a directory of ours that nobody else can write: another user could otherwise point
    // the link at a model of their choosing.
    let meta = fs_err::symlink_metadata(&dir).ok()?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let digest = env_spec::spec::sha256_hex(model_dir.as_os_str().as_encoded_bytes());
    let name = &digest[..24];
    let link = dir.join(name);
    if fs_err::read_link(&link).is_ok_and(|target| target == model_dir) {
        return Some(link);
    }
    // Replace atomically: another run may be using the link.
    let staging = dir.join(format!(".{name}.{}", std::process::id()));
    let _ = fs_err::remove_file(&staging);
    fs_err::os::unix::fs::symlink(model_dir, &staging).ok()?;
    if fs_err::rename(&staging, &link).is_err() {
        let _ = fs_err::remove_file(&staging);
        return None;
    }
    Some(link)
}

/// The command that scores `model_dir` in `env`.
#[must_use]
pub fn predict_command(env: &Environment, model_dir: &Path, options: &PredictOptions) -> Command {
    let model_dir = &mlflow_safe_model_path(model_dir);
    let path_arg = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or_else(|| OsString::from("-"), |p| p.clone().into_os_string())
    };
    let args: Vec<OsString> = vec![
        "-c".into(),
        include_str!("scripts/predict.py").into(),
        model_dir.into(),
        path_arg(&options.input),
        path_arg(&options.output),
        options.content_type.clone().into(),
        options.params.clone().unwrap_or_else(|| "-".into()).into(),
    ];
    env.command(env.python.as_os_str(), &args)
}

/// Options of `run -- serve`. `None` means what `mlflow models serve` does without the flag:
/// its default or its environment variable (`MLFLOW_HOST` else 127.0.0.1, `MLFLOW_PORT` else
/// 5000, `MLFLOW_WORKERS`/`MLFLOW_MODELS_WORKERS` else 1 worker, the version's timeout).
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Bind address.
    pub host: Option<String>,
    /// Port.
    pub port: Option<u16>,
    /// Worker processes.
    pub workers: Option<u32>,
    /// Request timeout in seconds.
    pub timeout: Option<u32>,
}

/// The command that serves `model_dir` from `env`: the environment's mlflow builds its own
/// server command line (`scoring_server.get_cmd`) and runs it as `mlflow models serve` does,
/// through `bash -c "exec ..."`, so MLflow 1.x/2.x's `${GUNICORN_CMD_ARGS}` expands and the
/// server replaces the process.
#[must_use]
pub fn serve_command(env: &Environment, model_dir: &Path, options: &ServeOptions) -> Command {
    fn optional(value: Option<impl ToString>) -> OsString {
        value.map_or_else(|| OsString::from("-"), |v| v.to_string().into())
    }
    let model_dir = &mlflow_safe_model_path(model_dir);
    let args: Vec<OsString> = vec![
        "-c".into(),
        include_str!("scripts/serve.py").into(),
        model_dir.into(),
        optional(options.host.as_ref()),
        optional(options.port),
        optional(options.workers),
        optional(options.timeout),
    ];
    env.command(env.python.as_os_str(), &args)
}

pub use env_prefix::{find_on_path, has_mlflow};

/// The script [`serve_command`] runs (argv: `model_dir host|- port|- workers|- timeout|-`), for
/// consumers that run it elsewhere: `pyfunc-env image` bakes it into the image, so a container
/// serves exactly as `run -- serve` does.
pub const SERVE_SCRIPT: &str = include_str!("scripts/serve.py");

/// Replaces this process with `command`, keeping `inherit` (open lock files) open in it so
/// their locks last as long as the command. Returns only on failure. On non-Unix platforms the
/// command runs as a child and its exit code is returned.
pub fn exec(mut command: Command, inherit: &[&std::fs::File]) -> Result<i32, RunError> {
    let program = command.get_program().to_string_lossy().into_owned();
    let bindir = search_path(&command)
        .and_then(|path| std::env::split_paths(&path).next())
        .map(|dir| dir.display().to_string())
        .unwrap_or_default();
    let spawn_error = |source: std::io::Error| RunError::Spawn {
        program: program.clone(),
        bindir: bindir.clone(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        for file in inherit {
            env_prefix::keep_open_across_exec(file);
        }
        let error = command.exec();
        Err(spawn_error(error))
    }
    #[cfg(not(unix))]
    {
        let _ = inherit;
        let status = command.status().map_err(spawn_error)?;
        Ok(status.code().unwrap_or(1))
    }
}

/// The `PATH` `command` will search: its own if it sets one, else this process's.
fn search_path(command: &Command) -> Option<OsString> {
    match command.get_envs().find(|(key, _)| *key == "PATH") {
        Some((_, value)) => value.map(OsStr::to_os_string),
        None => std::env::var_os("PATH"),
    }
}

/// The exit code a shell reports for a process that ended with `status` (128+n for signal n).
#[must_use]
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            return 128 + signal;
        }
    }
    status.code().unwrap_or(1)
}

#[cfg(test)]
mod tests {
    /// `-i -` is stdin, as no `-i` is; the files named are absolute.
    #[test]
    fn predict_flags_read_stdin_for_a_dash_and_name_absolute_files() {
        let options = PredictOptions::from_flags(
            Some(Path::new("-")),
            Some("out.json".into()),
            "json".into(),
            None,
        );
        assert_eq!(options.input, None);
        let output = options.output.unwrap();
        assert!(
            output.is_absolute() && output.ends_with("out.json"),
            "{output:?}"
        );
        let options =
            PredictOptions::from_flags(Some(Path::new("in.csv")), None, "csv".into(), None);
        assert_eq!(
            options.input,
            Some(std::env::current_dir().unwrap().join("in.csv"))
        );
        assert_eq!(options.output, None);
    }

    use super::*;

    #[test]
    fn a_program_that_cannot_start_exits_as_a_shell_would() {
        let spawn = |kind| RunError::Spawn {
            program: "x".into(),
            bindir: "/env/bin".into(),
            source: std::io::Error::from(kind),
        };
        assert_eq!(spawn(std::io::ErrorKind::NotFound).exit_code(), Some(127));
        assert_eq!(
            spawn(std::io::ErrorKind::PermissionDenied).exit_code(),
            Some(126)
        );
        let inspect = RunError::Inspect {
            python: "/usr/bin/python3".into(),
            message: "broken".into(),
        };
        assert_eq!(inspect.exit_code(), None);
    }

    #[test]
    fn activation_of_a_venv_and_a_conda_prefix() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("bin")).unwrap();
        let env = Environment::from_prefix(
            dir.path(),
            BTreeMap::from([("OMP_NUM_THREADS".into(), "1".into())]),
        );
        assert_eq!(env.kind, EnvKind::Venv);
        let vars = env.activation_vars();
        let get = |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        assert_eq!(
            get("VIRTUAL_ENV"),
            Some(Some(dir.path().as_os_str().to_owned()))
        );
        assert_eq!(get("PYTHONPATH"), Some(None));
        assert_eq!(get("OMP_NUM_THREADS"), Some(Some("1".into())));
        assert!(
            get("PATH")
                .unwrap()
                .unwrap()
                .to_string_lossy()
                .starts_with(&dir.path().join("bin").to_string_lossy().into_owned())
        );
        fs_err::create_dir_all(dir.path().join("conda-meta")).unwrap();
        let env = Environment::from_prefix(dir.path(), BTreeMap::new());
        assert_eq!(env.kind, EnvKind::Conda);
        assert!(
            env.activation_vars()
                .iter()
                .any(|(k, v)| k == "CONDA_PREFIX" && v.is_some())
        );
    }

    #[cfg(unix)]
    #[test]
    fn activation_scripts_are_sourced() {
        let dir = tempfile::tempdir().unwrap();
        let activate = dir.path().join("etc/conda/activate.d");
        fs_err::create_dir_all(&activate).unwrap();
        fs_err::create_dir_all(dir.path().join("conda-meta")).unwrap();
        fs_err::write(activate.join("b.sh"), "export ORDER=\"$ORDER b\"\n").unwrap();
        fs_err::write(
            activate.join("a.sh"),
            "export ORDER=\"$ORDER a\"\nexport FROM_SCRIPT=yes\n",
        )
        .unwrap();
        let env = Environment::from_prefix(dir.path(), BTreeMap::new());
        let output = env
            .command(
                OsStr::new("sh"),
                &[
                    "-c".into(),
                    "echo \"$FROM_SCRIPT$ORDER $CONDA_PREFIX\"".into(),
                ],
            )
            .env_remove("ORDER")
            .output()
            .unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        assert_eq!(text.trim(), format!("yes a b {}", dir.path().display()));
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_command_after_activation_scripts_is_reported_like_a_direct_one() {
        let dir = tempfile::tempdir().unwrap();
        let activate = dir.path().join("etc/conda/activate.d");
        fs_err::create_dir_all(&activate).unwrap();
        fs_err::create_dir_all(dir.path().join("conda-meta")).unwrap();
        fs_err::write(activate.join("a.sh"), "export FROM_SCRIPT=yes\n").unwrap();
        let env = Environment::from_prefix(dir.path(), BTreeMap::new());
        let output = env
            .command(OsStr::new("nosuchcommand"), &["--flag".into()])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(127));
        assert_eq!(
            String::from_utf8(output.stderr).unwrap(),
            format!(
                "error: Failed to run `nosuchcommand`\n  Caused by: No such file or directory (os error 2)\n\nhint: Check the command name; inside the environment, `PATH` starts with `{}`\n",
                dir.path().join("bin").display()
            )
        );
        // Commands that exist still run, with their arguments.
        let output = env
            .command(
                OsStr::new("sh"),
                &["-c".into(), "echo \"$FROM_SCRIPT $0\"".into(), "x y".into()],
            )
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(output.stdout).unwrap(), "yes x y\n");
    }

    #[cfg(unix)]
    #[test]
    fn model_paths_mlflow_would_misparse_are_reached_through_a_plain_link() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("model-1.0_x");
        assert_eq!(mlflow_safe_model_path(&plain), plain);
        for name in ["m#x", "m%41", "m\nx", "m?x"] {
            let model = dir.path().join(name);
            fs_err::create_dir_all(&model).unwrap();
            fs_err::write(model.join("MLmodel"), name).unwrap();
            let safe = mlflow_safe_model_path(&model);
            let text = safe.to_str().unwrap();
            assert!(text.ends_with('/'), "{text}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b)),
                "{text}"
            );
            assert_eq!(fs_err::read_to_string(safe.join("MLmodel")).unwrap(), name);
            // The same link next time.
            assert_eq!(mlflow_safe_model_path(&model), safe);
        }
    }

    #[cfg(unix)]
    #[test]
    fn exit_codes_of_signals() {
        let status = Command::new("sh")
            .args(["-c", "kill -TERM $$"])
            .status()
            .unwrap();
        assert_eq!(exit_code(status), 128 + 15);
        let status = Command::new("sh").args(["-c", "exit 7"]).status().unwrap();
        assert_eq!(exit_code(status), 7);
    }
}
