#!/usr/bin/env python3
"""Benchmark of `pyfunc-env create` (issue: create), conda layer against py-rattler.

Prints a table: cold create (empty cache), warm package cache into a new environment, cache hit,
each the median of N runs, and, in the same run, the same solve + install done with py-rattler
(PyPI `py-rattler`, the floor a user could pick instead), measured two ways: the library calls
alone, and the whole `python -c ...` process.

Usage:
    python3 benches/bench_create.py [--runs 7] [--bin target/release/pyfunc-env]

Needs: a release build (`cargo build --release -p pyfunc-env`), the test channel
(`cargo run -p env-test -- channel path`, built on first use), and `py-rattler` in the Python that
runs this script or in `--py-rattler-python` (created with uv in a scratch venv if missing).
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
SPECS = ["python=3.11.7", "numpy=1.26", "tinypkg", "pip"]
ARGS_BIN = [""]

PY_RATTLER = r"""
import json, sys, time, asyncio, rattler
channel, prefix, cache = sys.argv[1:4]
specs = json.loads(sys.argv[4])
t0 = time.perf_counter()
async def main():
    records = await rattler.solve([rattler.Channel(channel)], specs, platforms=["linux-64", "noarch"],
                                  virtual_packages=rattler.VirtualPackage.detect())
    t1 = time.perf_counter()
    await rattler.install(records, prefix, cache_dir=cache, show_progress=False)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1
solve, install = asyncio.run(main())
print(json.dumps({"solve": solve, "install": install}))
"""


CRASHES = []


def run(cmd, env=None):
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0 and out.stdout.strip().startswith("{") and cmd[0] != ARGS_BIN[0]:
        # py-rattler finished its work and printed its timings, then died while exiting:
        # keep the measurement, report the crash.
        CRASHES.append(out.returncode)
        return elapsed, out.stdout
    if out.returncode != 0:
        sys.exit(f"command failed (exit {out.returncode}): {' '.join(cmd)}\n{out.stderr}\n{out.stdout}")
    return elapsed, out.stdout


def median(values):
    return statistics.median(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    ap.add_argument("--py-rattler-python", default=None)
    args = ap.parse_args()
    ARGS_BIN[0] = args.bin

    channel = subprocess.run(["cargo", "run", "-q", "-p", "env-test", "--", "channel", "path"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    work = tempfile.mkdtemp(prefix="pfe-bench-")
    model = os.path.join(work, "model")
    os.makedirs(model)
    with open(os.path.join(model, "MLmodel"), "w") as f:
        f.write("flavors:\n  python_function:\n    env: {conda: conda.yaml, virtualenv: python_env.yaml}\n    python_version: 3.11.7\n")
    with open(os.path.join(model, "conda.yaml"), "w") as f:
        f.write("channels: [conda-forge]\ndependencies:\n" + "".join(f"- {s}\n" for s in SPECS))

    py = args.py_rattler_python
    if py is None:
        venv = os.path.join(tempfile.gettempdir(), "pfe-bench-py-rattler")
        py = os.path.join(venv, "bin", "python")
        if not os.path.exists(py):
            subprocess.run(["uv", "venv", "-q", "-p", "3.11", venv], check=True)
            subprocess.run(["uv", "pip", "install", "-q", "--python", py, "py-rattler==0.28.0"], check=True)

    env = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1")
    env.pop("PYFUNC_ENV_OFFLINE", None)
    env.pop("PYFUNC_ENV_CACHE_DIR", None)
    base = [args.bin, "create", model, "--env-manager", "conda", "--no-compile", "--json",
            "--mirror", f"conda-forge={channel}"]

    rows = {k: [] for k in ["cold", "warm", "hit", "cold_layer", "warm_layer",
                            "pr_cold", "pr_warm", "pr_cold_calls", "pr_warm_calls"]}
    for i in range(args.runs):
        cache = os.path.join(work, f"cache-{i}")
        t, out = run(base + ["--cache-dir", cache], env)
        doc = json.loads(out)
        assert not doc["cache_hit"]
        rows["cold"].append(t)
        rows["cold_layer"].append(doc["timings"]["solve"] + doc["timings"]["conda_install"])
        # Warm package cache, new environment: drop the environment, keep pkgs-v1.
        shutil.rmtree(os.path.join(cache, "envs-v1"))
        t, out = run(base + ["--cache-dir", cache], env)
        doc = json.loads(out)
        assert not doc["cache_hit"]
        rows["warm"].append(t)
        rows["warm_layer"].append(doc["timings"]["solve"] + doc["timings"]["conda_install"])
        t, out = run(base + ["--cache-dir", cache], env)
        assert json.loads(out)["cache_hit"]
        rows["hit"].append(t)

        pcache = os.path.join(work, f"pr-cache-{i}")
        for label in ["cold", "warm"]:
            prefix = os.path.join(work, f"pr-env-{i}-{label}")
            t, out = run([py, "-c", PY_RATTLER, channel, prefix, pcache, json.dumps(SPECS)])
            calls = json.loads(out)
            rows[f"pr_{label}"].append(t)
            rows[f"pr_{label}_calls"].append(calls["solve"] + calls["install"])
        shutil.rmtree(cache)

    m = {k: median(v) for k, v in rows.items()}
    print(f"pyfunc-env create vs py-rattler 0.28.0, conda layer only ({', '.join(SPECS)}; local channel), "
          f"median of {args.runs} runs, seconds")
    print()
    print("| scenario | pyfunc-env process | pyfunc-env conda layer (solve+install) | py-rattler process | py-rattler calls (solve+install) | ratio layer / py-rattler calls | ratio process / py-rattler process |")
    print("|---|---|---|---|---|---|---|")
    for label in ["cold", "warm"]:
        print(f"| {label} package cache, new environment | {m[label]:.3f} | {m[label + '_layer']:.3f} | {m['pr_' + label]:.3f} | "
              f"{m['pr_' + label + '_calls']:.3f} | {m[label + '_layer'] / m['pr_' + label + '_calls']:.2f}x | {m[label] / m['pr_' + label]:.2f}x |")
    print(f"| cache hit (whole process) | {m['hit'] * 1000:.1f} ms | - | - | - | - | - |")
    if CRASHES:
        print(f"\npy-rattler exited with {sorted(set(CRASHES))} after printing its timings in {len(CRASHES)} of {2 * args.runs} runs (measurements kept)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
