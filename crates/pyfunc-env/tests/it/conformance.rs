//! The conformance matrix (`fixtures/matrix/`, issue 10): models written by MLflow 1.30.1, 2.3.0,
//! 2.22.5 and 3.17.2 (scikit-learn, custom `PythonModel`, lightgbm, xgboost, statsmodels, onnx,
//! catboost, `code_paths`, model from code with params, tensor signature, a column pipeline),
//! scored by pyfunc-env in environments built from PyPI and compared with the answers each
//! model's own MLflow gave in the venv that wrote it (`fixtures/matrix/index.json`).
//!
//! One test per writer MLflow version (`pypi_` names: the nextest `pypi` group). Each builds every
//! model's environment once (`create`, bytecode compiled), runs `run MODEL -- predict` for every
//! case, and starts one `run MODEL -- serve` per model for /ping, /health, /version and every
//! /invocations case. It prints `conformance: N/N cases identical to MLflow (MLflow X.Y.Z
//! models)` and fails listing every case that differs.
//!
//! What is compared:
//! - `predict`: the exit code, and stdout byte for byte (MLflow's stdout is empty on failure).
//! - `serve`: the status code; for a 200, the body byte for byte. For an error body (MLflow's
//!   JSON `{"error_code", "message", "stack_trace"}`), the JSON without `stack_trace`: the
//!   trace names files of the interpreter that served (the generator replaced the writer venv's
//!   paths by `<venv>`), so only the exception it ends with would be comparable, and that is in
//!   `message`. A non-JSON error body (Flask's HTML 404 page) is compared byte for byte.

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TestContext, describe, repo_root};
use crate::run::{Response, free_port, http_any_framing};

#[test]
fn pypi_conformance_mlflow_1_30_1() {
    conformance("1.30.1");
}

#[test]
fn pypi_conformance_mlflow_2_3_0() {
    conformance("2.3.0");
}

#[test]
fn pypi_conformance_mlflow_2_22_5() {
    conformance("2.22.5");
}

#[test]
fn pypi_conformance_mlflow_3_17_2() {
    conformance("3.17.2");
}

/// Issue 23: models MLflow 3.17.2 wrote from uv projects (`uv.lock`, `pyproject.toml`,
/// `.python-version` in the model), answered by MLflow's `--env-manager uv` (`uv sync --frozen
/// --no-dev` from the lock). pyfunc-env runs them with `--env-manager uv` too (the models'
/// `pyfunc_env_args`), and every model's installed distributions must equal those of MLflow's
/// environment (`mlflow_env_installed`, recorded by the writer), which are the lock's.
#[test]
fn pypi_conformance_mlflow_3_17_2_uv() {
    // The second-index model's lock names http://127.0.0.1:38517/simple (fixed by the writer,
    // fixtures/matrix/make_matrix.py UV_INDEX_PORT): its files are served there again.
    let index = repo_root().join("fixtures/matrix/mlflow-3.17.2-uv/index");
    let _index = env_test::ChannelServer::bind(&index, "127.0.0.1:38517").unwrap_or_else(|err| {
        panic!("cannot serve the uv fixtures' second index on 127.0.0.1:38517 (in use?): {err}")
    });
    conformance("3.17.2-uv");
}

/// Environment flags of every model: the pyenv CPython of the model's version. Bytecode is
/// compiled by `create` (foreground), so each of the many `run` processes imports fast.
const ENV_ARGS: [&str; 2] = ["--python-source", "system"];

fn conformance(writer: &str) {
    let started = Instant::now();
    let root = repo_root();
    let index: Value =
        serde_json::from_slice(&fs_err::read(root.join("fixtures/matrix/index.json")).unwrap())
            .unwrap();
    let models = index["writers"][writer]["models"]
        .as_array()
        .unwrap_or_else(|| panic!("no MLflow {writer} models in fixtures/matrix/index.json"));
    let ctx = TestContext::new().online();
    let mut total = 0;
    // Differing cases, and one message per difference (a server that does not start is one
    // message for all its cases).
    let mut failed = 0;
    let mut differences = Vec::new();
    for model in models {
        let name = model["name"].as_str().unwrap();
        let dir = root.join(model["dir"].as_str().unwrap());
        let mut env_args: Vec<String> = ENV_ARGS.iter().map(ToString::to_string).collect();
        env_args.extend(
            model["pyfunc_env_args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_string()),
        );
        let create = ctx
            .command()
            .arg("create")
            .arg(&dir)
            .args(&env_args)
            .output()
            .unwrap();
        let cases = model["predict"].as_array().unwrap().len()
            + model["serve"]["endpoints"].as_array().map_or(3, Vec::len)
            + model["serve"]["invocations"].as_array().map_or(0, Vec::len);
        if !create.status.success() {
            total += cases;
            failed += cases;
            differences.push(format!(
                "{name}: the environment could not be built ({cases} cases not run)\n{}",
                describe(&create)
            ));
            continue;
        }
        if let Some(expected) = model.get("mlflow_env_installed") {
            total += 1;
            if let Err(difference) = installed_like_mlflow(&ctx, &dir, &env_args, expected) {
                failed += 1;
                differences.push(format!("{name}: {difference}"));
            }
        }
        let case = Case {
            ctx: &ctx,
            dir: &dir,
            env_args: &env_args,
            inputs: root.join(model["inputs"].as_str().unwrap()),
            expected: root.join(model["expected"].as_str().unwrap()),
        };
        for expected in model["predict"].as_array().unwrap() {
            total += 1;
            if let Err(difference) = case.predict(expected) {
                failed += 1;
                differences.push(format!("{name}: {difference}"));
            }
        }
        let (n, serve_failed, serve_differences) = case.serve(&model["serve"]);
        total += n;
        failed += serve_failed;
        differences.extend(
            serve_differences
                .into_iter()
                .map(|d| format!("{name}: {d}")),
        );
    }
    #[expect(
        clippy::print_stdout,
        reason = "the test reports its score (issue 10: `conformance: N/N cases identical`)"
    )]
    {
        println!(
            "conformance: {}/{total} cases identical to MLflow (MLflow {writer} models)",
            total - failed
        );
        println!(
            "conformance: {} models in {:.0} s",
            models.len(),
            started.elapsed().as_secs_f64()
        );
    }
    assert!(
        differences.is_empty(),
        "{failed} of {total} cases differ from MLflow {writer}:\n\n{}",
        differences.join("\n\n")
    );
}

/// The distributions of the model's environment (`run -- python`) equal `expected`
/// ({normalised name: version}, what MLflow's environment held).
fn installed_like_mlflow(
    ctx: &TestContext,
    dir: &Path,
    env_args: &[String],
    expected: &Value,
) -> Result<(), String> {
    let output = ctx
        .command()
        .arg("run")
        .arg(dir)
        .args(env_args)
        .args(["--", "python", "-c"])
        .arg(
            "import importlib.metadata as m, json, re; print(json.dumps({re.sub(r'[-_.]+', '-', \
             d.metadata['Name']).lower(): d.version for d in m.distributions()}))",
        )
        .output()
        .unwrap();
    if !output.status.success() {
        return Err(format!(
            "listing the installed distributions failed\n{}",
            describe(&output)
        ));
    }
    let installed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let (installed, expected) = (
        installed.as_object().unwrap(),
        expected.as_object().unwrap(),
    );
    let mut differences = Vec::new();
    for (name, version) in expected {
        match installed.get(name) {
            Some(have) if have == version => {}
            have => differences.push(format!("{name}: MLflow {version}, pyfunc-env {have:?}")),
        }
    }
    for (name, version) in installed {
        if !expected.contains_key(name) {
            differences.push(format!(
                "{name}: not in MLflow's environment, pyfunc-env {version}"
            ));
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "installed distributions differ from MLflow's environment:\n  {}",
            differences.join("\n  ")
        ))
    }
}

/// One model of the matrix and its built environment.
struct Case<'a> {
    ctx: &'a TestContext,
    dir: &'a Path,
    env_args: &'a [String],
    inputs: PathBuf,
    expected: PathBuf,
}

impl Case<'_> {
    /// `pyfunc-env run MODEL ENV_ARGS -- COMMAND`.
    fn run_command(&self, command: &[&str]) -> Command {
        let mut cmd = self.ctx.command();
        cmd.arg("run")
            .arg(self.dir)
            .args(self.env_args)
            .arg("--")
            .args(command);
        cmd
    }

    fn expected_bytes(&self, record: &Value, key: &str) -> Vec<u8> {
        fs_err::read(self.expected.join(record[key].as_str().unwrap())).unwrap()
    }

    /// `run -- predict -i INPUT -t TYPE`: MLflow's exit code and stdout bytes.
    fn predict(&self, expected: &Value) -> Result<(), String> {
        let input = self.inputs.join(expected["input"].as_str().unwrap());
        let content_type = expected["content_type"].as_str().unwrap();
        let output = self
            .run_command(&["predict", "-i", input.to_str().unwrap(), "-t", content_type])
            .output()
            .unwrap();
        let code = expected["exit_code"].as_i64().unwrap();
        let stdout = self.expected_bytes(expected, "stdout");
        if output.status.code().map(i64::from) == Some(code) && output.stdout == stdout {
            return Ok(());
        }
        let mut message = format!(
            "predict {} (-t {content_type}): MLflow exited {code}",
            expected["input"].as_str().unwrap()
        );
        if code != 0 {
            let tail: Vec<&str> = expected["stderr_tail"]
                .as_array()
                .map(|lines| lines.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            write!(message, " ({})", tail.last().unwrap_or(&"")).unwrap();
        }
        write!(
            message,
            "\n{}{}",
            diff(&stdout, &output.stdout),
            tail_of(&describe(&output), 25)
        )
        .unwrap();
        Err(message)
    }

    /// One `run -- serve --port P` for all serve cases of the model. Returns the number of
    /// cases, of differing cases, and the differences.
    fn serve(&self, expected: &Value) -> (usize, usize, Vec<String>) {
        let endpoints = expected["endpoints"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let invocations = expected["invocations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let cases = endpoints.len() + invocations.len();
        if expected["started"] != true {
            // MLflow's own server did not start in the writer venv: nothing to compare with.
            return (
                1,
                1,
                vec![format!(
                    "MLflow's own server did not start when the matrix was generated: {}",
                    expected["log_tail"]
                )],
            );
        }
        let port = free_port();
        let log = self.ctx.path().join(format!("serve-{port}.log"));
        let child = self
            .run_command(&["serve", "--port", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(fs_err::File::create(&log).unwrap().into_file())
            .stderr(fs_err::File::create(&log).unwrap().into_file())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut server = Server(child);
        let logs = || tail_of(&fs_err::read_to_string(&log).unwrap_or_default(), 30);

        let started = Instant::now();
        loop {
            if let Some(status) = server.0.try_wait().unwrap() {
                return (
                    cases,
                    cases,
                    vec![format!(
                        "serve: the server exited with {status} before answering /ping ({cases} cases not run)\n{}",
                        logs()
                    )],
                );
            }
            if http(port, "GET", "/ping", "", b"").is_ok_and(|r| r.status == 200) {
                break;
            }
            if started.elapsed() > Duration::from_mins(3) {
                return (
                    cases,
                    cases,
                    vec![format!(
                        "serve: no answer on /ping within 180 s ({cases} cases not run)\n{}",
                        logs()
                    )],
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }

        let mut differences = Vec::new();
        for endpoint in &endpoints {
            let path = endpoint["path"].as_str().unwrap();
            let answer = http(port, "GET", path, "", b"");
            if let Err(d) = compare(endpoint, &self.expected_bytes(endpoint, "body"), answer) {
                differences.push(format!("serve GET {path}: {d}"));
            }
        }
        for invocation in &invocations {
            let file = invocation["input"].as_str().unwrap();
            let content_type = invocation["content_type"].as_str().unwrap();
            let body = fs_err::read(self.inputs.join(file)).unwrap();
            let answer = http(port, "POST", "/invocations", content_type, &body);
            if let Err(d) = compare(invocation, &self.expected_bytes(invocation, "body"), answer) {
                differences.push(format!(
                    "serve POST /invocations {file} ({content_type}): {d}"
                ));
            }
        }
        let failed = differences.len();
        if failed > 0 {
            differences.push(format!("(server log of the model above)\n{}", logs()));
        }
        server.stop();
        (cases, failed, differences)
    }
}

/// Equal status, and equal body (for an error JSON body: without `stack_trace`).
pub(crate) fn compare(
    expected: &Value,
    expected_body: &[u8],
    answer: std::io::Result<Response>,
) -> Result<(), String> {
    let status = expected["status"].as_u64().unwrap();
    let answer = answer.map_err(|e| format!("no answer: {e}"))?;
    if u64::from(answer.status) != status {
        return Err(format!(
            "status {} (MLflow: {status})\n{}",
            answer.status,
            diff(expected_body, &answer.body)
        ));
    }
    let same = if status == 200 {
        answer.body == expected_body
    } else {
        match (
            without_stack_trace(expected_body),
            without_stack_trace(&answer.body),
        ) {
            (Some(a), Some(b)) => a == b,
            _ => answer.body == expected_body,
        }
    };
    if same {
        Ok(())
    } else {
        Err(format!(
            "status {status} as MLflow's, body differs\n{}",
            diff(expected_body, &answer.body)
        ))
    }
}

fn without_stack_trace(body: &[u8]) -> Option<Value> {
    let mut value: Value = serde_json::from_slice(body).ok()?;
    value.as_object_mut()?.remove("stack_trace");
    Some(value)
}

/// MLflow's bytes and ours, for a failure message.
fn diff(expected: &[u8], actual: &[u8]) -> String {
    let clip = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        if text.len() > 1500 {
            format!("{}...", &text[..text.floor_char_boundary(1500)])
        } else {
            text.into_owned()
        }
    };
    format!(
        "--- MLflow\n{}\n+++ pyfunc-env\n{}\n",
        clip(expected),
        clip(actual)
    )
}

fn tail_of(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The server's process group (gunicorn forks workers): stopped with SIGTERM, then SIGKILL,
/// on every path, also when the test panics.
struct Server(Child);

impl Server {
    fn signal_group(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
    }

    fn stop(&mut self) {
        if matches!(self.0.try_wait(), Ok(Some(_))) {
            self.signal_group("-KILL"); // workers the leader left behind
            return;
        }
        self.signal_group("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.signal_group("-KILL");
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One request; MLflow's servers may answer chunked, and bodies are what is compared.
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    http_any_framing(port, method, path, content_type, body).map(|framed| framed.response)
}
