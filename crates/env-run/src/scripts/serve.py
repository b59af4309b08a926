# Runs inside a pyfunc-env environment: starts the environment's own mlflow scoring server
# (the command `mlflow models serve` would start for this mlflow version) in place of this
# process, so signals reach the server directly.
#
# argv: model_dir host port workers|- timeout|-
import os
import shlex
import sys


def main():
    model_dir, host, port, workers, timeout = sys.argv[1:6]
    workers = None if workers == "-" else int(workers)
    timeout = None if timeout == "-" else int(timeout)
    try:
        from mlflow.pyfunc import scoring_server
    except ImportError as e:
        sys.stderr.write("error: mlflow cannot be imported in this environment (%s)\n" % e)
        if os.path.isdir(os.path.join(sys.prefix, ".pyfunc-env")):
            hint = (
                "mlflow is installed here but does not import: the environment may be damaged. "
                "Check it with `pyfunc-env cache verify` and rebuild it with `pyfunc-env create MODEL --reinstall`"
            )
        else:
            hint = "mlflow is installed in this interpreter but does not import: repair or reinstall it there"
        sys.stderr.write("\nhint: %s\n" % hint)
        sys.exit(1)
    command, env = scoring_server.get_cmd(model_dir, int(port), host, timeout, workers)
    # The server's own executables (uvicorn, gunicorn) live next to this interpreter.
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    argv = shlex.split(command)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
