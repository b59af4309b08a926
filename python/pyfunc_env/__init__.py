"""Locate the ``pyfunc-env`` executable installed with this package.

Python code (notebooks, Airflow tasks, Spark drivers) can call the binary without guessing
``PATH``::

    import subprocess
    from pyfunc_env import find_pyfunc_env_bin

    subprocess.run([find_pyfunc_env_bin(), "run", "model/", "--", "predict", "-i", "in.json"], check=True)

Spark batch scoring in the model's own environment (``mlflow.pyfunc.spark_udf``'s interface)::

    from pyfunc_env import spark_udf

    predict = spark_udf(spark, "models:/churn/3", env_manager="virtualenv")
"""

from pyfunc_env._find_bin import find_pyfunc_env_bin
from pyfunc_env.spark import spark_udf

__all__ = ["find_pyfunc_env_bin", "spark_udf"]
