//! Faults against the real MLflow server: the connection breaking mid-download (retried), the
//! server going away mid-download (nothing cached, a later run works), and a user whom MLflow's
//! basic-auth app forbids the model (403, its own error and hint).
//!
//! The break is made by [`Proxy`], a TCP relay in front of the server that the test controls:
//! it cuts the connection after a fixed number of bytes of one file, so "mid-download" is a
//! property of the bytes, never of timing.

use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::common::{TestContext, copy_dir, describe, fixture, json, stderr, stdout};
use crate::registry::{
    FILL, MlflowServer, Seaweed, UPLOAD, assert_predicts, downloaded, predict, run_id_of,
};
use crate::servers::{free_port, mlflow_venv};

/// The file the proxy cuts, and how many of its bytes pass first.
const BIG_FILE: &str = "big.bin";
const BIG_SIZE: usize = 4 << 20;
const CUT_AFTER: u64 = 256 << 10;

/// What the proxy does when `BIG_FILE` has sent `CUT_AFTER` bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Nothing.
    None,
    /// Breaks that one connection once (a connection reset); later requests pass.
    ResetOnce,
    /// Answers the request for `BIG_FILE` once with 503, as a proxy in front of a busy server
    /// does; later requests pass.
    UnavailableOnce,
    /// Stops listening and breaks every connection: the server is gone.
    Stop,
}

struct ProxyState {
    upstream: u16,
    fault: Mutex<Fault>,
    listener: Mutex<Option<TcpListener>>,
    connections: Mutex<Vec<TcpStream>>,
    cuts: AtomicU64,
    once_pending: AtomicBool,
}

/// A TCP relay on 127.0.0.1 in front of `upstream` (see the module docs).
struct Proxy {
    port: u16,
    state: Arc<ProxyState>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Proxy {
    fn start(upstream: u16) -> Self {
        let proxy = Self {
            port: free_port(),
            state: Arc::new(ProxyState {
                upstream,
                fault: Mutex::new(Fault::None),
                listener: Mutex::new(None),
                connections: Mutex::new(Vec::new()),
                cuts: AtomicU64::new(0),
                once_pending: AtomicBool::new(false),
            }),
        };
        proxy.listen();
        proxy
    }

    fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_fault(&self, fault: Fault) {
        self.state.once_pending.store(
            matches!(fault, Fault::ResetOnce | Fault::UnavailableOnce),
            Ordering::SeqCst,
        );
        *lock(&self.state.fault) = fault;
    }

    /// How many connections it has cut.
    fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }

    /// Listens (again) on its port: the server is back.
    fn listen(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        *lock(&self.state.listener) = Some(listener);
        let state = Arc::clone(&self.state);
        std::thread::spawn(move || {
            loop {
                let accepted = {
                    let guard = lock(&state.listener);
                    let Some(listener) = guard.as_ref() else {
                        return;
                    };
                    listener.accept()
                };
                match accepted {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let state = Arc::clone(&state);
                        std::thread::spawn(move || relay(&state, client));
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(_) => return,
                }
            }
        });
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        stop(&self.state);
    }
}

/// Closes the listening socket first (so a retry finds nothing there), then every connection.
fn stop(state: &ProxyState) {
    lock(&state.listener).take();
    for connection in lock(&state.connections).drain(..) {
        let _ = connection.shutdown(Shutdown::Both);
    }
}

fn relay(state: &Arc<ProxyState>, client: TcpStream) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", state.upstream)) else {
        return;
    };
    lock(&state.connections).push(client.try_clone().unwrap());
    // Bytes of the current response sent so far, or `u64::MAX` when the current request is
    // not for `BIG_FILE`. Requests on one connection are sequential, so the request side
    // resets it.
    let big_sent = Arc::new(AtomicU64::new(u64::MAX));
    let closed = Arc::new(AtomicBool::new(false));
    {
        let (mut client, mut server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let big_sent = Arc::clone(&big_sent);
        let state = Arc::clone(state);
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 64 << 10];
            while let Ok(n) = client.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let chunk = &buffer[..n];
                if chunk.starts_with(b"GET ") || chunk.starts_with(b"POST ") {
                    let line_end = chunk.iter().position(|b| *b == b'\n').unwrap_or(n);
                    let is_big = String::from_utf8_lossy(&chunk[..line_end]).contains(BIG_FILE);
                    big_sent.store(if is_big { 0 } else { u64::MAX }, Ordering::SeqCst);
                    if is_big
                        && *lock(&state.fault) == Fault::UnavailableOnce
                        && state.once_pending.swap(false, Ordering::SeqCst)
                    {
                        state.cuts.fetch_add(1, Ordering::SeqCst);
                        big_sent.store(u64::MAX, Ordering::SeqCst);
                        let body =
                            r#"{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}"#;
                        let answer = format!(
                            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if client.write_all(answer.as_bytes()).is_err() {
                            break;
                        }
                        continue;
                    }
                }
                if server.write_all(chunk).is_err() {
                    break;
                }
            }
            let _ = server.shutdown(Shutdown::Write);
        });
    }
    let (mut client, mut server) = (client, server);
    let mut buffer = vec![0u8; 16 << 10];
    while let Ok(n) = server.read(&mut buffer) {
        if n == 0 || closed.load(Ordering::SeqCst) {
            break;
        }
        let sent = big_sent.load(Ordering::SeqCst);
        if sent != u64::MAX {
            if sent + n as u64 > CUT_AFTER {
                let fault = *lock(&state.fault);
                let cut = match fault {
                    Fault::None | Fault::UnavailableOnce => false,
                    Fault::ResetOnce => state.once_pending.swap(false, Ordering::SeqCst),
                    Fault::Stop => true,
                };
                if cut {
                    state.cuts.fetch_add(1, Ordering::SeqCst);
                    if fault == Fault::Stop {
                        stop(state);
                    }
                    closed.store(true, Ordering::SeqCst);
                    break;
                }
            }
            big_sent.store(sent + n as u64, Ordering::SeqCst);
        }
        if client.write_all(&buffer[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// The sklearn fixture plus a large file, so a download can be broken in the middle.
fn big_model(ctx: &TestContext) -> std::path::PathBuf {
    let dir = ctx.path().join("big-model");
    copy_dir(&fixture("sklearn-iris"), &dir);
    // Incompressible, deterministic bytes.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let bytes: Vec<u8> = (0..BIG_SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect();
    fs_err::write(dir.join(BIG_FILE), bytes).unwrap();
    dir
}

/// Staging directories left under the cache's `tmp/`.
fn staging_left(ctx: &TestContext) -> Vec<String> {
    fs_err::read_dir(ctx.cache_dir.join("tmp"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with("model-"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn pypi_registry_download_broken_midway_is_retried_or_leaves_nothing() {
    let server = MlflowServer::start(&[]);
    let scratch = TestContext::new();
    let model = big_model(&scratch);
    let run_id = run_id_of(&server.python(FILL, &[model.to_str().unwrap()], &[]));
    let proxy = Proxy::start(server.port);
    let ctx = TestContext::new()
        .online()
        .env("MLFLOW_TRACKING_URI", proxy.uri())
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0");

    // The server goes away in the middle of the large file: a clear error naming the file
    // and the server, exit 2, nothing in the cache and no staging left behind.
    proxy.set_fault(Fault::Stop);
    let stopped = ctx
        .command()
        .args(["inspect", "models:/iris/1"])
        .output()
        .unwrap();
    assert_eq!(proxy.cuts(), 1, "{}", describe(&stopped));
    assert_eq!(stopped.status.code(), Some(2), "{}", describe(&stopped));
    let text = stderr(&stopped);
    // The first failure is said at once, as a warning before the error (issue 23).
    assert!(
        text.starts_with("warning: Downloading `") && text.contains("retrying 1 more time(s)"),
        "{text}"
    );
    let text = &text[text.find("error: ").expect("an error")..];
    // Files download in parallel: whichever fails first is named (the cut one, or another
    // that found the server gone).
    assert!(
        text.starts_with(&format!(
            "error: Failed to get the model `models:/iris/1`\n  Caused by: Downloading `0/{run_id}/artifacts/model/"
        )) && text.contains("` failed after 2 attempt(s)\n")
            && text.contains("Caused by: Connection refused"),
        "{text}"
    );
    assert!(
        text.contains("hint: Check that the MLflow server is running and reachable"),
        "{text}"
    );
    assert!(text.lines().count() < 12, "{text}");
    assert_eq!(downloaded(&ctx), Vec::<String>::new());
    assert_eq!(staging_left(&ctx), Vec::<String>::new());
    let offline = ctx
        .command()
        .args(["--offline", "inspect", "models:/iris/1"])
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(1), "{}", describe(&offline));

    // The server is back: the same command downloads it whole and scores with MLflow's bytes.
    proxy.set_fault(Fault::None);
    proxy.listen();
    let again = predict(&ctx, "models:/iris/1", &[]);
    assert_predicts(&again);
    assert_eq!(downloaded(&ctx).len(), 1);
    let entry = ctx.cache_dir.join("models-v1").join(&downloaded(&ctx)[0]);
    assert_eq!(
        fs_err::metadata(entry.join("model").join(BIG_FILE))
            .unwrap()
            .len(),
        BIG_SIZE as u64
    );

    // A connection reset in the middle of a file is retried: the download completes, whole.
    proxy.set_fault(Fault::ResetOnce);
    let before = proxy.cuts();
    let reset = predict(&ctx, "models:/iris/2", &[]);
    assert_eq!(proxy.cuts(), before + 1, "{}", describe(&reset));
    assert_predicts(&reset);
    assert_eq!(downloaded(&ctx).len(), 2);
    for name in downloaded(&ctx) {
        let big = ctx
            .cache_dir
            .join("models-v1")
            .join(name)
            .join("model")
            .join(BIG_FILE);
        assert_eq!(
            fs_err::read(&big).unwrap(),
            fs_err::read(model.join(BIG_FILE)).unwrap()
        );
    }
    assert_eq!(staging_left(&ctx), Vec::<String>::new());

    // A 503 is retried with MLflow's backoff (factor 0 here): the download completes.
    proxy.set_fault(Fault::UnavailableOnce);
    let before = proxy.cuts();
    let busy = predict(&ctx, "models:/iris/3", &[]);
    assert_eq!(proxy.cuts(), before + 1, "{}", describe(&busy));
    assert_predicts(&busy);
    assert_eq!(downloaded(&ctx).len(), 3);
}

/// Creates a user denied the registered model `iris`.
const FORBID: &str = r#"
import os, sys
from mlflow.server import get_app_client
client = get_app_client("basic-auth", tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
client.create_user(sys.argv[1], sys.argv[2])
client.grant_user_permission(sys.argv[1], "registered_model", "iris", "DENY")
"#;

/// 401 (no or wrong credentials, each with its hint) and 403 (a user without permission on the model) each get
/// their own error and hint; the user's password is never printed.
#[test]
fn pypi_registry_forbidden_model_is_403_with_its_own_hint() {
    let admin_password = "Adm1n-pw-forbid-314";
    let server = MlflowServer::start_basic_auth(admin_password);
    let admin = [
        ("MLFLOW_TRACKING_USERNAME", "admin"),
        ("MLFLOW_TRACKING_PASSWORD", admin_password),
    ];
    server.python(FILL, &[fixture("sklearn-iris").to_str().unwrap()], &admin);
    let bob_password = "B0b-pw-forbidden-271";
    server.python(FORBID, &["bob", bob_password], &admin);
    let ctx = TestContext::new()
        .online()
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        .env("MLFLOW_TRACKING_USERNAME", "bob")
        .env("MLFLOW_TRACKING_PASSWORD", bob_password);

    for (uri, what) in [
        ("models:/iris/1", "Looking up version 1 of model `iris`"),
        (
            "models:/iris@champion",
            "Looking up alias `champion` of model `iris`",
        ),
    ] {
        let forbidden = ctx
            .command()
            .args(["-vv", "inspect", uri])
            .output()
            .unwrap();
        assert_eq!(forbidden.status.code(), Some(1), "{}", describe(&forbidden));
        let text = stderr(&forbidden);
        let error = &text[text.find("error: ").expect("an error")..];
        assert!(
            error.starts_with(&format!(
                "error: Failed to get the model `{uri}`\n  Caused by: {what}: the server answered 403: Permission denied\n"
            )),
            "{error}"
        );
        assert!(
            error.contains(
                "hint: The credentials are valid but not allowed to read this model: ask for READ permission on it"
            ),
            "{error}"
        );
        assert!(error.lines().count() < 8, "{error}");
        assert!(
            !describe(&forbidden).contains(bob_password),
            "{}",
            describe(&forbidden)
        );
    }
    // The same user with a wrong password is 401, with the other hint.
    let wrong = ctx
        .command()
        .args(["inspect", "models:/iris/1"])
        .env("MLFLOW_TRACKING_PASSWORD", "not-bobs-password-99")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{}", describe(&wrong));
    assert!(
        stderr(&wrong).contains("the server answered 401"),
        "{}",
        describe(&wrong)
    );
    assert!(
        stderr(&wrong).contains("hint: The server refused the user name and password sent"),
        "{}",
        describe(&wrong)
    );
    assert!(!describe(&wrong).contains("not-bobs-password-99"));
    assert_eq!(downloaded(&ctx), Vec::<String>::new());
}

/// Two identities: one that may write (the test's uploads), one that may only read.
const IDENTITIES: &str = r#"{"identities": [
  {"name": "admin", "credentials": [{"accessKey": "AKADMIN0000", "secretKey": "admin-secret-4410"}],
   "actions": ["Admin", "Read", "List", "Write", "Tagging"]},
  {"name": "reader", "credentials": [{"accessKey": "AKREADER000", "secretKey": "reader-secret-8832"}],
   "actions": ["Read", "List"]}
]}"#;

/// `s3://` with keys, region and endpoint from `~/.aws/credentials` and `~/.aws/config`
/// (`AWS_PROFILE` or `default`), against `SeaweedFS` checking signatures: the right profile
/// scores with MLflow's output, a wrong secret is refused with the credentials hint (and never
/// printed), a missing bucket and a missing profile each get their own error.
#[test]
fn pypi_s3_profiles_from_aws_files_are_checked_by_the_store() {
    let scratch = TestContext::new();
    let identities = scratch.path().join("identities.json");
    fs_err::write(&identities, IDENTITIES).unwrap();
    let weed = Seaweed::start_with_config(&identities);
    let upload = std::process::Command::new(mlflow_venv().join("bin/python"))
        .arg("-c")
        .arg(UPLOAD)
        .args([
            "models",
            "iris/v1",
            fixture("sklearn-iris").to_str().unwrap(),
        ])
        .env("AWS_ACCESS_KEY_ID", "AKADMIN0000")
        .env("AWS_SECRET_ACCESS_KEY", "admin-secret-4410")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", weed.endpoint())
        .env("AWS_MAX_ATTEMPTS", "10")
        .env("AWS_RETRY_MODE", "standard")
        .output()
        .unwrap();
    assert!(upload.status.success(), "{}", describe(&upload));

    let mut ctx = TestContext::new().online();
    let aws = ctx.home.join(".aws");
    fs_err::create_dir_all(&aws).unwrap();
    fs_err::write(
        aws.join("credentials"),
        "[default]\naws_access_key_id = AKREADER000\naws_secret_access_key = wrong-secret-5519\n\n\
         [reader]\naws_access_key_id = AKREADER000\naws_secret_access_key = reader-secret-8832\n",
    )
    .unwrap();
    fs_err::write(
        aws.join("config"),
        format!(
            "[default]\nregion = us-east-1\nendpoint_url = {0}\n\n\
             [profile reader]\nregion = us-east-1\nendpoint_url = {0}\n",
            weed.endpoint()
        ),
    )
    .unwrap();

    // `default` has a wrong secret: refused with the credentials hint, the secret never shown.
    let wrong = ctx
        .command()
        .args(["-vv", "inspect", "s3://models/iris/v1"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{}", describe(&wrong));
    let text = stderr(&wrong);
    let error = &text[text.find("error: ").expect("an error")..];
    assert!(
        error.starts_with("error: Failed to get the model `s3://models/iris/v1`\n  Caused by: Listing `s3://models/iris/v1` failed\n"),
        "{error}"
    );
    // One line for the store's answer, not object_store's four nested copies of its XML.
    assert!(
        error.contains("\n  Caused by: the store answered 403 Forbidden SignatureDoesNotMatch: The request signature we calculated does not match"),
        "{error}"
    );
    assert!(error.lines().count() < 8, "{error}");
    assert!(
        error.contains("hint: The store refused the credentials: check `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (or the keys of the `AWS_PROFILE` profile in `~/.aws/credentials`)"),
        "{error}"
    );
    assert!(
        !describe(&wrong).contains("wrong-secret-5519"),
        "{}",
        describe(&wrong)
    );

    // A profile no file has.
    let missing = ctx
        .command()
        .args(["inspect", "s3://models/iris/v1"])
        .env("AWS_PROFILE", "nope")
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1), "{}", describe(&missing));
    assert!(
        stderr(&missing).starts_with(&format!(
            "error: Failed to get the model `s3://models/iris/v1`\n  Caused by: The AWS profile `nope` is not in `{0}/credentials` and `{0}/config`\n",
            aws.display()
        )),
        "{}",
        describe(&missing)
    );
    assert_eq!(downloaded(&ctx), Vec::<String>::new());

    // The reader profile: its keys, region and endpoint come from the two files.
    ctx.extra_env
        .push(("AWS_PROFILE".to_string(), "reader".to_string()));
    let right = predict(&ctx, "s3://models/iris/v1", &[]);
    assert_predicts(&right);
    assert_eq!(downloaded(&ctx).len(), 1);
    assert!(!describe(&right).contains("reader-secret-8832"));

    // `cache list --json` lists the download beside the environment, told apart by `kind`.
    let list = json(
        &ctx.command()
            .args(["cache", "list", "--json"])
            .output()
            .unwrap(),
    );
    let rows = list.as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["environment", "model"], "{list:#}");
    let model = &rows[1];
    assert_eq!(model["uri"], "s3://models/iris/v1", "{model:#}");
    assert_eq!(model["source"], "s3://models/iris/v1", "{model:#}");
    assert_eq!(model["state"], "complete", "{model:#}");
    assert_eq!(model["key"], downloaded(&ctx)[0].as_str(), "{model:#}");
    assert!(model["size"].as_u64().unwrap() > 1000, "{model:#}");

    // A bucket that does not exist.
    let no_bucket = ctx
        .command()
        .args(["inspect", "s3://no-such-bucket/iris"])
        .output()
        .unwrap();
    assert_eq!(no_bucket.status.code(), Some(1), "{}", describe(&no_bucket));
    let text = stderr(&no_bucket);
    assert!(
        text.starts_with("error: Failed to get the model `s3://no-such-bucket/iris`\n  Caused by: Listing `s3://no-such-bucket/iris` failed\n  Caused by: the store answered 404 Not Found NoSuchBucket: ")
            && text.contains("hint: Check the bucket name and the path")
            && text.lines().count() < 8,
        "{}",
        describe(&no_bucket)
    );
}

/// `--help` documents the settings model URIs read, beside the CLI's own.
#[test]
fn help_lists_model_uri_settings() {
    let output = TestContext::new().command().arg("--help").output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let help = stdout(&output);
    for line in [
        "Model URIs (any MODEL argument): a directory, file://, models:/NAME/VERSION, models:/NAME@ALIAS,",
        "  MLFLOW_TRACKING_URI                  the MLflow tracking server, http(s)://HOST:PORT[/PREFIX]",
        "  MLFLOW_S3_ENDPOINT_URL               S3-compatible endpoint (wins over AWS_ENDPOINT_URL)",
        "  AWS_PROFILE                          profile in ~/.aws/credentials and ~/.aws/config (default)",
    ] {
        assert!(help.contains(line), "{help}");
    }
}
