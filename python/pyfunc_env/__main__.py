"""``python -m pyfunc_env ARGS`` runs the installed ``pyfunc-env`` executable with ARGS."""

import os
import sys

from pyfunc_env import find_pyfunc_env_bin


def _run():
    binary = find_pyfunc_env_bin()
    if sys.platform == "win32":
        import subprocess

        sys.exit(subprocess.call([binary, *sys.argv[1:]]))
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    _run()
