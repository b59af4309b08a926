# Runs inside a pyfunc-env environment with its own Python: scores the model with the
# environment's own mlflow, the way `mlflow models predict` does, so schema enforcement and the
# output format are those of the model's mlflow version.
#
# argv: model_dir input_path|- output_path|- content_type params_json|-
import json
import os
import sys
import tempfile


# pyfunc-env checked that mlflow's distribution is installed before running this script, so
# an import failure means files are missing or broken.
DAMAGED_HINT = (
    "the environment looks damaged (mlflow is installed but does not import): check it with "
    "`pyfunc-env cache verify` and rebuild it with `pyfunc-env create MODEL --reinstall`"
)


def fail(message, hint=None, code=1):
    sys.stderr.write("error: %s\n" % message)
    if hint:
        sys.stderr.write("\nhint: %s\n" % hint)
    sys.exit(code)


def main(model_dir, input_path, output_path, content_type, params_json):
    input_path = None if input_path == "-" else input_path
    output_path = None if output_path == "-" else output_path
    params = None if params_json == "-" else json.loads(params_json)

    try:
        import mlflow
    except ImportError as e:
        fail("mlflow cannot be imported in this environment (%s: %s)" % (type(e).__name__, e), DAMAGED_HINT)

    version = getattr(mlflow, "__version__", "0")
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    temp_files = []

    def staged(text):
        fd, path = tempfile.mkstemp(prefix="pyfunc-env-input-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        temp_files.append(path)
        return path

    def read_input():
        if input_path is None:
            return sys.stdin.read()
        with open(input_path) as f:
            return f.read()

    try:
        if major < 2:
            return predict_v1(model_dir, input_path, output_path, content_type, params, read_input, staged)

        from mlflow.pyfunc import scoring_server

        if content_type == "parquet":
            # The DataFrame MLflow's server builds for `application/vnd.apache.parquet`
            # (`parse_parquet_input`), with no JSON round trip (which rounds floats to 10
            # significant digits and loses int64 beyond 2^53).
            import io

            if input_path is None:
                source = io.BytesIO(sys.stdin.buffer.read())
            else:
                source = input_path
            if hasattr(scoring_server, "parse_parquet_input"):
                frame = scoring_server.parse_parquet_input(source)
            else:
                import pandas

                frame = pandas.read_parquet(source)
            return predict_frame(model_dir, frame, params, output_path)
        elif params is not None and content_type == "csv":
            # The DataFrame MLflow builds for CSV (`parse_csv_input`, with the schema where the
            # version takes one), scored with the params.
            source = input_path if input_path is not None else sys.stdin
            try:
                schema = load_model_metadata(model_dir).get_input_schema()
                frame = scoring_server.parse_csv_input(source, schema=schema)
            except TypeError:
                frame = scoring_server.parse_csv_input(source)
            return predict_frame(model_dir, frame, params, output_path)
        elif params is not None:
            document = json.loads(read_input())
            if not isinstance(document, dict):
                fail("`--params` needs a JSON object input such as {\"dataframe_split\": ...}")
            merged = dict(document.get("params") or {})
            merged.update(params)
            document["params"] = merged
            input_path = staged(json.dumps(document))

        scoring_server._predict(model_dir, input_path, output_path, content_type)
    finally:
        for path in temp_files:
            try:
                os.unlink(path)
            except OSError:
                pass


def predict_v1(model_dir, input_path, output_path, content_type, params, read_input, staged):
    """MLflow 1.x: no `dataframe_split` wrapper; pandas `split`/`records` orients instead."""
    from mlflow.pyfunc import scoring_server

    if params is not None:
        sys.stderr.write("warning: MLflow %s models take no params; ignoring `--params`\n" % mlflow_version())
    if content_type == "parquet":
        import io

        import pandas

        source = io.BytesIO(sys.stdin.buffer.read()) if input_path is None else input_path
        return predict_frame(model_dir, pandas.read_parquet(source), None, output_path)
    elif content_type == "json":
        document = json.loads(read_input())
        json_format = "split"
        if isinstance(document, dict):
            if "dataframe_split" in document:
                document = document["dataframe_split"]
            elif "dataframe_records" in document:
                document, json_format = document["dataframe_records"], "records"
            document.pop("params", None) if isinstance(document, dict) else None
        elif isinstance(document, list):
            json_format = "records"
        input_path = staged(json.dumps(document))
    else:
        json_format = "split"
    scoring_server._predict(model_dir, input_path, output_path, content_type, json_format)


def load_model_metadata(model_dir):
    from mlflow.models import Model

    return Model.load(model_dir)


def predict_frame(model_dir, frame, params, output_path):
    """`scoring_server._predict` for a DataFrame already built: load, predict (with params when
    the model takes them), and write MLflow's JSON."""
    import contextlib
    import inspect

    from mlflow.pyfunc import load_model, scoring_server

    try:
        from mlflow.pyfunc.utils.environment import _simulate_serving_environment as serving
    except ImportError:
        serving = contextlib.nullcontext
    with serving():
        model = load_model(model_dir)
        if "params" in inspect.signature(model.predict).parameters:
            raw = model.predict(frame, params=params)
        else:
            warn = getattr(scoring_server, "_log_warning_if_params_not_in_predict_signature", None)
            if warn is not None:
                warn(scoring_server._logger, params)
            raw = model.predict(frame)
        if output_path is None:
            scoring_server.predictions_to_json(raw, sys.stdout)
        else:
            with open(output_path, "w") as out:
                scoring_server.predictions_to_json(raw, out)


def mlflow_version():
    import mlflow

    return mlflow.__version__


# The common case runs at module level, exactly as the floor (`python -c "... _predict(...)"`)
# does: called inside a function, the loaded model and frames are freed one by one when it
# returns, which costs ~0.3 s of munmap churn on the scikit-learn fixture (measured with strace).
ARGS = sys.argv[1:6]
if ARGS[3] in ("json", "csv") and ARGS[4] == "-":
    try:
        import mlflow
    except ImportError as e:
        fail("mlflow cannot be imported in this environment (%s: %s)" % (type(e).__name__, e), DAMAGED_HINT)
    if str(getattr(mlflow, "__version__", "0")).split(".")[0] not in ("0", "1"):
        from mlflow.pyfunc import scoring_server

        scoring_server._predict(
            ARGS[0],
            None if ARGS[1] == "-" else ARGS[1],
            None if ARGS[2] == "-" else ARGS[2],
            ARGS[3],
        )
    else:
        main(*ARGS)
else:
    main(*ARGS)
