# Prints what `check` needs to know about an interpreter, as JSON: its version, the PEP 508
# marker environment, and every installed distribution's version (importlib.metadata, what
# mlflow.pyfunc.load_model's mismatch warning looks at).
import json
import os
import platform
import sys

try:
    from importlib import metadata
except ImportError:  # Python < 3.8
    import importlib_metadata as metadata

versions = {}
for dist in metadata.distributions():
    name = dist.metadata["Name"]
    if name and name not in versions:
        versions[name] = dist.version

info = sys.implementation
implementation_version = "%d.%d.%d" % info.version[:3]
if info.version.releaselevel != "final":
    implementation_version += info.version.releaselevel[0] + str(info.version.serial)

json.dump(
    {
        "python_version": "%d.%d.%d" % sys.version_info[:3],
        "executable": sys.executable,
        "prefix": sys.prefix,
        "markers": {
            "implementation_name": info.name,
            "implementation_version": implementation_version,
            "os_name": os.name,
            "platform_machine": platform.machine(),
            "platform_python_implementation": platform.python_implementation(),
            "platform_release": platform.release(),
            "platform_system": platform.system(),
            "platform_version": platform.version(),
            "python_full_version": platform.python_version(),
            "python_version": ".".join(platform.python_version_tuple()[:2]),
            "sys_platform": sys.platform,
        },
        "distributions": versions,
    },
    sys.stdout,
)
