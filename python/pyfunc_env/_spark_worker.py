"""The scoring process of ``pyfunc_env.spark_udf``: runs in the model's own environment.

Started once per Spark Python worker as ``ENV/bin/python -c <this file's text> MODEL_DIR
CONFIG_JSON`` (the text travels inside the pickled UDF, so nothing else has to be shipped), it
loads the model with the environment's own mlflow and answers batches until stdin closes.

Protocol, on stdin and on a private copy of stdout (the real stdout is pointed at stderr, so a
model that prints cannot corrupt it):
- request: an 8-byte big-endian length, then an Arrow IPC stream holding the input rows;
- response: one byte of kind, an 8-byte big-endian length, then the body: ``R`` (ready, empty,
  once after loading), ``P`` (predictions, an Arrow IPC stream), ``E`` (the model's error:
  a UTF-8 traceback; the process keeps serving).

The predictions are turned into a DataFrame the way MLflow's scoring server and its client do
it for ``spark_udf(env_manager="virtualenv"|"uv")`` (``predictions_to_json`` then
``PredictionsResponse.get_predictions``), without the JSON: integers widen to int64 and floats
to float64 as JSON numbers do, so the UDF's result conversion sees the same frame.

This file must run on every Python an MLflow model may use (3.8 and later) and on old pandas,
numpy and pyarrow: no f-string ``=``, no walrus, no ``match``.
"""

import gc
import importlib
import inspect
import json
import os
import struct
import sys
import traceback


def _read_exact(stream, size):
    chunks = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _jsonable(value):
    import numpy as np
    import pandas as pd

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, pd.DataFrame):
        return value.to_dict(orient="records")
    if isinstance(value, pd.Series):
        return value.tolist()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _widen(frame):
    """int64/float64 for every integer/float column, as a JSON round trip would give."""
    import numpy as np

    for column in frame.columns:
        dtype = frame[column].dtype
        if getattr(dtype, "kind", None) in ("i", "u") and dtype != np.int64:
            frame[column] = frame[column].astype(np.int64)
        elif getattr(dtype, "kind", None) == "f" and dtype != np.float64:
            frame[column] = frame[column].astype(np.float64)
    return frame


def _to_frame(predictions):
    import numpy as np
    import pandas as pd

    if isinstance(predictions, pd.DataFrame):
        frame = predictions.reset_index(drop=True)
    elif isinstance(predictions, np.ndarray) and predictions.ndim in (1, 2) and predictions.dtype.kind in "biuf":
        frame = pd.DataFrame(predictions)
    elif isinstance(predictions, str):
        frame = pd.DataFrame(data=[predictions])
    else:
        value = _jsonable(predictions)
        if isinstance(value, dict) and not any(
            isinstance(item, list) for item in value.values()
        ):
            frame = pd.DataFrame(data=value, index=[0])
        elif isinstance(value, (list, dict)):
            frame = pd.DataFrame(data=value)
        else:
            frame = pd.DataFrame(data=[value])
    frame = frame.copy()
    frame.columns = [str(column) for column in frame.columns]
    return _widen(frame)


def _trace(what):
    # `_spark_executor.trace`, repeated on purpose: this file runs as a script in the model's
    # environment (spark.py ships its source), where the `pyfunc_env` package and the
    # executor's module are not importable. `PYFUNC_ENV_SPARK_TRACE` names the file.
    path = os.environ.get("PYFUNC_ENV_SPARK_TRACE")
    if not path:
        return
    import time

    try:
        with open(path, "a") as f:
            f.write("%.3f pid %d %s\n" % (time.time(), os.getpid(), what))
    except OSError:
        pass


# Modules imported before mlflow for a flavor's serialization format, the same modules MLflow's
# loader imports, only earlier: skops (scikit-learn's `skops` format) names each of its trusted
# types by scanning every loaded module for objects without `__module__` (scipy's ufuncs), in
# import order; imported after mlflow, the scan passes mlflow's ~1,500 modules first for every
# such type (0.6 s of CPU per process for the iris fixture).
_FIRST_IMPORTS = {("mlflow.sklearn", "skops"): ("skops.io",)}


def _first_imports(model_dir):
    """What `_FIRST_IMPORTS` says for the model's MLmodel (nothing when it cannot be read)."""
    try:
        import yaml

        with open(os.path.join(model_dir, "MLmodel")) as f:
            flavors = (yaml.safe_load(f) or {}).get("flavors") or {}
        loader = (flavors.get("python_function") or {}).get("loader_module")
        if loader == "mlflow.sklearn":
            fmt = (flavors.get("sklearn") or {}).get("serialization_format")
            return _FIRST_IMPORTS.get((loader, fmt), ())
    except Exception:
        pass
    return ()


def main():
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer

    def send(kind, body):
        out.write(kind + struct.pack(">Q", len(body)) + body)
        out.flush()

    model_dir, config = sys.argv[1], json.loads(sys.argv[2])
    _trace("scoring process: python up")
    # Nothing collectable is made while modules import and the model loads, but the collector
    # would run hundreds of times over the growing heap (0.3-0.5 s of CPU for mlflow and
    # scikit-learn): it is off until the model is loaded, then back as it was.
    collecting = gc.isenabled()
    gc.disable()
    try:
        first = _first_imports(model_dir)
        for name in first:
            try:
                importlib.import_module(name)
            except Exception:
                # mlflow's load raises the real error, if there is one.
                pass
        if first:
            _trace("scoring process: imported %s before mlflow" % ", ".join(first))
        import pyarrow as pa
        import mlflow.pyfunc

        _trace("scoring process: mlflow imported")
        kwargs = {}
        if config.get("model_config") is not None:
            kwargs["model_config"] = config["model_config"]
        model = mlflow.pyfunc.load_model(model_dir, **kwargs)
        takes_params = "params" in inspect.signature(model.predict).parameters
    except BaseException:
        send(b"E", traceback.format_exc().encode("utf-8", "replace"))
        return 1
    finally:
        if collecting:
            gc.enable()
    _trace("scoring process: model loaded")
    params = config.get("params")
    send(b"R", b"")
    while True:
        header = _read_exact(requests, 8)
        if header is None:
            return 0
        body = _read_exact(requests, struct.unpack(">Q", header)[0])
        if body is None:
            return 0
        try:
            rows = pa.ipc.open_stream(body).read_all().to_pandas()
            if takes_params:
                predictions = model.predict(rows, params=params)
            else:
                if params:
                    sys.stderr.write(
                        "pyfunc-env: this model's predict() takes no params; ignoring %s\n"
                        % sorted(params)
                    )
                predictions = model.predict(rows)
            table = pa.Table.from_pandas(_to_frame(predictions), preserve_index=False)
            sink = pa.BufferOutputStream()
            writer = pa.ipc.new_stream(sink, table.schema)
            writer.write_table(table)
            writer.close()
            send(b"P", sink.getvalue().to_pybytes())
        except Exception:
            send(b"E", traceback.format_exc().encode("utf-8", "replace"))


if __name__ == "__main__":
    sys.exit(main())
