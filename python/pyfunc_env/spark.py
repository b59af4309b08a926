"""``pyfunc_env.spark_udf``: ``mlflow.pyfunc.spark_udf`` with environments built once and shipped.

Changing the import is the whole migration::

    from pyfunc_env import spark_udf          # was: from mlflow.pyfunc import spark_udf
    predict = spark_udf(spark, "models:/churn/3", env_manager="virtualenv")
    df.withColumn("prediction", predict(struct(*df.columns)))

On the driver, the pyfunc-env binary resolves the model URI, ensures its environment (local
cache, remote cache or a build) and packs it once per environment key into the cache
(``pack --for spark --cached``); the UDF carries a locator of the archive and of the model
(served by a file server in the driver process), and an executor fetches and unpacks each
once per node into its pyfunc-env cache (``spark-v1/``), only when the node does not hold it
yet: later applications on that node fetch nothing. On the executors, which need only
pyspark, pandas and pyarrow, each Python worker starts one scoring process from the unpacked
environment per UDF and streams batches to it as Arrow IPC over a pipe, so the model's
dependencies never meet the executor's Python and UDFs of models with conflicting environments
can run in one DataFrame. See docs/guides/spark.md.
"""

import hashlib
import json
import logging
import os
import pathlib
import re
import subprocess
import tarfile
import tempfile
import uuid
from typing import Iterator, Tuple, Union

from pyfunc_env._find_bin import find_pyfunc_env_bin

_logger = logging.getLogger(__name__)

_ENV_MANAGERS = ("virtualenv", "uv", "conda")


class SparkUdfError(Exception):
    """``spark_udf`` could not create the UDF: the message says why and what to do."""


def _source(name):
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), encoding="utf-8") as f:
        return f.read()


def _run(command, what):
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SparkUdfError(
            "%s failed (exit code %d): %s\n%s"
            % (what, result.returncode, " ".join(command), result.stderr.strip())
        )
    return result


def _pack(model_uri, env_manager, pyfunc_env_args):
    import pyspark

    command = [
        find_pyfunc_env_bin(),
        "pack",
        str(model_uri),
        "--for",
        "spark=" + pyspark.__version__.split("+")[0],
        "--cached",
        "--json",
    ]
    if env_manager is not None:
        command += ["--env-manager", env_manager]
    command += list(pyfunc_env_args or [])
    result = _run(command, "Preparing the environment of model `%s`" % model_uri)
    _logger.info("pyfunc-env: %s", result.stderr.strip())
    return json.loads(result.stdout)


def _spark_temp_dir():
    directory = os.path.join(tempfile.gettempdir(), "pyfunc-env-spark")
    os.makedirs(directory, exist_ok=True)
    return directory


def _model_info(packed, model_uri, model_name):
    # What the environment's mlflow says of the model (signature, versions), kept per model
    # digest and environment: reading it starts the environment's Python and imports mlflow,
    # about 2 s of every UDF creation otherwise.
    cached = os.path.join(
        _spark_temp_dir(), "%s-%s.info.json" % (model_name, os.path.basename(packed["archive"]))
    )
    try:
        with open(cached, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    python = os.path.join(packed["prefix"], "bin", "python" + packed["python_minor"])
    result = _run(
        [python, "-c", _source("_spark_model_info.py"), packed["model"]],
        "Reading model `%s` with its environment's mlflow" % model_uri,
    )
    info = json.loads(result.stdout)
    if info.get("error") == "no_mlflow":
        raise SparkUdfError(
            "The environment of model `%s` has no mlflow (%s), which loads the model on the "
            "executors. Add mlflow to the model's requirements, or pass "
            "`pyfunc_env_args=[\"--install-mlflow\"]`" % (model_uri, info.get("detail"))
        )
    if info.get("pyarrow") is None:
        raise SparkUdfError(
            "The environment of model `%s` has no pyarrow, which the scoring process needs to "
            "exchange batches with Spark (mlflow brings it; mlflow-skinny does not). Add pyarrow "
            "to the model's requirements, or pass `pyfunc_env_args=[\"--install-mlflow\"]`"
            % model_uri
        )
    temporary = "%s.%d.tmp" % (cached, os.getpid())
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.replace(temporary, cached)
    return info


def _model_archive(model_dir, model_uri):
    """A tar.gz of the model directory named by a digest of its files, made once per process."""
    digest = hashlib.sha256(str(model_uri).encode())
    entries = []
    for root, dirs, files in os.walk(model_dir):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            stat = os.stat(path)
            entries.append((os.path.relpath(path, model_dir), stat.st_size, stat.st_mtime_ns))
    digest.update(json.dumps(entries).encode())
    name = "pyfunc-env-model-" + digest.hexdigest()[:32]
    path = os.path.join(_spark_temp_dir(), name + ".tar.gz")
    if not os.path.exists(path):
        temporary = "%s.%d.tmp" % (path, os.getpid())
        with tarfile.open(temporary, "w:gz", compresslevel=1) as archive:
            for entry in sorted(os.listdir(model_dir)):
                archive.add(os.path.join(model_dir, entry), arcname=entry)
        os.replace(temporary, path)
    return path, name


def _is_spark_connect(spark):
    return type(spark).__module__.startswith("pyspark.sql.connect")


# How the archives reach the executors of a classic session (`spark.pyfunc_env.shipWith`):
# `http` (the default) serves them from this driver process, and an executor fetches one only
# when its node-local cache does not hold it yet; `addFile` ships them with
# `SparkContext.addFile`, which every executor fetches before its first task of the session
# whether its node has them or not (for a network where executors cannot reach the driver on
# another port than Spark's own).
_SHIP_WITH = "spark.pyfunc_env.shipWith"
_SERVER_PORT = "spark.pyfunc_env.fileServerPort"


class _FileServer:
    """An HTTP server in the driver process that serves the archives `spark_udf` shipped.

    Each file is served under a random token (`/<token>/<name>`), which travels to the
    executors inside the pickled UDF as Spark's own file server URLs do; nothing else is
    served. It runs in a daemon thread for the life of the driver process."""

    def __init__(self, host, bind, port):
        import http.server
        import secrets
        import threading

        files = {}
        self.files = files

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = files.get(self.path)
                if path is None:
                    self.send_error(404)
                    return
                try:
                    f = open(path, "rb")
                except OSError:
                    self.send_error(404)
                    return
                with f:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(os.fstat(f.fileno()).st_size))
                    self.end_headers()
                    try:
                        # Zero-copy from the page cache (Python's own loop halves the rate).
                        self.wfile.flush()
                        self.connection.sendfile(f)
                    except OSError:
                        pass

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((bind, port), Handler)
        self.server.daemon_threads = True
        self.base = "http://%s:%d" % (
            "[%s]" % host if ":" in host else host,
            self.server.server_address[1],
        )
        self.token = secrets.token_hex(16)
        thread = threading.Thread(
            target=self.server.serve_forever, name="pyfunc-env-file-server", daemon=True
        )
        thread.start()

    def url(self, path, name):
        route = "/%s/%s" % (self.token, name)
        self.files[route] = os.path.abspath(path)
        return self.base + route


_FILE_SERVER = None


def _file_server(spark):
    global _FILE_SERVER
    conf = spark.sparkContext.getConf()
    host = conf.get("spark.driver.host", None) or "localhost"
    bind = conf.get("spark.driver.bindAddress", None) or host
    port = int(spark.conf.get(_SERVER_PORT, "0") or 0)
    if _FILE_SERVER is None or _FILE_SERVER.key != (host, bind, port):
        try:
            server = _FileServer(host, bind, port)
        except OSError as error:
            raise SparkUdfError(
                "pyfunc_env.spark_udf could not start its file server on `%s` port %d, which "
                "ships the model's environment to executors that lack it: %s. Set `%s` to a free "
                "port, or `%s` to `addFile` to ship with SparkContext.addFile"
                % (bind, port, error, _SERVER_PORT, _SHIP_WITH)
            ) from error
        server.key = (host, bind, port)
        _FILE_SERVER = server
    return _FILE_SERVER


def _ship(spark, path, name):
    """Ships the archive at `path` to the executors, returning its locator for the UDF.

    The executors unpack it once per node into their pyfunc-env cache
    (`_spark_executor.unpack_once`); the driver does not unpack it at all. A classic session
    serves it from the driver (`_FileServer`, fetched only by an executor whose node does not
    hold it yet) or, with `spark.pyfunc_env.shipWith=addFile`, ships the file itself
    (`SparkContext.addFile`, under a name Spark does not untar). `SparkContext.addArchive`
    would unpack it on the driver and on every executor of every application: about 700 MiB
    written each time for the sklearn environment."""
    locator = {"name": name, "bytes": os.path.getsize(path)}
    if _is_spark_connect(spark):
        # Spark Connect: the session's artifacts are unpacked into the session's directory,
        # which is where the Python workers of an isolated session start (not tested here).
        shipped = getattr(spark, "_pyfunc_env_shipped", None)
        if shipped is None:
            shipped = set()
            spark._pyfunc_env_shipped = shipped
        if name not in shipped:
            spark.addArtifacts("%s#%s" % (path, name), archive=True)
            shipped.add(name)
        return locator
    ship_with = (spark.conf.get(_SHIP_WITH, "http") or "http").strip()
    if ship_with.lower() == "http":
        locator["url"] = _file_server(spark).url(path, _shipped_file(name))
        return locator
    if ship_with.lower() != "addfile":
        raise SparkUdfError(
            "Invalid `%s`: %r. Use `http` (the default: executors fetch an archive from the "
            "driver only when their node lacks it) or `addFile`" % (_SHIP_WITH, ship_with)
        )
    context = spark.sparkContext
    shipped = getattr(context, "_pyfunc_env_shipped", None)
    if shipped is None:
        shipped = set()
        context._pyfunc_env_shipped = shipped
    if name not in shipped:
        # A `file:` URI: given a plain path, Spark resolves the symlink (`getCanonicalFile`)
        # and ships the `.tar.gz` under its own name.
        context.addFile(pathlib.Path(_ship_link(path, name)).as_uri())
        shipped.add(name)
    locator["file"] = _shipped_file(name)
    return locator


def _ship_link(path, name):
    """A symlink to `path` whose name does not end in `.tar.gz`.

    Spark's `addFile` untars every `.tar`, `.tar.gz` and `.tgz` file where it fetches it: on
    the driver and on each executor (`Utils.fetchFile`), which is the cost this avoids. Spark
    follows the link when it serves and copies the file."""
    link = os.path.join(_spark_temp_dir(), _shipped_file(name))
    if os.path.realpath(link) != os.path.realpath(path):
        temporary = "%s.%d.tmp" % (link, os.getpid())
        if os.path.lexists(temporary):
            os.remove(temporary)
        os.symlink(os.path.abspath(path), temporary)
        os.replace(temporary, link)
    return link


def _shipped_file(name):
    """The name the archive `name` has where Spark fetches it (no `+`, no `.tar.gz`)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) + ".pyfunc-env-archive"


def _archive_name(path):
    name = os.path.basename(path)
    return name[: -len(".tar.gz")] if name.endswith(".tar.gz") else name


def _check_result_type(data_type):
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

    if isinstance(
        data_type, (IntegerType, LongType, FloatType, DoubleType, StringType, BooleanType)
    ):
        return True
    if isinstance(data_type, ArrayType):
        return _check_result_type(data_type.elementType)
    if isinstance(data_type, StructType):
        return all(_check_result_type(field.dataType) for field in data_type.fields)
    if isinstance(data_type, MapType):
        return isinstance(data_type.keyType, StringType) and _check_result_type(
            data_type.valueType
        )
    return False


def _parse_result_type(text):
    from pyspark.sql.functions import udf

    return udf(lambda x: x, returnType="boolean" if text == "bool" else text).returnType


def _result_type(result_type, info):
    from pyspark.sql.types import DoubleType

    if result_type is None:
        if info.get("output_type"):
            return _parse_result_type(info["output_type"])
        _logger.warning(
            "No 'result_type' provided for spark_udf and the model does not have an output "
            "schema. 'result_type' is set to 'double' type."
        )
        return DoubleType()
    if isinstance(result_type, str):
        result_type = _parse_result_type(result_type)
    if not _check_result_type(result_type):
        raise SparkUdfError(
            "Invalid 'spark_udf' result type: %s. It must be a primitive type (int, long, float, "
            "double, string, boolean), an array of those or of structs, a struct of those, or a "
            "map with string keys" % result_type
        )
    return result_type


def spark_udf(
    spark,
    model_uri,
    result_type=None,
    env_manager=None,
    params=None,
    extra_env=None,
    prebuilt_env_uri=None,
    model_config=None,
    *,
    pyfunc_env_args=None,
):
    """A Spark UDF that scores an MLflow pyfunc model in the environment the model declares.

    The parameters are those of ``mlflow.pyfunc.spark_udf`` (MLflow 3.17) with the same
    meaning: the UDF takes the model's input columns as arguments (named by the signature when
    called with none), or one ``struct(...)`` column; ``result_type`` is a Spark ``DataType`` or
    a DDL string (default: inferred from the model's output schema, else ``double``);
    ``params`` go to ``predict``; ``extra_env`` is set in the scoring process;
    ``model_config`` goes to ``load_model``.

    Where it differs:

    - ``env_manager``: ``None`` (MLflow: ``local``) builds the model's environment with
      pyfunc-env's default (MLflow's rule: ``virtualenv`` when the model has
      ``python_env.yaml`` or ``requirements.txt``, else ``conda``); ``virtualenv``, ``uv`` and
      ``conda`` choose the manager; ``local`` hands the call to ``mlflow.pyfunc.spark_udf``
      (mlflow must be installed on the driver and the executors).
    - ``prebuilt_env_uri`` (Databricks' prebuilt archives) is refused with an error: pyfunc-env
      builds or pulls the environment itself (see its remote cache).
    - ``pyfunc_env_args`` (keyword only, pyfunc-env's own): extra arguments for
      ``pyfunc-env pack``, e.g. ``["--python-source", "conda"]`` or ``["--install-mlflow"]``.

    Raises ``SparkUdfError`` on the driver when the environment cannot be built or packed, has
    no mlflow or pyarrow, or the result type is not supported.
    """
    if env_manager == "local":
        import mlflow.pyfunc

        return mlflow.pyfunc.spark_udf(
            spark,
            model_uri,
            result_type=result_type,
            env_manager="local",
            params=params,
            extra_env=extra_env,
            model_config=model_config,
        )
    if prebuilt_env_uri is not None:
        raise SparkUdfError(
            "`prebuilt_env_uri` is not supported by pyfunc_env.spark_udf: it builds or pulls the "
            "model's environment itself and ships it with the session. Leave it out (a remote "
            "cache, `PYFUNC_ENV_REMOTE_CACHE`, shares built environments between drivers)"
        )
    if env_manager is not None and env_manager not in _ENV_MANAGERS:
        raise SparkUdfError(
            "Invalid env_manager %r: use one of %s, `local`, or None"
            % (env_manager, ", ".join(_ENV_MANAGERS))
        )
    import pandas
    from pyspark import cloudpickle
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import StructType

    from pyfunc_env import _spark_executor

    trace = _spark_executor.trace
    trace("driver: spark_udf called")
    packed = _pack(model_uri, env_manager, pyfunc_env_args)
    trace("driver: pyfunc-env pack done")
    model_path, model_name = _model_archive(packed["model"], model_uri)
    info = _model_info(packed, model_uri, model_name)
    result_type = _result_type(result_type, info)
    trace("driver: model archive and info done")

    env_name = _archive_name(packed["archive"])
    env_locator = _ship(spark, packed["archive"], env_name)
    model_locator = _ship(spark, model_path, model_name)
    trace("driver: shipped")

    inputs = info.get("inputs")
    config = _spark_executor.StartsOnUnpickle({
        "udf_id": uuid.uuid4().hex,
        "model_uri": str(model_uri),
        "env_archive": env_locator,
        "model_archive": model_locator,
        "python_minor": packed["python_minor"],
        "worker_source": _source("_spark_worker.py"),
        "worker_config": json.dumps(
            {"params": params, "model_config": model_config}, default=str
        ),
        "extra_env": dict(extra_env or {}),
        "input_names": (inputs["names"], inputs["required"])
        if inputs and inputs.get("names")
        else None,
    })
    # The executors need only pyspark, pandas and pyarrow: the executor-side functions travel
    # with the UDF by value instead of being imported from pyfunc_env there.
    cloudpickle.register_pickle_by_value(_spark_executor)
    score = _spark_executor.score
    hint = pandas.DataFrame if isinstance(result_type, StructType) else pandas.Series
    spark_type = result_type

    @pandas_udf(result_type)
    def udf(
        iterator: Iterator[Tuple[Union[pandas.Series, pandas.DataFrame], ...]],
    ) -> Iterator[hint]:
        return score(iterator, config, spark_type)

    # pandas_udf has read the type hints (the UDF's kind); pickled, they would be the first
    # thing a Python worker unpickles, importing pandas before `config` starts the scoring
    # process (`StartsOnUnpickle`): without them `config` comes first (the closure's first
    # cell), and the model loads while the worker imports pandas.
    udf.func.__annotations__ = {}
    assert udf.func.__code__.co_freevars[0] == "config"
    udf.metadata = {
        "model_uri": str(model_uri),
        "udf_id": config["udf_id"],
        "environment": packed,
        "model": info,
        "model_archive": model_name,
    }

    def udf_with_default_cols(*args):
        if args:
            return udf(*args)
        if inputs and inputs.get("optional"):
            raise SparkUdfError(
                "Cannot apply UDF without column names specified when model signature contains "
                "optional columns."
            )
        if inputs and inputs.get("names"):
            return udf(*inputs["names"])
        if inputs:
            raise SparkUdfError(
                "Cannot apply udf because no column names specified. The udf expects %d columns; "
                "their names could not be inferred from the model signature." % inputs["count"]
            )
        raise SparkUdfError(
            "Attempting to apply udf on zero columns because no column names were specified as "
            "arguments or inferred from the model signature."
        )

    udf_with_default_cols.metadata = udf.metadata
    udf_with_default_cols.__doc__ = udf.__doc__
    return udf_with_default_cols
