# The entrypoint of images written by `pyfunc-env image`: serves /opt/ml/model with the
# environment's own MLflow scoring server through serve.py, the very script
# `pyfunc-env run MODEL -- serve` runs, so a container serves exactly as `run -- serve` does
# (MLflow 1.x, 2.x and 3.x alike).
#
# Settings from the environment, as container platforms set them:
# - PORT (Cloud Run, KServe, Knative), else MLFLOW_PORT, else 8080 (MLflow's images);
# - MLFLOW_HOST, else 0.0.0.0;
# - MLflow's own serve settings, read by serve.py and MLflow as under `mlflow models serve`:
#   MLFLOW_WORKERS / MLFLOW_MODELS_WORKERS, GUNICORN_CMD_ARGS,
#   MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT.
#
# serve.py ends by running `bash -c "exec COMMAND"` as MLflow's backend does. A base image
# without a shell (distroless) gets the same command line handled here instead: `$VAR` and
# `${VAR}` expanded as the shell expands them unquoted, split into words, and a console script
# (whose relocatable `#!/bin/sh` trampoline needs a shell) run with this Python, which reads the
# trampoline lines as a string literal. Either way the server replaces this process, so SIGTERM
# reaches it directly.
#
# The server's own console script (uvicorn, or gunicorn for MLflow 1.x and early 2.x) is not
# exec'd but run in this process, with the command's argv and environment: serve.py has
# already imported mlflow and the server stack, which a new interpreter would import again
# (about 2 s of a container's start to its first /ping) before loading the model. uvicorn
# then serves from this process (more workers are spawned processes, as before), gunicorn's
# workers fork from it with mlflow already imported.
import os
import re
import shlex
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "/opt/ml/model"
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_real_execve = os.execve


def _which(name, path):
    if "/" in name:
        return name
    for directory in path.split(os.pathsep):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def _exec_without_shell(argv, env):
    command = argv[-1]
    if command.startswith("exec "):
        command = command[len("exec "):]
    expanded = _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), command)
    words = shlex.split(expanded)
    program = _which(words[0], env.get("PATH", "")) if words else None
    if program is None:
        sys.stderr.write("error: `%s` is not in the environment's bin/\n" % (words[0] if words else ""))
        sys.exit(127)
    with open(program, "rb") as f:
        head = f.read(2)
    if head == b"#!":
        words = [sys.executable, program] + words[1:]
        program = sys.executable
    else:
        words[0] = program
    _real_execve(program, words, env)


_IN_PROCESS = ("uvicorn", "gunicorn")


def _run_in_process(argv, env):
    """Runs the command in this process when it is the environment's uvicorn or gunicorn
    (a Python console script beside this interpreter); returns otherwise."""
    command = argv[-1]
    if command.startswith("exec "):
        command = command[len("exec "):]
    expanded = _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), command)
    words = shlex.split(expanded)
    if not words or os.path.basename(words[0]) not in _IN_PROCESS:
        return
    program = _which(words[0], env.get("PATH", ""))
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    if program is None or os.path.dirname(os.path.abspath(program)) != bindir:
        return
    with open(program, "rb") as f:
        head = f.readline()
    if not (head.startswith(b"#!") and b"python" in head):
        return
    os.execve = _real_execve
    os.environ.clear()
    os.environ.update(env)
    sys.argv = [program] + words[1:]
    import runpy

    runpy.run_path(program, run_name="__main__")
    sys.exit(0)


def _execve(path, argv, env):
    _run_in_process(argv, env)
    if os.path.isfile(path) and os.access(path, os.X_OK):
        _real_execve(path, argv, env)
    _exec_without_shell(argv, env)


def main():
    port = os.environ.get("PORT") or os.environ.get("MLFLOW_PORT") or "8080"
    host = os.environ.get("MLFLOW_HOST") or "0.0.0.0"
    serve = os.path.join(HERE, "serve.py")
    # serve.py's argv: model_dir host port workers|- timeout|- ("-": MLflow's own defaults and
    # variables apply).
    sys.argv = [serve, MODEL, host, port, "-", "-"]
    os.execve = _execve
    with open(serve) as f:
        source = f.read()
    exec(compile(source, serve, "exec"), {"__name__": "__main__", "__file__": serve})


if __name__ == "__main__":
    main()
