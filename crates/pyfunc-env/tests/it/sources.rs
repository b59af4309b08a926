//! Model sources without a real MLflow server (issue 23): `file:` URIs in every command, what a
//! model directory without an MLmodel says, and the HTTP rules (the first retry said at once,
//! `Retry-After`, exit codes by status, a refused password, MLflow's reading of its settings)
//! against a scripted HTTP server on 127.0.0.1 that answers each request from a list.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::common::{TestContext, copy_dir, describe, fixture, json, stderr};

/// `file:///` + the percent-encoded absolute path, as MLflow writes file URIs.
fn file_uri(path: &Path) -> String {
    let mut uri = String::from("file://");
    for byte in path.to_str().unwrap().bytes() {
        if byte.is_ascii_alphanumeric() || b"/-_.~".contains(&byte) {
            uri.push(char::from(byte));
        } else {
            let _ = write!(uri, "%{byte:02X}");
        }
    }
    uri
}

/// `file:` URIs name the directory they decode to in every command that takes a model:
/// `inspect`, `deps`, `check`, `create` (one model, and `--from` lists), and `run`'s check of
/// its input file. The directory has a space and a `#` in its name, so the URI is
/// percent-encoded as MLflow writes it. The old code opened the URI text as a path: "Model
/// directory `file:///...` does not exist".
#[test]
fn file_uris_name_local_directories_in_every_command() {
    let ctx = TestContext::new();
    let dir = ctx.path().join("my models/iris #1");
    copy_dir(&fixture("sklearn-iris"), &dir);
    let uri = file_uri(&dir);
    assert!(uri.contains("%20") && uri.contains("%23"), "{uri}");

    for args in [
        vec!["inspect", uri.as_str()],
        vec!["deps", uri.as_str()],
        vec!["create", uri.as_str(), "--dry-run", "--json"],
    ] {
        let output = ctx.command().args(&args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", describe(&output));
        assert!(
            !stderr(&output).contains("does not exist"),
            "{}",
            describe(&output)
        );
    }
    let dry_run = json(
        &ctx.command()
            .args(["create", &uri, "--dry-run", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(
        Path::new(dry_run["model_dir"].as_str().unwrap()),
        fs_err::canonicalize(&dir).unwrap(),
        "{dry_run:#}"
    );

    // `create --from`: a `file:` URI line is the directory it names, beside a plain path.
    let list = ctx.path().join("models.txt");
    fs_err::write(
        &list,
        format!("{uri}\n{}\n", fixture("sklearn-iris").display()),
    )
    .unwrap();
    let from = ctx
        .command()
        .args(["create", "--dry-run", "--json", "--from"])
        .arg(&list)
        .output()
        .unwrap();
    assert!(from.status.success(), "{}", describe(&from));
    let results = json(&from);
    assert_eq!(results.as_array().unwrap().len(), 2, "{results:#}");
    assert_eq!(results[0]["result"], "to build", "{results:#}");
    assert_eq!(results[1]["result"], "shared", "{results:#}");
    // A list that is not there is a wrong path (exit code 1, it was 2), named with the fix.
    let missing = ctx
        .command()
        .args(["create", "--dry-run", "--from"])
        .arg(ctx.path().join("nosuch.txt"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    let text = stderr(&missing);
    assert!(
        text.starts_with("error: Failed to read the model list `")
            && text.contains("hint: `--from` takes a file with one model directory"),
        "{}",
        describe(&missing)
    );

    // `run`'s early input check opens the directory the URI names: only the input is missing.
    let run = ctx
        .command()
        .args(["run", &uri, "--", "predict", "-i", "nosuch.json"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1), "{}", describe(&run));
    assert_eq!(
        stderr(&run),
        "error: Input file `nosuch.json` does not exist\n",
        "{}",
        describe(&run)
    );
}

/// `run DIR` on a directory without an MLmodel says that, as `inspect` does; the old code said
/// "Failed to read the conda environment", naming an env manager nobody chose.
#[test]
fn run_on_a_directory_without_mlmodel_says_so() {
    let ctx = TestContext::new();
    let dir = ctx.path().join("not-a-model");
    fs_err::create_dir_all(&dir).unwrap();
    fs_err::write(dir.join("model.pkl"), "x").unwrap();
    let inspect = ctx.command().arg("inspect").arg(&dir).output().unwrap();
    let run = ctx
        .command()
        .arg("run")
        .arg(&dir)
        .args(["--", "python", "-c", "pass"])
        .output()
        .unwrap();
    for output in [&inspect, &run] {
        assert_eq!(output.status.code(), Some(1), "{}", describe(output));
        let text = stderr(output);
        assert!(text.contains("has no `MLmodel` file"), "{text}");
        assert!(!text.contains("conda"), "{text}");
    }
}

/// One scripted answer: status, extra headers, body.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn answer(status: u16, body: &str) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

/// An HTTP/1.1 server on 127.0.0.1 answering the n-th request with `answers[n]` (the last one
/// again once they run out); it counts the requests and keeps their `Authorization` headers.
struct Scripted {
    port: u16,
    requests: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<Option<String>>>>,
}

impl Scripted {
    fn start(answers: Vec<Answer>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (requests.clone(), authorizations.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                let mut authorization = None;
                // The request line and headers; GETs only, so no body to read.
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line.trim() != "" {
                    if let Some(value) = line
                        .split_once(':')
                        .filter(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                    {
                        authorization = Some(value.1.trim().to_string());
                    }
                    line.clear();
                }
                seen.lock().unwrap().push(authorization);
                let index = count.fetch_add(1, Ordering::SeqCst);
                let answer = &answers[index.min(answers.len() - 1)];
                let mut stream = stream;
                let mut head = format!(
                    "HTTP/1.1 {} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
                    answer.status,
                    answer.body.len()
                );
                for (name, value) in &answer.headers {
                    let _ = write!(head, "{name}: {value}\r\n");
                }
                let _ = write!(stream, "{head}\r\n{}", answer.body);
            }
        });
        Self {
            port,
            requests,
            authorizations,
        }
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

const NOT_FOUND: &str = r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Model Version (name=iris, version=1) not found"}"#;

fn inspect_online(ctx: &TestContext, env: &[(&str, &str)]) -> std::process::Output {
    ctx.command()
        .args(["inspect", "models:/iris/1"])
        .env_remove("PYFUNC_ENV_OFFLINE")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// The first failure of a request is said at once, with what is retried, how many tries are
/// left and the settings that shorten it; the old code was silent (a spinner) for MLflow's
/// whole budget of minutes, even with `-v`.
#[test]
fn a_retried_request_says_so_at_the_first_failure() {
    let ctx = TestContext::new();
    // A port nothing listens on: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = inspect_online(
        &ctx,
        &[
            ("MLFLOW_TRACKING_URI", &format!("http://127.0.0.1:{port}")),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = stderr(&output);
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("warning: Looking up version 1 of model `iris` failed (")
            && first.contains("retrying 2 more time(s)")
            && first.contains("`MLFLOW_HTTP_REQUEST_MAX_RETRIES=2`")
            && first.contains("`MLFLOW_HTTP_REQUEST_TIMEOUT`"),
        "{text}"
    );
    // Said once, not once per try.
    assert_eq!(text.matches("warning:").count(), 1, "{text}");
    assert!(text.contains("failed after 3 attempt(s)"), "{text}");
}

/// One rule for HTTP answers: 408, 429 and 5xx are transient (retried as MLflow retries them,
/// then exit 2, so an agent retries too); 401, 403 and 404 are the user's (exit 1). The old
/// code gave 408 and 429 exit 1.
#[test]
fn http_answers_exit_by_one_rule() {
    let ctx = TestContext::new();
    for (status, code) in [
        (408, 2),
        (429, 2),
        (500, 2),
        (503, 2),
        (401, 1),
        (403, 1),
        (404, 1),
    ] {
        let server = Scripted::start(vec![answer(status, r#"{"message": "no"}"#)]);
        let output = inspect_online(
            &ctx,
            &[
                ("MLFLOW_TRACKING_URI", &server.uri()),
                ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1"),
            ],
        );
        assert_eq!(
            output.status.code(),
            Some(code),
            "{status}: {}",
            describe(&output)
        );
        assert!(
            stderr(&output).contains(&format!("the server answered {status}")),
            "{}",
            describe(&output)
        );
        // MLflow retries exactly its transient answers.
        let retried = [408, 429, 500, 503].contains(&status);
        assert_eq!(server.requests(), if retried { 2 } else { 1 }, "{status}");
    }
}

/// `Retry-After` is honoured: a 413 is not among MLflow's retried answers, so only its
/// `Retry-After` (urllib3's `respect_retry_after_header`) makes a second request. The old code
/// ignored it and gave up after one request.
#[test]
fn retry_after_is_honoured() {
    let ctx = TestContext::new();
    let server = Scripted::start(vec![
        Answer {
            status: 413,
            headers: vec![("Retry-After", "0".to_string())],
            body: r#"{"message": "slow down"}"#.to_string(),
        },
        answer(404, NOT_FOUND),
    ]);
    let output = inspect_online(
        &ctx,
        &[
            ("MLFLOW_TRACKING_URI", &server.uri()),
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(server.requests(), 2, "{}", describe(&output));
    assert!(
        stderr(&output).contains("the server answered 404 RESOURCE_DOES_NOT_EXIST"),
        "{}",
        describe(&output)
    );
}

/// A 401 after a password was sent says the password was refused; without credentials it says
/// to set them. The old code gave both the "set credentials" hint.
#[test]
fn a_refused_password_is_not_a_missing_one() {
    let ctx = TestContext::new();
    let server = Scripted::start(vec![answer(401, r#"{"message": "unauthorized"}"#)]);
    let anonymous = inspect_online(&ctx, &[("MLFLOW_TRACKING_URI", &server.uri())]);
    let wrong = inspect_online(
        &ctx,
        &[
            ("MLFLOW_TRACKING_URI", &server.uri()),
            ("MLFLOW_TRACKING_USERNAME", "admin"),
            ("MLFLOW_TRACKING_PASSWORD", "wrong-pw-6b1d"),
        ],
    );
    let token = inspect_online(
        &ctx,
        &[
            ("MLFLOW_TRACKING_URI", &server.uri()),
            ("MLFLOW_TRACKING_TOKEN", "tok-0c4e"),
        ],
    );
    let sent = server.authorizations.lock().unwrap().clone();
    assert_eq!(sent[0], None);
    assert!(
        sent[1].as_deref().is_some_and(|a| a.starts_with("Basic ")),
        "{sent:?}"
    );
    for output in [&anonymous, &wrong, &token] {
        assert_eq!(output.status.code(), Some(1), "{}", describe(output));
    }
    assert!(
        stderr(&anonymous)
            .contains("hint: The server wants credentials: set `MLFLOW_TRACKING_USERNAME`"),
        "{}",
        describe(&anonymous)
    );
    let text = stderr(&wrong);
    assert!(
        text.contains("hint: The server refused the user name and password sent: check `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`"),
        "{text}"
    );
    assert!(!text.contains("wrong-pw-6b1d"), "{text}");
    assert!(
        stderr(&token).contains("hint: The server refused the token sent"),
        "{}",
        describe(&token)
    );
}

/// `MLFLOW_HTTP_REQUEST_*` are read as MLflow reads them: `0.5` is an error naming the variable
/// (MLflow's `int()` raises), not silently the default 2; more than 10 retries too.
#[test]
fn http_settings_mlflow_refuses_are_errors() {
    let ctx = TestContext::new();
    // The other setting keeps the old code from retrying for minutes before failing the test.
    for (name, value, other, expected) in [
        (
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
            "0.5",
            ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0"),
            "expected a whole number of seconds from 0 to 120",
        ),
        (
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "11",
            ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0"),
            "expected a whole number of retries from 0 to 10",
        ),
    ] {
        let output = ctx
            .command()
            .args(["inspect", "models:/iris/1"])
            .env_remove("PYFUNC_ENV_OFFLINE")
            .env("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
            .env(other.0, other.1)
            .env(name, value)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let text = stderr(&output);
        assert!(
            text.contains(&format!("`{name}` is `{value}`: {expected}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("hint: Fix or unset `{name}`")),
            "{text}"
        );
    }
}
