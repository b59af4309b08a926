//! Test support: an isolated context per test and helpers to run the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Every input of the sklearn fixture that MLflow's scoring server accepts: (file in
/// `fixtures/inputs/sklearn-iris/`, content type, stem of MLflow's answer in
/// `fixtures/expected/sklearn-iris/`). `run -- serve` and the image's server are checked
/// against the same cases.
pub const SKLEARN_SERVED_INPUTS: &[(&str, &str, &str)] = &[
    (
        "dataframe_split.json",
        "application/json",
        "dataframe_split",
    ),
    (
        "dataframe_records.json",
        "application/json",
        "dataframe_records",
    ),
    ("instances.json", "application/json", "instances"),
    ("inputs.json", "application/json", "inputs"),
    ("input.csv", "text/csv", "input"),
    (
        "instances_columns.json",
        "application/json",
        "instances_columns",
    ),
    ("inputs_records.json", "application/json", "inputs_records"),
    (
        "unexpected_params.json",
        "application/json",
        "unexpected_params",
    ),
];

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// A fixture model directory.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("fixtures/models").join(name)
}

/// One shared uv cache for the whole test run (and across runs), so PyPI downloads happen once.
pub fn shared_uv_cache() -> PathBuf {
    env_test::target_dir().join("test-uv-cache")
}

/// A venv of pyenv's CPython 3.11.7 with `packages`, built once per target directory under
/// `target/<name>` (a lock serialises the tests that want it; a marker naming the packages is
/// written last, so a half-built or outdated venv is rebuilt).
pub fn test_venv(name: &str, packages: &[&str]) -> PathBuf {
    let dir = env_test::target_dir().join(name);
    let marker = dir.join(format!(
        ".complete-{}",
        packages.join("-").replace(['/', ' '], "_")
    ));
    if marker.is_file() {
        return dir;
    }
    let lock = fs_err::File::create(env_test::target_dir().join(format!("{name}.lock"))).unwrap();
    lock.file().lock().unwrap();
    if marker.is_file() {
        return dir;
    }
    if dir.exists() {
        fs_err::remove_dir_all(&dir).unwrap();
    }
    let python = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/bin/python3.11");
    let uv = |args: &[&str]| {
        let output = Command::new("uv")
            .args(args)
            .env("UV_CACHE_DIR", shared_uv_cache())
            .env_remove("VIRTUAL_ENV")
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    };
    uv(&[
        "venv",
        "--quiet",
        "--python",
        python.to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    let venv_python = dir.join("bin/python");
    let mut install = vec![
        "pip",
        "install",
        "--quiet",
        "--python",
        venv_python.to_str().unwrap(),
    ];
    install.extend_from_slice(packages);
    uv(&install);
    fs_err::write(&marker, "").unwrap();
    dir
}

/// An isolated temporary working directory, `HOME`, XDG dirs and cache for one test.
pub struct TestContext {
    pub temp: tempfile::TempDir,
    pub cache_dir: PathBuf,
    pub home: PathBuf,
    pub offline: bool,
    pub extra_env: Vec<(String, String)>,
}

impl TestContext {
    pub fn new() -> Self {
        let temp = tempfile::Builder::new()
            .prefix("pfe-test-")
            .tempdir()
            .unwrap();
        let home = temp.path().join("home");
        fs_err::create_dir_all(&home).unwrap();
        Self {
            cache_dir: temp.path().join("cache"),
            home,
            temp,
            offline: true,
            extra_env: Vec::new(),
        }
    }

    /// Lets the test reach PyPI (tests in the `pypi` group).
    pub fn online(mut self) -> Self {
        self.offline = false;
        self
    }

    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.extra_env.push((key.to_string(), value.into()));
        self
    }

    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// The `pyfunc-env` binary with a clean, deterministic environment.
    pub fn command(&self) -> Command {
        self.command_for(Path::new(env!("CARGO_BIN_EXE_pyfunc-env")))
    }

    /// Like [`Self::command`], for another `pyfunc-env` executable (e.g. one a wheel installed).
    pub fn command_for(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command.current_dir(self.temp.path());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CONDA_")
                || key.starts_with("PIP_")
                || key.starts_with("UV_")
                || key.starts_with("PYFUNC_ENV_")
                || key == "VIRTUAL_ENV"
                || key == "PYTHONPATH"
                || key == "RUST_LOG"
                || key == "XDG_CONFIG_HOME"
                || key == "XDG_CACHE_HOME"
            {
                command.env_remove(&key);
            }
        }
        command
            .env("HOME", &self.home)
            .env("XDG_CACHE_HOME", self.temp.path().join("xdg-cache"))
            .env("XDG_CONFIG_HOME", self.temp.path().join("xdg-config"))
            .env("PYFUNC_ENV_CACHE_DIR", &self.cache_dir)
            .env("PYFUNC_ENV_UV_CACHE_DIR", shared_uv_cache())
            .env("PYFUNC_ENV_NO_PROGRESS", "1")
            .env("NO_COLOR", "1")
            .env("COLUMNS", "100")
            .env("LC_ALL", "C");
        // pyenv's real versions stay visible for Python discovery (HOME is replaced).
        if let Ok(root) = env_test::pyenv_root() {
            command.env("PYENV_ROOT", root);
        }
        if self.offline {
            command.env("PYFUNC_ENV_OFFLINE", "1");
        }
        for (key, value) in &self.extra_env {
            command.env(key, value);
        }
        command
    }

    /// Writes a model directory with an MLmodel (`python_function`, env mapping) and the given files.
    pub fn model(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.temp.path().join("models").join(name);
        fs_err::create_dir_all(&dir).unwrap();
        let mlmodel = "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: mlflow.pyfunc.model\n    python_version: 3.11.7\nmlflow_version: 3.17.2\n";
        fs_err::write(dir.join("MLmodel"), mlmodel).unwrap();
        for (file, text) in files {
            let path = dir.join(file);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        }
        dir
    }

    /// Copies a fixture model into the context (so tests can change it).
    pub fn copy_fixture(&self, name: &str) -> PathBuf {
        let target = self.temp.path().join("models").join(name);
        copy_dir(&fixture(name), &target);
        target
    }

    /// Replaces machine-specific parts of output with placeholders.
    pub fn filter(&self, text: &str) -> String {
        let mut text = text.replace(&self.cache_dir.display().to_string(), "[CACHE_DIR]");
        text = text.replace(&self.temp.path().display().to_string(), "[TEMP_DIR]");
        text = text.replace(&repo_root().display().to_string(), "[REPO]");
        let key = regex_replace_keys(&text);
        text = key;
        text
    }
}

impl TestContext {
    /// The regex filters of [`pyfunc_env_snapshot!`]: this context's paths, then what differs
    /// between runs and machines (keys, hashes, times, sizes, dates, our version).
    pub fn filters(&self) -> Vec<(String, String)> {
        let literal = |path: &Path| regex_escape(&path.display().to_string());
        let mut filters = vec![
            (literal(&self.cache_dir), "[CACHE_DIR]".to_string()),
            (literal(self.temp.path()), "[TEMP_DIR]".to_string()),
            (literal(&repo_root()), "[REPO]".to_string()),
        ];
        // `/tmp` may be a symlink: the canonical spelling too.
        if let Ok(canonical) = self.temp.path().canonicalize() {
            filters.insert(2, (literal(&canonical), "[TEMP_DIR]".to_string()));
        }
        // The test channel's directory, also when `target/env-test` is a symlink to another
        // checkout's (a worktree sharing main's channel).
        let env_test_dir = env_test::target_dir().join("env-test");
        if let Ok(canonical) = env_test_dir.canonicalize()
            && canonical != env_test_dir
        {
            filters.push((literal(&canonical), "[REPO]/target/env-test".to_string()));
        }
        if let Ok(pyenv) = env_test::pyenv_root() {
            filters.push((literal(&pyenv), "[PYENV_ROOT]".to_string()));
        }
        for (pattern, replacement) in [
            // The local test channel's directory is named by a digest of its content.
            (r"channel-[0-9a-f]{16}\b", "channel-[ID]"),
            (r"md5: [0-9a-f]{32}\b", "md5: [HASH]"),
            (r"\b[0-9a-f]{64}\b", "[HASH]"),
            // This machine's glibc, and what its pyenv CPython builds weigh.
            (r"__glibc=[0-9.]+", "__glibc=[VERSION]"),
            (r"\b(size|indexed_timestamp): [0-9]+", "$1: [N]"),
            (r"\b[0-9]+ files\b", "[N] files"),
            (r"\b[0-9a-f]{32}\b", "[KEY]"),
            // Lock holders in lock timeouts.
            (r"\bpid [0-9]+\b", "pid [PID]"),
            (
                r#""(wait|solve|conda_install|pip_install|compile|total|seconds|build_seconds)": [0-9.e-]+"#,
                r#""$1": "[TIME]""#,
            ),
            (r"\b[0-9]+(\.[0-9]+)?(ms|s)\b", "[TIME]"),
            (r"\b[0-9]+(\.[0-9]+)? ?(B|KiB|MiB|GiB|kB|MB|GB)\b", "[SIZE]"),
            (
                r"\b[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9:]+)?",
                "[DATE]",
            ),
            (
                &format!(r"\b{}\b", regex_escape(env!("CARGO_PKG_VERSION"))),
                "[VERSION]",
            ),
        ] {
            filters.push((pattern.to_string(), replacement.to_string()));
        }
        filters
    }
}

/// Escapes regex metacharacters.
fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Runs `command` and shows its exit code, stdout and stderr the way snapshots record them.
pub fn snapshot_text(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let code = output.status.code().map_or_else(
        || "none (killed by a signal)".to_string(),
        |code| {
            let meaning = match code {
                0 => " (success)",
                1 => " (failure)",
                2 => " (error)",
                _ => "",
            };
            format!("{code}{meaning}")
        },
    );
    let text = format!(
        "exit_code: {code}\n----- stdout -----\n{}\n----- stderr -----\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // Trailing spaces (clap's blank help lines) would not survive an editor in a snapshot.
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Snapshots a whole CLI run (exit code, stdout, stderr) inline, with `filters` (regex,
/// replacement) replacing what differs between runs and machines; as uv's `uv_snapshot!`.
///
/// ```ignore
/// pyfunc_env_snapshot!(ctx.filters(), ctx.command().arg("--help"), @"...");
/// ```
macro_rules! pyfunc_env_snapshot {
    ($filters:expr, $command:expr, @$snapshot:literal) => {{
        let text = $crate::common::snapshot_text(&mut $command);
        let mut settings = ::insta::Settings::clone_current();
        for (pattern, replacement) in $filters {
            settings.add_filter(&pattern, replacement);
        }
        settings.bind(|| ::insta::assert_snapshot!(text, @$snapshot));
    }};
}
pub(crate) use pyfunc_env_snapshot;

fn regex_replace_keys(text: &str) -> String {
    // 32 lowercase hex digits -> [KEY]
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let run = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
            .count();
        let before_ok = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let after_ok = i + run >= bytes.len() || !bytes[i + run].is_ascii_alphanumeric();
        if run == 32 && before_ok && after_ok {
            out.push_str("[KEY]");
            i += 32;
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs_err::create_dir_all(to).unwrap();
    for entry in fs_err::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs_err::copy(entry.path(), &target).unwrap();
        }
    }
}

/// stdout, stderr and exit code as one string, for assertions and snapshots.
pub fn describe(output: &Output) -> String {
    format!(
        "exit_code: {:?}\n----- stdout -----\n{}\n----- stderr -----\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Python source of `write_wheel(directory, name, version, files)`: writes a pure-Python wheel
/// holding `files` (path -> text) plus its metadata and `RECORD`, and returns its file name.
/// Self-contained, so a build backend can embed it.
pub const WRITE_WHEEL_PY: &str = r#"
def write_wheel(directory, name, version, files):
    import base64, hashlib, os, zipfile
    dist = "%s-%s.dist-info" % (name, version)
    files = dict(files)
    files[dist + "/METADATA"] = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (name, version)
    files[dist + "/WHEEL"] = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    wheel = "%s-%s-py3-none-any.whl" % (name, version)
    record = []
    with zipfile.ZipFile(os.path.join(directory, wheel), "w") as z:
        for path, text in files.items():
            data = text.encode()
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
        record.append(dist + "/RECORD,,")
        z.writestr(dist + "/RECORD", "\n".join(record) + "\n")
    return wheel
"#;

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout parsed as JSON.
pub fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", describe(output));
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(output)))
}

/// `--mirror` arguments pointing conda-forge and defaults at a channel URL.
pub fn mirror_args(url: &str) -> Vec<String> {
    vec![
        "--mirror".into(),
        format!("conda-forge={url}"),
        "--mirror".into(),
        format!("defaults={url}"),
    ]
}
