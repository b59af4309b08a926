"""The driver of the `spark_udf` tests: one local-cluster session, several jobs, one JSON result.

argv[1] is a JSON object: `models` (name -> model dir), `input` (a dataframe_split file),
`pyfunc_env_args`, `unpackable` and `no_mlflow` (model dirs for the driver-side errors),
`node_cache` (the executors' pyfunc-env cache, new and empty).
"""

import json
import os
import signal
import sys
import threading
import time

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql.functions import col, struct
from pyspark.sql.types import ArrayType, DoubleType

import mlflow.pyfunc
import pyfunc_env
from pyfunc_env import spark_udf

config = json.loads(sys.argv[1])
args = config["pyfunc_env_args"]
result = {"driver_python": sys.executable, "pyfunc_env_file": pyfunc_env.__file__}
started = time.perf_counter()


def timing(what):
    print("TIMING %.1fs %s" % (time.perf_counter() - started, what), flush=True)


# A warm node: the first model's environment is already in the executors' node-local cache (as
# a previous application leaves it), the second's is not (a cold node for it).
from pyfunc_env import _spark_executor
from pyfunc_env import spark as driver_side

warm = driver_side._pack(config["models"]["mlflow_3_17"], "virtualenv", args)
result["warm_env"] = driver_side._archive_name(warm["archive"])
_spark_executor.unpack_once(
    warm["archive"], os.path.join(config["node_cache"], "spark-v1"), result["warm_env"]
)
timing("warm node prepared")

# Every step of spark_udf on the driver and in the tasks (see `trace` in _spark_executor.py).
trace_file = os.path.join(os.path.dirname(config["node_cache"]), "spark-trace.log")
os.environ["PYFUNC_ENV_SPARK_TRACE"] = trace_file

spark = (
    SparkSession.builder.master("local-cluster[2,1,1024]")
    .appName("pyfunc-env-spark-udf-test")
    .config("spark.ui.enabled", "false")
    .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2")
    # The executors' pyfunc-env cache, where they unpack what spark_udf ships: new for this
    # test, while the driver's (the packed archives) is shared between runs.
    .config("spark.executorEnv.PYFUNC_ENV_CACHE_DIR", config["node_cache"])
    .config("spark.executorEnv.PYFUNC_ENV_SPARK_TRACE", trace_file)
    .getOrCreate()
)
print("APP " + spark.sparkContext.applicationId, flush=True)
timing("session")

split = json.load(open(config["input"]))["dataframe_split"]
columns = split["columns"]
pdf = pd.DataFrame(split["data"], columns=columns)
pdf.insert(0, "row", range(len(pdf)))
df = spark.createDataFrame(pdf).repartition(2)


def plain(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


# 1. Two models whose environments conflict (scikit-learn 1.9.1 + pandas 3.1.1 against
# scikit-learn 1.8.0 + pandas 2.3.3), in one DataFrame, next to MLflow's own spark_udf
# (env_manager="uv") on the same rows: columns as arguments (names from the signature), a
# struct input, and an array result type.
selected = [col("row")]
ours_by_model = {}
for name, model in config["models"].items():
    ours = spark_udf(spark, model, env_manager="virtualenv", pyfunc_env_args=args)
    ours_by_model[name] = ours
    ours_array = spark_udf(
        spark, model, result_type=ArrayType(DoubleType()), env_manager="virtualenv",
        pyfunc_env_args=args,
    )
    timing("our UDFs for " + name)
    theirs = mlflow.pyfunc.spark_udf(spark, model, env_manager="uv")
    result.setdefault("environments", {})[name] = ours.metadata["environment"]
    selected += [
        ours().alias("ours_" + name),
        ours(struct(*columns)).alias("ours_struct_" + name),
        ours_array(*columns).alias("ours_array_" + name),
        theirs(*columns).alias("theirs_" + name),
    ]
    # Each MLflow UDF starts a scoring server per task: one array comparison is enough.
    if name == "mlflow_3_17":
        theirs_array = mlflow.pyfunc.spark_udf(
            spark, model, result_type=ArrayType(DoubleType()), env_manager="uv"
        )
        selected.append(theirs_array(*columns).alias("theirs_array_" + name))
rows = sorted(df.select(*selected).collect(), key=lambda r: r.row)
result["columns"] = {
    field: [plain(r[field]) for r in rows] for field in rows[0].asDict() if field != "row"
}
timing("comparison job")
# The trace of the comparison job: [pid, step] in the order written.
result["trace"] = [
    line.split(" ", 3)[2:] for line in open(trace_file).read().splitlines()
]

# What Spark itself put where it fetches shipped files (the driver's SparkFiles root, each
# executor's directory). Shipped over the driver's file server (the default), no archive is
# there: the warm node fetched nothing, the cold one fetched straight into its cache.
import pyspark
from pyspark import SparkFiles

app_dir = os.path.join(os.path.dirname(pyspark.__file__), "work", spark.sparkContext.applicationId)


def fetched():
    found = {"driver": sorted(os.listdir(SparkFiles.getRootDirectory()))}
    for executor in sorted(os.listdir(app_dir)) if os.path.isdir(app_dir) else []:
        found["executor " + executor] = sorted(os.listdir(os.path.join(app_dir, executor)))
    return found


result["fetched"] = fetched()


def node_cache():
    """What the executors unpacked: each directory's inode and marker, leftovers, the log."""
    root = os.path.join(config["node_cache"], "spark-v1")
    state = {"dirs": {}, "tmp": [], "log": []}
    for entry in sorted(os.listdir(root)) if os.path.isdir(root) else []:
        path = os.path.join(root, entry)
        if entry.startswith(".tmp-"):
            state["tmp"].append(entry)
        elif os.path.isdir(path):
            state["dirs"][entry] = {
                "inode": os.stat(path).st_ino,
                "complete": os.path.isfile(os.path.join(path, ".pyfunc-env-unpacked")),
            }
    if os.path.isfile(os.path.join(root, "unpack.log")):
        state["log"] = open(os.path.join(root, "unpack.log")).read().splitlines()
    return state


# Each environment and model was unpacked once on this node (two executors), into the node's
# cache. Now leave what killed unpacks leave: the first model's directory without its
# completion marker, next to a temporary directory; the second model's directory only as a
# temporary one (killed before the rename). Neither may be trusted by the next UDFs. (The
# models, not the environments: the same code, without writing 700 MiB again.)
names = {
    name: {
        "env": os.path.basename(ours_by_model[name].metadata["environment"]["archive"])[: -len(".tar.gz")],
        "model": ours_by_model[name].metadata["model_archive"],
    }
    for name in config["models"]
}
result["names"] = names
result["node_cache_first"] = node_cache()
spark_v1 = os.path.join(config["node_cache"], "spark-v1")
first_name, second_name = list(config["models"])
if result["node_cache_first"]["dirs"]:  # else the test fails on what it found
    os.remove(os.path.join(spark_v1, names[first_name]["model"], ".pyfunc-env-unpacked"))
    os.makedirs(os.path.join(spark_v1, ".tmp-%s-999999" % names[first_name]["model"], "half"))
    os.rename(
        os.path.join(spark_v1, names[second_name]["model"]),
        os.path.join(spark_v1, ".tmp-%s-999998" % names[second_name]["model"]),
    )
timing("node cache")

# 2. A scoring process killed during a job: the task fails with what the process left, Spark
# retries it, and the answer is still right. Next to it, a new UDF of the second model. Both
# shipped with `SparkContext.addFile` (the fallback where executors cannot reach the driver's
# file server): the damaged model directories are unpacked again from Spark's copies.
spark.conf.set("spark.pyfunc_env.shipWith", "addFile")
first = next(iter(config["models"].values()))


# Where the kill below often lands: after the process started (when the UDF was unpickled) and
# before the task's first batch. A Python worker keeps such a process, so that the task fails
# with how it died; replaced without a word, the kill went unseen (a flaky run of this test).
class DiedBeforeItsFirstBatch:
    used = False

    def alive(self):
        return False


dead = _spark_executor._registry()["died-unused"] = DiedBeforeItsFirstBatch()
try:
    result["died_unused_kept"] = _spark_executor.scoring_process({"udf_id": "died-unused"}) is dead
except Exception as error:
    result["died_unused_kept"] = repr(error)
_spark_executor._registry().pop("died-unused", None)
killed_udf = spark_udf(spark, first, env_manager="virtualenv", pyfunc_env_args=args)
marker = ("pyfunc-env-udf=" + killed_udf.metadata["udf_id"]).encode()
killed = []
done = threading.Event()


def kill_the_first_scoring_process():
    while not done.is_set() and not killed:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if marker in argv:
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                break
        done.wait(0.02)


killer = threading.Thread(target=kill_the_first_scoring_process, daemon=True)
killer.start()
many = pd.concat([pdf] * 10, ignore_index=True)
many["row"] = range(len(many))
big = spark.createDataFrame(many).repartition(2)
second_udf = spark_udf(spark, config["models"][second_name], env_manager="virtualenv", pyfunc_env_args=args)
scored = sorted(
    big.select("row", killed_udf().alias("p"), second_udf().alias("q")).collect(),
    key=lambda r: r.row,
)
done.set()
killer.join()
result["killed"] = killed
result["after_kill"] = [plain(r.p) for r in scored]
result["second_after_damage"] = [plain(r.q) for r in scored]
result["node_cache_second"] = node_cache()
result["fetched_with_add_file"] = fetched()
timing("job with a killed scoring process")

# 3. Errors on the driver, when the UDF is created.
errors = {}
for case, call in {
    "missing_model": lambda: spark_udf(spark, config["missing"], pyfunc_env_args=args),
    "unpackable": lambda: spark_udf(
        spark, config["unpackable"], pyfunc_env_args=["--python-source", "system"]
    ),
    "no_mlflow": lambda: spark_udf(spark, config["no_mlflow"], pyfunc_env_args=args),
    "result_type": lambda: spark_udf(spark, first, result_type="binary", pyfunc_env_args=args),
    "prebuilt_env_uri": lambda: spark_udf(spark, first, prebuilt_env_uri="/tmp/env.tar.gz"),
}.items():
    try:
        call()
        errors[case] = None
    except Exception as error:
        errors[case] = "%s: %s" % (type(error).__name__, error)
result["errors"] = errors
timing("driver-side errors")

print("RESULT " + json.dumps(result), flush=True)
spark.stop()
