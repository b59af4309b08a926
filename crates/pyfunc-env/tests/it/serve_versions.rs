//! `run -- serve` starts the server the model's own MLflow version starts (issue 10 item 1):
//! MLflow 1.x and 2.x before 2.21 return a *shell* command line
//! (`gunicorn ... ${GUNICORN_CMD_ARGS} -- ...wsgi:app`) that `mlflow models serve` runs with
//! `bash -c`; later versions start uvicorn. Plus the compatibility constraints that keep an old
//! MLflow's server working against today's packages (issue 16), `--exclude-newer model`, and
//! MLflow's predict flags (`-r`, `--env`, `-i -`, parquet without rounding; issues 10 and 15).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{TestContext, describe, repo_root, stderr, stdout};
use crate::run::{KillOnDrop, free_port, http, run, run_command};

/// A server started with `run MODEL ENV_ARGS -- serve --port P SERVE_ARGS`.
struct Server {
    process: KillOnDrop,
    port: u16,
    out: PathBuf,
    err: PathBuf,
}

impl Server {
    fn start(ctx: &TestContext, model: &Path, env_args: &[&str], serve_args: &[&str]) -> Self {
        let port = free_port();
        let out = ctx.path().join(format!("serve-{port}.stdout"));
        let err = ctx.path().join(format!("serve-{port}.stderr"));
        let port_text = port.to_string();
        let mut args = vec!["serve", "--port", &port_text];
        args.extend_from_slice(serve_args);
        let child = run_command(ctx, model, env_args, &args)
            .stdin(Stdio::null())
            .stdout(fs_err::File::create(&out).unwrap().into_file())
            .stderr(fs_err::File::create(&err).unwrap().into_file())
            .spawn()
            .unwrap();
        Self {
            process: KillOnDrop(child),
            port,
            out,
            err,
        }
    }

    fn stderr(&self) -> String {
        fs_err::read_to_string(&self.err).unwrap_or_default()
    }

    fn logs(&self) -> String {
        format!(
            "----- server stdout -----\n{}\n----- server stderr -----\n{}",
            fs_err::read_to_string(&self.out).unwrap_or_default(),
            self.stderr()
        )
    }

    /// Waits until `/ping` answers 200; `Err` with the exit status if the process ended first.
    fn ready(&mut self) -> Result<(), ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                return Err(status);
            }
            if http(self.port, "GET", "/ping", "", b"").is_ok_and(|r| r.status == 200) {
                return Ok(());
            }
            assert!(
                started.elapsed() < Duration::from_mins(5),
                "no answer on /ping within 300 s\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `body` posted to `/invocations`: status and body text.
    fn invoke(&self, content_type: &str, body: &[u8]) -> (u16, String) {
        let response = http(self.port, "POST", "/invocations", content_type, body).unwrap();
        (
            response.status,
            String::from_utf8_lossy(&response.body).into_owned(),
        )
    }

    fn get(&self, path: &str) -> (u16, String) {
        let response = http(self.port, "GET", path, "", b"").unwrap();
        (
            response.status,
            String::from_utf8_lossy(&response.body).into_owned(),
        )
    }

    /// SIGTERM to `run`'s pid (the server itself, since `run` execs it); waits for the end.
    fn stop(mut self) -> ExitStatus {
        let pid = self.process.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let stopping = Instant::now();
        loop {
            if let Some(status) = self.process.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                stopping.elapsed() < Duration::from_secs(30),
                "the server ignored SIGTERM\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn pypi_mlflow1_model_serves_through_mlflow_s_gunicorn_shell_line() {
    // MLflow 1.30.1's `get_cmd` returns `gunicorn --timeout=T -b H:P -w N ${GUNICORN_CMD_ARGS}
    // -- mlflow.pyfunc.scoring_server.wsgi:app`, a shell line: split without a shell, every
    // worker died with `No module named '${GUNICORN_CMD_ARGS}'`.
    let ctx = TestContext::new().online();
    let root = repo_root().join("fixtures/mlflow1");
    let model = root.join("models/sklearn-iris-mlflow1");
    let env_args = [
        "--install-mlflow",
        "--python-source",
        "system",
        "--no-compile",
    ];
    // `-w`/`-t` map to gunicorn's `-w`/`--timeout` as MLflow maps them; `--env` reaches the
    // server, and GUNICORN_CMD_ARGS is honoured (debug logging prints the configuration).
    let mut server = Server::start(
        &ctx,
        &model,
        &env_args,
        &[
            "-w",
            "2",
            "-t",
            "97",
            "--env",
            "GUNICORN_CMD_ARGS=--log-level debug",
        ],
    );
    if let Err(status) = server.ready() {
        panic!("the server exited with {status}\n{}", server.logs());
    }
    assert_eq!(server.get("/ping"), (200, "\n".into()));
    assert_eq!(server.get("/health"), (200, "\n".into()));
    assert_eq!(server.get("/version"), (200, "1.30.1".into()));
    let expected = |stem: &str| {
        fs_err::read_to_string(root.join("expected").join(format!("{stem}.out"))).unwrap()
    };
    for (file, content_type, stem) in [
        ("split.json", "application/json", "split"),
        (
            "records.json",
            "application/json; format=pandas-records",
            "records",
        ),
        ("input.csv", "text/csv", "input"),
    ] {
        let body = fs_err::read(root.join("inputs").join(file)).unwrap();
        assert_eq!(
            server.invoke(content_type, &body),
            (200, expected(stem)),
            "{file}\n{}",
            server.logs()
        );
    }
    let log = server.stderr();
    for line in [
        "  workers: 2\n",
        "  timeout: 97\n",
        &format!("  bind: ['127.0.0.1:{}']\n", server.port),
    ] {
        assert!(
            log.contains(line),
            "{line:?} not in the log\n{}",
            server.logs()
        );
    }
    let status = server.stop();
    // gunicorn's arbiter exits 0 after a graceful shutdown on SIGTERM.
    assert_eq!(status.code(), Some(0), "{status}");
}

/// A model in MLflow 2.22.5's format with a `loader_module` in `code/` (so no pickle): it
/// doubles column `x`. Its requirements pin only `mlflow==2.22.5`, as a model that needs
/// nothing else would.
fn late_mlflow2_model(dir: &Path) -> PathBuf {
    let model = dir.join("late-mlflow2");
    fs_err::create_dir_all(model.join("code")).unwrap();
    fs_err::write(
        model.join("MLmodel"),
        "flavors:\n  python_function:\n    code: code\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: double_model\n    python_version: 3.11.7\nmlflow_version: 2.22.5\nmodel_uuid: 5c1ba2e6a4c54b0c9d2a8e1f00000001\nutc_time_created: '2025-05-20 10:00:00.000000'\n",
    )
    .unwrap();
    fs_err::write(
        model.join("code/double_model.py"),
        "class _Model:\n    def predict(self, model_input, params=None):\n        return model_input[\"x\"] * 2\n\n\ndef _load_pyfunc(path):\n    return _Model()\n",
    )
    .unwrap();
    fs_err::write(
        model.join("python_env.yaml"),
        "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n",
    )
    .unwrap();
    fs_err::write(model.join("requirements.txt"), "mlflow==2.22.5\n").unwrap();
    fs_err::write(
        model.join("conda.yaml"),
        "channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip\n- pip:\n  - mlflow==2.22.5\nname: mlflow-env\n",
    )
    .unwrap();
    model
}

#[test]
fn pypi_late_mlflow2_model_serves_with_compat_constraints_and_fails_clearly_without() {
    // MLflow 2.22.5 requires `fastapi<1` and nothing about Starlette; Starlette 1.0 removed the
    // `route` decorator its server uses, so an environment resolved today cannot serve, under
    // MLflow too. The compatibility table adds `starlette<1`.
    let ctx = TestContext::new().online();
    let model = late_mlflow2_model(ctx.path());
    let env_args = ["--python-source", "system", "--no-compile"];

    // The constraint is part of the spec: `deps --format json` and `inspect` show it.
    let deps = ctx
        .command()
        .args(["deps", "--format", "json"])
        .arg(&model)
        .output()
        .unwrap();
    assert!(deps.status.success(), "{}", describe(&deps));
    let document: serde_json::Value = serde_json::from_slice(&deps.stdout).unwrap();
    assert_eq!(
        document["spec"]["compat_constraints"],
        serde_json::json!([{"constraint": "starlette<1", "id": "starlette-route", "mlflow": "2.22.5"}])
    );
    let inspect = ctx.command().arg("inspect").arg(&model).output().unwrap();
    assert!(
        stdout(&inspect).contains("    compat: starlette<1 (starlette-route, for mlflow 2.22.5)\n"),
        "{}",
        describe(&inspect)
    );

    let mut server = Server::start(&ctx, &model, &env_args, &[]);
    if let Err(status) = server.ready() {
        panic!("the server exited with {status}\n{}", server.logs());
    }
    assert_eq!(server.get("/ping"), (200, "\n".into()));
    assert_eq!(server.get("/version"), (200, "2.22.5".into()));
    assert_eq!(
        server.invoke(
            "application/json",
            br#"{"dataframe_split": {"columns": ["x"], "data": [[1], [2]]}}"#
        ),
        (200, r#"{"predictions": [{"x": 2}, {"x": 4}]}"#.into()),
        "{}",
        server.logs()
    );
    assert_eq!(
        server.invoke("text/csv", b"x\n1\n2\n"),
        (200, r#"{"predictions": [{"x": 2}, {"x": 4}]}"#.into()),
        "{}",
        server.logs()
    );
    let status = server.stop();
    assert!(
        status.code().is_none() || status.code() == Some(0),
        "{status}"
    );

    // Without the constraints: what MLflow builds, which cannot serve. One screen, quoting the
    // failing line and naming both switches; exit 1.
    let mut args = env_args.to_vec();
    args.push("--no-compat-constraints");
    let mut server = Server::start(&ctx, &model, &args, &[]);
    let status = server
        .ready()
        .expect_err("the server started without the compatibility constraints");
    assert_eq!(status.code(), Some(1), "{}", server.logs());
    let err = server.stderr();
    let message = &err[err.find("error: ").expect("an error")..];
    assert!(
        message.starts_with("error: MLflow 2.22.5's scoring server cannot start in this environment\n  Caused by: AttributeError: 'FastAPI' object has no attribute 'route'\n  at mlflow/pyfunc/scoring_server/__init__.py:486: @app.route(\"/ping\", methods=[\"GET\"])\n  Installed: fastapi "),
        "{}",
        server.logs()
    );
    assert!(message.contains("`--exclude-newer model`"), "{message}");
    assert!(message.contains("`--no-compat-constraints`"), "{message}");
    assert!(message.lines().count() < 12, "{message}");
}

/// A model in MLflow 3.17.2's format whose `loader_module` returns its input, so a prediction
/// shows the `DataFrame` MLflow built from the input.
fn identity_model(dir: &Path, name: &str) -> PathBuf {
    let model = dir.join(name);
    fs_err::create_dir_all(model.join("code")).unwrap();
    fs_err::write(
        model.join("MLmodel"),
        "flavors:\n  python_function:\n    code: code\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: identity_model\n    python_version: 3.11.7\nmlflow_version: 3.17.2\nmodel_uuid: 5c1ba2e6a4c54b0c9d2a8e1f00000002\nutc_time_created: '2026-11-01 10:00:00.000000'\n",
    )
    .unwrap();
    fs_err::write(
        model.join("code/identity_model.py"),
        "import os\n\n\nclass _Model:\n    def predict(self, model_input, params=None):\n        if os.environ.get(\"FROM_ENV\"):\n            model_input = model_input.assign(env=os.environ[\"FROM_ENV\"])\n        if params:\n            model_input = model_input.assign(**params)\n        return model_input\n\n\ndef _load_pyfunc(path):\n    return _Model()\n",
    )
    .unwrap();
    fs_err::write(
        model.join("python_env.yaml"),
        "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n",
    )
    .unwrap();
    fs_err::write(model.join("requirements.txt"), "mlflow==3.17.2\npyarrow\n").unwrap();
    model
}

#[test]
fn pypi_parquet_and_csv_params_keep_every_digit_odd_paths_stdin_and_env_work() {
    // `-t parquet` went through `DataFrame.to_json` (10 significant digits, int64 via float):
    // 1.2469135780246914 became 1.246913578. Now the DataFrame is MLflow's own
    // (`parse_parquet_input`), and the answer equals MLflow's server's for the same bytes.
    let ctx = TestContext::new().online();
    // `#` and `%41` in the path: MLflow parses a model path as a URI (3.17.2: `Invalid path`).
    let model = identity_model(ctx.path(), "m#x%41");
    let env_args = ["--python-source", "system", "--no-compile"];
    let parquet = ctx.path().join("in.parquet");
    let csv = ctx.path().join("in.csv");
    let write = run(
        &ctx,
        &model,
        &env_args,
        &[
            "python",
            "-c",
            "import sys, pandas as pd\n\
             df = pd.DataFrame({'f': [1.2469135780246914, 0.1 + 0.2, None],\n\
               'i': pd.array([2**53 + 1, -(2**62), None], dtype='Int64'),\n\
               't': pd.to_datetime(['2024-01-02T03:04:05.123456', None, '1999-12-31T00:00:00.000001']),\n\
               's': ['a', None, 'c']})\n\
             df.to_parquet(sys.argv[1]); df.to_csv(sys.argv[2], index=False)",
            parquet.to_str().unwrap(),
            csv.to_str().unwrap(),
        ],
    );
    assert!(write.status.success(), "{}", describe(&write));

    let predicted = run(
        &ctx,
        &model,
        &env_args,
        &["predict", "-i", parquet.to_str().unwrap(), "-t", "parquet"],
    );
    assert!(predicted.status.success(), "{}", describe(&predicted));
    let expected = r#"{"predictions": [{"f": 1.2469135780246914, "i": 9007199254740993, "t": "2024-01-02T03:04:05.123456", "s": "a"}, {"f": 0.30000000000000004, "i": -4611686018427387904, "t": "NaT", "s": NaN}, {"f": NaN, "i": null, "t": "1999-12-31T00:00:00.000001", "s": "c"}]}"#;
    assert_eq!(stdout(&predicted), expected, "{}", describe(&predicted));

    // `-i -` reads stdin.
    let mut child = run_command(
        &ctx,
        &model,
        &env_args,
        &["predict", "-i", "-", "-t", "parquet"],
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        &fs_err::read(&parquet).unwrap(),
    )
    .unwrap();
    let from_stdin = child.wait_with_output().unwrap();
    assert_eq!(stdout(&from_stdin), expected, "{}", describe(&from_stdin));

    // MLflow's own server, given the same parquet, answers the same.
    let mut server = Server::start(&ctx, &model, &env_args, &[]);
    if let Err(status) = server.ready() {
        panic!("the server exited with {status}\n{}", server.logs());
    }
    assert_eq!(
        server.invoke(
            "application/vnd.apache.parquet",
            &fs_err::read(&parquet).unwrap()
        ),
        (200, expected.to_string())
    );
    server.stop();

    // CSV with params: MLflow's CSV DataFrame (its own parsing: the nullable ints become
    // floats there too), not a JSON round trip that rounds to 10 digits.
    let with_params = run(
        &ctx,
        &model,
        &env_args,
        &[
            "predict",
            "-i",
            csv.to_str().unwrap(),
            "-t",
            "csv",
            "--params",
            r#"{"p": 0.12345678901234568}"#,
        ],
    );
    assert!(with_params.status.success(), "{}", describe(&with_params));
    assert!(
        stdout(&with_params).starts_with(r#"{"predictions": [{"f": 1.2469135780246914, "i": 9007199254740992.0, "t": "2024-01-02 03:04:05.123456", "s": "a""#),
        "{}",
        describe(&with_params)
    );

    // `--env KEY=VALUE` reaches the model (it adds the variable as a column).
    let with_env = run(
        &ctx,
        &model,
        &env_args,
        &[
            "predict",
            "-i",
            csv.to_str().unwrap(),
            "-t",
            "csv",
            "--env",
            "FROM_ENV=yes",
        ],
    );
    assert!(
        stdout(&with_env).contains(r#""env": "yes""#),
        "{}",
        describe(&with_env)
    );
    assert!(
        !stderr(&with_env).contains("error"),
        "{}",
        describe(&with_env)
    );
}

#[test]
fn pypi_exclude_newer_model_resolves_open_packages_as_of_the_model_s_date() {
    // The MLmodel says the model was saved on 2024-01-01: the open `six` resolves to the
    // release of that date (1.16.0; 1.17.0 came out on 2024-12-04), while the exact pin
    // `idna==3.10` (2024-09-15) is exempt.
    let ctx = TestContext::new().online();
    let model = ctx.path().join("dated");
    fs_err::create_dir_all(&model).unwrap();
    fs_err::write(
        model.join("MLmodel"),
        "flavors:\n  python_function:\n    env:\n      conda: conda.yaml\n      virtualenv: python_env.yaml\n    loader_module: none\n    python_version: 3.11.7\nmlflow_version: 2.9.2\nutc_time_created: '2024-01-01 00:00:00.000000'\n",
    )
    .unwrap();
    fs_err::write(
        model.join("python_env.yaml"),
        "python: 3.11.7\nbuild_dependencies:\n- pip\ndependencies:\n- -r requirements.txt\n",
    )
    .unwrap();
    fs_err::write(model.join("requirements.txt"), "six\nidna==3.10\n").unwrap();
    fs_err::write(
        model.join("conda.yaml"),
        "dependencies:\n- python=3.11.7\n- pip:\n  - six\n  - idna==3.10\n",
    )
    .unwrap();
    let versions = |extra: &[&str]| {
        let mut args = vec!["--python-source", "system", "--no-compile"];
        args.extend_from_slice(extra);
        let output = run(
            &ctx,
            &model,
            &args,
            &[
                "python",
                "-c",
                "import importlib.metadata as m; print(m.version('six'), m.version('idna'))",
            ],
        );
        assert!(output.status.success(), "{}", describe(&output));
        stdout(&output)
    };
    assert_eq!(versions(&["--exclude-newer", "model"]), "1.16.0 3.10\n");
    assert_ne!(versions(&[]), "1.16.0 3.10\n");
}
