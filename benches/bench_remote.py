#!/usr/bin/env python3
"""Benchmark of the remote environment cache (issue 13): pull vs local build.

Prints, side by side from one run, for the fixture scikit-learn model in virtualenv mode with
Python from a conda channel (`--python-source conda`, so the environment is shareable):
 1. an agent with an empty environment cache but warm uv and conda package caches (the fair
    case for building) gets the environment by a local build including bytecode, vs by a pull
    from the remote cache (goal: the pull at least 3x faster);
 2. the first `run -- predict` after a pull vs the floor, the environment's python running the
    same scoring code directly (goal: within 1.05x).

3. the tool's own overhead on a cached `run`: `run -- python -c pass` minus the environment's
    `python -c pass`, median of interleaved pairs (goal: at most 10 ms).

Then, unless `--no-cold`, the cold path without a remote (a second model pinning one more
package, warm uv cache and bytecode store) against `mlflow models predict --env-manager uv`:
`bench_cold.py` with the same `--runs` and `--bin`, so one command prints both of issue 13's
measurements.

The remote is a directory (`file://`, what an NFS mount gives) unless `--remote URL` names
another (`s3://bucket/prefix` with the AWS variables set, e.g. a local SeaweedFS or MinIO).
Python comes from the test channel (`cargo run -p env-test -- channel path`), so the conda side
needs no internet; the PyPI packages come from PyPI (once) and then from the warm uv cache.

Usage: python3 benches/bench_remote.py [--runs 5] [--bin target/release/pyfunc-env] [--remote URL] [--no-cold]
"""

import argparse
import json
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


def timed(cmd, env, expected=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    if expected is not None and out.stdout.strip() != expected.strip():
        sys.exit(f"unexpected output from {' '.join(cmd)}: {out.stdout!r}")
    return elapsed, out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    ap.add_argument("--remote", help="remote cache URL (default: a fresh directory, file://)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold path (bench_cold.py)")
    ap.add_argument("--overhead-pairs", type=int, default=21, help="interleaved pairs for the run overhead")
    args = ap.parse_args()

    channel = subprocess.run(["cargo", "run", "-q", "-p", "env-test", "--", "channel", "path"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    channel_url = channel if "://" in channel else f"file://{channel}"
    work = tempfile.mkdtemp(prefix="pfe-bench-remote-")
    remote = args.remote or f"file://{work}/remote"
    uv_cache = os.path.join(tempfile.gettempdir(), "pfe-bench-uv-cache")
    env = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1", UV_CACHE_DIR=uv_cache, PYFUNC_ENV_UV_CACHE_DIR=uv_cache)
    env.pop("PYFUNC_ENV_REMOTE_CACHE", None)
    flags = ["--env-manager", "virtualenv", "--python-source", "conda", "--mirror", f"conda-forge={channel_url}"]
    cache = os.path.join(work, "cache")
    env["PYFUNC_ENV_CACHE_DIR"] = cache

    def empty_environment_cache():
        # The environment, the bytecode store and the file store (store-v1/, which a pull links
        # from: left, the next pull would download nothing) go; the uv, conda package and
        # repodata caches stay.
        for bucket in ("envs-v1", "pyc-v1", "store-v1", "tmp"):
            shutil.rmtree(os.path.join(cache, bucket), ignore_errors=True)

    # Warm-up: fills the uv and package caches, and pushes the environment to the remote.
    _, out = timed([args.bin, "create", MODEL, *flags, "--json", "--remote-cache", remote], env)
    doc = json.loads(out)
    if not (doc["pushed"] or doc["remote_hit"]):
        sys.exit(f"the warm-up build was not pushed to {remote}: {out}")

    build, pull, first_predict = [], [], []
    for _ in range(args.runs):
        empty_environment_cache()
        t, out = timed([args.bin, "create", MODEL, *flags, "--json"], env)
        doc = json.loads(out)
        assert not doc["cache_hit"] and not doc["remote_hit"] and doc["bytecode"], out
        build.append(t)

        empty_environment_cache()
        t, out = timed([args.bin, "create", MODEL, *flags, "--json", "--remote-cache", remote, "--remote-cache-read-only"], env)
        doc = json.loads(out)
        assert doc["remote_hit"], out
        pull.append(t)
        python = doc["python"]
        with open(os.path.join(doc["prefix"], ".pyfunc-env", "metadata.json")) as f:
            report = json.load(f)["extra"]["remote"]
        downloaded = report["pull"]["downloaded_bytes"]
        env_bytes, stored = report["pull"]["env_bytes"], report["stored_bytes"]
        t, _ = timed([args.bin, "run", MODEL, *flags, "--", "predict", "-i", INPUT], env, EXPECTED)
        first_predict.append(t)
    floor = [timed([python, "-c", FLOOR, MODEL, INPUT], env, EXPECTED)[0] for _ in range(args.runs)]
    build, pull = statistics.median(build), statistics.median(pull)
    first_predict, floor = statistics.median(first_predict), statistics.median(floor)

    # The tool's own overhead on a cached `run` (issue 25): `run -- python -c pass` minus the
    # environment's `python -c pass`, median of interleaved pairs (the order alternates, so a
    # load change hits both sides alike).
    differences = []
    for i in range(args.overhead_pairs):
        tool_cmd = [args.bin, "run", MODEL, *flags, "--", "python", "-c", "pass"]
        bare_cmd = [python, "-c", "pass"]
        first, second = (tool_cmd, bare_cmd) if i % 2 == 0 else (bare_cmd, tool_cmd)
        a, _ = timed(first, env)
        b, _ = timed(second, env)
        differences.append(a - b if first is tool_cmd else b - a)
    overhead_ms = statistics.median(differences) * 1000

    print(f"Remote cache ({remote.split('://')[0]}://), sklearn-iris fixture, virtualenv mode with Python from the "
          f"test conda channel; median wall seconds of {args.runs} runs; predictions checked equal to MLflow's")
    print()
    print("| scenario | pyfunc-env | peer | peer seconds | ratio |")
    print("|---|---|---|---|---|")
    print(f"| environment by a pull (empty env cache) | {pull:.2f} | local build incl. bytecode (warm uv and package caches) "
          f"| {build:.2f} | {build / pull:.2f}x faster (goal >= 3x) |")
    print(f"| first `run -- predict` after a pull | {first_predict:.2f} | floor: env python running `_predict` directly "
          f"| {floor:.2f} | {first_predict / floor:.3f}x of the floor (goal <= 1.05x) |")
    print()
    print(f"| cached `run -- python -c pass` minus the env's `python -c pass` | {overhead_ms:.1f} ms | "
          f"median of {args.overhead_pairs} interleaved pairs | | goal <= 10 ms |")
    print()
    print(f"A pull downloaded {downloaded / 2**20:.1f} MiB for {env_bytes / 2**20:.1f} MiB of files; "
          f"the remote stores the environment in {stored / 2**20:.1f} MiB of packs")
    shutil.rmtree(work, ignore_errors=True)

    if not args.no_cold:
        print()
        sys.stdout.flush()
        cold = os.path.join(ROOT, "benches/bench_cold.py")
        subprocess.run([sys.executable, cold, "--runs", str(args.runs), "--bin", args.bin], check=True)


if __name__ == "__main__":
    main()
