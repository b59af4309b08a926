"""What ``pyfunc_env.spark_udf`` needs to know about a model, read by the model's own mlflow.

Run on the driver as ``ENV/bin/python -c <this file's text> MODEL_DIR`` before the UDF exists,
so that a model whose environment cannot score (no mlflow, no pyarrow, an MLmodel its mlflow
cannot read) fails there, not in a task. Prints one JSON object on stdout: the versions of
mlflow and pyarrow, the signature's input names, and the Spark type (DDL) of its outputs as
``mlflow.pyfunc.spark_udf`` infers it. Runs on Python 3.8+ and mlflow 1.x to 3.x.
"""

import json
import sys

_SPARK_NAMES = {
    "integer": "int",
    "long": "bigint",
    "float": "float",
    "double": "double",
    "string": "string",
    "boolean": "boolean",
    "binary": "binary",
    "datetime": "timestamp",
}


def _quote(name):
    return "`" + str(name).replace("`", "``") + "`"


def _spark_type(spec_type):
    from mlflow.types.schema import DataType

    if isinstance(spec_type, DataType):
        return _SPARK_NAMES[spec_type.name]
    kind = type(spec_type).__name__
    if kind == "Array":
        return "array<%s>" % _spark_type(spec_type.dtype)
    if kind == "Object":
        return "struct<%s>" % ",".join(
            "%s:%s" % (_quote(p.name), _spark_type(p.dtype)) for p in spec_type.properties
        )
    if kind == "Map":
        return "map<string,%s>" % _spark_type(spec_type.value_type)
    if kind == "AnyType":
        return "variant"
    raise ValueError("Failed to convert schema type `%s` to a Spark type" % spec_type)


def _output_type(spec):
    from mlflow.types.schema import DataType, TensorSpec

    if isinstance(spec, TensorSpec):
        data_type = DataType.from_numpy_type(spec.type)
        if data_type is None:
            raise ValueError("Model output tensor spec type %s is not supported in spark_udf" % spec.type)
        if len(spec.shape) == 1:
            return "array<%s>" % _SPARK_NAMES[data_type.name]
        if len(spec.shape) == 2:
            return "array<array<%s>>" % _SPARK_NAMES[data_type.name]
        raise ValueError(
            "Only 1D or 2D tensors are supported as spark_udf return value, but model output "
            "'%s' has shape %s" % (spec.name, spec.shape)
        )
    return _spark_type(spec.type)


def main():
    info = {"python": "%d.%d.%d" % sys.version_info[:3]}
    try:
        import mlflow
        from mlflow.models import Model
    except ImportError as error:
        info["error"] = "no_mlflow"
        info["detail"] = str(error)
        print(json.dumps(info))
        return 0
    info["mlflow"] = mlflow.__version__
    try:
        import pyarrow

        info["pyarrow"] = pyarrow.__version__
    except ImportError:
        info["pyarrow"] = None
    model = Model.load(sys.argv[1])
    inputs = model.get_input_schema() if hasattr(model, "get_input_schema") else None
    if inputs is not None and len(inputs.inputs) > 0:
        names = inputs.input_names() if inputs.has_input_names() else None
        required = (
            inputs.required_input_names() if hasattr(inputs, "required_input_names") else names
        )
        optional = inputs.optional_input_names() if hasattr(inputs, "optional_input_names") else []
        info["inputs"] = {
            "names": names,
            "required": required,
            "optional": optional,
            "count": len(inputs.inputs),
        }
    else:
        info["inputs"] = None
    outputs = model.get_output_schema() if hasattr(model, "get_output_schema") else None
    if outputs is not None and len(outputs.inputs) > 0:
        specs = outputs.inputs
        if len(specs) == 1:
            info["output_type"] = _output_type(specs[0])
        else:
            info["output_type"] = "struct<%s>" % ",".join(
                "%s:%s" % (_quote(spec.name or str(i)), _output_type(spec))
                for i, spec in enumerate(specs)
            )
    else:
        info["output_type"] = None
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
