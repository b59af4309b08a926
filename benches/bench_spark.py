#!/usr/bin/env python3
"""Benchmark of `pyfunc_env.spark_udf` (issue 22) against `mlflow.pyfunc.spark_udf`.

100,000 rows through the sklearn fixture on `local-cluster[2,1,1024]` (real executor JVMs),
each run in a new Spark session (a new driver process), interleaved:
 1. end to end, UDF creation to collected result: pyfunc-env's UDF vs MLflow's
    `env_manager="uv"`, warm caches on both sides (pyfunc-env's environment and packed archive
    in its cache; MLflow's uv cache and its environment root, which MLflow reuses when present);
 2. once warm (the same job again in the same session, scoring processes or servers running):
    rows per second of pyfunc-env's UDF vs `env_manager="local"` (the floor: the model's
    packages installed in the executors' own Python, no environment at all) vs MLflow's uv.
Every run's predictions are checked against the model's own on the driver.
 3. once more with the executors' node-local cache emptied first (a new node: pyfunc-env's
    executors unpack the shipped environment before scoring), `--cold-runs` times.

Usage: python3 benches/bench_spark.py [--runs 3] [--rows 100000] [--bin target/release/pyfunc-env]
Needs Java 17, PyPI (once: two venvs under target/, the model's environment) and a built binary.
Session start (about 10-50 s here) is printed but not part of the comparison.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The fixture the Spark work was measured on; `--model` takes another iris classifier with the
# same four columns and an integer label (e.g. the held-out
# fixtures/matrix/mlflow-2.22.5/models/xgboost-iris).
MODEL = os.path.join(ROOT, "fixtures/models/sklearn-iris")
PYENV_311 = os.path.join(os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv")), "versions/3.11.7/bin")
DRIVER_PACKAGES = ["pyspark==4.3.0", "pandas>=2.2", "pyarrow>=18", "numpy", "mlflow==3.17.2"]

JOB = r'''
import json, sys, time
import numpy as np, pandas as pd
from pyspark.sql import SparkSession
mode, rows, model, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
t = time.perf_counter()
spark = (SparkSession.builder.master("local-cluster[2,1,1024]").config("spark.ui.enabled", "false")
         .getOrCreate())
session = time.perf_counter() - t
rng = np.random.default_rng(0)
pdf = pd.DataFrame(rng.uniform([4.3, 2.0, 1.0, 0.1], [7.9, 4.4, 6.9, 2.5], size=(rows, 4)),
                   columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
pdf.insert(0, "row", np.arange(rows))
df = spark.createDataFrame(pdf).repartition(2).cache()
df.count()
def job(udf):
    return np.array([r.p for r in sorted(df.select("row", udf(*pdf.columns[1:]).alias("p")).collect(), key=lambda r: r.row)])
t = time.perf_counter()
if mode == "pyfunc-env":
    from pyfunc_env import spark_udf
    udf = spark_udf(spark, model, result_type="long", env_manager="virtualenv", pyfunc_env_args=extra)
else:
    import mlflow.pyfunc
    udf = mlflow.pyfunc.spark_udf(spark, model, result_type="long", env_manager=mode)
created = time.perf_counter() - t
first = job(udf)
end_to_end = time.perf_counter() - t
t = time.perf_counter()
second = job(udf)
warm = time.perf_counter() - t
import os, pyspark
# The application's directory under the workers' work dir (pyspark's own SPARK_HOME), one per
# run, which the bench removes once the run is over: they piled up (8.3 GB over the bench and
# test runs of two sessions; with `shipWith=addFile` each holds a copy of every archive).
app_dir = os.path.join(os.path.dirname(pyspark.__file__), "work", spark.sparkContext.applicationId)
print("RESULT " + json.dumps({"session": session, "create": created, "end_to_end": end_to_end,
      "warm": warm, "first": first.tolist(), "same": bool((first == second).all()),
      "app_dir": app_dir}), flush=True)
spark.stop()
'''


def venv(path, packages, uv_cache):
    python = os.path.join(path, "bin", "python")
    marker = os.path.join(path, ".bench-" + "-".join(packages).replace("/", "_").replace(" ", "_"))
    if os.path.exists(marker):
        return python
    shutil.rmtree(path, ignore_errors=True)
    env = dict(os.environ, UV_CACHE_DIR=uv_cache)
    subprocess.run(["uv", "venv", "-q", "--python", os.path.join(PYENV_311, "python3.11"), path], check=True, env=env)
    subprocess.run(["uv", "pip", "install", "-q", "--python", python, *packages], check=True, env=env)
    open(marker, "w").close()
    return python


def run(mode, python, args, work, extra, retry=True):
    if mode == "pyfunc-env-cold":
        shutil.rmtree(os.path.join(work, "pyfunc-env-cache", "spark-v1"), ignore_errors=True)
        mode = "pyfunc-env"
    env = dict(os.environ)
    for name in ("PYTHONPATH", "VIRTUAL_ENV", "SPARK_HOME"):
        env.pop(name, None)
    env.update(
        PYTHONPATH=args.pyfunc_env_python,
        PYFUNC_ENV_BIN=args.bin,
        PYFUNC_ENV_CACHE_DIR=os.path.join(work, "pyfunc-env-cache"),
        PYFUNC_ENV_UV_CACHE_DIR=args.uv_cache,
        UV_CACHE_DIR=args.uv_cache,
        MLFLOW_ENV_ROOT=os.path.join(work, "mlflow-envs"),
        # MLflow's UDF gives up on a batch after 60 s by default: too short on a loaded machine.
        MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT="1200",
        PYSPARK_PYTHON=python,
        SPARK_LOCAL_IP="127.0.0.1",
        PATH=os.path.dirname(python) + ":" + PYENV_311 + ":" + os.environ["PATH"],
    )
    out = subprocess.run([python, "-c", JOB, mode, str(args.rows), args.model, json.dumps(extra)],
                         env=env, capture_output=True, text=True, cwd=work)
    line = next((l for l in out.stdout.splitlines() if l.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        if retry:
            # A shared machine: another Spark job's cleanup can remove this one's work dir.
            print("%s failed, running it again: %s" % (mode, out.stderr[-300:]), flush=True)
            return run(mode, python, args, work, extra, retry=False)
        sys.exit("%s failed:\n%s" % (mode, out.stderr[-4000:]))
    result = json.loads(line[len("RESULT "):])
    # After the driver has stopped: its executors are gone, so nothing writes there any more.
    shutil.rmtree(result.pop("app_dir"), ignore_errors=True)
    return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    ap.add_argument("--uv-cache", default=os.path.join(ROOT, "target/test-uv-cache"))
    ap.add_argument("--work", default=None, help="keep caches here (default: a temporary dir)")
    ap.add_argument("--driver-python", default=None, help="a Python with %s (default: a venv under target/)" % " ".join(DRIVER_PACKAGES))
    ap.add_argument("--pyfunc-env-args", default="[]", help="JSON list for spark_udf's pyfunc_env_args")
    ap.add_argument("--pyfunc-env-python", default=os.path.join(ROOT, "python"), help="where `pyfunc_env` is imported from (e.g. an older version's python/)")
    ap.add_argument("--model", default=MODEL, help="an iris classifier: four double columns, an integer label (default: the sklearn fixture)")
    ap.add_argument("--cold-runs", type=int, default=1, help="runs with the executors' node-local cache emptied first")
    args = ap.parse_args()
    args.pyfunc_env_python = os.path.abspath(args.pyfunc_env_python)
    args.bin = os.path.abspath(args.bin)
    args.model = os.path.abspath(args.model)
    if args.driver_python:
        args.driver_python = os.path.abspath(args.driver_python)
    work = args.work or tempfile.mkdtemp(prefix="pfe-bench-spark-")
    os.makedirs(work, exist_ok=True)
    extra = json.loads(args.pyfunc_env_args)

    driver = args.driver_python or venv(os.path.join(ROOT, "target/bench-spark-driver"), DRIVER_PACKAGES, args.uv_cache)
    requirements = [l.strip() for l in open(os.path.join(args.model, "requirements.txt")) if l.strip()]
    local = venv(os.path.join(ROOT, "target/bench-spark-local"), ["pyspark==4.3.0", *requirements], args.uv_cache)

    # Warm-up: pyfunc-env builds and packs the environment, MLflow builds its uv environments.
    # pyfunc-env's warm-up run is also a cold node's (its node-local cache starts empty).
    def warm_up(mode, python):
        result = run(mode, python, args, work, extra)
        print("warm-up %s %s" % (mode, json.dumps({k: v for k, v in result.items() if k != "first"})), flush=True)
        return result["first"]

    expected = warm_up("pyfunc-env", driver)
    for mode, python in (("uv", driver), ("local", local)):
        if warm_up(mode, python) != expected:
            sys.exit("%s predicted differently from pyfunc-env" % mode)

    results = {"pyfunc-env": [], "uv": [], "local": []}
    for _ in range(args.runs):
        for mode, python in (("pyfunc-env", driver), ("uv", driver), ("local", local)):
            result = run(mode, python, args, work, extra)
            if result["first"] != expected or not result["same"]:
                sys.exit("%s predicted differently" % mode)
            result.pop("first")
            results[mode].append(result)
            print(mode, json.dumps(result), flush=True)

    results["pyfunc-env-cold"] = []
    for _ in range(args.cold_runs):
        result = run("pyfunc-env-cold", driver, args, work, extra)
        if result["first"] != expected or not result["same"]:
            sys.exit("pyfunc-env (cold node) predicted differently")
        result.pop("first")
        results["pyfunc-env-cold"].append(result)
        print("pyfunc-env-cold", json.dumps(result), flush=True)
    log = os.path.join(work, "pyfunc-env-cache", "spark-v1", "unpack.log")
    if os.path.exists(log):
        print("node-local unpacks (last cold run):\n" + "".join(open(log).readlines()[-2:]), end="")

    def median(mode, field):
        return statistics.median(r[field] for r in results[mode])

    ours, uv, floor = "pyfunc-env", "uv", "local"
    print("\nmodel: %s" % os.path.relpath(args.model, ROOT))
    print("\n| measure (median of %d, %d rows) | pyfunc-env | MLflow uv | MLflow local | uv / pyfunc-env |" % (args.runs, args.rows))
    print("|---|---|---|---|---|")
    for field, label in (("create", "UDF creation, s"), ("end_to_end", "creation to collected result, s")):
        print("| %s | %.1f | %.1f | %.1f | %.2fx |" % (label, median(ours, field), median(uv, field), median(floor, field), median(uv, field) / median(ours, field)))
    if results["pyfunc-env-cold"]:
        cold = median("pyfunc-env-cold", "end_to_end")
        print("| creation to collected result, cold node (node-local cache empty), s | %.1f | | | %.2fx |" % (cold, median(uv, "end_to_end") / cold))
    rate = {m: args.rows / median(m, "warm") for m in results if results[m]}
    print("| warm job, rows/s | %.0f | %.0f | %.0f | %.2fx |" % (rate[ours], rate[uv], rate[floor], rate[ours] / rate[uv]))
    print("| session start, s (not compared) | %.1f | %.1f | %.1f | |" % (median(ours, "session"), median(uv, "session"), median(floor, "session")))
    print("\npyfunc-env warm rows/s as a share of the floor (local): %.2f" % (rate[ours] / rate[floor]))


if __name__ == "__main__":
    main()
