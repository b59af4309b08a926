#!/usr/bin/env python3
"""Benchmark of the remote environment cache (issues 13 and 25): pull vs local build.

One interleaved run over two models that share most packages: the sklearn-iris fixture (A) and
the held-out `onnx-tensor` model of the conformance matrix (B: mlflow, numpy, onnx,
onnxruntime; MLflow's own dependencies give it scikit-learn, scipy and pandas too), both in
virtualenv mode with Python from the test conda channel (`--python-source conda`, shareable).
Every run, in rotating order, for each model:
 (a) an agent with warm package caches (uv cache, conda packages, bytecode store `pyc-v1/`;
     no environment and no file store `store-v1/`): `create` by a local build, against `create`
     by a pull, each followed by the first `run -- predict`;
 (b) an agent with empty caches (a fresh cache directory and a fresh uv cache, as on a new CI
     runner): the same two.
Printed: pull + first predict against build + first predict (goal: >= 3x faster in (a) and
(b)), and the parts (pull only, build only, first predict), since with a first predict of F s
and a build of B s even an instant pull is at most (B+F)/F faster; the bytes a pull of B
downloads on an agent that pulled A before (goal: < 20% of B's file bytes); the remote's
storage for A, and for A and B; for every pull, the bytes it downloaded, took from uv's cache (a
warm agent's pull links what uv's cache holds, each file checked by hash) and from the file
store. Every prediction is checked equal to MLflow's recorded output.
The machine's load (`uptime`) is printed with every table.

Then the tool's own overhead on a cached `run`: `run -- python -c pass` minus the environment's
`python -c pass`, median of interleaved pairs (goal: at most 10 ms); and, unless `--no-cold`,
the cold path without a remote (`bench_cold.py` with the same `--runs` and `--bin`).

The remote is a directory (`file://`, what an NFS mount gives) unless `--remote URL` names
another (`s3://bucket/prefix` with the AWS variables set, e.g. a local SeaweedFS or MinIO).
Python comes from the test channel (`cargo run -p env-test -- channel path`), so the conda side
needs no internet; the PyPI packages come from PyPI (the empty-cache agent downloads them in
every run).

Usage: python3 benches/bench_remote.py [--runs 3] [--bin target/release/pyfunc-env] [--remote URL] [--no-cold]
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


def timed(cmd, env, expected=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stderr[-3000:]}")
    if expected is not None and out.stdout.strip() != expected.strip():
        sys.exit(f"unexpected output from {' '.join(cmd)}: {out.stdout!r}")
    return elapsed, out.stdout


MATRIX = os.path.join(ROOT, "fixtures/matrix/mlflow-3.17.2")
MODELS = {
    "A": (MODEL, INPUT, EXPECTED),
    "B": (os.path.join(MATRIX, "models/onnx-tensor"), os.path.join(MATRIX, "inputs/onnx-tensor/inputs.json"),
          open(os.path.join(MATRIX, "expected/onnx-tensor/inputs.predict.out")).read()),
}


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def tree_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    ap.add_argument("--remote", help="remote cache URL (default: a fresh directory, file://)")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold path (bench_cold.py)")
    ap.add_argument("--channel", help="the test conda channel (default: `cargo run -p env-test -- channel path`)")
    ap.add_argument("--no-empty", action="store_true", help="skip the empty-cache agent (b)")
    ap.add_argument("--overhead-pairs", type=int, default=21, help="interleaved pairs for the run overhead")
    args = ap.parse_args()

    channel = args.channel or subprocess.run(["cargo", "run", "-q", "-p", "env-test", "--", "channel", "path"],
                                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    channel_url = channel if "://" in channel else f"file://{channel}"
    work = tempfile.mkdtemp(prefix="pfe-bench-remote-")
    remote = args.remote or f"file://{work}/remote"
    uv_cache = os.path.join(tempfile.gettempdir(), "pfe-bench-uv-cache")
    base = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1")
    base.pop("PYFUNC_ENV_REMOTE_CACHE", None)
    flags = ["--env-manager", "virtualenv", "--python-source", "conda", "--mirror", f"conda-forge={channel_url}"]

    def agent_env(cache, uv):
        return dict(base, PYFUNC_ENV_CACHE_DIR=cache, UV_CACHE_DIR=uv, PYFUNC_ENV_UV_CACHE_DIR=uv)

    warm_cache = os.path.join(work, "warm-agent")
    warm = agent_env(warm_cache, uv_cache)

    def forget_environments(cache):
        # The environments, the file store a pull links from (kept, the next pull would
        # download nothing) and staging go; the uv cache, the conda packages and the bytecode
        # store stay.
        for bucket in ("envs-v1", "store-v1", "tmp"):
            shutil.rmtree(os.path.join(cache, bucket), ignore_errors=True)

    def create(name, env, pull):
        model = MODELS[name][0]
        cmd = [args.bin, "create", model, *flags, "--json"]
        if pull:
            cmd += ["--remote-cache", remote, "--remote-cache-read-only"]
        t, out = timed(cmd, env)
        doc = json.loads(out)
        if pull:
            assert doc["remote_hit"], out
        else:
            assert not doc["cache_hit"] and not doc["remote_hit"] and doc["bytecode"], out
        return t, doc

    def first_predict(name, env):
        model, input_path, expected = MODELS[name]
        t, _ = timed([args.bin, "run", model, *flags, "--", "predict", "-i", input_path], env, expected)
        return t

    def bytes_note(report):
        # Where a pull's bytes came from (issue 25): the remote, the file store, uv's cache
        # (a pyfunc-env before seeding reports no `seeded_bytes`).
        mib = lambda key: report.get(key, 0) / 2**20
        return (f"downloaded {mib('downloaded_bytes'):.1f} MiB, from uv's cache {mib('seeded_bytes'):.1f} MiB "
                f"({report.get('seeded_files', 0)} files), from pyc-v1/ {mib('seeded_pyc_bytes'):.1f} MiB "
                f"({report.get('seeded_pyc_files', 0)} files), from the store {mib('reused_bytes'):.1f} MiB "
                f"of {mib('env_bytes'):.1f} MiB")

    def pull_report(doc):
        with open(os.path.join(doc["prefix"], ".pyfunc-env", "metadata.json")) as f:
            return json.load(f)["extra"]["remote"]

    print(f"load at start: {load()}", flush=True)
    # Warm-up: fills the warm agent's uv and package caches and bytecode store, and pushes both
    # environments; the remote's size is taken after each push.
    stored = {}
    for name in MODELS:
        _, out = timed([args.bin, "create", MODELS[name][0], *flags, "--json", "--remote-cache", remote], warm)
        doc = json.loads(out)
        if not (doc["pushed"] or doc["remote_hit"]):
            sys.exit(f"the warm-up build of {name} was not pushed to {remote}: {out}")
        if remote.startswith("file://"):
            stored[name] = tree_bytes(remote[len("file://"):])
        first_predict(name, warm)

    contenders = [("warm", "build"), ("warm", "pull")]
    if not args.no_empty:
        contenders += [("empty", "build"), ("empty", "pull")]
    results = {}  # (name, agent, how) -> {"create": [...], "predict": [...]}
    loads = []
    for run in range(args.runs):
        loads.append(os.getloadavg()[0])
        for name in MODELS:
            order = contenders[run % len(contenders):] + contenders[:run % len(contenders)]
            for agent, how in order:
                if agent == "warm":
                    forget_environments(warm_cache)
                    env, scratch = warm, None
                else:
                    scratch = tempfile.mkdtemp(prefix="agent-", dir=work)
                    env = agent_env(os.path.join(scratch, "cache"), os.path.join(scratch, "uv"))
                t_create, doc = create(name, env, how == "pull")
                t_predict = first_predict(name, env)
                entry = results.setdefault((name, agent, how), {"create": [], "predict": []})
                entry["create"].append(t_create)
                entry["predict"].append(t_predict)
                note = ""
                if how == "pull":
                    entry["report"] = pull_report(doc)
                    note = ", " + bytes_note(entry["report"]["pull"])
                if scratch:
                    shutil.rmtree(scratch, ignore_errors=True)
                print(f"  run {run + 1} {name} {agent:5} {how:5}: create {t_create:6.2f} s, first predict "
                      f"{t_predict:5.2f} s{note} (load {os.getloadavg()[0]:.1f})", flush=True)

    # Model B pulled by an agent that pulled A before (its store holds A's files).
    forget_environments(warm_cache)
    create("A", warm, True)
    _, doc = create("B", warm, True)
    second = pull_report(doc)["pull"]
    python = doc["python"]
    loads.append(os.getloadavg()[0])

    med = statistics.median
    print()
    print(f"Remote cache ({remote.split('://')[0]}://), virtualenv mode with Python from the test conda channel, "
          f"binary {args.bin}, median wall seconds of {args.runs} interleaved runs; predictions checked equal to MLflow's. "
          f"Load average (1 min) at the start of each run: {', '.join(f'{x:.1f}' for x in loads)}; now: {load()}")
    print()
    print("| model | agent | pull + first predict | build + first predict | build / pull | pull only | build only "
          "| first predict after pull / after build | bound (B+F)/F |")
    print("|---|---|---|---|---|---|---|---|---|")
    agents = ["warm"] + ([] if args.no_empty else ["empty"])
    label = {"warm": "(a) warm package caches", "empty": "(b) empty caches"}
    for name in MODELS:
        for agent in agents:
            pull, build = results[(name, agent, "pull")], results[(name, agent, "build")]
            p_total = med([c + f for c, f in zip(pull["create"], pull["predict"])])
            b_total = med([c + f for c, f in zip(build["create"], build["predict"])])
            p_only, b_only = med(pull["create"]), med(build["create"])
            f_pull, f_build = med(pull["predict"]), med(build["predict"])
            print(f"| {name} | {label[agent]} | {p_total:.2f} | {b_total:.2f} | {b_total / p_total:.2f}x "
                  f"| {p_only:.2f} | {b_only:.2f} ({b_only / p_only:.2f}x) | {f_pull:.2f} / {f_build:.2f} "
                  f"| {(b_only + f_build) / f_build:.2f}x |")
    print()
    for name in MODELS:
        print(f"(a) warm agent, pull of {name}: {bytes_note(results[(name, 'warm', 'pull')]['report']['pull'])} (last run)")
    a_report = results[("A", "warm", "pull")]["report"]["pull"]
    print(f"Model B pulled after model A: downloaded {second['downloaded_bytes'] / 2**20:.1f} MiB for "
          f"{second['env_bytes'] / 2**20:.1f} MiB of files ({100 * second['downloaded_bytes'] / second['env_bytes']:.1f}%, "
          f"goal < 20%; {second['blobs_downloaded']} of {second['blobs']} blobs, {second['requests']} requests). "
          f"Model A alone: {a_report['downloaded_bytes'] / 2**20:.1f} MiB for {a_report['env_bytes'] / 2**20:.1f} MiB.")
    if stored:
        print(f"Remote storage: A alone {stored['A'] / 2**20:.1f} MiB; A and B {stored['B'] / 2**20:.1f} MiB "
              f"(B added {(stored['B'] - stored['A']) / 2**20:.1f} MiB; the two environments hold "
              f"{(a_report['env_bytes'] + second['env_bytes']) / 2**20:.1f} MiB of files).")

    # The tool's own overhead on a cached `run` (issue 25): `run -- python -c pass` minus the
    # environment's `python -c pass`, median of interleaved pairs (the order alternates, so a
    # load change hits both sides alike).
    differences = []
    for i in range(args.overhead_pairs):
        tool_cmd = [args.bin, "run", MODELS["B"][0], *flags, "--", "python", "-c", "pass"]
        bare_cmd = [python, "-c", "pass"]
        first, second_cmd = (tool_cmd, bare_cmd) if i % 2 == 0 else (bare_cmd, tool_cmd)
        a, _ = timed(first, warm)
        b, _ = timed(second_cmd, warm)
        differences.append(a - b if first is tool_cmd else b - a)
    overhead_ms = statistics.median(differences) * 1000
    print()
    print(f"| cached `run -- python -c pass` minus the env's `python -c pass` | {overhead_ms:.1f} ms | "
          f"median of {args.overhead_pairs} interleaved pairs | load {os.getloadavg()[0]:.1f} | goal <= 10 ms |")
    shutil.rmtree(work, ignore_errors=True)

    if not args.no_cold:
        print()
        sys.stdout.flush()
        cold = os.path.join(ROOT, "benches/bench_cold.py")
        subprocess.run([sys.executable, cold, "--runs", str(args.runs), "--bin", args.bin, "--cold-store"], check=True)


if __name__ == "__main__":
    main()
