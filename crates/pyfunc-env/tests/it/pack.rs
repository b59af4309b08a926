//! `pack` and `unpack`: archives of real environments (a conda-mode one from the local test
//! channel, offline) extracted with plain `tar` somewhere else, moved, and run; the cached
//! environment untouched; the refusals; and the Spark proof (`spark_*`, needs PyPI and Java).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::common::{
    TestContext, describe, fixture, json, mirror_args, pyfunc_env_snapshot, repo_root, stderr,
};

/// The conda-mode model of `create.rs`: python, numpy (compiled), tinypkg (noarch, with a
/// console script) and the `wheel` wheel from the local wheel directory, offline.
pub fn conda_model(ctx: &TestContext) -> PathBuf {
    let wheels = env_test::wheel_dir().unwrap();
    let conda = format!(
        "name: test\nchannels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- numpy=1.26\n- tinypkg\n- pip\n- pip:\n  - --no-index\n  - --find-links file://{}\n  - wheel==0.45.1\n",
        wheels.display()
    );
    ctx.model("m", &[("conda.yaml", &conda)])
}

pub fn channel_url() -> String {
    env_test::test_channel().unwrap().file_url().to_string()
}

/// `pyfunc-env <command> MODEL --env-manager conda --mirror ... <extra>`.
fn conda_command(ctx: &TestContext, command: &str, model: &Path, extra: &[&str]) -> Output {
    ctx.command()
        .arg(command)
        .arg(model)
        .args(["--env-manager", "conda"])
        .args(mirror_args(&channel_url()))
        .args(extra)
        .output()
        .unwrap()
}

/// Every path under `root` with its type, size, mode and mtime: equal before and after means
/// nothing was written, touched, added or removed.
fn tree_state(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let metadata = fs_err::symlink_metadata(entry.path()).unwrap();
            if metadata.is_dir() {
                stack.push(entry.path());
            }
            out.push(format!(
                "{} {:o} {} {}.{}",
                entry.path().strip_prefix(root).unwrap().display(),
                metadata.mode(),
                metadata.len(),
                metadata.mtime(),
                metadata.mtime_nsec()
            ));
        }
    }
    out.sort();
    out
}

fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let file_type = entry.file_type().unwrap();
            if file_type.is_dir() {
                stack.push(entry.path());
            } else if file_type.is_file() {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

fn run_in(dir: &Path, program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// Plain `tar -xf` (GNU tar), as Spark's executors and users do.
fn untar(archive: &Path, into: &Path) {
    fs_err::create_dir_all(into).unwrap();
    let output = Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(into)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}

/// Checks that an extracted environment is complete, relocated and trimmed.
fn assert_relocated_environment(env: &Path) {
    let env = fs_err::canonicalize(env).unwrap();
    // The interpreter and every kind of package run, from the new place.
    let said = run_in(
        Path::new("/"),
        &env.join("bin/python"),
        &[
            "-c",
            "import numpy, tinypkg, wheel, sys; print(sys.prefix, numpy.__version__, wheel.__version__)",
        ],
    );
    assert_eq!(said, format!("{} 1.26.4 0.45.1", env.display()));
    // Console scripts (conda noarch entry point, pip entry point) run through the trampoline,
    // also through a symlink from elsewhere.
    let hello = env.join("bin/tinypkg-hello");
    assert!(
        fs_err::read_to_string(&hello)
            .unwrap()
            .starts_with("#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/python3.11 \"$0\" \"$@\"\n' '''\n")
    );
    assert_eq!(run_in(Path::new("/"), &hello, &[]), "tinypkg 1.2.0 says 42");
    let link = env.parent().unwrap().join("hello-link");
    let _ = fs_err::remove_file(&link);
    fs_err::os::unix::fs::symlink(&hello, &link).unwrap();
    assert_eq!(run_in(Path::new("/"), &link, &[]), "tinypkg 1.2.0 says 42");
    assert_eq!(
        run_in(Path::new("/"), &env.join("bin/wheel"), &["version"]),
        "wheel 0.45.1"
    );

    // Bytecode: present for the standard library, conda packages and pip packages, and all
    // of it unchecked-hash (flags 0b01), so extraction mtimes cannot make it stale.
    for pyc in [
        "lib/python3.11/__pycache__/os.cpython-311.pyc",
        "lib/python3.11/site-packages/numpy/__pycache__/__init__.cpython-311.pyc",
        "lib/python3.11/site-packages/tinypkg/__pycache__/__init__.cpython-311.pyc",
        "lib/python3.11/site-packages/wheel/__pycache__/__init__.cpython-311.pyc",
    ] {
        assert!(env.join(pyc).is_file(), "{pyc} is missing");
    }
    let files = files_under(&env);
    let pycs: Vec<&PathBuf> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "pyc"))
        .collect();
    assert!(pycs.len() > 500, "{} pyc files", pycs.len());
    for pyc in &pycs {
        let bytes = fs_err::read(pyc).unwrap();
        assert_eq!(
            &bytes[4..8],
            &[1, 0, 0, 0],
            "{} is not unchecked-hash",
            pyc.display()
        );
    }

    // Left out: dev files, GUI and installers, tests, pyfunc-env's own files.
    for gone in [
        "include",
        "lib/pkgconfig",
        "lib/python3.11/ensurepip",
        "lib/python3.11/site-packages/numpy/core/tests",
        ".pyfunc-env",
        "CACHEDIR.TAG",
    ] {
        assert!(!env.join(gone).exists(), "{gone} was packed");
    }
    assert!(
        !files
            .iter()
            .any(|f| f.components().any(|c| c.as_os_str() == "tests")),
        "a tests directory was packed"
    );
    assert!(env.join("conda-meta").is_dir());

    // No absolute library search path in any ELF file (checked with patchelf, independently of
    // pack's own check).
    // Executables and shared objects (e_type 2 or 3, little endian), not `.o` files.
    let elves: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            let bytes = fs_err::read(f).unwrap();
            bytes.starts_with(b"\x7fELF") && bytes.len() > 17 && matches!(bytes[16], 2 | 3)
        })
        .collect();
    assert!(elves.iter().any(|f| f.ends_with("lib/libpython3.so")));
    let output = Command::new("patchelf")
        .arg("--print-rpath")
        .args(&elves)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        for entry in line.split(':').filter(|e| !e.is_empty()) {
            assert!(entry.starts_with("$ORIGIN"), "absolute RUNPATH {entry}");
        }
    }
}

#[test]
fn conda_env_packs_and_runs_after_extraction_and_a_move() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let created = json(&conda_command(&ctx, "create", &model, &["--json"]));
    let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
    let before = tree_state(&prefix);

    let archive = ctx.path().join("env.tar.gz");
    let output = conda_command(
        &ctx,
        "pack",
        &model,
        &["-o", archive.to_str().unwrap(), "--json"],
    );
    let report = json(&output);
    let text = ctx.filter(&stderr(&output));
    assert!(
        text.starts_with("Packing [CACHE_DIR]/envs-v1/[KEY] into [TEMP_DIR]/env.tar.gz\nPacked Python 3.11.7 into [TEMP_DIR]/env.tar.gz (tar.gz, "),
        "{text}"
    );
    assert!(text.contains("\nLeft out: tests "), "{text}");
    assert_eq!(report["format"], "tar.gz");
    assert_eq!(report["python_minor"], "3.11");
    let rewritten: Vec<&str> = report["scripts_rewritten"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        rewritten.contains(&"bin/tinypkg-hello") && rewritten.contains(&"bin/wheel"),
        "{rewritten:?}"
    );
    assert!(archive.is_file());

    // The cached environment is exactly as it was, and nothing is left in the staging area.
    assert_eq!(
        tree_state(&prefix),
        before,
        "pack modified the cached environment"
    );
    assert!(
        fs_err::read_dir(ctx.cache_dir.join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "pack left files in the cache's tmp/"
    );

    // gzip header, tar with `bin/` at the root, numeric owner 0, relative symlinks.
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(
        listing
            .lines()
            .any(|l| l.ends_with(" bin/python -> python3.11")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .all(|l| l.split_whitespace().nth(1) == Some("0/0"))
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" bin/python3.11"))
    );

    // Extract with plain tar, move the directory, run it.
    let extracted = ctx.path().join("extracted");
    untar(&archive, &extracted);
    let moved = ctx.path().join("elsewhere/deeper/env");
    fs_err::create_dir_all(moved.parent().unwrap()).unwrap();
    fs_err::rename(&extracted, &moved).unwrap();
    assert_relocated_environment(&moved);

    // Deterministic: a second pack, uncompressed, holds exactly the bytes of the first
    // archive's tar stream.
    let tar = ctx.path().join("env.tar");
    let output = conda_command(&ctx, "pack", &model, &["-o", tar.to_str().unwrap(), "-q"]);
    assert!(output.status.success(), "{}", describe(&output));
    let gunzipped = Command::new("gzip")
        .arg("-dc")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(gunzipped.status.success());
    assert!(
        gunzipped.stdout == fs_err::read(&tar).unwrap(),
        "two packs differ"
    );
    assert_eq!(tree_state(&prefix), before);
}

#[test]
fn zip_with_model_and_executor_preflight_round_trips_through_unpack() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let archive = ctx.path().join("env.zip");
    let driver = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.12.1/bin/python3.12");
    // Preflight (the driver's minor version, pandas/pyarrow for mapInPandas), then the recipe.
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .arg("pack")
            .arg(&model)
            .args(["--env-manager", "conda"])
            .args(mirror_args(&channel_url()))
            .args([
                "-o",
                archive.to_str().unwrap(),
                "--for",
                "spark=4.3.0",
                "--with-model",
            ])
            .env("PYSPARK_DRIVER_PYTHON", &driver),
        @r#"
        exit_code: 0 (success)
        ----- stdout -----

        ----- stderr -----
        Created conda environment in [TIME]: [CACHE_DIR]/envs-v1/[KEY]
        warning: The archive's Python is 3.11, the driver's is 3.12: PySpark refuses workers of another minor version (`PYTHON_VERSION_MISMATCH`). Run the driver with Python 3.11 (`PYSPARK_DRIVER_PYTHON`)
        warning: The archive has no pandas: `mapInPandas` and pandas UDFs (and so `mlflow.pyfunc.spark_udf`) need pandas >= 2.2.0 on the executors
        warning: The archive has no pyarrow: `mapInPandas` and pandas UDFs (and so `mlflow.pyfunc.spark_udf`) need pyarrow >= 18.0.0 on the executors
        Packing [CACHE_DIR]/envs-v1/[KEY] into [TEMP_DIR]/env.zip
        Packed Python 3.11.7 into [TEMP_DIR]/env.zip (zip, [SIZE]; [N] files, [SIZE] unpacked) in [TIME]
        Left out: tests [SIZE], headers, static libraries, docs [SIZE], IDLE, tkinter, ensurepip [SIZE], timestamp bytecode (replaced) [SIZE]
        Use it with spark-submit (YARN, Kubernetes, standalone):
          PYSPARK_DRIVER_PYTHON=python3.11 spark-submit \
              --archives env.zip#env \
              --conf spark.pyspark.python=./env/bin/python3.11 \
              app.py
        The driver needs its own Python 3.11 with pyspark, pandas and pyarrow
        (`PYSPARK_DRIVER_PYTHON` or `--conf spark.pyspark.driver.python=...`).
        From Python, set the variable before the session starts (`spark.pyspark.python` given to the
        builder is ignored when the driver is a plain `python app.py`):
          os.environ["PYSPARK_PYTHON"] = "./env/bin/python3.11"
          spark = SparkSession.builder.config("spark.archives", "env.zip#env").getOrCreate()
        In local[N] mode the workers start in the driver's working directory, where `./env` does not
        exist: use `--master local-cluster[...]`, or unpack the archive (`pyfunc-env unpack`) and set
        PYSPARK_PYTHON to the absolute path of its bin/python3.11.
        The model is in the archive: load it on the executors with
          mlflow.pyfunc.load_model(os.path.join(sys.prefix, "model"))
    "#
    );

    let target = ctx.path().join("unpacked");
    let output = ctx
        .command()
        .arg("unpack")
        .arg(&archive)
        .arg(&target)
        .arg("--json")
        .output()
        .unwrap();
    let report = json(&output);
    let target = fs_err::canonicalize(&target).unwrap();
    assert_eq!(report["prefix"], target.display().to_string());
    assert_eq!(report["format"], "zip");
    assert_eq!(report["has_model"], true);
    let text = ctx.filter(&stderr(&output));
    assert!(text.starts_with("Unpacked "), "{text}");
    assert!(
        text.contains("Python 3.11.7 runs there: sys.prefix is [TEMP_DIR]/unpacked\nThe model is in [TEMP_DIR]/unpacked/model\n"),
        "{text}"
    );
    // zip stores symlinks as copies, modes kept.
    let python = target.join("bin/python");
    assert!(fs_err::symlink_metadata(&python).unwrap().is_file());
    assert_eq!(
        fs_err::metadata(&python).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs_err::read(target.join("model/conda.yaml")).unwrap(),
        fs_err::read(model.join("conda.yaml")).unwrap()
    );
    assert_relocated_environment(&target);

    // Into a non-empty directory: refused.
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command().arg("unpack").arg(&archive).arg(&target),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Failed to unpack `[TEMP_DIR]/env.zip` into `[TEMP_DIR]/unpacked`
          Caused by: `[TEMP_DIR]/unpacked` exists and is not empty

        hint: Unpack into a new or empty directory
    "#
    );
}

/// A virtualenv-mode model with no packages: `--python-source system` makes a venv of this
/// machine's interpreter, which no archive can contain.
pub fn system_venv_model(ctx: &TestContext) -> PathBuf {
    ctx.model(
        "venv",
        &[(
            "python_env.yaml",
            "python: 3.11.7\nbuild_dependencies: []\ndependencies: []\n",
        )],
    )
}

#[test]
fn a_virtualenv_of_a_system_python_is_refused() {
    let ctx = TestContext::new();
    let model = system_venv_model(&ctx);
    let archive = ctx.path().join("env.tar.gz");
    pyfunc_env_snapshot!(
        ctx.filters(),
        ctx.command()
            .arg("pack")
            .arg(&model)
            .args(["--python-source", "system", "-o"])
            .arg(&archive),
        @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        Created virtualenv environment in [TIME]: [CACHE_DIR]/envs-v1/[KEY]
        error: Failed to pack the virtualenv environment of `[TEMP_DIR]/models/venv`
          Caused by: `[CACHE_DIR]/envs-v1/[KEY]` is a virtualenv made from the interpreter in `[PYENV_ROOT]/versions/3.11.7/bin`, which the archive cannot contain

        hint: Rebuild the environment with a Python from a conda channel, which puts the whole interpreter in the environment: add `--python-source conda` (or use `--env-manager conda`)
    "#
    );
    assert!(!archive.exists());
    assert!(
        !fs_err::read_dir(ctx.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-pack")),
        "a temporary archive was left behind"
    );
}

/// The library refuses what would break after extraction, naming the file: an absolute
/// RUNPATH into the environment (in the stable-ABI stub `libpython3.so`, easy to miss) or to
/// another directory that exists here, and absolute or escaping symlinks. An absolute RUNPATH
/// that exists nowhere here (a wheel's build-machine leftover) is only a warning.
#[test]
fn absolute_runpaths_and_symlinks_are_refused() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let created = json(&conda_command(
        &ctx,
        "create",
        &model,
        &["--json", "--no-compile"],
    ));
    let prefix = PathBuf::from(created["prefix"].as_str().unwrap());
    let options = env_pack::PackOptions {
        format: env_pack::Format::TarGz,
        compile: false,
        reuse_bytecode: false,
        keep_tests: false,
        exclude_distributions: Vec::new(),
        model: None,
        staging_dir: ctx.path().join("staging"),
        mtime: 0,
        compression_level: 1,
        full_prefix: false,
    };

    let copy = ctx.path().join("copy");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&prefix)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    // The copy packs as it is.
    env_pack::pack(&copy, &ctx.path().join("ok.tar.gz"), &options).unwrap();

    let stub = copy.join("lib/libpython3.so");
    let set_rpath = |value: &str| {
        let output = Command::new("patchelf")
            .args(["--set-rpath", value])
            .arg(&stub)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    };
    let copy_lib = copy.join("lib").display().to_string();
    let pyenv_lib = env_test::pyenv_root()
        .unwrap()
        .join("versions/3.11.7/lib")
        .display()
        .to_string();
    for value in [&copy_lib, &pyenv_lib] {
        set_rpath(&format!("$ORIGIN:{value}"));
        let error = env_pack::pack(&copy, &ctx.path().join("bad.tar.gz"), &options).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("`lib/libpython3.so` has the absolute library search path `{value}` (RUNPATH)")
        );
        assert!(!ctx.path().join("bad.tar.gz").exists());
    }
    set_rpath("$ORIGIN:/opt/_internal/cpython-3.11.13/lib");
    let report = env_pack::pack(&copy, &ctx.path().join("stale.tar.gz"), &options).unwrap();
    assert_eq!(
        report.warnings,
        [
            "1 ELF file(s) keep the library search path `/opt/_internal/cpython-3.11.13/lib`, which does not exist on this machine (a leftover of the machine that built the package; the loader skips it here and after extraction alike): `lib/libpython3.so`"
        ]
    );
    set_rpath("$ORIGIN");

    fs_err::os::unix::fs::symlink("/usr/bin/env", copy.join("bin/env")).unwrap();
    let error = env_pack::pack(&copy, &ctx.path().join("bad.tar.gz"), &options).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Symlink `bin/env` points to the absolute path `/usr/bin/env`"
    );
    fs_err::remove_file(copy.join("bin/env")).unwrap();
    fs_err::os::unix::fs::symlink("../../outside", copy.join("bin/up")).unwrap();
    let error = env_pack::pack(&copy, &ctx.path().join("bad.tar.gz"), &options).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Symlink `bin/up` points to `../../outside`, outside the environment"
    );
    fs_err::remove_file(copy.join("bin/up")).unwrap();

    // Distributions left out by name (`--for spark` leaves pyspark and py4j out): every file
    // its RECORD lists, including its console scripts, and its dist-info directory.
    let site = copy.join("lib/python3.11/site-packages");
    fs_err::create_dir_all(site.join("pyspark/sql")).unwrap();
    fs_err::write(site.join("pyspark/__init__.py"), "").unwrap();
    fs_err::write(site.join("pyspark/sql/__init__.py"), "").unwrap();
    fs_err::write(copy.join("bin/spark-submit"), "#!/bin/sh\n").unwrap();
    let dist_info = site.join("pyspark-4.3.0.dist-info");
    fs_err::create_dir_all(&dist_info).unwrap();
    fs_err::write(
        dist_info.join("METADATA"),
        "Name: pyspark\nVersion: 4.3.0\n",
    )
    .unwrap();
    fs_err::write(
        dist_info.join("RECORD"),
        "pyspark/__init__.py,,\npyspark/sql/__init__.py,,\n../../../bin/spark-submit,,\npyspark-4.3.0.dist-info/METADATA,,\npyspark-4.3.0.dist-info/RECORD,,\n",
    )
    .unwrap();
    let without = ctx.path().join("without-pyspark.tar");
    let report = env_pack::pack(
        &copy,
        &without,
        &env_pack::PackOptions {
            format: env_pack::Format::Tar,
            exclude_distributions: vec!["PySpark".into()],
            ..options.clone()
        },
    )
    .unwrap();
    assert_eq!(report.excluded.distributions.files, 5);
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&without)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.lines().any(|l| l == "bin/python3.11"), "{listing}");
    assert!(!listing.contains("pyspark"), "{listing}");
    assert!(!listing.contains("spark-submit"), "{listing}");
}

/// The driver side of the Spark proof: a venv of pyenv's CPython 3.11.7 with pyspark, pandas
/// and pyarrow (the driver needs both for `mapInPandas`), and mlflow for the comparison with
/// MLflow's own `spark_udf` (`spark_udf.rs`), built once and kept under the target directory
/// (pyspark is a 456 MB sdist that uv builds into a wheel the first time).
pub fn spark_driver_venv() -> PathBuf {
    crate::common::test_venv(
        "spark-driver-venv",
        &[
            "pyspark==4.3.0",
            "pandas>=2.2",
            "pyarrow>=18",
            "numpy",
            "mlflow==3.17.2",
        ],
    )
}

/// One pyfunc-env cache for the Spark tests (they run one at a time, nextest group `spark`):
/// the sklearn fixture's environment is built once per target directory, not once per test,
/// and `spark_udf`'s packed archives are reused by later runs.
pub fn spark_test_cache() -> PathBuf {
    env_test::target_dir().join("spark-test-cache")
}

/// What the driver runs: score the iris rows with `mapInPandas`, loading the model inside the
/// UDF from the archive (`--with-model`), and report where each executor's Python ran.
const SPARK_JOB: &str = r#"
import json, os, sys
import pandas as pd
from pyspark.sql import SparkSession

split = json.load(open(sys.argv[1]))["dataframe_split"]
spark = SparkSession.builder.appName("pyfunc-env-pack-test").getOrCreate()
print("APP " + spark.sparkContext.applicationId, flush=True)
pdf = pd.DataFrame(split["data"], columns=split["columns"])
pdf.insert(0, "row", range(len(pdf)))
df = spark.createDataFrame(pdf).repartition(2)

def score(batches):
    import os, sys
    import mlflow.pyfunc
    import sklearn
    model = mlflow.pyfunc.load_model(os.path.join(sys.prefix, "model"))
    for batch in batches:
        predictions = model.predict(batch.drop(columns=["row"]))
        yield pd.DataFrame({
            "row": batch["row"],
            "prediction": [int(p) for p in predictions],
            "executable": sys.executable,
            "real_executable": os.path.realpath(sys.executable),
            "prefix": sys.prefix,
            "cwd": os.getcwd(),
            "sklearn": sklearn.__file__,
            "pid": os.getpid(),
        })

schema = "row long, prediction long, executable string, real_executable string, prefix string, cwd string, sklearn string, pid long"
rows = sorted(df.mapInPandas(score, schema).collect(), key=lambda r: r.row)
print("RESULT " + json.dumps({
    "predictions": [r.prediction for r in rows],
    "executors": sorted({json.dumps({k: r[k] for k in ("executable", "real_executable", "prefix", "cwd", "sklearn")}) for r in rows}),
    "pids": sorted({r.pid for r in rows}),
    "driver_prefix": sys.prefix,
}), flush=True)
spark.stop()
"#;

/// Removes what a local-cluster application leaves in `$SPARK_HOME/work` (an unpacked copy of
/// the archive per application).
pub struct SparkWorkDirs {
    pub work: PathBuf,
    pub before: Vec<PathBuf>,
}

impl Drop for SparkWorkDirs {
    fn drop(&mut self) {
        for entry in fs_err::read_dir(&self.work).into_iter().flatten().flatten() {
            if !self.before.contains(&entry.path()) {
                let _ = fs_err::remove_dir_all(entry.path());
            }
        }
    }
}

/// The Spark proof: the sklearn-iris model's environment (Python 3.11.7 from the local conda
/// channel, its requirements from PyPI) packed with `--for spark --with-model`, shipped with
/// `spark-submit --archives env.tar.gz#env` to real executor JVMs (`local-cluster`), where a
/// `mapInPandas` UDF loads the model from the archive and scores exactly what MLflow predicted.
#[test]
#[expect(
    clippy::print_stderr,
    reason = "the Spark proof reports its timings and evidence in the test output"
)]
fn spark_submit_scores_the_sklearn_model_on_executors_with_the_packed_env() {
    let java = Command::new("java").arg("-version").output();
    assert!(
        java.is_ok_and(|o| o.status.success()),
        "Java (17 or 21) is needed on PATH for the Spark test"
    );
    let started = Instant::now();
    let driver = spark_driver_venv();
    let driver_python = driver.join("bin/python");
    eprintln!(
        "driver venv ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let ctx = TestContext::new().online();
    let archive = ctx.path().join("env.tar.gz");
    let pack_started = Instant::now();
    let output = ctx
        .command()
        .arg("pack")
        .arg(fixture("sklearn-iris"))
        .args(["--env-manager", "virtualenv", "--python-source", "conda"])
        .args(["--mirror", &format!("conda-forge={}", channel_url())])
        .args([
            "-o",
            archive.to_str().unwrap(),
            "--for",
            "spark",
            "--with-model",
            "--json",
        ])
        .env("PYSPARK_DRIVER_PYTHON", &driver_python)
        .env("PYFUNC_ENV_CACHE_DIR", spark_test_cache())
        .output()
        .unwrap();
    let report = json(&output);
    let text = stderr(&output);
    eprintln!(
        "pack (build included) took {:.1}s:\n{text}\n{report:#}",
        pack_started.elapsed().as_secs_f64()
    );
    // No preflight warning (Python 3.11 on both sides; pandas and pyarrow new enough); only
    // scipy's build-machine RUNPATH leftover is reported.
    for line in text.lines().filter(|l| l.starts_with("warning:")) {
        assert!(
            line.contains("which does not exist on this machine"),
            "{text}"
        );
    }
    assert!(
        text.contains("--conf spark.pyspark.python=./env/bin/python3.11"),
        "{text}"
    );

    let job = ctx.path().join("job.py");
    fs_err::write(&job, SPARK_JOB).unwrap();
    let input = repo_root().join("fixtures/inputs/sklearn-iris/dataframe_split.json");
    let expected: serde_json::Value = serde_json::from_slice(
        &fs_err::read(repo_root().join("fixtures/expected/sklearn-iris/dataframe_split.out"))
            .unwrap(),
    )
    .unwrap();

    // Canonical, as the executors report it: `target/spark-driver-venv` may be a symlink (a
    // worktree sharing main's venv).
    let spark_home =
        fs_err::canonicalize(driver.join("lib/python3.11/site-packages/pyspark")).unwrap();
    let work = spark_home.join("work");
    let _cleanup = SparkWorkDirs {
        before: fs_err::read_dir(&work)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default(),
        work,
    };
    let path = format!(
        "{}:{}",
        driver.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let submit_started = Instant::now();
    let output = Command::new(driver.join("bin/spark-submit"))
        .args(["--master", "local-cluster[1,2,1024]"])
        .arg("--archives")
        .arg(format!("{}#env", archive.display()))
        .args(["--conf", "spark.pyspark.python=./env/bin/python3.11"])
        .arg("--conf")
        .arg(format!(
            "spark.pyspark.driver.python={}",
            driver_python.display()
        ))
        .args(["--conf", "spark.ui.enabled=false"])
        .arg("--conf")
        .arg(format!(
            "spark.local.dir={}",
            ctx.path().join("spark-local").display()
        ))
        .arg(&job)
        .arg(&input)
        .current_dir(ctx.path())
        .env("PATH", path)
        .env("SPARK_LOCAL_IP", "127.0.0.1")
        .env_remove("PYTHONPATH")
        .env_remove("PYSPARK_PYTHON")
        .env_remove("PYSPARK_DRIVER_PYTHON")
        .env_remove("SPARK_HOME")
        .output()
        .unwrap();
    let submit_secs = submit_started.elapsed().as_secs_f64();
    assert!(output.status.success(), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .unwrap_or_else(|| panic!("no result: {}", describe(&output))),
    )
    .unwrap();
    eprintln!("spark-submit took {submit_secs:.1}s: {result:#}");

    // MLflow's predictions for the same rows.
    assert_eq!(result["predictions"], expected["predictions"]);
    // Every task ran on the archive's interpreter, unpacked by Spark on the executor: not the
    // driver's venv, and no symlink leading out of the unpacked archive.
    let driver_prefix = result["driver_prefix"].as_str().unwrap();
    for executor in result["executors"].as_array().unwrap() {
        let executor: serde_json::Value = serde_json::from_str(executor.as_str().unwrap()).unwrap();
        let prefix = executor["prefix"].as_str().unwrap();
        // `<SPARK_HOME>/work/app-<id>/<executor>/env`: the standalone worker's directory for
        // this application (SPARK_HOME is in the driver venv, pip's pyspark).
        let work = format!("{}/work/app-", spark_home.display());
        assert!(
            prefix.starts_with(&work) && prefix.ends_with("/env"),
            "{executor:#}"
        );
        assert_ne!(prefix, driver_prefix);
        for key in ["executable", "real_executable", "sklearn"] {
            let path = executor[key].as_str().unwrap();
            assert!(
                path.starts_with(&format!("{prefix}/")),
                "{key}: {executor:#}"
            );
        }
        // The worker started in the executor's working directory, where `./env` is.
        assert_eq!(
            executor["executable"],
            format!("{}/env/bin/python3.11", executor["cwd"].as_str().unwrap())
        );
    }
    eprintln!(
        "spark proof: {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
}

/// An environment with a saved manifest (`cache push` writes one) is packed from it: a file
/// the manifest does not list (added to the cached environment after it was built) is left out
/// with a warning, where a walk of the directory would pack it.
#[test]
fn pack_packs_what_the_saved_manifest_lists() {
    let ctx = TestContext::new();
    let model = conda_model(&ctx);
    let output = conda_command(&ctx, "create", &model, &["-q"]);
    assert!(output.status.success(), "{}", describe(&output));
    let remote = ctx.path().join("remote");
    fs_err::create_dir_all(&remote).unwrap();
    let pushed = ctx
        .command()
        .args(["cache", "push"])
        .arg(&model)
        .args(["--env-manager", "conda", "--remote-cache"])
        .arg(format!("file://{}", remote.display()))
        .args(mirror_args(&channel_url()))
        .output()
        .unwrap();
    assert!(pushed.status.success(), "{}", describe(&pushed));
    let envs: Vec<PathBuf> = fs_err::read_dir(ctx.cache_dir.join("envs-v1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    let [prefix] = envs.as_slice() else {
        panic!("{envs:?}")
    };
    assert!(prefix.join(".pyfunc-env/manifest.json").is_file());
    let stray = prefix.join("lib/python3.11/site-packages/stray_module.py");
    fs_err::write(&stray, "print('not part of the environment')\n").unwrap();

    let archive = ctx.path().join("env.tar");
    let output = conda_command(&ctx, "pack", &model, &["-o", archive.to_str().unwrap()]);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        stderr(&output).contains(
            "Left out 1 entries the environment's manifest does not list (added after it was built): `lib/python3.11/site-packages/stray_module.py`"
        ),
        "{}",
        describe(&output)
    );
    let listing = Command::new("tar")
        .arg("-tf")
        .arg(&archive)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.contains("lib/python3.11/site-packages/numpy/__init__.py"));
    assert!(!listing.contains("stray_module"), "{listing}");
    fs_err::remove_file(&stray).unwrap();
}

/// `--for` is checked before the model is opened or anything built: an unknown target names
/// the only one, a Spark version must start with a digit (exit 1, env-pack's `PackPolicy`).
#[test]
fn an_unknown_for_target_or_spark_version_is_refused_before_building() {
    let ctx = TestContext::new();
    let model = ctx.path().join("never-read");
    let pack = |target: &str| {
        let mut command = ctx.command();
        command
            .arg("pack")
            .arg(&model)
            .args(["--for", target, "-o", "env.tar.gz"]);
        command
    };
    pyfunc_env_snapshot!(ctx.filters(), pack("flink"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Unknown `--for` target `flink`

        hint: The only target is Spark: `--for spark` or `--for spark=3.5.1`
    "#);
    pyfunc_env_snapshot!(ctx.filters(), pack("spark=latest"), @r#"
        exit_code: 1 (failure)
        ----- stdout -----

        ----- stderr -----
        error: Invalid Spark version `latest` in `--for`; write e.g. `--for spark=3.5.1`
    "#);
}
