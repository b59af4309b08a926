//! `run` and `check` end to end: the fixture models MLflow 3.17.2 wrote, scored in environments
//! built from PyPI (tests named `pypi_*`), compared byte for byte with what `mlflow models
//! predict` wrote for the same input (`fixtures/expected/`). Plus commands, exit codes and
//! activation in a small conda environment from the local test channel (offline).

use std::fmt::Write as _;
use std::io::{Read, Write as _};
use std::net::TcpStream;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    TestContext, describe, fixture, json, mirror_args, pyfunc_env_snapshot, repo_root, stderr,
    stdout,
};

/// `fixtures/inputs/<model>/<file>`.
fn input(model: &str, file: &str) -> PathBuf {
    repo_root().join("fixtures/inputs").join(model).join(file)
}

/// The bytes `mlflow models predict -o` wrote: `fixtures/expected/<model>/<stem>.out`.
fn expected(model: &str, stem: &str) -> Vec<u8> {
    fs_err::read(
        repo_root()
            .join("fixtures/expected")
            .join(model)
            .join(format!("{stem}.out")),
    )
    .unwrap()
}

/// MLflow's exit code and exception text (all lines) for an input it rejects.
fn expected_error(model: &str, stem: &str) -> (i32, String) {
    let record: serde_json::Value = serde_json::from_slice(
        &fs_err::read(
            repo_root()
                .join("fixtures/expected")
                .join(model)
                .join(format!("{stem}.error.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let lines: Vec<&str> = record["error"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    (
        i32::try_from(record["exit_code"].as_i64().unwrap()).unwrap(),
        lines.join("\n"),
    )
}

/// The pyenv CPython 3.11.7 (no mlflow, no scikit-learn installed).
fn pyenv_python(version: &str) -> PathBuf {
    let minor = version.rsplit_once('.').unwrap().0;
    env_test::pyenv_root()
        .unwrap()
        .join("versions")
        .join(version)
        .join("bin")
        .join(format!("python{minor}"))
}

/// `pyfunc-env run MODEL ENV_ARGS -- COMMAND`.
pub(crate) fn run_command(
    ctx: &TestContext,
    model: &Path,
    env_args: &[&str],
    command: &[&str],
) -> Command {
    let mut cmd = ctx.command();
    cmd.arg("run")
        .arg(model)
        .args(env_args)
        .arg("--")
        .args(command);
    cmd
}

pub(crate) fn run(ctx: &TestContext, model: &Path, env_args: &[&str], command: &[&str]) -> Output {
    run_command(ctx, model, env_args, command).output().unwrap()
}

/// `run` with `stdin` fed to the command.
fn run_with_stdin(
    ctx: &TestContext,
    model: &Path,
    env_args: &[&str],
    command: &[&str],
    stdin: &[u8],
) -> Output {
    let mut child = run_command(ctx, model, env_args, command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// Success, and stdout is exactly `expected` (MLflow's bytes; no trailing newline).
#[track_caller]
fn assert_predictions(output: &Output, expected: &[u8]) {
    assert!(output.status.success(), "{}", describe(output));
    assert!(
        output.stdout == expected,
        "stdout differs from MLflow's\n----- MLflow -----\n{}\n{}",
        String::from_utf8_lossy(expected),
        describe(output)
    );
}

/// Fails like MLflow: its exit code, nothing on stdout, its exception text ending stderr.
#[track_caller]
fn assert_rejected(output: &Output, model: &str, stem: &str) {
    let (code, error) = expected_error(model, stem);
    assert_eq!(output.status.code(), Some(code), "{}", describe(output));
    assert_eq!(stdout(output), "", "{}", describe(output));
    assert!(
        stderr(output).ends_with(&format!("\n{error}\n")),
        "stderr does not end with MLflow's error\n----- MLflow -----\n{error}\n{}",
        describe(output)
    );
}

/// The environment `run` built, as `create --json` reports it (a cache hit).
fn created(ctx: &TestContext, model: &Path, env_args: &[&str]) -> serde_json::Value {
    let result = json(
        &ctx.command()
            .arg("create")
            .arg(model)
            .args(env_args)
            .arg("--json")
            .output()
            .unwrap(),
    );
    assert_eq!(
        result["cache_hit"], true,
        "`run` left no reusable environment"
    );
    result
}

/// `command` run by `/bin/sh`, which then prints the exit code it saw (`$?`).
fn in_a_shell(command: &Command) -> Command {
    let mut shell = Command::new("/bin/sh");
    shell
        .args(["-c", "\"$@\"; echo $?", "sh"])
        .arg(command.get_program())
        .args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        shell.current_dir(dir);
    }
    shell
}

/// Exit codes, a missing command and activation, in an environment `run` already built.
fn assert_commands_run_in_the_environment(
    ctx: &TestContext,
    model: &Path,
    env_args: &[&str],
    prefix: &str,
    activation_var: &str,
) {
    // The command's exit code is `run`'s.
    let exit = run(
        ctx,
        model,
        env_args,
        &["python", "-c", "import sys; sys.exit(7)"],
    );
    assert_eq!(exit.status.code(), Some(7), "{}", describe(&exit));
    assert_eq!(stderr(&exit), "", "{}", describe(&exit));

    // `run` becomes the command, so a command killed by a signal kills `run` with that signal:
    // a shell reports 143 (128 + SIGTERM) for it.
    let killed = run(
        ctx,
        model,
        env_args,
        &[
            "python",
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
        ],
    );
    assert_eq!(killed.status.code(), None, "{}", describe(&killed));
    assert_eq!(killed.status.signal(), Some(15), "{}", describe(&killed));
    let through_shell = in_a_shell(&run_command(
        ctx,
        model,
        env_args,
        &[
            "python",
            "-c",
            "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
        ],
    ))
    .output()
    .unwrap();
    assert_eq!(
        stdout(&through_shell),
        "143\n",
        "{}",
        describe(&through_shell)
    );

    // A command that does not exist: 127, as in a shell, naming it and the environment's bin/.
    let missing = run(ctx, model, env_args, &["nosuchcommand", "--flag"]);
    assert_eq!(missing.status.code(), Some(127), "{}", describe(&missing));
    assert_eq!(stdout(&missing), "");
    assert_eq!(
        ctx.filter(&stderr(&missing)),
        "error: Failed to run `nosuchcommand`\n  Caused by: No such file or directory (os error 2)\n\nhint: Check the command name; inside the environment, `PATH` starts with `[CACHE_DIR]/envs-v1/[KEY]/bin`\n",
        "{}",
        describe(&missing)
    );

    // The environment is activated: its bin/ first on PATH, its prefix in the activation
    // variable, and the environment's interpreter is the one `python` finds.
    let activated = run(
        ctx,
        model,
        env_args,
        &[
            "sh",
            "-c",
            &format!(
                "echo ${activation_var}; command -v python; python -c 'import sys; print(sys.prefix)'"
            ),
        ],
    );
    assert!(activated.status.success(), "{}", describe(&activated));
    assert_eq!(
        stdout(&activated),
        format!("{prefix}\n{prefix}/bin/python\n{prefix}\n")
    );
    assert!(
        prefix.starts_with(&ctx.cache_dir.join("envs-v1").display().to_string()),
        "{prefix}"
    );
}

#[test]
fn pypi_sklearn_iris_virtualenv_predict_serve_check_and_commands() {
    let ctx = TestContext::new().online();
    let model = fixture("sklearn-iris");
    // The Python comes from pyenv (3.11.7), pip packages from PyPI; bytecode is compiled.
    let env_args = ["--python-source", "system"];
    let name = "sklearn-iris";

    // The first run builds the environment; its one message goes to stderr, stdout is MLflow's.
    let path = input(name, "dataframe_split.json");
    let first = run(
        &ctx,
        &model,
        &env_args,
        &["predict", "-i", path.to_str().unwrap()],
    );
    assert_predictions(&first, &expected(name, "dataframe_split"));
    let text = ctx.filter(&stderr(&first));
    assert!(
        text.starts_with("Created virtualenv environment in ")
            && text.ends_with("s: [CACHE_DIR]/envs-v1/[KEY]\n")
            && text.lines().count() == 1,
        "{}",
        describe(&first)
    );
    let env = created(&ctx, &model, &env_args);
    let prefix = env["prefix"].as_str().unwrap().to_string();
    let key = env["key"].as_str().unwrap().to_string();
    // `run` started the model at once and compiles bytecode in the background: it arrives.
    let pycache = Path::new(&prefix).join("lib/python3.11/site-packages/sklearn/__pycache__");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while !pycache.is_dir() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    assert!(pycache.is_dir(), "bytecode was not compiled");

    // The other formats from a file: exactly MLflow's bytes on stdout and, with the
    // environment cached, nothing at all on stderr.
    for (file, content_type, stem) in [
        ("dataframe_records.json", "json", "dataframe_records"),
        ("instances.json", "json", "instances"),
        ("inputs.json", "json", "inputs"),
        ("input.csv", "csv", "input"),
    ] {
        let path = input(name, file);
        let output = run(
            &ctx,
            &model,
            &env_args,
            &["predict", "-i", path.to_str().unwrap(), "-t", content_type],
        );
        assert_predictions(&output, &expected(name, stem));
        assert_eq!(stderr(&output), "", "{file}: {}", describe(&output));
    }

    // From stdin (JSON, the default type), and CSV from stdin to `-o` (a path relative to
    // the caller's working directory): the file gets MLflow's bytes, stdout stays empty.
    let from_stdin = run_with_stdin(
        &ctx,
        &model,
        &env_args,
        &["predict"],
        &fs_err::read(input(name, "inputs.json")).unwrap(),
    );
    assert_predictions(&from_stdin, &expected(name, "inputs"));
    assert_eq!(stderr(&from_stdin), "", "{}", describe(&from_stdin));
    let written = run_with_stdin(
        &ctx,
        &model,
        &env_args,
        &[
            "predict",
            "--content-type",
            "csv",
            "--output-path",
            "out.json",
        ],
        &fs_err::read(input(name, "input.csv")).unwrap(),
    );
    assert_predictions(&written, b"");
    assert_eq!(stderr(&written), "", "{}", describe(&written));
    assert_eq!(
        fs_err::read(ctx.path().join("out.json")).unwrap(),
        expected(name, "input")
    );

    // Params without a params schema: predictions, and MLflow's warning on stderr.
    let path = input(name, "unexpected_params.json");
    let ignored = run(
        &ctx,
        &model,
        &env_args,
        &["predict", "-i", path.to_str().unwrap()],
    );
    assert_predictions(&ignored, &expected(name, "unexpected_params"));
    assert!(
        stderr(&ignored).contains(" WARNING mlflow.models.utils: `params` can only be specified at inference time if the model signature defines a params schema. This model does not define a params schema. Ignoring provided params: ['scale']\n"),
        "{}",
        describe(&ignored)
    );

    // Inputs MLflow rejects: exit 1, MLflow's exception, and no output file even with `-o`.
    // (The "exactly one of the input fields {...}" set prints in hash order: MLflow's record
    // was made with PYTHONHASHSEED=0, which passes through to the model's Python.)
    for stem in ["missing_column", "two_format_keys"] {
        let out = ctx.path().join(format!("{stem}.json"));
        let rejected = run_command(
            &ctx,
            &model,
            &env_args,
            &[
                "predict",
                "-i",
                input(name, &format!("{stem}.json")).to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
        )
        .env("PYTHONHASHSEED", "0")
        .output()
        .unwrap();
        assert_rejected(&rejected, name, stem);
        assert!(!out.exists(), "{stem}: an output file was created");
    }

    // A missing input file is ours to report, before Python starts.
    let missing = run(&ctx, &model, &env_args, &["predict", "-i", "nosuch.json"]);
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    assert_eq!(
        stderr(&missing),
        "error: Input file `nosuch.json` does not exist\n",
        "{}",
        describe(&missing)
    );

    // The scoring server gives the same answers, for every input MLflow accepts.
    serve_and_score(
        &ctx,
        &model,
        &env_args,
        name,
        crate::common::SKLEARN_SERVED_INPUTS,
        &[
            (
                "missing_column.json",
                "Model is missing inputs ['petal_width'].",
            ),
            (
                "two_format_keys.json",
                "Received dictionary with input fields: ['dataframe_split', 'dataframe_records'].",
            ),
            (
                "unknown_key.json",
                "Received dictionary with input fields: [].",
            ),
        ],
    );

    // `check` of the environment `run` built: everything satisfied, also under `--strict`.
    let check = ctx
        .command()
        .arg("check")
        .arg(&model)
        .args(["--env", &key, "--strict"])
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", describe(&check));
    assert_eq!(
        ctx.filter(&stdout(&check)),
        "Interpreter: [CACHE_DIR]/envs-v1/[KEY]/bin/python (Python 3.11.7)\nModel Python: 3.11.7\nOK 6 requirement(s) satisfied\n"
    );
    let report = json(
        &ctx.command()
            .arg("check")
            .arg(&model)
            .args(["--env", &key, "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        report,
        serde_json::json!({
            "python": format!("{prefix}/bin/python"),
            "python_version": "3.11.7",
            "model_python_version": "3.11.7",
            "python_mismatch": false,
            "checked": 6,
            "mismatches": [],
        })
    );

    assert_commands_run_in_the_environment(&ctx, &model, &env_args, &prefix, "VIRTUAL_ENV");
}

/// A tiny HTTP/1.1 response.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// One request on its own connection (`Connection: close`), read to the end; the server must
/// frame its body with a correct `Content-Length` (a chunked body is an error).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Response> {
    let raw = http_any_framing(port, method, path, content_type, body)?;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    if raw.chunked {
        return Err(invalid("chunked responses are not expected"));
    }
    if raw.content_length != Some(raw.response.body.len()) {
        return Err(invalid("body length differs from Content-Length"));
    }
    Ok(raw.response)
}

/// A response as framed by the server: a chunked body decoded, `Content-Length` as sent.
pub(crate) struct Framed {
    pub(crate) response: Response,
    pub(crate) chunked: bool,
    pub(crate) content_length: Option<usize>,
}

/// Like [`http`], accepting either framing (MLflow's own servers answer either way, and the
/// conformance tests compare bodies, not framing).
pub(crate) fn http_any_framing(
    port: u16,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<Framed> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_mins(2)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !content_type.is_empty() {
        write!(request, "Content-Type: {content_type}\r\n").unwrap();
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| invalid("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| invalid("no status line"))?;
    let mut content_type = None;
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or_else(|| invalid(line))?;
        match name.to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.trim().to_string()),
            "content-length" => content_length = value.trim().parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.trim().eq_ignore_ascii_case("chunked"),
            _ => {}
        }
    }
    let mut body = raw[end + 4..].to_vec();
    if chunked {
        body = dechunk(&body).ok_or_else(|| invalid("bad chunked body"))?;
    }
    Ok(Framed {
        response: Response {
            status,
            content_type,
            body,
        },
        chunked,
        content_length,
    })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The addresses listening on TCP `port` (IPv4, `/proc/net/tcp`), as dotted quads.
fn listening_addresses(port: u16) -> Vec<String> {
    let table = fs_err::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, local_port) = fields.get(1)?.split_once(':')?;
            (u16::from_str_radix(local_port, 16).ok()? == port && fields.get(3)? == &"0A").then(
                || {
                    let ip = u32::from_str_radix(addr, 16).unwrap();
                    std::net::Ipv4Addr::from(ip.swap_bytes()).to_string()
                },
            )
        })
        .collect()
}

/// Kills a server left running by a failed assertion.
pub(crate) struct KillOnDrop(pub(crate) Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Starts `run MODEL -- serve --port P`, checks MLflow's endpoints, posts each accepted input
/// (file, content type, stem of MLflow's output) and each rejected one (file, a part of MLflow's
/// error message), checks the server listens on 127.0.0.1 only, then stops it with SIGTERM.
fn serve_and_score(
    ctx: &TestContext,
    model: &Path,
    env_args: &[&str],
    name: &str,
    accepted: &[(&str, &str, &str)],
    rejected: &[(&str, &str)],
) {
    let port = free_port();
    let log_out = ctx.path().join("serve.stdout");
    let log_err = ctx.path().join("serve.stderr");
    let child = run_command(
        ctx,
        model,
        env_args,
        &["serve", "--port", &port.to_string()],
    )
    .stdin(Stdio::null())
    .stdout(fs_err::File::create(&log_out).unwrap().into_file())
    .stderr(fs_err::File::create(&log_err).unwrap().into_file())
    .spawn()
    .unwrap();
    let mut server = KillOnDrop(child);
    let logs = || {
        format!(
            "----- server stdout -----\n{}\n----- server stderr -----\n{}",
            fs_err::read_to_string(&log_out).unwrap_or_default(),
            fs_err::read_to_string(&log_err).unwrap_or_default()
        )
    };

    // Up when /ping answers 200.
    let started = Instant::now();
    loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!(
                "the server exited with {status} before answering\n{}",
                logs()
            );
        }
        if http(port, "GET", "/ping", "", b"").is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_mins(2),
            "no answer on /ping within 120 s\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // MLflow's endpoints: /ping and /health answer "\n", /version the model's mlflow version.
    for path in ["/ping", "/health"] {
        let response = http(port, "GET", path, "", b"").unwrap();
        assert_eq!(
            (response.status, response.body.as_slice()),
            (200, &b"\n"[..]),
            "{path}"
        );
    }
    let version = http(port, "GET", "/version", "", b"").unwrap();
    assert_eq!(
        (version.status, version.body.as_slice()),
        (200, &b"3.17.2"[..])
    );

    // /invocations answers with exactly the bytes `mlflow models predict` wrote (no trailing
    // newline either).
    for (file, content_type, stem) in accepted {
        let body = fs_err::read(input(name, file)).unwrap();
        let response = http(port, "POST", "/invocations", content_type, &body).unwrap();
        assert_eq!(
            response.status,
            200,
            "{file}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert_eq!(response.content_type.as_deref(), Some("application/json"));
        assert!(
            response.body == expected(name, stem),
            "{file}: the server answered\n{}\nMLflow wrote\n{}",
            String::from_utf8_lossy(&response.body),
            String::from_utf8_lossy(&expected(name, stem))
        );
    }
    // Rejected inputs: 400 and MLflow's JSON error.
    for (file, message) in rejected {
        let body = fs_err::read(input(name, file)).unwrap();
        let response = http(port, "POST", "/invocations", "application/json", &body).unwrap();
        let error: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
        assert_eq!(response.status, 400, "{file}: {error}");
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{file}: {error}"
        );
    }

    // Bound to 127.0.0.1 only (the default): not to 0.0.0.0, so not on 127.0.0.2 either.
    assert_eq!(listening_addresses(port), ["127.0.0.1"], "{}", logs());
    assert!(
        TcpStream::connect(("127.0.0.2", port)).is_err(),
        "the server answers on 127.0.0.2"
    );

    // `run` became the server (no process in between): SIGTERM to its pid stops it.
    let pid = server.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = server.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(30),
            "the server ignored SIGTERM\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    // uvicorn shuts down gracefully, then re-raises the signal: the process ends by SIGTERM
    // (a shell reports 143), as uvicorn does under `mlflow models serve`.
    assert_eq!(
        (status.code(), status.signal()),
        (None, Some(15)),
        "{status}\n{}",
        logs()
    );
    let err = fs_err::read_to_string(&log_err).unwrap();
    assert!(
        err.contains(&format!("Uvicorn running on http://127.0.0.1:{port} ")),
        "{}",
        logs()
    );
    assert!(
        err.contains("INFO:     Application shutdown complete.\nINFO:     Finished server process"),
        "{}",
        logs()
    );
}

/// MLflow colours its own warnings (`color_warning`); its recorded warnings have no colour.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn pypi_custom_pyfunc_predict_with_params_and_serve() {
    let ctx = TestContext::new().online();
    let model = fixture("custom-pyfunc");
    let env_args = ["--python-source", "system", "--no-compile"];
    let name = "custom-pyfunc";
    let type_hints_warning = "UserWarning: Add type hints to the `predict` method to enable data validation and automatic signature inference during model logging. Check https://mlflow.org/docs/latest/model/python_model.html#type-hint-usage-in-pythonmodel for more details.\n";

    for (file, content_type, stem) in [
        ("dataframe_split.json", "json", "dataframe_split"),
        ("input.csv", "csv", "input"),
        ("instances_params.json", "json", "instances_params"),
        ("params_unknown.json", "json", "params_unknown"),
    ] {
        let path = input(name, file);
        let output = run(
            &ctx,
            &model,
            &env_args,
            &["predict", "-i", path.to_str().unwrap(), "-t", content_type],
        );
        assert_predictions(&output, &expected(name, stem));
        // The model's mlflow warns as it does under MLflow.
        let text = strip_ansi(&stderr(&output));
        assert!(text.contains(type_hints_warning), "{}", describe(&output));
        if stem == "params_unknown" {
            assert!(
                text.contains(" WARNING mlflow.models.utils: Unrecognized params ['offset'] are ignored for inference. Supported params are: {'scale'}. To enable them, please add corresponding schema in ModelSignature.\n"),
                "{}",
                describe(&output)
            );
        }
    }

    // `--params` gives MLflow's answer for the input that holds those params (scale 2.0 is
    // what dataframe_split_params.json holds): over the input's own params, on CSV, and on
    // stdin.
    let scaled = expected(name, "dataframe_split_params");
    for (file, content_type) in [
        ("dataframe_records_params.json", "json"),
        ("input.csv", "csv"),
    ] {
        let output = run(
            &ctx,
            &model,
            &env_args,
            &[
                "predict",
                "-i",
                input(name, file).to_str().unwrap(),
                "-t",
                content_type,
                "--params",
                r#"{"scale": 2.0}"#,
            ],
        );
        assert_predictions(&output, &scaled);
    }
    let from_stdin = run_with_stdin(
        &ctx,
        &model,
        &env_args,
        &["predict", "--params", r#"{"scale": 2.0}"#],
        &fs_err::read(input(name, "inputs.json")).unwrap(),
    );
    assert_predictions(&from_stdin, &scaled);

    // A param of the wrong type: exit 1 and MLflow's exception.
    let wrong = run(
        &ctx,
        &model,
        &env_args,
        &[
            "predict",
            "-i",
            input(name, "params_wrong_type.json").to_str().unwrap(),
        ],
    );
    assert_rejected(&wrong, name, "params_wrong_type");
    // `--params` that is not a JSON object is refused before Python starts.
    let not_object = run(
        &ctx,
        &model,
        &env_args,
        &[
            "predict",
            "-i",
            input(name, "inputs.json").to_str().unwrap(),
            "--params",
            "[1]",
        ],
    );
    assert_eq!(
        not_object.status.code(),
        Some(1),
        "{}",
        describe(&not_object)
    );
    assert_eq!(
        stderr(&not_object),
        "error: `--params` must be a JSON object, e.g. '{\"temperature\": 0.5}'\n"
    );

    serve_and_score(
        &ctx,
        &model,
        &env_args,
        name,
        &[
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
                "dataframe_split_params.json",
                "application/json",
                "dataframe_split_params",
            ),
            (
                "dataframe_records_params.json",
                "application/json",
                "dataframe_records_params",
            ),
            (
                "instances_params.json",
                "application/json",
                "instances_params",
            ),
            ("inputs_params.json", "application/json", "inputs_params"),
            ("params_unknown.json", "application/json", "params_unknown"),
        ],
        &[(
            "params_wrong_type.json",
            "Invalid parameters found: {('scale', \"Failed to validate type and shape for 'scale': double (default: 1.0), error: Can not safely convert `<class 'str'>` to `DataType.double` for value `big`\")}",
        )],
    );
}

#[test]
fn pypi_conda_channels_conda_mode_from_the_local_channel() {
    let ctx = TestContext::new().online();
    let channel = env_test::test_channel().unwrap();
    let model = fixture("conda-channels");
    let name = "conda-channels";
    // conda-forge and defaults both come from the local test channel (python 3.11.7, pip);
    // the pip section (mlflow, scikit-learn, ...) from PyPI.
    let mirrors = mirror_args(channel.file_url().as_str());
    // No bytecode: two predictions do not repay compiling mlflow and its dependencies.
    let mut env_args: Vec<&str> = vec!["--env-manager", "conda", "--no-compile"];
    env_args.extend(mirrors.iter().map(String::as_str));

    for (index, (file, content_type, stem)) in [
        ("dataframe_split.json", "json", "dataframe_split"),
        ("input.csv", "csv", "input"),
    ]
    .into_iter()
    .enumerate()
    {
        let path = input(name, file);
        let output = run(
            &ctx,
            &model,
            &env_args,
            &["predict", "-i", path.to_str().unwrap(), "-t", content_type],
        );
        assert_predictions(&output, &expected(name, stem));
        if index == 0 {
            assert!(
                ctx.filter(&stderr(&output))
                    .starts_with("Created conda environment in "),
                "{}",
                describe(&output)
            );
        } else {
            assert_eq!(stderr(&output), "", "{}", describe(&output));
        }
    }

    // A conda prefix: python and pip from the channel, the pip section installed by uv.
    let env = created(&ctx, &model, &env_args);
    let prefix = env["prefix"].as_str().unwrap();
    let metadata: serde_json::Value = serde_json::from_slice(
        &fs_err::read(Path::new(prefix).join(".pyfunc-env/metadata.json")).unwrap(),
    )
    .unwrap();
    let conda: Vec<(&str, &str)> = metadata["conda_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        .collect();
    assert!(conda.contains(&("python", "3.11.7")), "{conda:?}");
    assert!(conda.contains(&("pip", "25.0.1")), "{conda:?}");
    let pip: Vec<String> = metadata["pip_packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["installer"] == "uv")
        .map(|p| p["name"].as_str().unwrap().replace('_', "-"))
        .collect();
    for name in ["mlflow", "scikit-learn", "pandas", "cloudpickle"] {
        assert!(pip.iter().any(|p| p == name), "{pip:?}");
    }
    let activated = run(
        &ctx,
        &model,
        &env_args,
        &[
            "sh",
            "-c",
            "echo $CONDA_PREFIX; python -c 'import sys; print(sys.version.split()[0])'",
        ],
    );
    assert_eq!(
        stdout(&activated),
        format!("{prefix}\n3.11.7\n"),
        "{}",
        describe(&activated)
    );
}

#[test]
fn pypi_failing_pyfunc_exits_1_with_the_models_error() {
    let ctx = TestContext::new().online();
    let model = fixture("failing-pyfunc");
    let env_args = ["--python-source", "system", "--no-compile"];
    let error = "ValueError: failing-pyfunc: this model always fails (got 3 input rows)";
    for (file, content_type) in [("dataframe_split.json", "json"), ("input.csv", "csv")] {
        let out = ctx.path().join("out.json");
        let output = run(
            &ctx,
            &model,
            &env_args,
            &[
                "predict",
                "-i",
                input("failing-pyfunc", file).to_str().unwrap(),
                "-t",
                content_type,
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert_eq!(stdout(&output), "");
        let text = stderr(&output);
        assert!(
            text.contains("Traceback (most recent call last):"),
            "{}",
            describe(&output)
        );
        assert!(
            text.ends_with(&format!("\n{error}\n")),
            "{}",
            describe(&output)
        );
        assert!(!out.exists(), "an output file was created");
    }
}

/// A conda-mode model with only python (no mlflow), from the local channel, offline.
fn python_only_model(ctx: &TestContext) -> (PathBuf, Vec<String>) {
    let channel = env_test::test_channel().unwrap();
    let model = ctx.model(
        "python-only",
        &[(
            "conda.yaml",
            "channels: [conda-forge]\ndependencies:\n- python=3.11.7\n",
        )],
    );
    let mut env_args = vec!["--env-manager".to_string(), "conda".to_string()];
    env_args.extend(mirror_args(channel.file_url().as_str()));
    (model, env_args)
}

#[test]
fn commands_run_activated_in_a_conda_env_and_scoring_without_mlflow_says_how_to_fix() {
    let ctx = TestContext::new();
    let (model, env_args) = python_only_model(&ctx);
    let env_args: Vec<&str> = env_args.iter().map(String::as_str).collect();
    let input = input("sklearn-iris", "dataframe_split.json");

    // mlflow is not in the environment: exit 1 and the fix, for predict and for serve.
    pyfunc_env_snapshot!(
        ctx.filters(),
        run_command(
            &ctx,
            &model,
            &env_args,
            &["predict", "-i", input.to_str().unwrap()],
        ),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: mlflow is not installed in the model's environment, so it cannot score. Rerun with `--install-mlflow` (adds mlflow==3.17.2, the version that saved the model)
    "#
    );
    pyfunc_env_snapshot!(
        ctx.filters(),
        run_command(
            &ctx,
            &model,
            &env_args,
            &["serve", "--port", &free_port().to_string()],
        ),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: mlflow is not installed in the model's environment, so it cannot serve. Rerun with `--install-mlflow` (adds mlflow==3.17.2, the version that saved the model)
    "#
    );

    let env = created(&ctx, &model, &env_args);
    let prefix = env["prefix"].as_str().unwrap();
    assert!(Path::new(prefix).join("conda-meta").is_dir());
    assert_commands_run_in_the_environment(&ctx, &model, &env_args, prefix, "CONDA_PREFIX");
    let conda_vars = run(
        &ctx,
        &model,
        &env_args,
        &["sh", "-c", "echo \"${VIRTUAL_ENV-unset} $CONDA_SHLVL\""],
    );
    assert_eq!(
        stdout(&conda_vars),
        "unset 1\n",
        "{}",
        describe(&conda_vars)
    );
}

#[test]
fn local_env_manager_warns_like_mlflow_and_check_reports_mismatches() {
    let ctx = TestContext::new();
    let model = fixture("sklearn-iris");
    let python = pyenv_python("3.11.7");
    let python_str = python.to_str().unwrap();

    // `--env-manager local`: MLflow's mismatch warning, then the command, with that
    // interpreter and no environment built.
    pyfunc_env_snapshot!(
        ctx.filters(),
        run_command(
            &ctx,
            &model,
            &["--env-manager", "local", "--python", python_str],
            &[python_str, "-c", "import sys; print(sys.executable)"],
        ),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----
        [PYENV_ROOT]/versions/3.11.7/bin/python3.11

        ----- stderr -----
        warning: Detected one or more mismatches between the model's dependencies and the current Python environment:
         - mlflow (current: uninstalled, required: mlflow==3.17.2)
         - numpy (current: uninstalled, required: numpy==2.4.6)
         - pandas (current: uninstalled, required: pandas==3.1.1)
         - scikit-learn (current: uninstalled, required: scikit-learn==1.9.1)
         - scipy (current: uninstalled, required: scipy==1.17.1)
         - skops (current: uninstalled, required: skops==0.16.0)
        To fix the mismatches, call `mlflow.pyfunc.get_model_dependencies(model_uri)` to fetch the model's environment and install dependencies using the resulting environment file.
    "#
    );
    assert!(
        !ctx.cache_dir.join("envs-v1").exists(),
        "an environment was built"
    );

    // Scoring needs mlflow in that interpreter; `--install-mlflow` builds nothing here.
    let input = input("sklearn-iris", "input.csv");
    pyfunc_env_snapshot!(
        ctx.filters(),
        run_command(
            &ctx,
            &model,
            &["--env-manager", "local", "--python", python_str],
            &["predict", "-i", input.to_str().unwrap(), "-t", "csv"],
        ),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        warning: Detected one or more mismatches between the model's dependencies and the current Python environment:
         - mlflow (current: uninstalled, required: mlflow==3.17.2)
         - numpy (current: uninstalled, required: numpy==2.4.6)
         - pandas (current: uninstalled, required: pandas==3.1.1)
         - scikit-learn (current: uninstalled, required: scikit-learn==1.9.1)
         - scipy (current: uninstalled, required: scipy==1.17.1)
         - skops (current: uninstalled, required: skops==0.16.0)
        To fix the mismatches, call `mlflow.pyfunc.get_model_dependencies(model_uri)` to fetch the model's environment and install dependencies using the resulting environment file.
        error: mlflow is not installed in `[PYENV_ROOT]/versions/3.11.7/bin/python3.11`, so it cannot score. Install it there (`[PYENV_ROOT]/versions/3.11.7/bin/python3.11 -m pip install mlflow==3.17.2`) or drop `--env-manager local` to use the model's own environment
    "#
    );
    pyfunc_env_snapshot!(
        ctx.filters(),
        run_command(
            &ctx,
            &model,
            &[
                "--env-manager",
                "local",
                "--python",
                python_str,
                "--install-mlflow",
            ],
            &["true"],
        ),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: `--install-mlflow` adds mlflow to the environment pyfunc-env builds; `--env-manager local` builds none
    "#
    );

    // Another major.minor: MLflow's Python warning too.
    let python312 = pyenv_python("3.12.1");
    pyfunc_env_snapshot!(
        ctx.filters(),
        run_command(
            &ctx,
            &model,
            &[
                "--env-manager",
                "local",
                "--python",
                python312.to_str().unwrap(),
            ],
            &["true"],
        ),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        warning: The version of Python that the model was saved in, `Python 3.11.7`, differs from the version of Python that is currently running, `Python 3.12.1`, and may be incompatible
        warning: Detected one or more mismatches between the model's dependencies and the current Python environment:
         - mlflow (current: uninstalled, required: mlflow==3.17.2)
         - numpy (current: uninstalled, required: numpy==2.4.6)
         - pandas (current: uninstalled, required: pandas==3.1.1)
         - scikit-learn (current: uninstalled, required: scikit-learn==1.9.1)
         - scipy (current: uninstalled, required: scipy==1.17.1)
         - skops (current: uninstalled, required: skops==0.16.0)
        To fix the mismatches, call `mlflow.pyfunc.get_model_dependencies(model_uri)` to fetch the model's environment and install dependencies using the resulting environment file.
    "#
    );

    // `check`: `--strict` exits 1 on a mismatch (the plain table, exit 0, is in
    // snapshots.rs); `--json`.
    let check = |model: &Path, python: &Path, flags: &[&str]| {
        let mut command = ctx.command();
        command
            .arg("check")
            .arg(model)
            .arg("--python")
            .arg(python)
            .args(flags);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), check(&model, &python, &["--strict"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----
        Interpreter: [PYENV_ROOT]/versions/3.11.7/bin/python3.11 (Python 3.11.7)
        Model Python: 3.11.7
        PACKAGE       INSTALLED       REQUIRED
        mlflow        uninstalled     mlflow==3.17.2
        numpy         uninstalled     numpy==2.4.6
        pandas        uninstalled     pandas==3.1.1
        scikit-learn  uninstalled     scikit-learn==1.9.1
        scipy         uninstalled     scipy==1.17.1
        skops         uninstalled     skops==0.16.0
        6 of 6 requirement(s) not satisfied

        ----- stderr -----
    "#);
    pyfunc_env_snapshot!(ctx.filters(), check(&model, &python312, &["--json"]), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        {
          "python": "[PYENV_ROOT]/versions/3.12.1/bin/python3.12",
          "python_version": "3.12.1",
          "model_python_version": "3.11.7",
          "python_mismatch": true,
          "checked": 6,
          "mismatches": [
            {
              "package": "mlflow",
              "installed": null,
              "requirement": "mlflow==3.17.2"
            },
            {
              "package": "numpy",
              "installed": null,
              "requirement": "numpy==2.4.6"
            },
            {
              "package": "pandas",
              "installed": null,
              "requirement": "pandas==3.1.1"
            },
            {
              "package": "scikit-learn",
              "installed": null,
              "requirement": "scikit-learn==1.9.1"
            },
            {
              "package": "scipy",
              "installed": null,
              "requirement": "scipy==1.17.1"
            },
            {
              "package": "skops",
              "installed": null,
              "requirement": "skops==0.16.0"
            }
          ]
        }

        ----- stderr -----
    "#);
    // Only the Python version differing is enough for `--strict`.
    let python_only = ctx.model("no-requirements", &[("requirements.txt", "")]);
    pyfunc_env_snapshot!(
        ctx.filters(),
        check(&python_only, &python312, &["--strict"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----
        Interpreter: [PYENV_ROOT]/versions/3.12.1/bin/python3.12 (Python 3.12.1)
        Model Python: 3.11.7  differs (major.minor)
        OK 0 requirement(s) satisfied

        ----- stderr -----
    "#
    );
}

#[test]
fn predict_and_serve_help_go_to_stdout_and_exit_0() {
    let ctx = TestContext::new();
    let help =
        |command: &str| run_command(&ctx, &fixture("sklearn-iris"), &[], &[command, "--help"]);
    pyfunc_env_snapshot!(ctx.filters(), help("predict"), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        `run -- predict` options (MLflow's `mlflow models predict` flags)

        Usage: predict [OPTIONS]

        Options:
          -i, --input-path <INPUT_PATH>
                  Input file (default: stdin)
          -o, --output-path <OUTPUT_PATH>
                  Output file (default: stdout)
          -t, --content-type <CONTENT_TYPE>
                  Input format [default: json] [possible values: json, csv, parquet]
              --params <PARAMS>
                  Inference params as a JSON object, merged into the input's `params`
          -r, --pip-requirements-override <REQUIREMENTS>
                  Requirements that replace the model's own, comma-separated (`x==1.0,y==2.0`); they change
                  the environment, so it gets its own key
              --env <KEY=VALUE>
                  Set an environment variable for the model (repeatable)
          -h, --help
                  Print help

        ----- stderr -----
    "#);
    pyfunc_env_snapshot!(ctx.filters(), help("serve"), @r#"
        exit_code: 0 (success)
        ----- stdout -----
        `run -- serve` options (MLflow's `mlflow models serve` flags)

        Usage: serve [OPTIONS]

        Options:
              --help               Print help
          -h, --host <HOST>        Address to bind [default: `MLFLOW_HOST`, else 127.0.0.1, which keeps the
                                   server local]
          -p, --port <PORT>        Port [default: `MLFLOW_PORT`, else 5000]
          -w, --workers <WORKERS>  Worker processes [default: `MLFLOW_MODELS_WORKERS` (`MLFLOW_WORKERS` for
                                   MLflow 1.x and 2.x before 2.21), else 1]
          -t, --timeout <TIMEOUT>  Request timeout in seconds [default:
                                   `MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT`, else 60]
              --env <KEY=VALUE>    Set an environment variable for the server (repeatable)

        ----- stderr -----
    "#);
}

#[test]
fn a_missing_model_and_a_missing_input_are_both_named() {
    let ctx = TestContext::new();
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .args(["run", "no-model", "--", "predict", "-i", "nosuch.json"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Input file `nosuch.json` does not exist, and the model at `no-model` cannot be read: Model directory `no-model` does not exist
    "#
    );
}

#[test]
fn check_names_what_it_cannot_check_and_the_fix() {
    let ctx = TestContext::new();
    let model = fixture("sklearn-iris");
    let check = |flags: &[&str]| {
        let mut command = ctx.command();
        command.arg("check").arg(&model).args(flags);
        command
    };
    pyfunc_env_snapshot!(
        ctx.filters(),
        check(&["--env", "0123456789abcdef0123456789abcdef"]),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: No complete environment `[KEY]` in [CACHE_DIR]
    "#
    );
    pyfunc_env_snapshot!(ctx.filters(), check(&["--env", "latest"]), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: `latest` is not an environment key (32 hex digits; see `pyfunc-env cache list`)
    "#);
    // No interpreter named, and none on PATH.
    let empty = ctx.path().join("empty-bin");
    fs_err::create_dir_all(&empty).unwrap();
    pyfunc_env_snapshot!(ctx.filters(), check(&[]).env("PATH", &empty), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: No `python3` on PATH; pass `--python` or `--env`
    "#);
    // A requirements file the model cannot have been saved with.
    let broken = ctx.copy_fixture("sklearn-iris");
    fs_err::write(broken.join("requirements.txt"), "-r nosuch.txt\n").unwrap();
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .arg("check")
            .arg(&broken)
            .arg("--python")
            .arg(pyenv_python("3.11.7")),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to read the model's requirements
          Caused by: `nosuch.txt` does not exist (referenced from `requirements.txt` line 1)

        hint: Add `nosuch.txt` to the model directory or remove the `-r` line
    "#
    );
}
