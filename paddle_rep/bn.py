"""BatchNorm whose running variance follows PyTorch.

Paddle's BN kernel updates ``_variance`` with the biased batch variance (divided by n), PyTorch
with the unbiased one (divided by n - 1), n = N*H*W per channel. Outputs and gradients agree
either way; the running statistics drift apart by about 1/(n-1) per step, which changes every
eval output after training. The blocks therefore build :class:`BatchNorm2D`, which keeps the
native kernel and rescales its running variance around it: with ``c = n / (n - 1)``,
``c * (m * (v / c) + (1 - m) * var_b) = m * v + (1 - m) * c * var_b``, torch's update. The batch
statistics normalise a training batch, so the rescaled buffer never reaches an output, and the
correction costs two multiplications of a C-vector instead of a second variance reduction.
``set_default_running_var_mode("paddle")`` switches newly built blocks back to native BN, and
:func:`set_model_running_var_mode` switches the BNs of an existing model. (Their old names,
``set_bn_running_var_mode`` and ``set_running_var_mode``, differ by three letters; they are
served with a DeprecationWarning until the next release.)
"""

import numpy as np
import paddle
from paddle import nn

from .core.checks import check_choice
from .core.deprecation import deprecated_aliases
from .core.walk import set_on_sublayers

RUNNING_VAR_MODES = ("torch", "paddle")
_default_mode = "torch"


def _check_mode(mode: str) -> str:
    return check_choice("running-variance mode", mode, RUNNING_VAR_MODES)


def set_default_running_var_mode(mode: str) -> str:
    """Set how BNs built from now on update ``_variance``; returns the previous mode."""
    global _default_mode
    previous, _default_mode = _default_mode, _check_mode(mode)
    return previous


class BatchNorm2D(nn.BatchNorm2D):
    """``paddle.nn.BatchNorm2D`` with a selectable running-variance update.

    ``running_var_mode="torch"`` (default: the module setting) reproduces PyTorch's unbiased
    update; ``"paddle"`` is the native behaviour. The state dict is that of ``nn.BatchNorm2D``.
    """

    def __init__(self, num_features: int, momentum: float = 0.9, epsilon: float = 1e-5, *,
                 running_var_mode: str | None = None, **kwargs) -> None:
        super().__init__(num_features, momentum=momentum, epsilon=epsilon, **kwargs)
        self.running_var_mode = _check_mode(running_var_mode or _default_mode)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        updates_stats = self.training and not self._use_global_stats
        # Explicit super(): Paddle 2.6's to_static rewrites forward() and breaks the bare form.
        native_forward = super(BatchNorm2D, self).forward  # noqa: UP008
        if not updates_stats or self.running_var_mode == "paddle":
            return native_forward(x)
        values_per_channel = int(np.prod(x.shape)) // x.shape[1]
        if values_per_channel < 2:
            # Paddle would silently fall back to the running statistics; PyTorch refuses.
            raise ValueError(
                f"Expected more than 1 value per channel when training, got input size {list(x.shape)}"
            )
        bessel = values_per_channel / (values_per_channel - 1)
        # set_value, not an in-place op: the BN grad node would see a bumped tensor version and refuse.
        with paddle.no_grad():
            self._variance.set_value(self._variance * (1.0 / bessel))
        try:
            return native_forward(x)
        finally:  # also when the kernel raises: the buffer must not stay rescaled
            with paddle.no_grad():
                self._variance.set_value(self._variance * bessel)


def set_model_running_var_mode(model: nn.Layer, mode: str) -> int:
    """Set the running-variance mode of every :class:`BatchNorm2D` in ``model``; returns how many."""
    return set_on_sublayers(model, BatchNorm2D, "running_var_mode", _check_mode(mode))


__getattr__ = deprecated_aliases(__name__, globals(), {"set_bn_running_var_mode": "set_default_running_var_mode",
                                                       "set_running_var_mode": "set_model_running_var_mode"})
