#!/usr/bin/env python3
"""Benchmark of `pyfunc-env run -- predict` (issue: the main job), against MLflow.

Prints, side by side from one run, for the fixture scikit-learn model:
 1. predict on a cache hit: pyfunc-env vs `mlflow models predict --env-manager uv` (warm uv
    cache; MLflow rebuilds its environment on every predict) vs `--env-manager local` vs the
    floor (the environment's python running the same scoring code directly);
 2. cold create + first predict (empty environment cache, warm uv cache) vs MLflow's uv mode;
 3. the tool's own overhead on a cache hit: `run -- python -c pass` minus `python -c pass`.

Usage: python3 benches/bench_predict.py [--runs 5] [--bin target/release/pyfunc-env]
Needs PyPI (once, for the MLflow venv and the model's packages) and a release build.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "fixtures/models/sklearn-iris")
INPUT = os.path.join(ROOT, "fixtures/inputs/sklearn-iris/dataframe_split.json")
EXPECTED = open(os.path.join(ROOT, "fixtures/expected/sklearn-iris/dataframe_split.out")).read()
FLOOR = "from mlflow.pyfunc.scoring_server import _predict; import sys; _predict(sys.argv[1], sys.argv[2], None, 'json')"


def timed(cmd, env, check_output=True):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    if check_output and out.stdout.strip() != EXPECTED.strip():
        sys.exit(f"unexpected output from {' '.join(cmd)}: {out.stdout!r}")
    return elapsed


def wait_for_background_compile():
    """`run` on a cache miss compiles bytecode in a detached process; let it finish so it does
    not disturb the next measurement."""
    while subprocess.run(["pgrep", "-f", "--", "-m compileall"], capture_output=True).returncode == 0:
        time.sleep(0.5)


def med(fn, runs):
    return statistics.median(fn() for _ in range(runs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mlflow-runs", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="pfe-bench-predict-")
    uv_cache = os.path.join(tempfile.gettempdir(), "pfe-bench-uv-cache")
    venv = os.path.join(tempfile.gettempdir(), "pfe-bench-mlflow-venv")
    mlflow = os.path.join(venv, "bin", "mlflow")
    if not os.path.exists(mlflow):
        subprocess.run(["uv", "venv", "-q", "-p", "3.11.7", venv], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--compile-bytecode", "--python", os.path.join(venv, "bin", "python"),
                        "-r", os.path.join(MODEL, "requirements.txt")], check=True, env=dict(os.environ, UV_CACHE_DIR=uv_cache))
    env = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1", UV_CACHE_DIR=uv_cache, PYFUNC_ENV_UV_CACHE_DIR=uv_cache,
               PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"], MLFLOW_TRACKING_URI=f"file://{work}/mlruns")
    cache = os.path.join(work, "cache")
    env["PYFUNC_ENV_CACHE_DIR"] = cache
    run = [args.bin, "run", MODEL, "--", "predict", "-i", INPUT]

    # 2. cold create + first predict (empty environment cache; uv cache warmed by one build first)
    timed(run, env)
    wait_for_background_compile()
    cold = []
    for i in range(max(1, args.mlflow_runs)):
        shutil.rmtree(cache)
        cold.append(timed(run, env))
        wait_for_background_compile()
    cold = statistics.median(cold)

    # 1. cache hit
    hit = med(lambda: timed(run, env), args.runs)
    prefix = subprocess.run([args.bin, "create", MODEL, "--json"], env=env, capture_output=True, text=True, check=True).stdout
    import json
    python = json.loads(prefix)["python"]
    floor = med(lambda: timed([python, "-c", FLOOR, MODEL, INPUT], env), args.runs)
    mlflow_local = med(lambda: timed([mlflow, "models", "predict", "-m", MODEL, "-i", INPUT, "-t", "json", "--env-manager", "local"], env), args.runs)
    mlflow_uv = med(lambda: timed([mlflow, "models", "predict", "-m", MODEL, "-i", INPUT, "-t", "json", "--env-manager", "uv"], env), args.mlflow_runs)

    # 3. overhead
    tool = med(lambda: timed([args.bin, "run", MODEL, "--", "python", "-c", "pass"], env, False), 21)
    bare = med(lambda: timed([python, "-c", "pass"], env, False), 21)

    print(f"pyfunc-env run -- predict vs MLflow 3.17.2, sklearn-iris fixture, dataframe_split input; median wall seconds "
          f"({args.runs} runs, MLflow uv mode {args.mlflow_runs}); outputs checked equal to MLflow's")
    print()
    print("| scenario | pyfunc-env | peer | peer seconds | ratio (peer / pyfunc-env) |")
    print("|---|---|---|---|---|")
    print(f"| predict, cache hit | {hit:.2f} | `mlflow models predict --env-manager uv` (warm uv cache) | {mlflow_uv:.2f} | {mlflow_uv / hit:.2f}x |")
    print(f"| predict, cache hit | {hit:.2f} | `mlflow models predict --env-manager local` | {mlflow_local:.2f} | {mlflow_local / hit:.2f}x |")
    print(f"| predict, cache hit | {hit:.2f} | floor: env python running `_predict` directly | {floor:.2f} | {floor / hit:.3f}x (pyfunc-env / floor = {hit / floor:.3f}) |")
    print(f"| cold create + first predict (warm uv cache) | {cold:.2f} | `mlflow models predict --env-manager uv` | {mlflow_uv:.2f} | {mlflow_uv / cold:.2f}x |")
    print(f"| tool overhead, `run -- python -c pass` minus `python -c pass` | {(tool - bare) * 1000:.1f} ms | | | |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
