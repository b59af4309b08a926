//! Model URIs against a real MLflow tracking server (MLflow 3.17.2 from PyPI, `SQLite` backend,
//! proxied artifacts), filled with MLflow's own client: every URI form scores the sklearn
//! fixture with MLflow's exact output, `--offline` works on what was downloaded, and the
//! faults each get their own error.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, fixture, json, repo_root, stderr, stdout};

pub(crate) use crate::servers::Seaweed;
use crate::servers::{free_port, http_status, mlflow_venv};

/// `mlflow server` on 127.0.0.1 and a free port, stopped (with its workers) when dropped.
pub struct MlflowServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    venv: PathBuf,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl MlflowServer {
    pub fn start(extra: &[&str]) -> Self {
        Self::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Self {
        let venv = mlflow_venv();
        let dir = tempfile::Builder::new()
            .prefix("pfe-mlflow-")
            .tempdir()
            .unwrap();
        let mut server = Self {
            port: free_port(),
            dir,
            child: None,
            venv,
            extra: extra.iter().map(ToString::to_string).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
        };
        server.spawn();
        server
    }

    /// With MLflow's basic-auth app; `admin` logs in with `admin_password`.
    pub fn start_basic_auth(admin_password: &str) -> Self {
        Self::start_with_env(
            &["--app-name", "basic-auth"],
            &[
                ("MLFLOW_AUTH_ADMIN_PASSWORD", admin_password),
                ("MLFLOW_FLASK_SERVER_SECRET_KEY", "test-csrf-key"),
            ],
        )
    }

    fn spawn(&mut self) {
        let log = fs_err::File::create(self.dir.path().join("server.log")).unwrap();
        let child = Command::new(self.venv.join("bin/mlflow"))
            .arg("server")
            .args(&self.extra)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            // One worker and no job runner: a 2-core machine starts it in seconds, not minutes.
            .args(["--workers", "1"])
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("--backend-store-uri")
            .arg(format!(
                "sqlite:///{}",
                self.dir.path().join("mlflow.db").display()
            ))
            .arg("--artifacts-destination")
            .arg(self.dir.path().join("artifacts"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.file().try_clone().unwrap())
            .stderr(log.into_file())
            .process_group(0)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(600);
        while http_status(self.port, "/health").is_none() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "mlflow server did not start:\n{}",
                fs_err::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    pub fn uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the server and its workers (TERM, then KILL).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let group = format!("-{}", child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = child.wait();
    }

    /// Runs a Python script with MLflow's client against this server.
    pub fn python(&self, script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
        let output = Command::new(self.venv.join("bin/python"))
            .arg("-c")
            .arg(script)
            .args(args)
            .env("MLFLOW_TRACKING_URI", self.uri())
            .envs(env.iter().copied())
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        stdout(&output)
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Logs the model directory into a run registered three times as `iris` (versions 1 to 3,
/// alias `champion` on 1), plus a run artifact directory without an MLmodel; prints the run id.
pub(crate) const FILL: &str = r#"
import sys, mlflow
from mlflow import MlflowClient
with mlflow.start_run() as run:
    mlflow.log_artifacts(sys.argv[1], "model")
    mlflow.log_text("not a model", "notes/readme.txt")
for _ in range(3):
    mlflow.register_model(f"runs:/{run.info.run_id}/model", "iris")
MlflowClient().set_registered_model_alias("iris", "champion", "1")
print("RUN_ID", run.info.run_id)
"#;

/// The run id `FILL` printed (MLflow prints its own lines around it).
pub(crate) fn run_id_of(output: &str) -> String {
    output
        .lines()
        .find_map(|line| line.strip_prefix("RUN_ID "))
        .unwrap_or_else(|| panic!("no run id in {output}"))
        .trim()
        .to_string()
}

fn input() -> PathBuf {
    repo_root().join("fixtures/inputs/sklearn-iris/dataframe_split.json")
}

fn expected() -> Vec<u8> {
    fs_err::read(repo_root().join("fixtures/expected/sklearn-iris/dataframe_split.out")).unwrap()
}

pub(crate) fn predict(ctx: &TestContext, uri: &str, extra: &[&str]) -> Output {
    ctx.command()
        .arg("run")
        .arg(uri)
        .args(["--python-source", "system"])
        .args(extra)
        .args(["--", "predict", "-i", input().to_str().unwrap()])
        .output()
        .unwrap()
}

#[track_caller]
pub(crate) fn assert_predicts(output: &Output) {
    assert!(output.status.success(), "{}", describe(output));
    assert!(
        output.stdout == expected(),
        "stdout differs from MLflow's\n{}",
        describe(output)
    );
}

pub(crate) fn downloaded(ctx: &TestContext) -> Vec<String> {
    let Ok(entries) = fs_err::read_dir(ctx.cache_dir.join("models-v1")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join("source.json").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn pypi_registry_uris_score_like_mlflow_and_work_offline() {
    let mut server = MlflowServer::start(&[]);
    let run_id = run_id_of(&server.python(FILL, &[fixture("sklearn-iris").to_str().unwrap()], &[]));
    let run_id = run_id.as_str();
    let ctx = TestContext::new()
        .online()
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0");

    // An alias: resolved on the server, downloaded once, scored with MLflow's bytes.
    let first = predict(&ctx, "models:/iris@champion", &[]);
    assert_predicts(&first);
    let text = stderr(&first);
    assert!(
        text.starts_with(&format!(
            "Downloaded `models:/iris@champion` (version 1) from `mlflow-artifacts:/0/{run_id}/artifacts/model`\n"
        )),
        "{text}"
    );
    // The version the alias names is the same cache entry: nothing downloaded again.
    let version = predict(&ctx, "models:/iris/1", &[]);
    assert_predicts(&version);
    assert_eq!(stderr(&version), "", "{}", describe(&version));
    assert_eq!(downloaded(&ctx).len(), 1);

    // `latest` is the highest version; runs:/ and mlflow-artifacts:/ name the same files.
    for (uri, message) in [
        (
            "models:/iris/latest".to_string(),
            "(version 3) from `mlflow-artifacts:/".to_string(),
        ),
        (
            format!("runs:/{run_id}/model"),
            format!("from `mlflow-artifacts:/0/{run_id}/artifacts/model`"),
        ),
        (
            format!("mlflow-artifacts:/0/{run_id}/artifacts/model"),
            String::new(),
        ),
    ] {
        let output = predict(&ctx, &uri, &[]);
        assert_predicts(&output);
        assert!(
            stderr(&output).starts_with(&format!("Downloaded `{uri}`")),
            "{}",
            describe(&output)
        );
        assert!(stderr(&output).contains(&message), "{}", describe(&output));
    }
    assert_eq!(downloaded(&ctx).len(), 4);

    // create --json names the URI, where it resolved to, and the version.
    let created = ctx
        .command()
        .args([
            "create",
            "models:/iris@champion",
            "--python-source",
            "system",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", describe(&created));
    let document = json(&created);
    assert_eq!(document["model_source"]["uri"], "models:/iris@champion");
    assert_eq!(document["model_source"]["version"], "1");
    assert_eq!(document["model_source"]["name"], "iris");
    assert_eq!(
        document["model_source"]["source"],
        format!("mlflow-artifacts:/0/{run_id}/artifacts/model")
    );

    // Faults, each with its own error: a missing model, a missing alias, a run path without
    // an MLmodel. Nothing is cached for any of them.
    for (uri, cause, hint) in [
        (
            "models:/nope/1".to_string(),
            "Caused by: Looking up version 1 of model `nope`: the server answered 404 RESOURCE_DOES_NOT_EXIST: Model Version (name=nope, version=1) not found",
            "hint: Check the name, version or run id",
        ),
        (
            "models:/iris@nope".to_string(),
            "Caused by: Looking up alias `nope` of model `iris`: the server answered 400 INVALID_PARAMETER_VALUE: Registered model alias nope not found.",
            "hint: Check the name and alias",
        ),
        (
            format!("runs:/{run_id}/notes"),
            "no `MLmodel` among 1 file(s) (readme.txt)",
            "hint: Point at the directory that holds `MLmodel`",
        ),
    ] {
        let output = ctx.command().args(["inspect", &uri]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        let text = stderr(&output);
        assert!(
            text.starts_with(&format!("error: Failed to get the model `{uri}`\n")),
            "{text}"
        );
        assert!(text.contains(cause), "{text}");
        assert!(text.contains(hint), "{text}");
    }
    assert_eq!(downloaded(&ctx).len(), 4);

    // The server stops: a version never downloaded fails clearly (exit 2) and caches nothing;
    // the downloaded version works offline, and the alias falls back to its last resolution.
    server.stop();
    let gone = ctx
        .command()
        .args(["inspect", "models:/iris/2"])
        .output()
        .unwrap();
    assert_eq!(gone.status.code(), Some(2), "{}", describe(&gone));
    let text = stderr(&gone);
    // The first failure is said at once (issue 23), then the error.
    let (warning, text) = text.split_once('\n').unwrap_or_default();
    assert!(
        warning.starts_with("warning: Looking up version 2 of model `iris` failed (")
            && warning.contains("retrying 1 more time(s)"),
        "{warning}"
    );
    assert!(
        text.starts_with("error: Failed to get the model `models:/iris/2`\n  Caused by: Looking up version 2 of model `iris` failed after 2 attempt(s)\n"),
        "{text}"
    );
    assert!(
        text.contains("hint: Check that the MLflow server is running"),
        "{text}"
    );
    assert_eq!(downloaded(&ctx).len(), 4);

    let offline = predict(&ctx, "models:/iris/1", &["--offline"]);
    assert_predicts(&offline);
    assert_eq!(stderr(&offline), "", "{}", describe(&offline));
    let alias = predict(&ctx, "models:/iris@champion", &["--offline"]);
    assert_predicts(&alias);
    let text = stderr(&alias);
    assert!(
        text.starts_with(
            "warning: Offline: using version 1 of `iris`, what `models:/iris@champion` resolved to "
        ) && text.lines().count() == 1,
        "{}",
        describe(&alias)
    );
    let never = ctx
        .command()
        .args(["--offline", "inspect", "models:/iris/2"])
        .output()
        .unwrap();
    assert_eq!(never.status.code(), Some(1), "{}", describe(&never));
    assert!(
        stderr(&never).contains(
            "`models:/iris/2` is not in the model cache and `--offline` forbids downloading it"
        ),
        "{}",
        describe(&never)
    );
}

/// Creates the bucket and uploads a directory under a prefix, with boto3.
pub(crate) const UPLOAD: &str = r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
bucket, prefix, src = sys.argv[1], sys.argv[2], sys.argv[3]
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
for root, _, files in os.walk(src):
    for name in files:
        path = os.path.join(root, name)
        s3.upload_file(path, bucket, prefix + "/" + os.path.relpath(path, src))
"#;

/// `s3://` straight from `SeaweedFS`, and an MLflow server whose runs store artifacts there
/// (not proxied: the run's artifact URI is `s3://...`, which we fetch ourselves).
#[test]
fn pypi_s3_uris_and_s3_backed_registry_score_like_mlflow() {
    let weed = Seaweed::start();
    let env = weed.env();
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut ctx = TestContext::new().online();
    for (key, value) in &env {
        ctx = ctx.env(key, value.clone());
    }
    // One bucket for everything: each SeaweedFS bucket is a collection that grows its own
    // volumes, and a second one can exceed the default volume limit (InternalError on put).
    let server = MlflowServer::start_with_env(
        &[
            "--no-serve-artifacts",
            "--default-artifact-root",
            "s3://models/mlflow",
        ],
        &env_refs,
    );
    server.python(
        UPLOAD,
        &[
            "models",
            "iris/v1",
            fixture("sklearn-iris").to_str().unwrap(),
        ],
        &env_refs,
    );
    server.python(
        UPLOAD,
        &[
            "models",
            "notes",
            repo_root()
                .join("fixtures/inputs/sklearn-iris")
                .to_str()
                .unwrap(),
        ],
        &env_refs,
    );

    let direct = predict(&ctx, "s3://models/iris/v1", &[]);
    assert_predicts(&direct);
    assert!(
        stderr(&direct).starts_with("Downloaded `s3://models/iris/v1`\n"),
        "{}",
        describe(&direct)
    );
    let offline = predict(&ctx, "s3://models/iris/v1", &["--offline"]);
    assert_predicts(&offline);
    assert_eq!(stderr(&offline), "", "{}", describe(&offline));

    let not_model = ctx
        .command()
        .args(["inspect", "s3://models/notes"])
        .output()
        .unwrap();
    assert_eq!(not_model.status.code(), Some(1), "{}", describe(&not_model));
    assert!(
        stderr(&not_model).contains("No MLflow model at `s3://models/notes`"),
        "{}",
        describe(&not_model)
    );

    // The registry hands out `s3://` download URIs; the client reads the bucket directly.
    let run_id = run_id_of(&server.python(
        FILL,
        &[fixture("sklearn-iris").to_str().unwrap()],
        &env_refs,
    ));
    let ctx = ctx.env("MLFLOW_TRACKING_URI", server.uri());
    let registered = predict(&ctx, "models:/iris/2", &[]);
    assert_predicts(&registered);
    let text = stderr(&registered);
    assert!(
        text.starts_with(&format!("Downloaded `models:/iris/2` (version 2) from `s3://models/mlflow/0/{}/artifacts/model`\n", run_id.trim())),
        "{}",
        describe(&registered)
    );
    // Secrets never printed.
    let all = format!("{}{}", describe(&direct), describe(&registered));
    assert!(!all.contains("test-secret-key"), "{all}");
}

/// MLflow's basic-auth app: no credentials and wrong ones each get a one-screen error with its
/// hint (exit 1); the right ones work; the password never appears in any output, `-vv` included.
#[test]
fn pypi_basic_auth_credentials_work_and_are_never_printed() {
    let secret = "Adm1n-s3cret-pw-917";
    let server = MlflowServer::start_basic_auth(secret);
    let auth = [
        ("MLFLOW_TRACKING_USERNAME", "admin"),
        ("MLFLOW_TRACKING_PASSWORD", secret),
    ];
    server.python(FILL, &[fixture("sklearn-iris").to_str().unwrap()], &auth);
    let ctx = TestContext::new()
        .online()
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0");

    let anonymous = ctx
        .command()
        .args(["inspect", "models:/iris/1"])
        .output()
        .unwrap();
    assert_eq!(anonymous.status.code(), Some(1), "{}", describe(&anonymous));
    let text = stderr(&anonymous);
    assert!(
        text.starts_with("error: Failed to get the model `models:/iris/1`\n  Caused by: Looking up version 1 of model `iris`: the server answered 401"),
        "{text}"
    );
    assert!(text.contains("hint: The server wants credentials: set `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD`"), "{text}");

    let wrong = ctx
        .command()
        .args(["-vv", "inspect", "models:/iris/1"])
        .env("MLFLOW_TRACKING_USERNAME", "admin")
        .env("MLFLOW_TRACKING_PASSWORD", "wrong-password-123")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1), "{}", describe(&wrong));
    assert!(
        stderr(&wrong).contains("the server answered 401"),
        "{}",
        describe(&wrong)
    );
    // Sent and refused is not "missing" (issue 23).
    assert!(
        stderr(&wrong).contains("hint: The server refused the user name and password sent")
            && !stderr(&wrong).contains("The server wants credentials"),
        "{}",
        describe(&wrong)
    );
    assert!(
        !describe(&wrong).contains("wrong-password-123"),
        "{}",
        describe(&wrong)
    );

    let right = ctx
        .command()
        .args(["-vv", "inspect", "models:/iris@champion"])
        .envs(auth)
        .output()
        .unwrap();
    assert!(right.status.success(), "{}", describe(&right));
    assert!(
        stderr(&right)
            .contains("Downloaded `models:/iris@champion` (version 1) from `mlflow-artifacts:/"),
        "{}",
        describe(&right)
    );
    assert!(!describe(&right).contains(secret), "{}", describe(&right));
    assert!(!describe(&anonymous).contains(secret));
}

/// Puts objects `KEY=BODY` (`KEY=@N`: N bytes of a YAML comment after the fixture's MLmodel)
/// into bucket `argv[1]` with boto3, as the S3 console or any client writes them.
const PUT_OBJECTS: &str = r##"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
bucket, mlmodel = sys.argv[1], open(sys.argv[2], "rb").read()
for item in sys.argv[3:]:
    key, _, body = item.partition("=")
    if body.startswith("@"):
        data = mlmodel + b"# " + b"x" * int(body[1:]) + b"\n"
    else:
        data = body.encode()
    s3.put_object(Bucket=bucket, Key=key, Body=data)
"##;

/// MLflow's own download of an artifact URI; prints the files it wrote, one per line.
const MLFLOW_DOWNLOAD: &str = r"
import os, sys, mlflow
out = mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2])
for root, _, files in os.walk(out):
    for name in files:
        print(os.path.relpath(os.path.join(root, name), out))
";

fn mlflow_python(script: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let output = Command::new(mlflow_venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    stdout(&output)
}

/// `SeaweedFS` with the bucket `models` holding the sklearn fixture under `prefix`, uploaded
/// by boto3, then `puts` (see [`PUT_OBJECTS`]); a context that reaches it.
fn seaweed_with_model(
    prefix: &str,
    puts: &[String],
) -> (Seaweed, Vec<(&'static str, String)>, TestContext) {
    let weed = Seaweed::start();
    let env = weed.env();
    let mut ctx = TestContext::new().online();
    for (key, value) in &env {
        ctx = ctx.env(key, value.clone());
    }
    weed.create_bucket("models");
    mlflow_python(
        UPLOAD,
        &["models", prefix, fixture("sklearn-iris").to_str().unwrap()],
        &env,
    );
    let mlmodel = fixture("sklearn-iris").join("MLmodel");
    let mut args = vec!["models".to_string(), mlmodel.display().to_string()];
    args.extend(puts.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    mlflow_python(PUT_OBJECTS, &args, &env);
    (weed, env, ctx)
}

/// Keys with `%`, `#`, `?`, `*` and non-ASCII characters, and zero-byte folder markers
/// (`prefix/sub/`, what the S3 console's "Create folder" makes), download as MLflow downloads
/// them and the model scores. The old code asked for `caf%C3%A9.txt` and `h%2523x.txt`
/// (encoded again) and for the marker itself: 404.
#[test]
fn pypi_s3_odd_keys_and_folder_markers_download_like_mlflow() {
    let odd_files = [
        "h#x.txt",
        "p%41.txt",
        "q?.txt",
        "s*.txt",
        "caf\u{e9}.txt",
        "sub/data.txt",
    ];
    let mut puts: Vec<String> = odd_files
        .iter()
        .map(|name| format!("odd/m/{name}={name}"))
        .collect();
    // Folder markers: one above a file, one for an empty folder.
    puts.extend(["odd/m/sub/=".to_string(), "odd/m/empty/=".to_string()]);
    let (_weed, env, ctx) = seaweed_with_model("odd/m", &puts);

    // MLflow downloads and scores it: the ground truth.
    let theirs = ctx.path().join("mlflow-download");
    let listed = mlflow_python(
        MLFLOW_DOWNLOAD,
        &["s3://models/odd/m", theirs.to_str().unwrap()],
        &env,
    );
    let mut mlflow_files: Vec<&str> = listed.lines().collect();
    mlflow_files.sort_unstable();

    let output = predict(&ctx, "s3://models/odd/m", &[]);
    assert_predicts(&output);
    let entry = ctx.cache_dir.join("models-v1").join(&downloaded(&ctx)[0]);
    let model = entry.join("model");
    for name in odd_files {
        assert_eq!(
            fs_err::read_to_string(model.join(name)).unwrap(),
            name,
            "{name}"
        );
    }
    let mut ours: Vec<String> = walk(&model);
    ours.sort_unstable();
    assert_eq!(ours, mlflow_files, "the same files as MLflow's download");
}

/// A model whose MLmodel is larger than any command reads is refused before it is downloaded,
/// and nothing of it stays in `models-v1/` or `tmp/`. The old code downloaded it into
/// `models-v1/` and only then refused to read it.
#[test]
fn pypi_s3_an_oversized_mlmodel_is_refused_and_nothing_stays() {
    // 17 MiB: more than the 16 MiB any environment file may have.
    let puts = [format!("big/m/MLmodel=@{}", 17 << 20)];
    let (_weed, _env, ctx) = seaweed_with_model("big/m", &puts);
    let before = downloaded(&ctx);
    let big = ctx
        .command()
        .args(["inspect", "s3://models/big/m"])
        .output()
        .unwrap();
    assert_eq!(big.status.code(), Some(1), "{}", describe(&big));
    let text = stderr(&big);
    assert!(
        text.contains("The model at `s3://models/big/m` is refused, and nothing of it was kept")
            && text.contains("`MLmodel` is ")
            && text.contains("more than the 16777216 bytes"),
        "{text}"
    );
    assert_eq!(downloaded(&ctx), before);
    let dirs = |bucket: &str| -> Vec<String> {
        fs_err::read_dir(ctx.cache_dir.join(bucket))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir() && e.file_name() != "refs")
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(dirs("models-v1"), before, "a refused download stayed");
    assert!(
        dirs("tmp").iter().all(|d| !d.starts_with("model-")),
        "{:?}",
        dirs("tmp")
    );
}

/// Every file below `dir`, relative, `/`-separated.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in fs_err::read_dir(&current).unwrap().flatten() {
            if entry.path().is_dir() {
                pending.push(entry.path());
            } else {
                let relative = entry.path().strip_prefix(dir).unwrap().to_path_buf();
                files.push(relative.to_string_lossy().into_owned());
            }
        }
    }
    files
}

/// A downloaded model is held by the command that runs from it, like its environment:
/// `cache prune` keeps it while the command runs (the lock used to stay in pyfunc-env, and
/// went away when it exec'd the command; issue 23), and removes it afterwards; `cache clean`
/// gives up meanwhile. pyfunc-env is gone by then (it exec'd the command): the locks live in
/// the command, which got every lock `ensure`'s result holds (issue 24: the model's lock
/// travels in `Ensured`, not beside it).
#[test]
fn pypi_a_downloaded_model_is_kept_while_a_command_runs_from_it() {
    let server = MlflowServer::start(&[]);
    let seed = TestContext::new();
    let wheels = env_test::wheel_dir().unwrap();
    let model = seed.model(
        "small",
        &[(
            "python_env.yaml",
            &format!(
                "python: \"3.11.7\"\nbuild_dependencies: []\ndependencies:\n- --no-index\n- --find-links file://{}\n- wheel==0.45.1\n",
                wheels.display()
            ),
        )],
    );
    server.python(FILL, &[model.to_str().unwrap()], &[]);
    let ctx = TestContext::new()
        .online()
        .env("MLFLOW_TRACKING_URI", server.uri())
        .env("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        .env("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0");
    // The command says it runs, then waits for its stdin to close.
    let mut running = ctx
        .command()
        .args(["run", "models:/iris/1", "--python-source", "system", "--"])
        .args([
            "python",
            "-c",
            "import sys, wheel; print('up', flush=True); sys.stdin.read()",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(
            fs_err::File::create(ctx.path().join("run.log"))
                .unwrap()
                .into_file(),
        )
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(running.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(
        line.trim(),
        "up",
        "{}",
        fs_err::read_to_string(ctx.path().join("run.log")).unwrap()
    );
    assert_eq!(downloaded(&ctx).len(), 1);
    let prune = || {
        let output = ctx
            .command()
            .args(["cache", "prune", "--older-than", "0s"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    };
    prune();
    assert_eq!(
        downloaded(&ctx).len(),
        1,
        "`cache prune` removed the model a running command uses"
    );
    // `cache clean` needs the whole cache, whose shared lock the command holds too (handed
    // on with the model's and the environment's, `Ensured::lock_files`): it gives up.
    let clean = ctx
        .command()
        .env("PYFUNC_ENV_LOCK_TIMEOUT", "1")
        .args(["cache", "clean"])
        .output()
        .unwrap();
    assert_eq!(clean.status.code(), Some(2), "{}", describe(&clean));
    assert_eq!(
        downloaded(&ctx).len(),
        1,
        "`cache clean` removed the model a running command uses"
    );
    drop(running.stdin.take());
    assert!(running.wait().unwrap().success());
    prune();
    assert!(downloaded(&ctx).is_empty());
}
