"""The executor side of ``pyfunc_env.spark_udf``: runs in the executors' own Python.

It needs only what any pandas UDF needs (pyspark, pandas, numpy, pyarrow): the functions here
are pickled by value with the UDF (``spark_udf`` registers this module with cloudpickle), so
pyfunc-env does not have to be installed on the executors. The model's dependencies never
enter this process: each Spark Python worker starts one scoring process from the shipped
environment (``_spark_worker.py``) per UDF and keeps it for every batch of every task it runs.

A scoring process that dies (killed, out of memory, a crash in native code) fails the task with
its exit status and the last lines it wrote to stderr; Spark retries the task, and the retry
starts a new process. The result conversion follows ``mlflow.pyfunc.spark_udf`` (MLflow 3.17)
for the predictions its scoring server returns.
"""

import collections
import os
import signal
import struct
import subprocess
import sys
import threading

import numpy as np
import pandas

# The last lines of a scoring process's stderr kept for the error of a task.
_STDERR_TAIL_LINES = 100


class ScoringProcessError(RuntimeError):
    """The scoring process of a model died or failed; the message holds its own error text."""


def _registry():
    return _state().processes


def _state():
    # Kept in a module of its own in `sys.modules`: this module's functions are unpickled anew
    # for every task (by value), but the Python worker process (reused across tasks, Spark's
    # default `spark.python.worker.reuse=true`) keeps its scoring processes.
    state = sys.modules.get("_pyfunc_env_spark_state")
    if state is None:
        import types

        state = types.ModuleType("_pyfunc_env_spark_state")
        state.processes = {}
        # udf_id -> the error of starting its scoring process when the UDF was unpickled.
        state.errors = {}
        sys.modules["_pyfunc_env_spark_state"] = state
    return state


def trace(what):
    """Appends a timestamped line to the file `PYFUNC_ENV_SPARK_TRACE` names, when set (see
    docs/guides/spark.md, "Where the time goes"): how the executor side spends its time."""
    path = os.environ.get("PYFUNC_ENV_SPARK_TRACE")
    if not path:
        return
    import time

    try:
        with open(path, "a") as f:
            f.write("%.3f pid %d %s\n" % (time.time(), os.getpid(), what))
    except OSError:
        pass


def _die_with_parent():
    # Linux: the scoring process gets SIGKILL when the Python worker that started it exits,
    # whatever way it exits (Spark kills workers of cancelled tasks).
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass


def _describe_exit(code):
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return "was killed by signal %d (%s)" % (-code, name)
    return "exited with code %d" % code


# --- The node-local cache: each shipped archive (environment or model) is unpacked once per
# node, not once per application and executor as `SparkContext.addArchive` does. Spark ships the
# archive as a plain file (`addFile`); the first Python worker of a node that needs it unpacks
# it into `<pyfunc-env cache>/spark-v1/<name>/` under a per-name lock, into a temporary directory
# renamed into place once complete (a marker file written last inside it), so a killed unpack
# leaves nothing that a later worker trusts. Later workers, UDFs and applications on that node
# find the directory and skip the unpack.

# Written last into an unpacked directory, before it is renamed into place.
_COMPLETE_MARKER = ".pyfunc-env-unpacked"
_NODE_BUCKET = "spark-v1"
_CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by pyfunc-env.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)


def node_cache_dir():
    """Where this node keeps unpacked archives: the pyfunc-env cache of the executor's user.

    `PYFUNC_ENV_CACHE_DIR` (e.g. `spark.executorEnv.PYFUNC_ENV_CACHE_DIR`), else
    `$XDG_CACHE_HOME/pyfunc-env`, else `~/.cache/pyfunc-env`, as the pyfunc-env CLI resolves it,
    so `pyfunc-env cache clean` on the node removes it.
    """
    root = os.environ.get("PYFUNC_ENV_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        root = os.path.join(base, "pyfunc-env")
    return os.path.join(os.path.abspath(root), _NODE_BUCKET)


def _complete(path):
    return os.path.isfile(os.path.join(path, _COMPLETE_MARKER))


def _extract(archive, target):
    """Extracts a .tar.gz into `target` (a new, empty directory) the way Spark's `addArchive`
    does (GNU tar), falling back to Python's tarfile where no `tar` is on PATH."""
    import shutil

    tar = shutil.which("tar")
    if tar:
        result = subprocess.run(
            [tar, "--no-same-owner", "-xzf", archive, "-C", target],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        if result.returncode != 0:
            raise ScoringProcessError(
                "Failed to unpack `%s` into `%s` (tar exited with %d): %s"
                % (archive, target, result.returncode, result.stderr.decode("utf-8", "replace").strip())
            )
        return
    import tarfile

    with tarfile.open(archive) as opened:
        if hasattr(tarfile, "data_filter"):
            opened.extractall(target, filter="data")
        else:
            opened.extractall(target)


def download(url, destination, size, what):
    """Fetches `url` (the driver's file server) into the file `destination`, checking its size
    (the gzip trailer's CRC is checked by the unpack)."""
    import shutil
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(destination, "wb") as f:
            shutil.copyfileobj(response, f, 1 << 20)
    except OSError as error:
        raise ScoringProcessError(
            "Could not fetch %s from the driver at %s: %s. pyfunc_env.spark_udf serves it from "
            "the driver process to executors whose node lacks it: let the executors reach the "
            "driver on that port (pin it with `spark.pyfunc_env.fileServerPort`), or set "
            "`spark.pyfunc_env.shipWith=addFile` to ship it with SparkContext.addFile"
            % (what, url.rsplit("/", 2)[0], error)
        ) from error
    got = os.path.getsize(destination)
    if got != size:
        raise ScoringProcessError(
            "Fetched %s from %s: %d bytes, expected %d (the connection was cut): the task's "
            "retry fetches it again" % (what, url.rsplit("/", 2)[0], got, size)
        )


def unpack_once(archive, cache, name, fetch=None):
    """The complete directory `cache/name`, unpacked from `archive` unless already there.

    With `fetch` (a function of a destination path), `archive` is not read: the archive is
    fetched into the cache under the lock, only when the directory is not there, and removed
    after the unpack."""
    import fcntl
    import json
    import shutil
    import socket
    import time

    target = os.path.join(cache, name)
    if _complete(target):
        return target
    os.makedirs(cache, exist_ok=True)
    tag = os.path.join(os.path.dirname(cache), "CACHEDIR.TAG")
    if not os.path.exists(tag):
        try:
            with open(tag, "w") as f:
                f.write(_CACHEDIR_TAG)
        except OSError:
            pass
    stale = []
    with open(os.path.join(cache, name + ".lock"), "a+b") as lock:
        # Two Python workers of this node (or two executors sharing it) unpack once: the second
        # waits here, then finds the directory complete.
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if _complete(target):
            return target
        # Under the lock nobody else writes for this name: what is there is left by a killed
        # unpack (a temporary directory, or a directory without the marker), never trusted.
        # They are removed before anything is written: a new worker can get the PID of the
        # killed one (containers restart with small PIDs), and its temporary directory's name.
        prefix = ".tmp-%s-" % name
        for entry in os.listdir(cache):
            if entry.startswith(prefix):
                path = os.path.join(cache, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.remove(path)
        if os.path.lexists(target):
            aside = os.path.join(cache, "%sstale-%d" % (prefix, os.getpid()))
            os.rename(target, aside)
            stale.append(aside)
        temporary = os.path.join(cache, "%s%d" % (prefix, os.getpid()))
        fetched = ""
        if fetch is not None:
            archive = temporary + ".tar.gz"
            started = time.time()
            try:
                fetch(archive)
            except BaseException:
                if os.path.exists(archive):
                    os.remove(archive)
                raise
            fetched = "fetched in %.1fs, " % (time.time() - started)
        os.makedirs(temporary)
        started = time.time()
        try:
            _extract(archive, temporary)
            seconds = time.time() - started
            size = os.path.getsize(archive)
            with open(os.path.join(temporary, _COMPLETE_MARKER), "w") as f:
                json.dump({"archive": os.path.basename(archive), "archive_bytes": size,
                           "seconds": round(seconds, 1)}, f)
            os.rename(temporary, target)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        finally:
            if fetch is not None and os.path.exists(archive):
                os.remove(archive)
        try:
            with open(os.path.join(cache, "unpack.log"), "a") as log:
                log.write("%s %s %sunpacked %.1f MiB in %.1fs (pid %d on %s)\n" % (
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), name, fetched,
                    size / 1048576.0, seconds, os.getpid(), socket.gethostname()))
        except OSError:
            pass
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return target


def shipped_dir(root, locator, config):
    """The directory of a shipped archive (`locator`, made by `spark_udf`) on this executor.

    `root` is the SparkFiles root: Spark Connect's `addArtifacts(..., archive=True)` unpacks the
    archive there under its name. Otherwise the archive is unpacked once per node into the
    node-local cache: a node that holds it already uses it without fetching anything; else it
    is fetched from the driver's file server (`url`), or taken from where Spark fetched it
    (`file`, shipped with `SparkContext.addFile`)."""
    name = locator["name"]
    unpacked = os.path.join(root, name)
    if os.path.isdir(unpacked):
        return unpacked
    cache = node_cache_dir()
    target = os.path.join(cache, name)
    if _complete(target):
        trace("node cache holds %s" % name)
        return target
    what = "the archive `%s` of model `%s`" % (name, config["model_uri"])
    if locator.get("url"):
        trace("fetching %s" % name)
        return unpack_once(
            None, cache, name,
            fetch=lambda path: download(locator["url"], path, locator["bytes"], what),
        )
    archive = os.path.join(root, locator.get("file") or "")
    if not locator.get("file") or not os.path.isfile(archive):
        raise ScoringProcessError(
            "The archive `%s` of model `%s` is not on this executor: `%s` does not exist (SparkFiles "
            "root `%s`). pyfunc_env.spark_udf ships it with SparkContext.addFile when the UDF is "
            "created; create the UDF with the SparkSession that runs this job."
            % (locator.get("file"), config["model_uri"], archive, root)
        )
    return unpack_once(archive, cache, name)


class ScoringProcess:
    """One model's scoring process in this Python worker."""

    def __init__(self, config, root):
        self.config = config
        trace("resolving the environment")
        env_dir = shipped_dir(root, config["env_archive"], config)
        trace("environment ready")
        model_dir = shipped_dir(root, config["model_archive"], config)
        python = os.path.join(env_dir, "bin", "python" + config["python_minor"])
        if not os.path.exists(python):
            raise ScoringProcessError(
                "The environment of model `%s` has no `%s`: the archive `%s` is not an "
                "environment packed by pyfunc-env" % (config["model_uri"], python, config["env_archive"]["name"])
            )
        environment = dict(os.environ)
        # The executor's PYTHONPATH holds pyspark.zip and py4j: not the model's business.
        for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
            environment.pop(name, None)
        environment.update(config.get("extra_env") or {})
        self.label = "model `%s`" % config["model_uri"]
        self.tail = collections.deque(maxlen=_STDERR_TAIL_LINES)
        self.process = subprocess.Popen(
            [
                python,
                "-c",
                config["worker_source"],
                model_dir,
                config["worker_config"],
                # Names the UDF in `ps` output (and lets a test find the process).
                "pyfunc-env-udf=" + config["udf_id"],
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
            cwd=env_dir,
            preexec_fn=_die_with_parent,
        )
        trace("scoring process spawned: pid %d for %s" % (self.process.pid, self.label))
        self.stderr_thread = threading.Thread(
            target=self._forward_stderr, name="pyfunc-env-stderr", daemon=True
        )
        self.stderr_thread.start()
        # The model loads while the first batch is converted; `predict` waits for it.
        self.ready = False
        # Whether a batch was scored: a process that dies before its first batch is not
        # replaced without a word (`scoring_process`).
        self.used = False

    def wait_ready(self):
        if self.ready:
            return
        kind, body = self._receive()
        if kind == b"E":
            self.close()
            raise ScoringProcessError(
                "The scoring process of %s failed to load it:\n%s"
                % (self.label, body.decode("utf-8", "replace"))
            )
        self.ready = True

    def _forward_stderr(self):
        for line in iter(self.process.stderr.readline, b""):
            text = line.decode("utf-8", "replace")
            self.tail.append(text)
            sys.stderr.write("[pyfunc-env model] " + text)
        sys.stderr.flush()

    def alive(self):
        return self.process.poll() is None

    def _died(self, cause=None):
        try:
            code = self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
            self.process.kill()
        self.stderr_thread.join(timeout=5)
        tail = "".join(self.tail).rstrip()
        message = "The scoring process of %s (pid %d) %s%s" % (
            self.label,
            self.process.pid,
            _describe_exit(code),
            "; its last output on stderr:\n" + tail if tail else " without writing to stderr",
        )
        raise ScoringProcessError(message) from cause

    def _receive(self):
        stream = self.process.stdout
        header = stream.read(9)
        if len(header) < 9:
            self._died()
        kind, size = header[:1], struct.unpack(">Q", header[1:])[0]
        body = stream.read(size) if size else b""
        if len(body) < size:
            self._died()
        return kind, body

    def predict(self, frame):
        import pyarrow as pa

        table = pa.Table.from_pandas(frame, preserve_index=False)
        # The environment's pandas may be older than this one: send plain Arrow types only.
        table = table.replace_schema_metadata(None)
        sink = pa.BufferOutputStream()
        writer = pa.ipc.new_stream(sink, table.schema)
        writer.write_table(table)
        writer.close()
        payload = sink.getvalue().to_pybytes()
        if not self.ready:
            trace("waiting for the model to load")
            self.wait_ready()
            trace("model loaded")
        try:
            self.process.stdin.write(struct.pack(">Q", len(payload)))
            self.process.stdin.write(payload)
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            self._died(error)
        kind, body = self._receive()
        self.used = True
        if kind == b"E":
            raise ScoringProcessError(
                "The model raised while predicting (%s):\n%s"
                % (self.label, body.decode("utf-8", "replace"))
            )
        return pa.ipc.open_stream(body).read_all().to_pandas()

    def close(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class StartsOnUnpickle(dict):
    """The UDF's config, which starts the UDF's scoring process where it is unpickled in a task.

    A Python worker unpickles the UDF while it sets the task up, seconds (Spark's "init" time:
    its serializers, pandas and pyarrow imports) before the first batch reaches `score`: started
    then, the scoring process loads the model meanwhile."""

    def __reduce__(self):
        return (prestart, (dict(self),))


def prestart(config):
    """Unpickles a `StartsOnUnpickle`: starts the scoring process in a Spark task (nowhere else:
    a driver that unpickles the UDF starts nothing). A failure is kept for `score` to raise,
    so that the task fails with it as before."""
    try:
        from pyspark import TaskContext

        if TaskContext.get() is not None:
            # pandas is what a Python worker imports next, once the UDF is unpickled.
            trace("udf unpickled, pandas %s" % (
                "already imported" if "pandas" in sys.modules else "not imported yet"))
            scoring_process(config)
    except BaseException as error:
        _state().errors[config["udf_id"]] = error
    return config


def scoring_process(config):
    """The live scoring process of this UDF in this Python worker, started if needed."""
    from pyspark import SparkFiles

    processes = _registry()
    key = config["udf_id"]
    process = processes.get(key)
    # A process that died before its first batch (one started when the UDF was unpickled, which
    # failed to load the model or was killed meanwhile) is kept: its first `predict` raises how
    # it died, so the task fails with that and Spark retries it, as when a process dies during
    # a batch. Replaced here, the death went unseen and the model loaded a second time. One
    # that served batches and died between tasks is replaced.
    if process is not None and (process.alive() or not process.used):
        return process
    processes.pop(key, None)
    process = ScoringProcess(config, os.path.abspath(SparkFiles.getRootDirectory()))
    processes[key] = process
    return process


# --- Result conversion: what mlflow.pyfunc.spark_udf (3.17) does with the predictions its
# scoring server returns (`_predict_row_batch`, `_convert_array_values`,
# `_convert_struct_values`), written again so the executors need no mlflow.


def _primitive_numpy_types():
    from pyspark.sql import types

    return {
        types.IntegerType: np.int32,
        types.LongType: np.int64,
        types.FloatType: np.float32,
        types.DoubleType: np.float64,
        types.BooleanType: np.bool_,
        types.StringType: np.str_,
    }


def _primitive_python_types():
    from pyspark.sql import types

    return {
        types.IntegerType: int,
        types.LongType: int,
        types.FloatType: float,
        types.DoubleType: float,
        types.BooleanType: bool,
        types.StringType: str,
    }


def _missing(value):
    return value is None or (isinstance(value, float) and np.isnan(value))


def _is_variant(data_type):
    return type(data_type).__name__ == "VariantType"


def _array_values(values, result_type):
    from pyspark.sql.types import ArrayType, StructType

    numpy_types = _primitive_numpy_types()
    element = result_type.elementType
    if type(element) in numpy_types:
        return None if _missing(values) else np.array(values, dtype=numpy_types[type(element)])
    if isinstance(element, ArrayType):
        return [_array_values(value, element) for value in values]
    if isinstance(element, StructType):
        return [_struct_values(value, element) for value in values]
    if _is_variant(element):
        return values
    raise ValueError("Unsupported element type %s in an array result" % element.simpleString())


def _value(value, spark_type):
    from pyspark.sql.types import ArrayType, MapType, StructType

    python_types = _primitive_python_types()
    if type(spark_type) in python_types:
        return None if _missing(value) else python_types[type(spark_type)](value)
    if isinstance(spark_type, StructType):
        return _struct_values(value, spark_type)
    if isinstance(spark_type, ArrayType):
        return [_value(item, spark_type.elementType) for item in value]
    if isinstance(spark_type, MapType):
        return {key: _value(value[key], spark_type.valueType) for key in value}
    if _is_variant(spark_type):
        return value
    raise ValueError("Unsupported type %s for value %r" % (spark_type, value))


def _struct_values(result, result_type):
    from pyspark.sql.types import ArrayType, MapType, StructType

    if not isinstance(result, (dict, pandas.DataFrame)):
        raise ValueError("Unsupported result type %s, expected dict or pandas DataFrame" % type(result))
    numpy_types = _primitive_numpy_types()
    is_frame = isinstance(result, pandas.DataFrame)
    columns = {}
    for name in result_type.fieldNames():
        field_type = result_type[name].dataType
        values = result[name]
        if type(field_type) in numpy_types:
            numpy_type = numpy_types[type(field_type)]
            if is_frame:
                if not all(_missing(value) for value in values):
                    values = values.astype(numpy_type)
            else:
                values = None if _missing(values) else np.array(values, dtype=numpy_type).item()
        elif isinstance(field_type, ArrayType):
            if is_frame:
                values = pandas.Series(_array_values(value, field_type) for value in values)
            else:
                values = _array_values(values, field_type)
        elif isinstance(field_type, StructType):
            if is_frame:
                values = pandas.Series([_struct_values(value, field_type) for value in values])
            else:
                values = _struct_values(values, field_type)
        elif isinstance(field_type, MapType):
            if is_frame:
                values = pandas.Series([
                    {key: _value(item, field_type.valueType) for key, item in value.items()}
                    for value in values
                ]).astype(object)
            else:
                values = {key: _value(item, field_type.valueType) for key, item in values.items()}
        elif _is_variant(field_type):
            return values
        else:
            raise ValueError("Unsupported field type %s in a struct result" % field_type.simpleString())
        columns[name] = values
    return pandas.DataFrame(columns) if is_frame else columns


def convert_result(result, result_type):
    """The UDF's output for the predictions `result` (a DataFrame) and the Spark `result_type`."""
    from pyspark.sql.types import (
        ArrayType,
        BooleanType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        MapType,
        StringType,
        StructType,
    )

    if isinstance(result_type, ArrayType) and isinstance(result_type.elementType, ArrayType):
        return pandas.Series(_array_values(result, result_type))
    if isinstance(result_type, StructType):
        return _struct_values(pandas.DataFrame(result), result_type)
    if isinstance(result_type, MapType):
        result = pandas.DataFrame([result])
    element = result_type.elementType if isinstance(result_type, ArrayType) else result_type
    if type(element) == IntegerType:
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, np.int32]).astype(np.int32)
    elif type(element) == LongType:
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, int]).astype(np.int64)
    elif type(element) == FloatType:
        result = result.select_dtypes(include=(np.number,)).astype(np.float32)
    elif type(element) == DoubleType:
        result = result.select_dtypes(include=(np.number,)).astype(np.float64)
    elif type(element) == BooleanType:
        result = result.select_dtypes([bool, np.bool_]).astype(bool)
    if len(result.columns) == 0:
        raise ValueError(
            "The model did not produce any values compatible with the requested type '%s'. "
            "Consider requesting udf with StringType or Arraytype(StringType)." % element
        )
    if type(element) == StringType:
        result = result.map(str) if hasattr(result, "map") else result.applymap(str)
    if type(result_type) == ArrayType:
        return pandas.Series(result.to_numpy().tolist())
    return result[result.columns[0]]


def input_frame(args, input_names):
    """The model's input for one batch of UDF arguments, as mlflow.pyfunc.spark_udf builds it."""
    if len(args) == 1 and isinstance(args[0], pandas.DataFrame):
        return args[0]
    if input_names is None:
        names = [str(i) for i in range(len(args))]
    else:
        names, required = input_names
        if len(args) > len(names):
            args = args[: len(names)]
        if len(args) < len(required):
            raise ValueError(
                "Model input is missing required columns. Expected %d required input columns %s, "
                "but the model received only %d unnamed input columns (Since the columns were "
                "passed unnamed they are expected to be in the order specified by the schema)."
                % (len(names), names, len(args))
            )
    return pandas.DataFrame(
        data={
            names[i]: arg if isinstance(arg, pandas.Series) else arg.apply(lambda row: row.to_dict(), axis=1)
            for i, arg in enumerate(args)
        },
        columns=names,
    )


def score(iterator, config, result_type):
    """The body of the pandas UDF (iterator form)."""
    # Started before the first batch arrives, so that the model loads (and on a new node, the
    # environment unpacks) while Spark computes and converts that batch.
    trace("task start")
    error = _state().errors.pop(config["udf_id"], None)
    if error is not None:
        raise error
    process = scoring_process(config)
    trace("scoring process started")
    first = True
    for batch in iterator:
        if first:
            trace("first batch received")
        args = (batch,) if isinstance(batch, (pandas.Series, pandas.DataFrame)) else tuple(batch)
        if len(args[0]) == 0:
            continue
        frame = input_frame(list(args), config["input_names"])
        try:
            predictions = process.predict(frame)
        except ScoringProcessError:
            if not process.alive():
                # The retry of this task (or the next task here) starts a new one.
                _registry().pop(config["udf_id"], None)
            raise
        if first:
            trace("first batch predicted")
            first = False
        yield convert_result(predictions, result_type)
    trace("task end")
