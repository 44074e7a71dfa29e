"""Converter self-check: run the torch reference and the Paddle model on one seeded input and compare.

A comparison passes when ``max|paddle - torch| <= rel * max|torch|`` (the parity suite's rule).
"""

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from paddle_rep.core.errors import ArchMismatchError
from paddle_rep.core.numeric import contiguous, difference

from . import arch as arch_mod

logger = logging.getLogger(__name__)

# Whole-model output tolerances; reasons and measured figures in docs/converting.md. float32:
# 1e-4, for model arguments and input sizes the parity suite never ran; measured (CPU, seeded weights,
# randomised BN) <= 2.1e-6 rel over all 26 zoo models, fused and unfused. float64: measured <= 2.1e-12
# (BN eps reaches Paddle's kernel as float32), so 1e-9 keeps a wide margin.
VERIFY_REL: dict[str, float] = {"float32": 1e-4, "float64": 1e-9}
VERIFY_SEED = 0
VERIFY_BATCH = 2
DEFAULT_INPUT_SIZE = 224
CIFAR_INPUT_SIZE = 32
# trained on 32x32 CIFAR images
_CIFAR_ARCHS = ("acnet_cifar_quick", "acnet_resnet56", "acnet_resnet110", "acnet_vgg16", "acnet_wrn16_8")


@dataclass
class OutputComparison:
    what: str
    max_abs: float
    max_ref: float
    rel: float
    allowed: float

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.max_abs)) and self.max_abs <= self.allowed * self.max_ref

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.what}: max|diff| {self.max_abs:.3e}, rel {self.rel:.3e} of max|ref| {self.max_ref:.3e} "
                f"(allowed {self.allowed:.0e}) -> {verdict}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def default_input_size(arch: str) -> int:
    """Spatial size of the verify input: 32 for the CIFAR models, else 224."""
    return CIFAR_INPUT_SIZE if arch in _CIFAR_ARCHS else DEFAULT_INPUT_SIZE


def compare(what: str, actual: np.ndarray, expected: np.ndarray, dtype: str) -> OutputComparison:
    if actual.shape != expected.shape:
        raise ArchMismatchError(f"{what}: output shape {actual.shape} != reference {expected.shape}")
    d = difference(actual, expected)
    return OutputComparison(what, d.max_abs, d.max_ref, d.rel(floor=0.0), VERIFY_REL[dtype])


def torch_outputs(arch: str, model_args: Mapping[str, Any], state: Mapping[str, np.ndarray], x: np.ndarray,
                  path: str, fused: bool = False) -> np.ndarray:
    """Eval output of ``torch_ref.create_model(arch)`` holding ``state`` (torch names), fused first if asked.

    Strict but for ``num_batches_tracked``, which does not affect eval.
    """
    model = arch_mod.build_torch_model(arch, model_args)  # first: it names the extra when torch is missing
    import torch

    model = model.to(getattr(torch, str(x.dtype)))
    if fused:
        from torch_ref import reparameterize_model

        model = reparameterize_model(model, inplace=True)
    tensors = {k: torch.from_numpy(contiguous(v, writeable=True)) for k, v in state.items()}
    result = model.load_state_dict(tensors, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise ArchMismatchError(f"{path}: torch reference {arch!r} rejects the weights: missing {missing}, "
                                f"unexpected {list(result.unexpected_keys)}", path=path,
                                missing=tuple(missing), unexpected=tuple(result.unexpected_keys))
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def paddle_outputs(model, x: np.ndarray) -> np.ndarray:
    """Eval output of the Paddle ``model`` (loaded and checked by the caller) on ``x``."""
    import paddle

    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def seeded_input(dtype: str, size: int, seed: int = VERIFY_SEED, channels: int = 3) -> np.ndarray:
    """Non-zero normal input of shape (VERIFY_BATCH, channels, size, size)."""
    return np.random.default_rng(seed).normal(0.0, 1.0, (VERIFY_BATCH, channels, size, size)).astype(dtype)
