"""Read a checkpoint file into a flat ``{key: numpy array}`` state dict, treating the file as untrusted.

Formats are told apart by their first bytes, not by the file name:

* zip archive: ``torch.save`` (``.pth``/``.pt``/``.tar``); read with ``torch.load(weights_only=True)``;
* torch's legacy pickle format (a pickled magic number first): ``torch.load(weights_only=True)``;
* any other pickle: Paddle's ``.pdparams`` (a pickled dict of numpy arrays); read with a restricted
  unpickler that resolves only numpy's array-rebuilding globals, so no code in the file can run;
* safetensors: ``safetensors.numpy``, which imports no framework.

Torch is imported only for torch files. Wrappers (``{'state_dict': ...}``, ``{'model': ...}``) are
unwrapped and ``module.`` / ``_orig_mod.`` prefixes shared by every key are stripped.
"""

import io
import json
import logging
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, UnsafeCheckpointError
from ..interop import to_numpy

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model")  # checked in this order, as the official tools do
STRIP_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
PADDLE_INFO_KEYS = ("StructuredToParameterName@@",)  # bookkeeping paddle.save adds to a state dict
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # protocol 2, then the 10-byte magic number torch pickles first

# The only globals a .pdparams pickle may name: numpy's array and scalar rebuilders (both numpy 1.x
# and 2.x module paths) and OrderedDict. Anything else (os.system, builtins.eval, ...) is refused.
_SAFE_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    # pickle protocol 5 (our .pdparams writer): frombuffer over the pickled bytes, then a reshape
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("collections", "OrderedDict"),
})


@dataclass
class LoadedCheckpoint:
    """A checkpoint's tensors under the source's own names, plus where they came from."""

    path: str
    state: dict[str, np.ndarray]
    framework: str  # "torch" or "paddle": whose names and layouts ``state`` uses
    container: str  # "torch-zip", "torch-legacy", "paddle-pickle" or "safetensors"
    unwrapped: list[str] = field(default_factory=list)  # wrapper keys and prefixes removed, in order


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, path: str) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise UnsafeCheckpointError(
            f"{self._path}: refused to load: the pickle references {module}.{name}, which is not a tensor "
            "type; only numpy arrays are accepted from .pdparams files (the file may be malicious)",
            path=self._path,
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"{self._path}: refused to load: unexpected persistent id in the pickle",
                                    path=self._path)


def _sniff(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(16)
        size = path.stat().st_size
    if head.startswith(b"PK\x03\x04"):
        return "torch-zip"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "torch-legacy"
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return "paddle-pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    raise CheckpointError(
        f"{path}: not a checkpoint: expected a torch zip/pickle, a Paddle .pdparams pickle or a "
        f"safetensors file, found leading bytes {head[:8]!r}", path=str(path))


def _torch_load(path: Path, container: str) -> Any:
    try:
        import torch
    except ImportError as err:
        raise ImportError(f"{path} is a torch checkpoint; reading it needs torch (pip install 'paddle-rep[torch]')"
                          ) from err
    try:
        # mmap keeps the tensors on disk until used: peak memory stays near one copy (zip format only).
        return torch.load(path, map_location="cpu", weights_only=True, mmap=container == "torch-zip")
    except pickle.UnpicklingError as err:
        text = str(err)
        if "GLOBAL" in text:  # torch's wording when the pickle names a global it does not allow
            raise UnsafeCheckpointError(
                f"{path}: refused to load: the pickle references code beyond tensors "
                f"(torch.load weights_only=True rejected it: {_last_line(text)}); the file may be malicious",
                path=str(path)) from err
        raise CheckpointError(f"{path}: corrupt or unsupported torch checkpoint: {_last_line(text)}",
                              path=str(path)) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated torch checkpoint: {_last_line(str(err))}",
                              path=str(path)) from err


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("Check the documentation")]
    return (useful or lines or ["(no message)"])[-1][:300]


def _paddle_load(path: Path) -> Any:
    try:
        with path.open("rb") as f:
            return _RestrictedUnpickler(f, str(path)).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            struct.error, MemoryError) as err:
        raise CheckpointError(f"{path}: corrupt or truncated pickle: {type(err).__name__}: {err}",
                              path=str(path)) from err


def _safetensors_load(path: Path) -> dict[str, np.ndarray]:
    try:
        from safetensors.numpy import load_file
    except ImportError as err:
        raise ImportError(f"{path} is a safetensors file; reading it needs `pip install safetensors`") from err
    try:
        return load_file(str(path))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own SafetensorError and others
        raise CheckpointError(f"{path}: corrupt safetensors file: {err}", path=str(path)) from err


def _unwrap(obj: Any, path: str, unwrapped: list[str]) -> Mapping:
    while isinstance(obj, Mapping):
        wrapper = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if wrapper is None:
            return obj
        unwrapped.append(wrapper)
        obj = obj[wrapper]
    raise CheckpointError(f"{path}: not a checkpoint: holds a {type(obj).__name__}, expected a dict of tensors",
                          path=path)


def _strip_prefixes(state: dict[str, Any], unwrapped: list[str]) -> dict[str, Any]:
    stripped = True
    while stripped and state:
        stripped = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                unwrapped.append(prefix)
                stripped = True
    return state


def _to_arrays(raw: Mapping, path: str) -> dict[str, np.ndarray]:
    state: dict[str, np.ndarray] = OrderedDict()
    for key, value in raw.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path}: not a state dict: key {key!r} is a {type(key).__name__}, not a name",
                                  path=path)
        if key in PADDLE_INFO_KEYS:
            continue
        if not (isinstance(value, np.ndarray) or hasattr(value, "detach")):
            raise CheckpointError(
                f"{path}: key {key!r} holds a {type(value).__name__}, not a tensor", path=path, key=key)
        array = to_numpy(value, key)
        if array.dtype == object:
            raise CheckpointError(f"{path}: key {key!r} is an object array, not a tensor", path=path, key=key)
        state[key] = array
    if not state:
        raise CheckpointError(f"{path}: the checkpoint holds no tensors", path=path)
    return state


def _looks_paddle(keys: list[str]) -> bool:
    return any(k.endswith(("._mean", "._variance")) for k in keys)


def read_checkpoint(path: str | Path) -> LoadedCheckpoint:
    """Load ``path`` safely and return its tensors as numpy arrays (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file", path=str(path))
    container = _sniff(path)
    logger.debug("%s: detected %s", path, container)
    if container.startswith("torch"):
        raw = _torch_load(path, container)
    elif container == "paddle-pickle":
        raw = _paddle_load(path)
    else:
        raw = _safetensors_load(path)
    unwrapped: list[str] = []
    raw = _unwrap(raw, str(path), unwrapped)
    if "UnpackBigParamInfor@@" in raw:
        raise CheckpointError(f"{path}: Paddle split large tensors (saved with pickle protocol < 4); "
                              "re-save it with paddle.save(..., protocol=4)", path=str(path))
    state = _strip_prefixes(_to_arrays(raw, str(path)), unwrapped)
    if container == "paddle-pickle":
        framework = "paddle"
    elif container == "safetensors":
        framework = "paddle" if _looks_paddle(list(state)) else "torch"
    else:
        framework = "torch"
    return LoadedCheckpoint(str(path), state, framework, container, unwrapped)


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The JSON sidecar written next to a converted file, or None when absent or unreadable."""
    sidecar = Path(str(path) + ".json")
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
