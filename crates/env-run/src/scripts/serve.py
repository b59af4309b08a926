# Runs inside a pyfunc-env environment: starts the environment's own mlflow scoring server
# exactly as `mlflow models serve` of that mlflow version does, in place of this process, so
# signals reach the server directly.
#
# What MLflow does (mlflow/pyfunc/backend.py `PyFuncBackend.serve`, 1.30.1 to 3.17.2): the
# backend's workers are `workers or 1`; `scoring_server.get_cmd(path, port, host, timeout,
# nworkers)` returns a *shell* command line (1.x and 2.x up to the FastAPI switch: `gunicorn
# --timeout=T -b HOST:PORT -w N ${GUNICORN_CMD_ARGS} -- ...wsgi:app`; later 2.x and 3.x:
# `uvicorn --host H --port P --workers N ...app:app` with the timeout in
# MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT) and an environment; the backend prefixes `exec ` and
# runs it with `bash -c`, so `${GUNICORN_CMD_ARGS}` expands. We do the same with exec.
#
# argv: model_dir host|- port|- workers|- timeout|-
#   `-` means "not given": MLflow's click defaults apply, including its environment variables
#   (MLFLOW_HOST, MLFLOW_PORT, MLFLOW_WORKERS or MLFLOW_MODELS_WORKERS by version).
import os
import shutil
import sys

DAMAGED_HINT = (
    "if mlflow is installed but fails to import, the environment may be damaged: "
    "check it with `pyfunc-env cache verify` and rebuild it with `pyfunc-env create MODEL --reinstall`; "
    "if the model's files do not list mlflow, rerun with `--install-mlflow`"
)


def fail(message, hint=None, code=1):
    sys.stderr.write("error: %s\n" % message)
    if hint:
        sys.stderr.write("\nhint: %s\n" % hint)
    sys.exit(code)


class _StubUsed(Exception):
    pass


class _Stub:
    """Stands in for the loaded model while checking that the server can be built."""

    def __getattr__(self, name):
        if name == "metadata":
            return _Metadata()
        raise _StubUsed(name)


class _Metadata:
    def get_input_schema(self):
        return None

    def get_params_schema(self):
        return None

    def __getattr__(self, name):
        raise _StubUsed(name)


def installed(names):
    try:
        from importlib.metadata import version
    except ImportError:  # Python < 3.8
        return ""
    found = []
    for name in names:
        try:
            found.append("%s %s" % (name, version(name)))
        except Exception:
            pass
    return ", ".join(found)


def preflight(scoring_server, mlflow_version, command):
    """Builds the server's app around a stub model, which runs every route definition of
    MLflow's own `scoring_server.init` without loading the model, so a server stack that
    cannot start (e.g. Starlette >= 1 under MLflow 2.x's FastAPI server) is reported on one
    screen instead of as a traceback in every worker."""
    import traceback

    server = command.split()[0] if command.split() else ""
    try:
        __import__(server) if server in ("gunicorn", "uvicorn") else None
        scoring_server.init(_Stub())
    except _StubUsed:
        return  # MLflow's code wants more of the model than the stub has; nothing to judge.
    except Exception as e:
        frames = traceback.extract_tb(e.__traceback__)
        where = ""
        if frames:
            last = frames[-1]
            path = last.filename
            marker = os.sep + "site-packages" + os.sep
            if marker in path:
                path = path.split(marker, 1)[1]
            where = "\n  at %s:%s: %s" % (path, last.lineno, (last.line or "").strip())
        stack = installed(
            ["fastapi", "starlette", "uvicorn", "pydantic", "flask", "werkzeug", "gunicorn", "protobuf"]
        )
        fail(
            "MLflow %s's scoring server cannot start in this environment\n  Caused by: %s: %s%s%s"
            % (
                mlflow_version,
                type(e).__name__,
                e,
                where,
                "\n  Installed: %s" % stack if stack else "",
            ),
            "newer releases of the server's libraries break this mlflow version. "
            "Build the environment as it was when the model was saved with `--exclude-newer model`, "
            "and keep pyfunc-env's compatibility constraints on (do not pass `--no-compat-constraints`; "
            "`pyfunc-env inspect MODEL` lists them)",
        )


def main():
    model_dir, host, port, workers, timeout = sys.argv[1:6]
    try:
        import mlflow
        from mlflow.pyfunc import scoring_server
    except ImportError as e:
        fail("mlflow cannot be imported in this environment (%s)" % e, DAMAGED_HINT)
    mlflow_version = str(getattr(mlflow, "__version__", "0"))
    try:
        from mlflow.utils import cli_args

        workers_variable = "MLFLOW_MODELS_WORKERS" if hasattr(cli_args, "MODELS_WORKERS") else "MLFLOW_WORKERS"
    except ImportError:
        workers_variable = "MLFLOW_WORKERS"
    # MLflow's click options and their defaults.
    host = os.environ.get("MLFLOW_HOST", "127.0.0.1") if host == "-" else host
    port = int(os.environ.get("MLFLOW_PORT", "5000") if port == "-" else port)
    workers = os.environ.get(workers_variable) if workers == "-" else workers
    workers = int(workers) if workers else None
    timeout = None if timeout == "-" else int(timeout)
    # PyFuncBackend.__init__: `self._nworkers = workers or 1`.
    command, env = scoring_server.get_cmd(model_dir, port, host, timeout, workers or 1)
    if model_dir.endswith("/"):
        # A plain-named link to a directory whose path MLflow would misparse (see
        # `mlflow_safe_model_path`): get_cmd's file:// URI of it would be resolved by MLflow 3
        # to the link's target and refused; the path with its trailing `/` is read as the link.
        env[scoring_server._SERVER_MODEL_PATH] = model_dir
    preflight(scoring_server, mlflow_version, command)
    # The server's own executables (uvicorn, gunicorn) live next to this interpreter.
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    shell = shutil.which("bash", path=env["PATH"]) or "/bin/sh"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(shell, [shell, "-c", "exec " + command], env)


if __name__ == "__main__":
    main()
