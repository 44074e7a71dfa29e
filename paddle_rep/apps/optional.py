"""The optional packages of the applications: import one, or say which pip extra brings it."""

import importlib
from types import ModuleType

from paddle_rep.core.errors import MissingExportPackageError

# module -> the paddle-rep extra that installs it (pyproject.toml)
EXTRAS = {"paddle2onnx": "onnx", "onnx": "onnx", "onnxruntime": "onnx", "openvino": "openvino",
          "onnxruntime.quantization": "int8", "nncf": "int8"}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional package, or raise the typed error naming its pip extra.

    Args:
        module: A key of :data:`EXTRAS`.
        purpose: What needs it, for the message ("ONNX export").

    Returns:
        The module.

    Raises:
        MissingExportPackageError: It is not installed, or installed but refuses to import (paddle2onnx
            2.x raises ValueError under Paddle 2.6).
    """
    try:
        return importlib.import_module(module)
    except (ImportError, ValueError) as error:
        extra, package = EXTRAS[module], module.split(".")[0]
        found = f" (it is installed but does not import: {error})" if isinstance(error, ValueError) else ""
        raise MissingExportPackageError(f"{purpose} needs {package}{found}: pip install {package}, or "
                                        f"pip install 'paddle-rep[{extra}]'", package, extra) from error
