"""What a checkpoint says about its architecture, and the strict check of a state dict against a model.

The inference reads official torch names and layouts (the converter's intermediate form):

* ``kernel_num`` (ODConv): the first dimension of the 5-D ODConv weights;
* ``deploy``: keys of a fused block (RepVGG ``rbr_reparam``, ACNet ``fused_conv``, MobileOne ``reparam_conv``:
  the names in :mod:`paddle_rep.core.deploy`) mean a fused checkpoint,
  ``rbr_dense`` / ``square_conv`` keys a training-time one;
* ``num_classes``: the output size of the head (:data:`HEAD_KEYS`, else the last Linear weight).

The model zoo (``paddle_rep.create_model``) is imported only when a model is built.
"""

import ast
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from paddle_rep.core.deploy import ACBLOCK_FUSED_ATTR, DBB_FUSED_ATTR, MOBILEONE_FUSED_ATTR, REPVGG_FUSED_ATTR
from paddle_rep.core.errors import ArchMismatchError, CheckpointError

logger = logging.getLogger(__name__)

DEPLOY_MARKERS = (f"{REPVGG_FUSED_ATTR}.", f"{ACBLOCK_FUSED_ATTR}.", f"{DBB_FUSED_ATTR}.",  # fused RepVGG/ACNet/DBB
                  f"{MOBILEONE_FUSED_ATTR}.")  # and MobileOne blocks
TRAIN_MARKERS = ("rbr_dense.", "square_conv.", "dbb_origin.", "rbr_conv.")  # their training-time branches
# Classifier weights of the zoo's models (RepVGG/ACNet ``linear``, OD-ResNet ``fc``, OD-MobileNetV2
# ``classifier.1``, ACNet CIFAR-quick ``fc2``, VGG ``linear2``); otherwise the last Linear weight.
HEAD_KEYS = ("linear.weight", "fc.weight", "classifier.1.weight", "fc2.weight", "linear2.weight")
MAX_LISTED = 40  # keys listed per category in an error message; the exception keeps them all


@dataclass(frozen=True)
class Inferred:
    value: Any
    reason: str  # what in the checkpoint determines the value


def _has_component(key: str, marker: str) -> bool:
    return key.startswith(marker) or f".{marker}" in key


def infer_model_args(state: Mapping[str, np.ndarray], path: str = "?") -> dict[str, Inferred]:
    """The constructor arguments the checkpoint fixes (see the module docstring)."""
    found: dict[str, Inferred] = {}
    kernel_nums = {k: v.shape[0] for k, v in state.items() if k.endswith("weight") and v.ndim == 5}
    if kernel_nums:
        values = sorted(set(kernel_nums.values()))
        if len(values) > 1:
            raise CheckpointError(f"{path}: ODConv weights disagree on kernel_num: {values}", path=path)
        first = next(iter(kernel_nums))
        found["kernel_num"] = Inferred(values[0], f"{first} has shape {tuple(state[first].shape)}")
    deploy_key = next((k for k in state if any(_has_component(k, m) for m in DEPLOY_MARKERS)), None)
    train_key = next((k for k in state if any(_has_component(k, m) for m in TRAIN_MARKERS)), None)
    if deploy_key and not train_key:
        found["deploy"] = Inferred(True, f"fused key {deploy_key}")
    elif train_key and not deploy_key:
        found["deploy"] = Inferred(False, f"training-time key {train_key}")
    linear = [k for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    if linear:
        head = next((k for k in HEAD_KEYS if k in linear), linear[-1])
        found["num_classes"] = Inferred(int(state[head].shape[0]), f"head {head} has shape {tuple(state[head].shape)}")
    return found


def parse_model_args(items: list[str] | None) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are Python literals (``4``, ``0.25``, ``True``) or plain strings."""
    args: dict[str, Any] = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"--model-arg {item!r}: expected key=value with a Python identifier as key")
        lowered = text.strip().lower()
        if lowered in ("true", "false"):
            args[key] = lowered == "true"
            continue
        try:
            args[key] = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            args[key] = text.strip()
    return args


def merge_model_args(inferred: Mapping[str, Inferred], user: Mapping[str, Any] | None,
                     path: str = "?") -> dict[str, Any]:
    """User arguments plus inferred ones; a user value that contradicts the checkpoint is an error."""
    merged = {k: v.value for k, v in inferred.items()}
    for key, value in (user or {}).items():
        if key in inferred and inferred[key].value != value:
            found = inferred[key]
            raise ArchMismatchError(
                f"{path}: model argument {key}={value!r} contradicts the checkpoint, which holds "
                f"{key}={found.value!r} ({found.reason})", path=path)
        merged[key] = value
    return merged


def build_paddle_model(arch: str, model_args: Mapping[str, Any]):
    """``paddle_rep.create_model(arch, **model_args)``; an unknown name or argument is a ValueError."""
    from paddle_rep.models import create_model

    return create_model(arch, **model_args)


def build_torch_model(arch: str, model_args: Mapping[str, Any]):
    """``torch_ref.create_model(arch, **model_args)``; needs torch."""
    from .load import import_torch

    import_torch("--verify builds the torch reference model and needs torch (pip install 'paddle-rep[torch]')")
    import torch_ref

    return torch_ref.create_model(arch, **model_args)


def _listed(keys: list[str]) -> str:
    more = f" ... and {len(keys) - MAX_LISTED} more" if len(keys) > MAX_LISTED else ""
    return ", ".join(keys[:MAX_LISTED]) + more


@dataclass(frozen=True)
class KeyDiff:
    """How a state dict differs from a model's keys and shapes (empty: it fits).

    Args:
        missing: Keys the model has and the state dict lacks.
        unexpected: Keys of the state dict the model does not have.
        mismatched: ``"key: checkpoint (shape) vs model (shape)"`` for each key whose shapes differ.
    """

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    mismatched: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.missing or self.unexpected or self.mismatched)


def key_diff(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]]) -> KeyDiff:
    """Compare a state dict's keys and shapes with a model's ``expected`` shapes; nothing is reshaped.

    Args:
        state: The state dict (any values with a ``shape``).
        expected: Each key the model has, with its shape.

    Returns:
        The difference, keys in ``expected``'s and then ``state``'s order.
    """
    missing = tuple(k for k in expected if k not in state)
    unexpected = tuple(k for k in state if k not in expected)
    mismatched = tuple(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k])}"
                       for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k]))
    return KeyDiff(missing, unexpected, mismatched)


def check_state(state: Mapping[str, Any], expected: Mapping[str, tuple[int, ...]], arch: str,
                path: str = "?", layout: str = "official", heading: str | None = None) -> None:
    """Raise one :class:`ArchMismatchError` listing every missing, unexpected and shape-mismatched key.

    ``expected`` maps each key the model has to its shape; nothing is ever reshaped to fit. The
    converter passes both in canonical form (official torch names, see :mod:`.canonical`).

    Args:
        state: The checkpoint's state dict.
        expected: Each key the model has, with its shape.
        arch: The architecture's name, for the message.
        path: The checkpoint, for the message and the error's ``path``.
        layout: Whose names the keys are in, for the message.
        heading: The message's first line instead of the default ``"<path> does not fit arch ..."``.

    Raises:
        ArchMismatchError: The state dict does not fit; lists every offending key at once.
    """
    diff = key_diff(state, expected)
    if not diff:
        return
    parts = [heading or f"{path} does not fit arch {arch!r} ({layout} names):"]
    if diff.missing:
        parts.append(f"missing {len(diff.missing)}: {_listed(list(diff.missing))}")
    if diff.unexpected:
        parts.append(f"unexpected {len(diff.unexpected)}: {_listed(list(diff.unexpected))}")
    if diff.mismatched:
        parts.append(f"shape mismatch {len(diff.mismatched)}: {_listed(list(diff.mismatched))}")
    raise ArchMismatchError("\n  ".join(parts), path=path, missing=diff.missing, unexpected=diff.unexpected,
                            mismatched=diff.mismatched)


def paddle_shapes(model) -> dict[str, tuple[int, ...]]:
    """Each state-dict key of a Paddle layer with its shape."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_shapes(arch: str, model_args: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of ``create_model(arch, **model_args)``, built under ``paddle.LazyGuard``.

    LazyGuard skips parameter initialisation (measured: repvgg_b3 in 0.03 s instead of 1.8 s).
    """
    import paddle

    with paddle.LazyGuard():
        return paddle_shapes(build_paddle_model(arch, model_args))
