"""The torch <-> Paddle state-dict mapping, kept as data.

The blocks and models use the same attribute names in both frameworks, so a key maps by its
last component only (:data:`LEAF_RENAMES`), plus two tensor rules: ``num_batches_tracked``
has no Paddle counterpart, and a 2-D ``weight`` is a Linear weight, stored ``[out, in]`` in
torch and ``[in, out]`` in Paddle. Conv weights (4-D, ODConv's 5-D) copy unchanged.

This module imports neither framework: values may be torch tensors, Paddle tensors or numpy
arrays, and results are numpy arrays.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MappingError
from .numeric import contiguous


@dataclass(frozen=True)
class LeafRename:
    """One row of the mapping: the last key component in torch and in Paddle."""

    torch_leaf: str
    paddle_leaf: str | None  # None: the tensor has no Paddle counterpart and is dropped
    reason: str


LEAF_RENAMES: tuple[LeafRename, ...] = (
    LeafRename("running_mean", "_mean", "BN running mean"),
    LeafRename("running_var", "_variance", "BN running variance"),
    LeafRename("num_batches_tracked", None, "BN step counter; Paddle keeps none"),
)
LINEAR_WEIGHT_LEAF = "weight"  # a 2-D tensor under this leaf is a Linear weight: transpose
NUM_BATCHES_TRACKED = "num_batches_tracked"

_TO_PADDLE = {row.torch_leaf: row.paddle_leaf for row in LEAF_RENAMES}
_TO_TORCH = {row.paddle_leaf: row.torch_leaf for row in LEAF_RENAMES if row.paddle_leaf}


def _split(key: str) -> tuple[str, str]:
    prefix, _, leaf = key.rpartition(".")
    return (prefix + "." if prefix else ""), leaf


def torch_key_to_paddle(key: str) -> str | None:
    """The Paddle name of a torch state-dict key, or None when Paddle has no such tensor."""
    prefix, leaf = _split(key)
    if leaf in _TO_PADDLE:
        target = _TO_PADDLE[leaf]
        return None if target is None else prefix + target
    return key


def paddle_key_to_torch(key: str) -> str:
    """The torch name of a Paddle state-dict key."""
    prefix, leaf = _split(key)
    return prefix + _TO_TORCH.get(leaf, leaf)


def to_numpy(value: Any, key: str = "?") -> np.ndarray:
    """A numpy copy of a torch tensor, Paddle tensor or array-like, without importing either framework."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        return value.numpy()
    if hasattr(value, "numpy"):  # paddle.Tensor
        return np.asarray(value.numpy())
    try:
        return np.asarray(value)
    except Exception as err:  # noqa: BLE001 - report any conversion failure with the key
        raise MappingError(f"key {key!r}: cannot turn {type(value).__name__} into an array") from err


def _cast(key: str, array: np.ndarray, dtype: np.dtype | str | None) -> np.ndarray:
    if dtype is None:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise MappingError(f"key {key!r}: expected a floating-point tensor, got dtype {array.dtype}")
    return array.astype(dtype, copy=False)


def from_torch(state_dict: Mapping[str, Any], dtype: np.dtype | str | None = "float32") -> dict[str, np.ndarray]:
    """Map a torch state dict to Paddle names and layouts, ready for ``set_state_dict``.

    ``dtype`` casts every floating tensor (None keeps each one's dtype); a non-float tensor
    other than ``num_batches_tracked`` raises :class:`MappingError` naming its key.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        target = torch_key_to_paddle(key)
        if target is None:
            continue
        array = _cast(key, to_numpy(value, key), dtype)
        if _split(key)[1] == LINEAR_WEIGHT_LEAF and array.ndim == 2:
            array = array.T
        out[target] = contiguous(array)
    return out


def to_torch(state_dict: Mapping[str, Any], dtype: np.dtype | str | None = "float32",
             num_batches_tracked: int | None = 0) -> dict[str, np.ndarray]:
    """Map a Paddle state dict to torch names and layouts (numpy values; wrap with ``torch.from_numpy``).

    Each BN gets a ``num_batches_tracked`` of the given value so the result loads into torch
    with ``strict=True``; pass None to leave them out.
    """
    out: dict[str, np.ndarray] = {}
    for key, value in state_dict.items():
        target = paddle_key_to_torch(key)
        array = _cast(key, to_numpy(value, key), dtype)
        if _split(key)[1] == LINEAR_WEIGHT_LEAF and array.ndim == 2:
            array = array.T
        out[target] = contiguous(array)
        prefix, leaf = _split(target)
        if num_batches_tracked is not None and leaf == "running_var":
            out[prefix + NUM_BATCHES_TRACKED] = np.array(num_batches_tracked, dtype=np.int64)
    return out
