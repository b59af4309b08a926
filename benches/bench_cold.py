#!/usr/bin/env python3
"""Benchmark of the cold path on a busy build agent (issue 13): `run MODEL -- predict` of a model
whose environment is not cached but whose packages mostly are, against
`mlflow models predict --env-manager uv`.

Scenario: the sklearn-iris fixture (model A) is built once, which warms the uv cache and
pyfunc-env's bytecode store (`pyc-v1/`). Each run then takes a fresh copy of the fixture with
one more pin (`six`/`idna` versions, as in bench_many.py, a different one per run, so the
environment is new every time) and times, on the same copy and the same input:
 - `pyfunc-env run COPY -- predict` (the whole process: build + first predict), and
 - `mlflow models predict -m COPY --env-manager uv` (MLflow 3.17.2, warm uv cache).
The extra pin's wheel is put in the uv cache before the timed runs, so neither contender
downloads anything. Both see the machine's `PYTHONDONTWRITEBYTECODE=1`: neither writes bytecode
while predicting (pyfunc-env's bytecode comes from its store and its background compiler).
Contenders are interleaved run by run, in rotating order; every output is checked equal to
MLflow's recorded predictions; medians are printed.

`--before BIN` adds a second pyfunc-env binary (e.g. a build of the base commit) measured in
the same runs, each binary with its own cache (same warm-up), for before/after ratios.

Also printed: pyfunc-env's build part (the "Created ... environment in X s" line of the run)
versus the rest (the first predict), and the floor (the new environment's python running
MLflow's `_predict` directly, after its bytecode is complete).

Usage: python3 benches/bench_cold.py [--runs 5] [--bin target/release/pyfunc-env] [--before BIN] [--cold-store]
Needs PyPI (once, for the MLflow venv and the packages) and a release build.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

BENCHES = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCHES)
from bench_many import pins  # noqa: E402
from bench_predict import EXPECTED, FLOOR, INPUT, MODEL, ROOT, timed  # noqa: E402

CREATED = re.compile(r"Created \S+ environment in ([0-9.]+)s")


def mlflow_venv(uv_cache):
    """bench_predict.py's MLflow 3.17.2 venv (the model's requirements, with bytecode)."""
    venv = os.path.join(tempfile.gettempdir(), "pfe-bench-mlflow-venv")
    if not os.path.exists(os.path.join(venv, "bin", "mlflow")):
        subprocess.run(["uv", "venv", "-q", "-p", "3.11.7", venv], check=True)
        subprocess.run(["uv", "pip", "install", "-q", "--compile-bytecode", "--python", os.path.join(venv, "bin", "python"),
                        "-r", os.path.join(MODEL, "requirements.txt")], check=True, env=dict(os.environ, UV_CACHE_DIR=uv_cache))
    return venv


def wait_for_background_compile(cache):
    """`run` on a cache miss may compile bytecode in a detached process; let it finish so it
    does not disturb the next measurement (it is part of the run it belongs to)."""
    while True:
        out = subprocess.run(["pgrep", "-f", f"{cache} __compile-bytecode"], capture_output=True)
        if out.returncode != 0:
            return
        time.sleep(0.3)


def copy_model(work, name, pin):
    model = os.path.join(work, "models", name)
    shutil.copytree(MODEL, model)
    with open(os.path.join(model, "requirements.txt"), "a") as f:
        f.write("\n" + pin)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    ap.add_argument("--before", help="a second pyfunc-env binary measured in the same runs")
    ap.add_argument("--cold-store", action="store_true",
                    help="empty pyfunc-env's bytecode store (`pyc-v1/`) before each of its runs (issue 25's cold case)")
    args = ap.parse_args()
    if args.runs > len(pins(100)) - 1:
        sys.exit(f"at most {len(pins(100)) - 1} runs (one pin each)")
    load = os.getloadavg()[0]

    work = tempfile.mkdtemp(prefix="pfe-bench-cold-")
    uv_cache = os.path.join(tempfile.gettempdir(), "pfe-bench-uv-cache")
    venv = mlflow_venv(uv_cache)
    mlflow = os.path.join(venv, "bin", "mlflow")
    env = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1", UV_CACHE_DIR=uv_cache, PYFUNC_ENV_UV_CACHE_DIR=uv_cache,
               PATH=os.path.join(venv, "bin") + os.pathsep + os.environ["PATH"], MLFLOW_TRACKING_URI=f"file://{work}/mlruns",
               MLFLOW_ENV_ROOT=os.path.join(work, "mlflow-envs"))
    binaries = [("pyfunc-env", args.bin)] + ([("pyfunc-env before", args.before)] if args.before else [])

    # Warm-up: model A built once by every pyfunc-env (uv cache, bytecode store) and by MLflow
    # (its own uv venv); then every extra pin's wheel into the uv cache.
    for name, binary in binaries:
        cache = os.path.join(work, f"cache-{name.replace(' ', '-')}")
        subprocess.run([binary, "create", MODEL, "--cache-dir", cache], env=env, check=True, capture_output=True)
    timed([mlflow, "models", "predict", "-m", MODEL, "-i", INPUT, "-t", "json", "--env-manager", "uv"], env)
    chosen = pins(args.runs + 1)[1:]  # the first pin is bench_many's model 0; skip it
    scratch = os.path.join(work, "pin-warmup")
    subprocess.run(["uv", "venv", "-q", "-p", "3.11.7", scratch], check=True, env=env)
    for pin in chosen:
        subprocess.run(["uv", "pip", "install", "-q", "--python", os.path.join(scratch, "bin", "python"), pin],
                       check=True, env=env)

    times = {name: [] for name, _ in binaries}
    times["mlflow"] = []
    build = {name: [] for name, _ in binaries}
    prefixes = {}
    for i, pin in enumerate(chosen):
        model = copy_model(work, f"m{i:02d}", pin)
        contenders = binaries + [("mlflow", None)]
        shift = i % len(contenders)
        for name, binary in contenders[shift:] + contenders[:shift]:
            if binary is None:
                times[name].append(timed([mlflow, "models", "predict", "-m", model, "-i", INPUT, "-t", "json",
                                          "--env-manager", "uv"], env))
                continue
            cache = os.path.join(work, f"cache-{name.replace(' ', '-')}")
            if args.cold_store:
                shutil.rmtree(os.path.join(cache, "pyc-v1"), ignore_errors=True)
            cmd = [binary, "run", model, "--cache-dir", cache, "--", "predict", "-i", INPUT]
            start = time.perf_counter()
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if out.returncode != 0 or out.stdout.strip() != EXPECTED.strip():
                sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout}\n{out.stderr[-3000:]}")
            created = CREATED.search(out.stderr)
            if not created:
                sys.exit(f"{name} did not build a new environment:\n{out.stderr}")
            build[name].append(float(created.group(1)))
            wait_for_background_compile(cache)
            prefixes[name] = json.loads(subprocess.run([binary, "create", model, "--cache-dir", cache, "--json"], env=env,
                                                       capture_output=True, text=True, check=True).stdout)["python"]
        print(f"run {i + 1}/{len(chosen)} ({pin}): " + ", ".join(f"{n} {times[n][-1]:.2f}" for n in times), file=sys.stderr)

    floor = statistics.median(timed([prefixes["pyfunc-env"], "-c", FLOOR, MODEL, INPUT], env) for _ in range(args.runs))
    med = {name: statistics.median(values) for name, values in times.items()}
    store = "cold bytecode store (emptied before each run)" if args.cold_store else "warm bytecode store"
    print(f"cold `run -- predict` (new environment, warm uv cache, {store}) vs "
          f"`mlflow models predict --env-manager uv` (warm uv cache), sklearn-iris + one pin per run; "
          f"median wall seconds of {len(chosen)} runs, interleaved; load average at start {load:.2f}, "
          f"at the end {os.getloadavg()[0]:.2f}; "
          f"PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r} for every contender; "
          f"outputs checked equal to MLflow's")
    print()
    print("| contender | seconds | build part (`Created ... in`) | rest (first predict) | ratio (MLflow / contender) |")
    print("|---|---|---|---|---|")
    print(f"| mlflow models predict --env-manager uv | {med['mlflow']:.2f} | | | 1.00x |")
    for name, _ in binaries:
        b = statistics.median(build[name])
        print(f"| {name} run -- predict | {med[name]:.2f} | {b:.2f} | {med[name] - b:.2f} | {med['mlflow'] / med[name]:.2f}x |")
    print(f"| floor: the environment's python running `_predict` (bytecode complete) | {floor:.2f} | | | {med['mlflow'] / floor:.2f}x |")
    if args.before:
        print(f"\nafter / before: {med['pyfunc-env before'] / med['pyfunc-env']:.2f}x faster")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
