"""Read a checkpoint file into a flat ``{key: numpy array}`` state dict, treating the file as untrusted.

Formats are told apart by their first bytes, not by the file name:

* zip archive: ``torch.save`` (``.pth``/``.pt``/``.tar``); read with ``torch.load(weights_only=True)``;
* torch's legacy pickle format (a pickled magic number first): ``torch.load(weights_only=True)``;
* any other pickle: Paddle's ``.pdparams`` (a pickled dict of numpy arrays); read with a restricted
  unpickler that resolves only numpy's array-rebuilding globals, so no code in the file can run;
* safetensors: parsed here (header checked against the file size; BF16 tensors included), no framework;
* HDF5 (ACNet's ``save_hdf5`` layout: one dataset per key, ``/`` stored as ``+``): ``h5py``, the
  ``hdf5`` extra. ``deps`` and all-digit names are not weights: they are kept apart (``extras``).

bfloat16 tensors (BF16 safetensors, torch bfloat16, Paddle's uint16 arrays in ``.pdparams``) are
widened to float32, which is exact; their keys are listed in ``bf16_keys``. Any failure of a
third-party loader to parse a damaged file becomes a :class:`CheckpointError` naming the file.

Torch is imported only for torch files. Wrappers (``{'state_dict': ...}``, ``{'model': ...}``) are
unwrapped and ``module.`` / ``_orig_mod.`` prefixes shared by every key are stripped.
"""

import io
import json
import logging
import pickle
import struct
import warnings
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paddle_rep.core.errors import CheckpointError, MappingError, MissingPackageError, UnsafeCheckpointError
from paddle_rep.core.interop import to_numpy

from .bf16 import bf16_bits_to_float32

logger = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model")  # checked in this order, as the official tools do
STRIP_PREFIXES = ("module.", "_orig_mod.")  # DataParallel/DDP, torch.compile
PADDLE_INFO_KEYS = ("StructuredToParameterName@@",)  # bookkeeping paddle.save adds to a state dict
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # protocol 2, then the 10-byte magic number torch pickles first
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
HDF5_NON_WEIGHTS = ("deps",)  # ACNet's layer-width list; all-digit names are non-weights too
# What torch.load raises on a damaged file (measured by the mutation fuzz in parity_tests/test_convert_fuzz.py).
# AssertionError: torch raises it itself for a storage key the legacy format's pickle does not define.
_TORCH_PARSE_ERRORS = (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, IndexError, KeyError,
                       struct.error, TypeError, AttributeError, OverflowError, MemoryError, RecursionError,
                       AssertionError, SystemError)
# SystemError: CPython's C unpickler answers some malformed streams with "error return without
# exception set" (the slow fuzz, .pdparams seed 77); torch.load unpickles with the same machinery.
_PICKLE_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                        KeyError, struct.error, MemoryError, OverflowError, RecursionError, SystemError)
_ST_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4", "I16": "<i2",
              "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024  # the safetensors library's own limit

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
    bf16_keys: list[str] = field(default_factory=list)  # stored as bfloat16, widened to float32 in ``state``
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # non-weight entries (HDF5 ``deps``), left out


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
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
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
        f"{path}: not a checkpoint: expected a torch zip/pickle, a Paddle .pdparams pickle, a "
        f"safetensors or an HDF5 file, found leading bytes {head[:8]!r}", path=str(path))


def import_torch(message: str):
    """torch, or :class:`MissingPackageError` with ``message`` (which names the ``torch`` extra)."""
    try:
        import torch
    except ImportError as err:
        raise MissingPackageError(message, package="torch", extra="torch") from err
    return torch


def _torch_load(path: Path, container: str) -> Any:
    torch = import_torch(f"{path} is a torch checkpoint; reading it needs torch (pip install 'paddle-rep[torch]')")
    try:
        # mmap keeps the tensors on disk until used: peak memory stays near one copy (zip format only).
        with warnings.catch_warnings():  # a damaged legacy file makes torch warn about odd pickle protocols
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
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
    except _TORCH_PARSE_ERRORS as err:
        raise CheckpointError(f"{path}: corrupt or truncated torch checkpoint: {type(err).__name__}: "
                              f"{_last_line(str(err))}", path=str(path)) from err


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
    except _PICKLE_PARSE_ERRORS as err:
        raise CheckpointError(f"{path}: corrupt or truncated pickle: {type(err).__name__}: {err}",
                              path=str(path)) from err


def read_pickle_safely(path: str | Path) -> Any:
    """Unpickle ``path`` allowing numpy arrays, dicts, lists and plain values only (no code is run).

    Raises :class:`UnsafeCheckpointError` for any other global, :class:`CheckpointError` when corrupt.
    """
    return _paddle_load(Path(path))


def _bad_safetensors(path: Path, what: str, key: str | None = None) -> CheckpointError:
    where = f" key {key!r}:" if key is not None else ""
    return CheckpointError(f"{path}: corrupt safetensors file:{where} {what}", path=str(path), key=key)


def _safetensors_header(path: Path, f, size: int) -> dict[str, Any]:
    head = f.read(8)
    if len(head) < 8:
        raise _bad_safetensors(path, "shorter than its 8-byte header length")
    (length,) = struct.unpack("<Q", head)
    if length > min(size - 8, SAFETENSORS_MAX_HEADER):
        raise _bad_safetensors(path, f"header length {length} exceeds the file ({size} bytes)")
    try:
        header = json.loads(f.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise _bad_safetensors(path, f"header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise _bad_safetensors(path, "header is not a JSON object")
    header.pop("__metadata__", None)
    return header


def _safetensors_load(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """Tensors of a safetensors file, every header entry checked against the file; BF16 widened to float32."""
    size = path.stat().st_size
    state: dict[str, np.ndarray] = OrderedDict()
    bf16: list[str] = []
    with path.open("rb") as f:
        header = _safetensors_header(path, f, size)
        base = f.tell()
        entries = []
        for key, info in header.items():
            if not isinstance(info, dict) or info.get("dtype") not in _ST_DTYPES:
                raise _bad_safetensors(path, f"entry {info!r:.80} has no known dtype", key)
            shape, offsets = info.get("shape"), info.get("data_offsets")
            if not (isinstance(shape, list) and all(type(d) is int and d >= 0 for d in shape)):
                raise _bad_safetensors(path, f"shape {shape!r:.80} is not a list of sizes", key)
            if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int for o in offsets)
                    and 0 <= offsets[0] <= offsets[1] <= size - base):
                raise _bad_safetensors(path, f"data offsets {offsets!r:.80} lie outside the file", key)
            dtype = np.dtype(_ST_DTYPES[info["dtype"]])
            if offsets[1] - offsets[0] != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
                raise _bad_safetensors(path, f"{offsets[1] - offsets[0]} bytes do not hold a {info['dtype']} "
                                             f"tensor of shape {tuple(shape)}", key)
            entries.append((offsets[0], key, dtype, shape, info["dtype"]))
        for start, key, dtype, shape, name in sorted(entries, key=lambda e: e[0]):
            f.seek(base + start)
            array = np.frombuffer(f.read(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize), dtype=dtype)
            array = array.reshape(shape)
            if name == "BF16":
                array = bf16_bits_to_float32(array)
                bf16.append(key)
            state[key] = array.copy() if not array.flags.writeable else array
    return state, bf16


def import_h5py(purpose: str):
    """h5py, or :class:`MissingPackageError` naming the ``hdf5`` extra."""
    try:
        import h5py
    except ImportError as err:
        raise MissingPackageError(f"{purpose} needs h5py (pip install 'paddle-rep[hdf5]')", package="h5py",
                                  extra="hdf5") from err
    except zlib.error as err:  # seen with Paddle 2.6.2 imported first: the two bundle clashing libraries
        raise MissingPackageError(f"{purpose} needs h5py, which failed to import after paddle ({err}); "
                                  "import h5py before paddle", package="h5py", extra="hdf5") from err
    return h5py


def _is_non_weight(name: str) -> bool:
    return name in HDF5_NON_WEIGHTS or name.isdigit()


def _hdf5_load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Datasets of an ACNet HDF5 file under state-dict names (``+`` -> ``/``), and its non-weight entries."""
    h5py = import_h5py(f"{path} is an HDF5 file; reading it")
    size = path.stat().st_size
    state: dict[str, np.ndarray] = OrderedDict()
    extras: dict[str, np.ndarray] = OrderedDict()
    name = None
    try:
        with h5py.File(path, "r") as f:
            for name in list(f.keys()):
                link = f.get(name, getlink=True)
                if not isinstance(link, h5py.HardLink):  # soft/external links could point at other files
                    raise CheckpointError(f"{path}: key {name!r} is a {type(link).__name__}, expected a dataset",
                                          path=str(path), key=name)
                obj = f[name]
                if not isinstance(obj, h5py.Dataset):
                    raise CheckpointError(f"{path}: key {name!r} is an HDF5 {type(obj).__name__.lower()}, "
                                          "expected a dataset", path=str(path), key=name)
                dtype = obj.dtype
                if dtype.kind not in "fiub" or dtype.fields is not None or dtype.subdtype is not None:
                    raise CheckpointError(f"{path}: key {name!r} has non-numeric dtype {dtype}, expected a tensor",
                                          path=str(path), key=name)
                nbytes = int(np.prod(obj.shape, dtype=np.int64)) * dtype.itemsize
                if obj.compression is None and nbytes > size:
                    raise CheckpointError(f"{path}: key {name!r} claims {nbytes} bytes, more than the file holds",
                                          path=str(path), key=name)
                value = np.asarray(obj[()])
                (extras if _is_non_weight(name) else state)[name.replace("+", "/")] = value
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, IndexError, OverflowError, MemoryError) as err:
        where = f" at key {name!r}" if name is not None else ""
        raise CheckpointError(f"{path}: corrupt or truncated HDF5 file{where}: {type(err).__name__}: "
                              f"{_last_line(str(err))}", path=str(path), key=name) from err
    return state, extras


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


def _to_arrays(raw: Mapping, path: str, bf16: list[str], uint16_is_bf16: bool) -> dict[str, np.ndarray]:
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
        try:
            array = to_numpy(value, key)
        except (MappingError, TypeError, RuntimeError) as err:  # e.g. a quantized or sparse torch tensor
            raise CheckpointError(f"{path}: key {key!r}: {_last_line(str(err))}", path=path, key=key) from err
        if array.dtype == object:
            raise CheckpointError(f"{path}: key {key!r} is an object array, not a tensor", path=path, key=key)
        if str(getattr(value, "dtype", "")) == "torch.bfloat16":
            bf16.append(key)
        elif uint16_is_bf16 and array.dtype == np.uint16:  # how Paddle pickles a bfloat16 parameter
            array = bf16_bits_to_float32(array)
            bf16.append(key)
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
    bf16: list[str] = []
    extras: dict[str, np.ndarray] = {}
    if container.startswith("torch"):
        raw = _torch_load(path, container)
    elif container == "paddle-pickle":
        raw = _paddle_load(path)
    elif container == "hdf5":
        raw, extras = _hdf5_load(path)
    else:
        raw, bf16 = _safetensors_load(path)
    unwrapped: list[str] = []
    raw = _unwrap(raw, str(path), unwrapped)
    if "UnpackBigParamInfor@@" in raw:
        raise CheckpointError(f"{path}: Paddle split large tensors (saved with pickle protocol < 4); "
                              "re-save it with paddle.save(..., protocol=4)", path=str(path))
    state = _to_arrays(raw, str(path), bf16, uint16_is_bf16=container == "paddle-pickle")
    before = list(state)
    state = _strip_prefixes(state, unwrapped)
    if unwrapped and bf16:
        renamed = dict(zip(before, state, strict=True))
        bf16 = [renamed[k] for k in bf16]
    if container == "paddle-pickle":
        framework = "paddle"
    elif container == "safetensors":
        framework = "paddle" if _looks_paddle(list(state)) else "torch"
    else:
        framework = "torch"
    return LoadedCheckpoint(str(path), state, framework, container, unwrapped, bf16, extras)


def read_sidecar(path: str | Path) -> dict[str, Any] | None:
    """The JSON sidecar written next to a converted file, or None when absent or unreadable."""
    sidecar = Path(str(path) + ".json")
    try:
        return json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None


def load_checkpoint(model: Any, checkpoint: str | Path) -> None:
    """Load a ``.pdparams`` (or official torch) state dict into ``model`` strictly: every key must match.

    The keys and shapes are checked before anything is loaded, so a file that does not fit leaves
    ``model`` as it was. No pickled code is run.

    Args:
        model: The Paddle model (a ``paddle.nn.Layer``) to load into.
        checkpoint: The file.

    Raises:
        MappingError: A key is missing, unexpected or of another shape; the message names them.
        CheckpointError: The file cannot be read as a checkpoint.
    """
    from .arch import key_diff, paddle_shapes
    from .canonical import load_paddle_model, to_paddle

    loaded = read_checkpoint(checkpoint)
    form = to_paddle(loaded.state) if loaded.framework == "torch" else None
    diff = key_diff(loaded.state if form is None else form.state, paddle_shapes(model))
    if diff:
        shapes = f", shape mismatch {list(diff.mismatched[:10])}" if diff.mismatched else ""
        raise MappingError(f"{checkpoint} does not fit the model: missing {sorted(diff.missing)[:10]}, "
                           f"unexpected {sorted(diff.unexpected)[:10]}{shapes}")
    if form is None:
        model.set_state_dict(loaded.state)
    else:
        load_paddle_model(model, form, dtype=None)
