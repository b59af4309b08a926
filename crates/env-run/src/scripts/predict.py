# Runs inside a pyfunc-env environment with its own Python: scores the model with the
# environment's own mlflow, the way `mlflow models predict` does, so schema enforcement and the
# output format are those of the model's mlflow version.
#
# argv: model_dir input_path|- output_path|- content_type params_json|-
import json
import os
import sys
import tempfile


def import_hint():
    # pyfunc-env only starts this script where mlflow is installed: if it does not import, the
    # environment is damaged (a deleted file), not missing mlflow (issue 15, item 9).
    if os.path.isdir(os.path.join(sys.prefix, ".pyfunc-env")):
        return (
            "mlflow is installed here but does not import: the environment may be damaged. "
            "Check it with `pyfunc-env cache verify` and rebuild it with `pyfunc-env create MODEL --reinstall`"
        )
    return "mlflow is installed in this interpreter but does not import: repair or reinstall it there"


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
        fail(
            "mlflow cannot be imported in this environment (%s)" % e,
            import_hint(),
        )

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
            import pandas

            frame = pandas.read_parquet(input_path if input_path is not None else sys.stdin.buffer)
            payload = {"dataframe_split": json.loads(frame.to_json(orient="split", date_format="iso"))}
            if params is not None:
                payload["params"] = params
            input_path = staged(json.dumps(payload))
            content_type = "json"
        elif params is not None and content_type == "csv":
            import pandas

            frame = scoring_server.parse_csv_input(input_path if input_path is not None else sys.stdin)
            payload = {"dataframe_split": json.loads(frame.to_json(orient="split", date_format="iso")), "params": params}
            input_path = staged(json.dumps(payload))
            content_type = "json"
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
        import pandas

        frame = pandas.read_parquet(input_path if input_path is not None else sys.stdin.buffer)
        input_path = staged(frame.to_json(orient="split", date_format="iso"))
        content_type, json_format = "json", "split"
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
        fail(
            "mlflow cannot be imported in this environment (%s)" % e,
            import_hint(),
        )
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
