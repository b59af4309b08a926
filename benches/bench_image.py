#!/usr/bin/env python3
"""Benchmark of `pyfunc-env image` (issue 21).

For the fixture scikit-learn model in virtualenv mode with Python from the test conda channel
(`--python-source conda`), pushing to a local `docker-registry` on 127.0.0.1, on the glibc base
the image tests build (`target/image-test-base`, made by `cargo nextest run -p pyfunc-env --test
it -E 'test(/image::/)'`), prints:
 1. cached environment: `image --push` of a model whose environment is built but that was never
    made into an image (no environment layer in the cache, an empty repository): goal <= 10 s;
 2. new model version on the same environment: `image --push` of a copy of the model with one
    more file, to a repository that has the environment layer: goal <= 2 s, uploading only the
    model layer and the config;
 3. the image's size (base + environment layer + model layer + config + manifest) against the
    base, the environment packed by `pack` (tar.gz) and the model layer: goal within 5 %;
 4. start to first `/ping` (`podman run` to HTTP 200, as uid 4242 on a read-only root) against
    the model's own load time (`mlflow.pyfunc.load_model` in the environment, including
    `import mlflow`): goal within 1 s.

Usage: python3 benches/bench_image.py [--runs 5] [--bin target/release/pyfunc-env] [--uv-cache DIR]
       [--compression gzip|zstd]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "fixtures/models/sklearn-iris")
BASE_LAYOUT = os.path.join(ROOT, "target/image-test-base")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, check=True):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if check and out.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    return out


def timed(cmd, env):
    start = time.perf_counter()
    out = run(cmd, env)
    return time.perf_counter() - start, out.stdout


def ping(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/pyfunc-env"))
    ap.add_argument("--uv-cache", default=os.path.join(tempfile.gettempdir(), "pfe-bench-uv-cache"),
                    help="uv's cache (shared with the other benches by default)")
    ap.add_argument("--compression", default="gzip", choices=["gzip", "zstd"],
                    help="`image --compression` (the layers' compression)")
    ap.add_argument("--channel", help="the test conda channel (default: `cargo run -p env-test -- channel path`)")
    args = ap.parse_args()
    load_before = f"{os.getloadavg()[0]:.2f}"
    if not os.path.isfile(os.path.join(BASE_LAYOUT, "index.json")):
        sys.exit(f"no base image at {BASE_LAYOUT}: run the image tests once (see the docstring)")

    channel = args.channel or run(["cargo", "run", "-q", "-p", "env-test", "--", "channel", "path"]).stdout.strip()
    channel_url = channel if "://" in channel else f"file://{channel}"
    work = tempfile.mkdtemp(prefix="pfe-bench-image-")
    conf = os.path.join(work, "containers.conf")
    with open(conf, "w") as f:
        f.write("[containers]\ndefault_ulimits = []\n")
    uv_cache = args.uv_cache
    cache = os.path.join(work, "cache")
    env = dict(os.environ, PYFUNC_ENV_NO_PROGRESS="1", UV_CACHE_DIR=uv_cache,
               PYFUNC_ENV_UV_CACHE_DIR=uv_cache, PYFUNC_ENV_CACHE_DIR=cache, CONTAINERS_CONF=conf)
    flags = ["--env-manager", "virtualenv", "--python-source", "conda",
             "--mirror", f"conda-forge={channel_url}"]
    podman = ["podman", "--runtime", "runc"]

    port = free_port()
    data = os.path.join(work, "registry")
    with open(os.path.join(work, "registry.yml"), "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {data}\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    registry = subprocess.Popen(["docker-registry", "serve", os.path.join(work, "registry.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        host = f"127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{host}/v2/", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        base = f"{host}/base:glibc"
        run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", f"oci:{BASE_LAYOUT}:glibc",
             f"docker://{base}"], env)

        def image(model, ref):
            seconds, out = timed([args.bin, "image", model, *flags, "-t", ref, "--base", base,
                                  "--push", "--json", "-q", "--compression", args.compression], env)
            return seconds, json.loads(out)

        # Warm-up: builds the environment (PyPI once, then the warm uv cache).
        run([args.bin, "create", MODEL, *flags, "-q"], env)

        cached_env = []
        env_layer = []
        for i in range(args.runs):
            # The environment layer's record goes (the base's blobs stay: they are the base's).
            shutil.rmtree(os.path.join(cache, "images-v1", "env-layers"), ignore_errors=True)
            seconds, report = image(MODEL, f"{host}/sklearn-{i}:v1")
            assert not report["env_layer_cached"], report
            cached_env.append(seconds)
            env_layer.append(report["env_layer_seconds"])
        last = report

        new_model = []
        for i in range(args.runs):
            model = os.path.join(work, f"model-v{i + 2}")
            shutil.copytree(MODEL, model)
            with open(os.path.join(model, "NOTES.txt"), "w") as f:
                f.write(f"version {i + 2}\n")
            seconds, report = image(model, f"{host}/sklearn-0:v{i + 2}")
            uploaded = [b["role"] for b in report["push"]["blobs"] if b["action"] == "uploaded"]
            assert uploaded == ["model", "config"], report["push"]
            new_model.append(seconds)

        # Sizes: the image against base + `pack`'s tar.gz + the model layer.
        packed = os.path.join(work, "env.tar.gz")
        run([args.bin, "pack", MODEL, *flags, "-o", packed, "-q"], env)
        layers = {l["role"]: l for l in last["layers"]}
        base_bytes = sum(l["size"] for l in last["layers"] if l["role"] == "base")
        pack_bytes = os.path.getsize(packed)
        model_bytes = layers["model"]["size"]
        image_bytes = last["size"]
        parts = base_bytes + pack_bytes + model_bytes

        # Start to first /ping, and the model's own load time in the same environment.
        ref = f"{host}/sklearn-0:v1"
        run([*podman, "pull", "--quiet", "--tls-verify=false", ref], env)
        to_ping = []
        for _ in range(args.runs):
            port = free_port()
            name = f"pfe-bench-{port}"
            start = time.perf_counter()
            run([*podman, "run", "-d", "--network=host", "--name", name, "-e", f"PORT={port}",
                 "--read-only", "--user", "4242", ref], env)
            while not ping(port):
                if time.perf_counter() - start > 180:
                    sys.exit(run([*podman, "logs", name], env, check=False).stderr[-3000:])
                time.sleep(0.02)
            to_ping.append(time.perf_counter() - start)
            run([*podman, "rm", "-f", "-t", "0", name], env, check=False)
        load = []
        code = ("import time; t = time.perf_counter(); import mlflow.pyfunc; "
                f"mlflow.pyfunc.load_model({MODEL!r}); print(time.perf_counter() - t)")
        for _ in range(args.runs):
            out = run([args.bin, "run", MODEL, *flags, "-q", "--", "python", "-c", code], env)
            load.append(float(out.stdout.strip().splitlines()[-1]))
        run([*podman, "rmi", "-f", ref], env, check=False)
    finally:
        registry.terminate()
        registry.wait()

    med = statistics.median
    def mib(n):
        return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"
    print(f"runs: {args.runs} (medians); {args.bin}; --compression {args.compression}; load before/after: {load_before} / {os.getloadavg()[0]:.2f}")
    print(f"cached environment, each run: {' '.join(f'{s:.2f}' for s in cached_env)} s (environment layer: {' '.join(f'{s:.2f}' for s in env_layer)} s)")
    print(f"start to first /ping, each run: {' '.join(f'{s:.2f}' for s in to_ping)} s; load: {' '.join(f'{s:.2f}' for s in load)} s")
    print("| scenario | seconds | goal |")
    print("|---|---|---|")
    print(f"| cached environment: image + push (env layer written and uploaded) | {med(cached_env):.2f} | <= 10 s |")
    print(f"| new model version, same environment: image + push (model layer + config uploaded) | {med(new_model):.2f} | <= 2 s |")
    print(f"| container start to first /ping (read-only, uid 4242) | {med(to_ping):.2f} | <= load + 1 s |")
    print(f"| model load time in the environment (import mlflow + load_model) | {med(load):.2f} | |")
    print()
    print("| size | bytes |")
    print("|---|---|")
    print(f"| base layers | {mib(base_bytes)} |")
    print(f"| environment layer | {mib(layers['environment']['size'])} |")
    print(f"| `pack` tar.gz of the environment | {mib(pack_bytes)} |")
    print(f"| model layer | {mib(model_bytes)} |")
    print(f"| image (all layers, config, manifest) | {mib(image_bytes)} |")
    print(f"| image / (base + pack + model) | {image_bytes / parts:.3f} (goal <= 1.05) |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
