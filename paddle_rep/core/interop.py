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
    """One row of the mapping: the last key component in torch and in Paddle.

    Attributes:
        torch_leaf: The torch name.
        paddle_leaf: The Paddle name; None where the tensor has no Paddle counterpart and is dropped.
        reason: What the tensor is.
    """

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
    """Map a torch state-dict key to its Paddle name.

    Args:
        key: A torch state-dict key.

    Returns:
        The Paddle key, or None when Paddle has no such tensor (``num_batches_tracked``).
    """
    prefix, leaf = _split(key)
    if leaf in _TO_PADDLE:
        target = _TO_PADDLE[leaf]
        return None if target is None else prefix + target
    return key


def paddle_key_to_torch(key: str) -> str:
    """Map a Paddle state-dict key to its torch name.

    Args:
        key: A Paddle state-dict key.

    Returns:
        The torch key.
    """
    prefix, leaf = _split(key)
    return prefix + _TO_TORCH.get(leaf, leaf)


def to_numpy(value: Any, key: str = "?") -> np.ndarray:
    """Turn a torch tensor, Paddle tensor or array-like into a numpy array, importing neither framework.

    Args:
        value: The tensor or array-like (a torch bfloat16 tensor becomes float32).
        key: The state-dict key it belongs to, used in the error message.

    Returns:
        The values as a numpy array (``value`` itself when it is one already).

    Raises:
        MappingError: ``value`` cannot be turned into an array; the message names ``key``.
    """
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

    Args:
        state_dict: The torch state dict (torch tensors, Paddle tensors or numpy arrays).
        dtype: The dtype every floating tensor is cast to; None keeps each one's dtype.

    Returns:
        The Paddle state dict as C-ordered numpy arrays: BN statistics renamed, Linear weights
        transposed, ``num_batches_tracked`` dropped.

    Raises:
        MappingError: A tensor other than ``num_batches_tracked`` is not floating point, or a value
            cannot be turned into an array; the message names its key.
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
    """Map a Paddle state dict to torch names and layouts.

    Args:
        state_dict: The Paddle state dict (Paddle tensors, torch tensors or numpy arrays).
        dtype: The dtype every floating tensor is cast to; None keeps each one's dtype.
        num_batches_tracked: The value each BN's ``num_batches_tracked`` gets, so the result loads
            into torch with ``strict=True``; None leaves them out.

    Returns:
        The torch state dict as numpy arrays (wrap each with ``torch.from_numpy``).

    Raises:
        MappingError: A tensor is not floating point or cannot be turned into an array; the message
            names its key.
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
