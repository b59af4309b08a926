//! `pyfunc_env.spark_udf` (issue 22) on real executor JVMs (`local-cluster[2,1,1024]`, pyspark
//! 4.3.0, Java 17): one Spark session runs every case, because a session and its first job cost
//! about a minute on 2 cores. The driver script is `spark_udf/job.py`; the driver imports
//! `pyfunc_env` from `python/` with `PYFUNC_ENV_BIN` pointing at the binary under test, and the
//! executors' Python is the driver venv (pyspark, pandas, pyarrow, and mlflow for MLflow's own
//! `spark_udf`), where `pyfunc_env` is not importable: the UDF must carry its executor code.

use std::process::Command;
use std::time::Instant;

use crate::common::{TestContext, describe, repo_root};
use crate::pack::{channel_url, spark_driver_venv, system_venv_model};

const JOB: &str = include_str!("spark_udf/job.py");

/// Two models with conflicting environments (the sklearn fixture written by MLflow 3.17.2:
/// scikit-learn 1.9.1, pandas 3.1.1; the matrix's MLflow 2.22.5 one: scikit-learn 1.8.0, pandas
/// 2.3.3) scored in one `DataFrame` give what MLflow's `spark_udf(env_manager="uv")` gives on the
/// same rows and what `mlflow models predict` gave (the fixtures' expected outputs), with the
/// columns as arguments, a struct input and an array result type; a scoring process killed
/// during a job fails its task, which Spark retries, and the answer is still right; each
/// environment and model is unpacked once per node into the executors' cache (`spark-v1/`),
/// reused by later UDFs, and unpacked again when a killed unpack left it incomplete; the
/// driver-side errors come at UDF creation.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the Spark test reports its timings and evidence in the test output"
)]
#[expect(clippy::too_many_lines, reason = "one Spark session, one story")]
fn spark_udf_scores_conflicting_models_like_mlflow_and_survives_a_killed_scoring_process() {
    let started = Instant::now();
    let driver = spark_driver_venv();
    let driver_python = driver.join("bin/python");
    let ctx = TestContext::new().online();
    let models = serde_json::json!({
        "mlflow_3_17": repo_root().join("fixtures/models/sklearn-iris"),
        "mlflow_2_22": repo_root().join("fixtures/matrix/mlflow-2.22.5/models/sklearn-iris"),
    });
    let no_mlflow = ctx.model(
        "no-mlflow",
        &[(
            "python_env.yaml",
            "python: 3.11.7\nbuild_dependencies: []\ndependencies: []\n",
        )],
    );
    let config = serde_json::json!({
        "models": models,
        "input": repo_root().join("fixtures/inputs/sklearn-iris/dataframe_split.json"),
        "pyfunc_env_args": [
            "--python-source", "conda", "--mirror", format!("conda-forge={}", channel_url()),
        ],
        "missing": ctx.path().join("no-such-model"),
        "unpackable": system_venv_model(&ctx),
        "no_mlflow": no_mlflow,
        "node_cache": ctx.path().join("node-cache"),
    });
    let job = ctx.path().join("job.py");
    fs_err::write(&job, JOB).unwrap();

    let spark_home =
        fs_err::canonicalize(driver.join("lib/python3.11/site-packages/pyspark")).unwrap();
    let work = spark_home.join("work");
    // Only this test's application's work dir is removed afterwards (other Spark tests may run
    // theirs in the same `work/`).
    let mut cleanup = SparkAppDirs {
        work,
        apps: Vec::new(),
    };
    // MLflow's `env_manager="uv"` creates a venv with `uv venv --python 3.11.7` on each
    // executor: pyenv's 3.11.7 on PATH is the interpreter uv finds (it cannot download one).
    let pyenv_python = env_test::pyenv_root().unwrap().join("versions/3.11.7/bin");
    let path = format!(
        "{}:{}:{}",
        driver.join("bin").display(),
        pyenv_python.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let job_started = Instant::now();
    let output = ctx
        .command_for(&driver_python)
        .arg(&job)
        .arg(config.to_string())
        .env("PATH", path)
        .env("PYTHONPATH", repo_root().join("python"))
        .env("PYFUNC_ENV_BIN", env!("CARGO_BIN_EXE_pyfunc-env"))
        .env("PYSPARK_PYTHON", &driver_python)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env("UV_CACHE_DIR", crate::common::shared_uv_cache())
        .env("MLFLOW_ENV_ROOT", ctx.path().join("mlflow-envs"))
        // MLflow's UDF gives up on a batch after 60 s by default: on a loaded 2-core machine
        // its scoring server (started per task) can take longer to load the model.
        .env("MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT", "1200")
        .env("PYFUNC_ENV_CACHE_DIR", crate::pack::spark_test_cache())
        .env_remove("SPARK_HOME")
        .output()
        .unwrap();
    let job_secs = job_started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    cleanup.apps = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("APP "))
        .map(str::to_owned)
        .collect();
    assert!(output.status.success(), "{}", describe(&output));
    let result: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result: {}", describe(&output))),
    )
    .unwrap();
    eprintln!("spark_udf job took {job_secs:.1}s: {result:#}");
    for line in stdout.lines().filter(|l| l.starts_with("TIMING ")) {
        eprintln!("{line}");
    }
    assert!(
        result["pyfunc_env_file"]
            .as_str()
            .unwrap()
            .starts_with(repo_root().join("python").to_str().unwrap()),
        "{result:#}"
    );

    // 1. Each model: ours equals MLflow's (uv) and the fixture's `mlflow models predict`
    // output, for every way of calling it.
    let columns = &result["columns"];
    let expected: Vec<i64> = vec![0, 0, 1, 1, 2, 2];
    let environments = &result["environments"];
    assert_ne!(
        environments["mlflow_3_17"]["key"], environments["mlflow_2_22"]["key"],
        "the two models must have different environments: {environments:#}"
    );
    for name in ["mlflow_3_17", "mlflow_2_22"] {
        let ours = &columns[format!("ours_{name}")];
        assert_eq!(ours, &columns[format!("theirs_{name}")], "{name}");
        assert_eq!(ours, &columns[format!("ours_struct_{name}")], "{name}");
        // The output schema is an int64 tensor, so the inferred type is array<bigint>.
        let wrapped: Vec<Vec<i64>> = expected.iter().map(|p| vec![*p]).collect();
        assert_eq!(ours, &serde_json::json!(wrapped), "{name}");
        let array = &columns[format!("ours_array_{name}")];
        if name == "mlflow_3_17" {
            assert_eq!(array, &columns[format!("theirs_array_{name}")], "{name}");
        }
        let doubles: Vec<Vec<f64>> = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0].map(|p| vec![p]).to_vec();
        assert_eq!(array, &serde_json::json!(doubles), "{name}");
    }

    // The trace of the comparison job (`PYFUNC_ENV_SPARK_TRACE`): each Python worker started
    // its scoring processes while it unpickled the UDF, before pandas (the UDF's type hints
    // are not pickled), so before its first batch reached `score` ("task start"); each
    // process of the skops model imported skops before mlflow, and loaded the model.
    let trace: Vec<(String, String)> = result["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap().to_owned(),
                l[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let steps = |pid: &str| -> Vec<&str> {
        trace
            .iter()
            .filter(|(p, _)| p == pid)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    let workers: std::collections::BTreeSet<&str> = trace
        .iter()
        .filter(|(_, s)| s == "task start")
        .map(|(p, _)| p.as_str())
        .collect();
    assert!(!workers.is_empty(), "{trace:#?}");
    for worker in &workers {
        let steps = steps(worker);
        let task_start = steps.iter().position(|s| *s == "task start").unwrap();
        assert!(
            steps[..task_start]
                .iter()
                .any(|s| s.starts_with("udf unpickled, pandas ")),
            "worker {worker}: {steps:#?}"
        );
        assert!(
            steps[..task_start]
                .iter()
                .any(|s| s.starts_with("scoring process spawned: ")),
            "worker {worker}: {steps:#?}"
        );
    }
    // A new worker unpickles our UDF first (the first column): a worker that ran MLflow's UDF
    // before has pandas already.
    assert!(
        trace
            .iter()
            .any(|(_, s)| s == "udf unpickled, pandas not imported yet"),
        "{trace:#?}"
    );
    let spawned: Vec<(String, bool)> = trace
        .iter()
        .filter_map(|(_, s)| s.strip_prefix("scoring process spawned: pid "))
        .map(|rest| {
            let (pid, model) = rest.split_once(" for ").unwrap();
            (
                pid.to_owned(),
                model.contains("fixtures/models/sklearn-iris"),
            )
        })
        .collect();
    assert!(spawned.iter().any(|(_, skops)| *skops), "{trace:#?}");
    for (pid, skops) in &spawned {
        let steps = steps(pid);
        assert!(
            steps.contains(&"scoring process: model loaded"),
            "{pid}: {trace:#?}"
        );
        assert_eq!(
            steps.contains(&"scoring process: imported skops.io before mlflow"),
            *skops,
            "{pid}: {trace:#?}"
        );
    }

    // 2. The killed scoring process: its task failed with our message (Spark logs the lost
    // task on the driver), was retried, and every row is right.
    assert_eq!(result["died_unused_kept"], true, "{result:#}");
    assert_eq!(result["killed"].as_array().unwrap().len(), 1, "{result:#}");
    assert!(
        stderr.contains("was killed by signal 9 (SIGKILL)"),
        "no lost task in the driver's log: {stderr}"
    );
    let after: Vec<Vec<i64>> = (0..60).map(|i| vec![expected[i % 6]]).collect();
    assert_eq!(result["after_kill"], serde_json::json!(after));

    // 2b. The node-local cache: both executors needed both environments and both models, and
    // each was unpacked once (the lock), complete, with nothing half-written left over.
    let names = &result["names"];
    let unpacks = |state: &serde_json::Value, name: &serde_json::Value| {
        let name = name.as_str().unwrap();
        state["log"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|line| {
                let line = line.as_str().unwrap();
                line.contains(&format!(" {name} ")) && line.contains(" unpacked ")
            })
            .count()
    };
    // 2b. Shipping (the driver's file server, the default): no archive in Spark's fetch dirs,
    // neither on the driver nor on an executor. The warm node (the first model's environment
    // already in its cache, as an earlier application leaves it) fetched nothing for it; the
    // cold one (the second model's) fetched it from the driver, once, into its cache.
    let listing = |fetched: &serde_json::Value| -> Vec<(String, Vec<String>)> {
        let fetched = fetched.as_object().unwrap();
        assert!(fetched.len() >= 2, "{fetched:#?}");
        fetched
            .iter()
            .map(|(place, entries)| {
                let entries = entries.as_array().unwrap().iter();
                (
                    place.clone(),
                    entries.map(|e| e.as_str().unwrap().to_owned()).collect(),
                )
            })
            .collect()
    };
    let shipped_file = |name: &serde_json::Value| {
        format!(
            "{}.pyfunc-env-archive",
            name.as_str().unwrap().replace('+', "_")
        )
    };
    for (place, entries) in listing(&result["fetched"]) {
        for model in ["mlflow_3_17", "mlflow_2_22"] {
            for what in ["env", "model"] {
                let file = shipped_file(&names[model][what]);
                assert!(
                    !entries.contains(&file),
                    "{place} fetched {file} over Spark's file server: {entries:?}"
                );
            }
        }
    }
    assert_eq!(
        result["warm_env"], names["mlflow_3_17"]["env"],
        "{result:#}"
    );
    let log_lines = |state: &serde_json::Value, name: &serde_json::Value| -> Vec<String> {
        let name = name.as_str().unwrap();
        state["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|line| line.as_str().unwrap().to_owned())
            .filter(|line| line.contains(&format!(" {name} ")))
            .collect()
    };
    let first = &result["node_cache_first"];
    let warm = log_lines(first, &names["mlflow_3_17"]["env"]);
    assert!(
        warm.len() == 1 && !warm[0].contains("fetched"),
        "the warm node fetched the environment it had: {warm:?}"
    );
    let cold = log_lines(first, &names["mlflow_2_22"]["env"]);
    assert!(
        cold.len() == 1 && cold[0].contains(" fetched in "),
        "the cold node did not fetch the environment from the driver: {cold:?}"
    );
    // The fallback, `spark.pyfunc_env.shipWith=addFile` (the second UDFs): Spark's copies, as
    // files, nothing unpacked (Spark untars a `.tar.gz` given to `addFile`).
    for (place, entries) in listing(&result["fetched_with_add_file"]) {
        for unpacked in ["bin", "lib", "MLmodel"] {
            assert!(
                !entries.iter().any(|e| e == unpacked),
                "Spark unpacked a shipped archive in the {place}: {entries:?}"
            );
        }
        if place == "driver" {
            for model in ["mlflow_3_17", "mlflow_2_22"] {
                let file = shipped_file(&names[model]["model"]);
                assert!(entries.contains(&file), "{place}: {entries:?}");
            }
        }
    }
    let second = &result["node_cache_second"];
    for model in ["mlflow_3_17", "mlflow_2_22"] {
        for what in ["env", "model"] {
            let name = &names[model][what];
            let dir = &first["dirs"][name.as_str().unwrap()];
            assert_eq!(dir["complete"], true, "{model} {what}: {first:#}");
            assert_eq!(unpacks(first, name), 1, "{model} {what}: {first:#}");
        }
    }
    assert_eq!(first["tmp"], serde_json::json!([]), "{first:#}");
    // Then the second UDFs: what was intact is reused (the same directory, no new unpack);
    // the model directory without its marker and the one left only as a temporary directory
    // are unpacked again, and the leftovers are gone.
    for (model, what, unpacked_again) in [
        ("mlflow_3_17", "env", false),
        ("mlflow_3_17", "model", true),
        ("mlflow_2_22", "env", false),
        ("mlflow_2_22", "model", true),
    ] {
        let name = &names[model][what];
        let key = name.as_str().unwrap();
        let context = format!("{model} {what}: {first:#} then {second:#}");
        assert_eq!(second["dirs"][key]["complete"], true, "{context}");
        assert_eq!(
            unpacks(second, name),
            if unpacked_again { 2 } else { 1 },
            "{context}"
        );
        if !unpacked_again {
            assert_eq!(
                second["dirs"][key]["inode"], first["dirs"][key]["inode"],
                "{context}"
            );
        }
    }
    assert_eq!(second["tmp"], serde_json::json!([]), "{second:#}");
    assert_eq!(result["second_after_damage"], serde_json::json!(after));

    // 3. Driver-side errors, one each, at UDF creation.
    let errors = &result["errors"];
    let error = |case: &str| {
        errors[case]
            .as_str()
            .unwrap_or_else(|| panic!("{case}: no error"))
    };
    assert!(
        error("missing_model").starts_with("SparkUdfError: Preparing the environment of model"),
        "{errors:#}"
    );
    assert!(
        error("missing_model").contains("no-such-model"),
        "{errors:#}"
    );
    assert!(
        error("unpackable").contains("which the archive cannot contain"),
        "{errors:#}"
    );
    assert!(
        error("unpackable").contains("--python-source conda"),
        "{errors:#}"
    );
    assert!(
        error("no_mlflow").contains("has no mlflow")
            && error("no_mlflow").contains("--install-mlflow"),
        "{errors:#}"
    );
    assert!(
        error("result_type")
            .starts_with("SparkUdfError: Invalid 'spark_udf' result type: BinaryType()"),
        "{errors:#}"
    );
    assert!(
        error("prebuilt_env_uri").starts_with("SparkUdfError: `prebuilt_env_uri` is not supported"),
        "{errors:#}"
    );
    eprintln!(
        "spark_udf test: {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
}

/// Removes the work dirs (executor logs, fetched files) of the named Spark applications.
struct SparkAppDirs {
    work: std::path::PathBuf,
    apps: Vec<String>,
}

impl Drop for SparkAppDirs {
    fn drop(&mut self) {
        for app in &self.apps {
            let _ = fs_err::remove_dir_all(self.work.join(app));
        }
    }
}

/// The same archive is reused: `pack --cached` packs an environment once.
#[test]
fn pack_cached_reuses_the_archive_of_an_environment() {
    let ctx = TestContext::new();
    let model = crate::pack::conda_model(&ctx);
    let pack = || {
        let output = ctx
            .command()
            .arg("pack")
            .arg(&model)
            .args(["--env-manager", "conda"])
            .args(crate::common::mirror_args(&channel_url()))
            .args(["--for", "spark", "--cached", "--json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        crate::common::json(&output)
    };
    let first = pack();
    let second = pack();
    assert_eq!(first["reused"], false, "{first:#}");
    assert_eq!(second["reused"], true, "{second:#}");
    assert_eq!(first["archive"], second["archive"]);
    let archive = std::path::PathBuf::from(first["archive"].as_str().unwrap());
    assert!(
        archive.starts_with(ctx.cache_dir.join("packs-v1")),
        "{first:#}"
    );
    assert_eq!(first["model"], serde_json::json!(model));
    assert_eq!(first["python_minor"], "3.11");
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&listing.stdout).contains("bin/python3.11"));
}

/// A killed unpack's temporary directory whose name a new worker would choose again (the same
/// PID, as in a restarted container) is removed before the unpack, not tripped over: the new
/// worker unpacks and the leftover is gone.
#[test]
fn spark_node_cache_unpack_replaces_a_leftover_with_its_own_pid() {
    let ctx = TestContext::new();
    let script = r#"
import os, sys, tarfile
sys.path.insert(0, sys.argv[1])
from pyfunc_env._spark_executor import unpack_once
work = sys.argv[2]
os.makedirs(os.path.join(work, "src"))
with open(os.path.join(work, "src", "MLmodel"), "w") as f:
    f.write("flavors: {}\n")
archive = os.path.join(work, "model.tar.gz")
with tarfile.open(archive, "w:gz") as tar:
    tar.add(os.path.join(work, "src", "MLmodel"), arcname="MLmodel")
cache = os.path.join(work, "spark-v1")
leftover = os.path.join(cache, ".tmp-m-%d" % os.getpid())
os.makedirs(os.path.join(leftover, "half"))
target = unpack_once(archive, cache, "m")
assert os.path.isfile(os.path.join(target, "MLmodel")), os.listdir(target)
assert sorted(e for e in os.listdir(cache) if e.startswith(".tmp-")) == [], os.listdir(cache)
print("ok")
"#;
    let output = Command::new(spark_driver_venv().join("bin/python"))
        .arg("-c")
        .arg(script)
        .arg(repo_root().join("python"))
        .arg(ctx.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok");
}
