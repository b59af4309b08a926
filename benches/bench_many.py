#!/usr/bin/env python3
"""Benchmark of the build agent's command (issue: many models): `create` of 20 fixture-derived
models with `--jobs 1` vs `--jobs 4`, and the same 20 done by
`mlflow models prepare-env --env-manager uv` one after another; plus the cache's disk use
(hard-linked files counted once).

The 20 models are copies of fixtures/models/sklearn-iris whose requirements.txt each pin a
different version of one small extra package (so each needs its own environment).

Usage: python3 benches/bench_many.py [--models 20] [--bin target/release/pyfunc-env]
Needs PyPI, a release build, and the MLflow venv the predict bench makes (created if missing).
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "fixtures/models/sklearn-iris")
# Versions of a small pure-Python package, one per model.
SIX = ["1.17.0", "1.16.0", "1.15.0", "1.14.0", "1.13.0", "1.12.0", "1.11.0", "1.10.0"]
IDNA = ["3.10", "3.9", "3.8", "3.7", "3.6", "3.5", "3.4", "3.3", "3.2", "3.1", "3.0", "2.10"]


def pins(n):
    out = [f"six=={v}" for v in SIX] + [f"idna=={v}" for v in IDNA]
    return out[:n]


def disk_usage(path):
    seen, total = set(), 0
    for root, dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="pfe-bench-many-")
    models = []
    for i, pin in enumerate(pins(args.models)):
        model = os.path.join(work, "models", f"m{i:02d}")
        shutil.copytree(FIXTURE, model)
        with open(os.path.join(model, "requirements.txt"), "a") as f:
            f.write("\n" + pin)
        models.append(model)
    uv_cache = os.path.join(work, "uv-cache")
    venv = os.path.join(tempfile.gettempdir(), "pfe-bench-mlflow-venv")
    mlflow = os.path.join(venv, "bin", "mlflow")
    if not os.path.exists(mlflow):
        subprocess.run(["uv", "venv", "-q", "-p", "3.11.7", venv], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--python", os.path.join(venv, "bin", "python"), "mlflow==3.17.2"], check=True)
    base_env = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1", UV_CACHE_DIR=uv_cache, PYFUNC_ENV_UV_CACHE_DIR=uv_cache)
    # Warm the shared uv cache once so every contender starts from the same downloads.
    subprocess.run([args.bin, "create", models[0], "--cache-dir", os.path.join(work, "warmup")], env=base_env, check=True, capture_output=True)

    results = {}
    variants = [(1, ""), (4, ""), (1, "--no-compile"), (4, "--no-compile")]
    for jobs, flag in variants:
        name = f"{jobs}{flag}"
        cache = os.path.join(work, f"cache-j{jobs}{flag}")
        start = time.perf_counter()
        out = subprocess.run([args.bin, "create", *models, "--jobs", str(jobs), "--cache-dir", cache, *([flag] if flag else [])],
                             env=base_env, capture_output=True, text=True)
        results[name] = time.perf_counter() - start
        if out.returncode != 0:
            sys.exit(out.stderr[-3000:])
        results[f"disk{name}"] = disk_usage(os.path.join(cache, "envs-v1"))
        shutil.rmtree(cache)

    mlflow_home = os.path.join(work, "mlflow-home")
    env = dict(base_env, HOME=mlflow_home, PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"],
               MLFLOW_ENV_ROOT=os.path.join(mlflow_home, "envs"))
    start = time.perf_counter()
    for model in models:
        out = subprocess.run([mlflow, "models", "prepare-env", "-m", model, "--env-manager", "uv"], env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(out.stderr[-3000:])
    mlflow_time = time.perf_counter() - start
    mlflow_disk = disk_usage(os.path.join(mlflow_home, "envs")) if os.path.isdir(os.path.join(mlflow_home, "envs")) else disk_usage(mlflow_home)

    n = len(models)
    print(f"create of {n} sklearn-iris variants (one extra pin each), warm shared uv cache, 2-core machine; wall seconds")
    print()
    print("| contender | seconds | ratio to `mlflow models prepare-env --env-manager uv` | environments' disk use (hard links once) |")
    print("|---|---|---|---|")
    print(f"| mlflow models prepare-env --env-manager uv, sequential | {mlflow_time:.1f} | 1.00x | {mlflow_disk / 1e9:.2f} GB |")
    for jobs, flag in variants:
        name = f"{jobs}{flag}"
        what = "bytecode compiled" if not flag else "no bytecode, like MLflow"
        ratio = mlflow_time / results[name]
        verdict = f"{ratio:.2f}x faster" if ratio >= 1 else f"{1 / ratio:.2f}x slower"
        print(f"| pyfunc-env create --jobs {jobs} {flag} ({what}) | {results[name]:.1f} | {verdict} | {results['disk' + name] / 1e9:.2f} GB |")
    print(f"\n--jobs 4 vs --jobs 1: {results['1'] / results['4']:.2f}x with bytecode, {results['1--no-compile'] / results['4--no-compile']:.2f}x without")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
