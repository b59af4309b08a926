"""Locate the ``pyfunc-env`` executable installed with this package.

Python code (notebooks, Airflow tasks, Spark drivers) can call the binary without guessing
``PATH``::

    import subprocess
    from pyfunc_env import find_pyfunc_env_bin

    subprocess.run([find_pyfunc_env_bin(), "run", "model/", "--", "predict", "-i", "in.json"], check=True)
"""

from pyfunc_env._find_bin import find_pyfunc_env_bin

__all__ = ["find_pyfunc_env_bin"]
