"""Find the ``pyfunc-env`` executable that was installed with this package."""

import os
import sys
import sysconfig

_NAME = "pyfunc-env" + (".exe" if sys.platform == "win32" else "")


def _scripts_dirs():
    # The wheel puts the binary into the scripts directory of the scheme it was installed
    # with: a venv's or the interpreter's (`pip install`), the user scheme (`pip install
    # --user`), or a prefix given with `pip install --prefix`/`--target`.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    yield sysconfig.get_path("scripts")
    user_scheme = {
        "nt": "nt_user",
        "posix": "osx_framework_user" if sys.platform == "darwin" and sys._framework else "posix_user",
    }.get(os.name)
    if user_scheme and user_scheme in sysconfig.get_scheme_names():
        yield sysconfig.get_path("scripts", scheme=user_scheme)
    # `pip install --target DIR` puts packages in DIR and scripts in DIR/bin.
    yield os.path.join(package_root, "bin")
    # `--prefix P` installs packages in P/lib/pythonX.Y/site-packages and scripts in P/bin.
    yield os.path.join(package_root, os.pardir, os.pardir, os.pardir, "bin")


def find_pyfunc_env_bin() -> str:
    """Return the absolute path of the ``pyfunc-env`` executable installed with this package.

    ``PYFUNC_ENV_BIN``, when set, names the executable to use instead.

    Raises ``FileNotFoundError`` naming every place searched when it is not there (the
    package was installed without its scripts, or they were removed).
    """
    override = os.environ.get("PYFUNC_ENV_BIN")
    if override:
        # A binary installed another way (cargo, a release download) or a development build.
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return os.path.abspath(override)
        raise FileNotFoundError(
            "PYFUNC_ENV_BIN is `%s`, which is not an executable file; unset it to use the "
            "binary installed with this package" % override
        )
    searched = []
    for directory in _scripts_dirs():
        if not directory:
            continue
        candidate = os.path.normpath(os.path.join(directory, _NAME))
        if candidate in searched:
            continue
        searched.append(candidate)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        "The pyfunc-env executable is not where this package installs it; searched: "
        + ", ".join(searched)
        + ". Reinstall with `pip install --force-reinstall pyfunc-env`."
    )
