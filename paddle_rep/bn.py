"""BatchNorm whose running variance follows PyTorch, whichever kernel Paddle runs.

PyTorch updates the running variance with the unbiased batch variance (divided by n - 1, n =
values per channel), on every device. Paddle's kernels differ: its CPU kernels, its own CUDA
kernels (2-D inputs from batch 10240 on, 3-D from 880801 on) and ``SyncBatchNorm`` use the biased
variance (divided by n), cuDNN the unbiased one. Outputs and gradients agree either way; only the
running statistics, and so every eval output after training, drift apart.

The layers here keep the native kernel. The first time one trains on a kernel, identified by
:class:`KernelKey` (place, dtypes, data format, input rank, size class), a probe runs a known
input through the same call with momentum 0 and reads the buffer back: 5.25 means biased, 5.25 *
n/(n-1) unbiased, anything else raises :class:`~paddle_rep.core.errors.BatchNormKernelError`. The
answer is cached. Where the kernel is biased the layer rescales the buffer around the call by
``c = n / (n - 1)``: ``c * (m * (v / c) + (1 - m) * var_b) = m * v + (1 - m) * c * var_b``,
torch's update, for two multiplications of a C-vector; where it is unbiased it does nothing. The
rescaled buffer never reaches an output, as a training batch normalises with batch statistics.

``running_var_mode="paddle"`` (or ``set_default_running_var_mode("paddle")`` before building, or
:func:`set_model_running_var_mode` on a model) keeps whatever the kernel does.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist
from paddle import nn
from paddle.nn import functional as F

from .core.checks import check_choice
from .core.errors import BatchNormKernelError
from .core.walk import set_on_sublayers

logger = logging.getLogger(__name__)

RUNNING_VAR_MODES = ("torch", "paddle")
BIASED, UNBIASED = "biased", "unbiased"
# Paddle's CUDA batch_norm leaves cuDNN for its own (biased) kernels from these batch sizes on.
PER_ACTIVATION_MIN_BATCH = 10240  # 2-D inputs
SPATIAL_MIN_BATCH = 880801  # 3-D inputs
# 0..7: biased variance 5.25, unbiased 6.0; every value and both results are exact in fp16 and bf16.
_PROBE_VALUES = np.arange(8, dtype=np.float32)
_PROBE_BIASED = 5.25
_EPS = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}
_CHANNELS_LAST = ("NLC", "NHWC", "NDHWC")

_default_mode = "torch"


def _check_mode(mode: str) -> str:
    return check_choice("running-variance mode", mode, RUNNING_VAR_MODES)


def set_default_running_var_mode(mode: str) -> str:
    """Set how BNs built from now on update their running variance.

    Args:
        mode: ``"torch"`` (the default: torch's unbiased update on every kernel) or ``"paddle"``
            (whatever the Paddle kernel does).

    Returns:
        The previous mode.

    Raises:
        ValueError: An unknown mode.
    """
    global _default_mode
    previous, _default_mode = _default_mode, _check_mode(mode)
    return previous


# --- the kernel probe ---------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelKey:
    """What selects Paddle's batch-norm kernel, as far as its running-variance update goes.

    Attributes:
        kernel: ``"batch_norm"`` or ``"sync_batch_norm"``.
        place: The device, as Paddle prints it.
        dtype: The input's dtype.
        stat_dtype: The running statistics' dtype.
        data_format: The input's layout.
        rank: The input's rank.
        large: The large size class (2-D with batch >= 10240, 3-D with batch >= 880801).
    """

    kernel: str  # "batch_norm" or "sync_batch_norm"
    place: str
    dtype: str
    stat_dtype: str
    data_format: str
    rank: int
    large: bool  # 2-D with batch >= PER_ACTIVATION_MIN_BATCH, 3-D with batch >= SPATIAL_MIN_BATCH


_kernel_updates: dict[KernelKey, str] = {}


def kernel_updates() -> dict[KernelKey, str]:
    """Report what every kernel probed so far does.

    Returns:
        A copy of the cache: each :class:`KernelKey` mapped to ``BIASED`` or ``UNBIASED``.
    """
    return dict(_kernel_updates)


def clear_kernel_cache() -> None:
    """Forget the probed kernels, so the next training forward of each kind probes again."""
    _kernel_updates.clear()


def is_large(rank: int, batch: int) -> bool:
    """Tell whether Paddle's CUDA build leaves cuDNN for its own kernels at this input rank and batch size.

    Args:
        rank: The input's rank.
        batch: The batch size.

    Returns:
        True for 2-D input from batch 10240 on and 3-D input from batch 880801 on.
    """
    return (rank == 2 and batch >= PER_ACTIVATION_MIN_BATCH) or (rank == 3 and batch >= SPATIAL_MIN_BATCH)


def _dtype_name(dtype) -> str:
    return str(dtype).replace("paddle.", "")


def _probe_shape(rank: int, data_format: str, large: bool) -> list[int]:
    """One channel, 8 values (or the smallest multiple of 8 in the large size class)."""
    if rank == 2:
        return [PER_ACTIVATION_MIN_BATCH if large else 8, 1]
    if rank == 3 and large:
        return [-(-SPATIAL_MIN_BATCH // 8) * 8, 1, 1]
    spatial = {3: [4], 4: [2, 2], 5: [2, 2, 1]}[rank]
    return [2, *spatial, 1] if data_format in _CHANNELS_LAST else [2, 1, *spatial]


def plain_kernel(x: paddle.Tensor, mean: paddle.Tensor, variance: paddle.Tensor, weight: paddle.Tensor | None,
                 bias: paddle.Tensor | None, momentum: float, epsilon: float, data_format: str) -> paddle.Tensor:
    """Run the call :class:`BatchNorm2D` makes in training (``F.batch_norm``, looked up at call time).

    Args:
        x: The input.
        mean: The running mean, updated in place.
        variance: The running variance, updated in place.
        weight: The scale, or None.
        bias: The shift, or None.
        momentum: Paddle's momentum (the weight of the old running value).
        epsilon: Added to the variance before the square root.
        data_format: The input's layout, e.g. ``"NCHW"``.

    Returns:
        The normalised output.
    """
    return F.batch_norm(x, mean, variance, weight=weight, bias=bias, training=True, momentum=momentum,
                        epsilon=epsilon, data_format=data_format, use_global_stats=False)


def sync_kernel(x: paddle.Tensor, mean: paddle.Tensor, variance: paddle.Tensor, weight: paddle.Tensor,
                bias: paddle.Tensor, momentum: float, epsilon: float, data_format: str) -> paddle.Tensor:
    """Run the call :class:`SyncBatchNorm` makes in multi-rank training (Paddle's ``sync_batch_norm``).

    Args:
        x: The input.
        mean: The running mean, updated in place.
        variance: The running variance, updated in place.
        weight: The scale (the sync kernel needs one).
        bias: The shift (the sync kernel needs one).
        momentum: Paddle's momentum (the weight of the old running value).
        epsilon: Added to the variance before the square root.
        data_format: The input's layout, e.g. ``"NCHW"``.

    Returns:
        The normalised output.
    """
    return paddle._C_ops.sync_batch_norm_(x, mean, variance, weight, bias, False, momentum, epsilon,
                                          data_format, False, False)[0]


def _local_count(count: int) -> int:
    return count


@paddle.jit.not_to_static  # runs eagerly, also when reached while to_static traces a forward
def _probe(key: KernelKey, place, kernel: Callable, count_over_ranks: Callable[[int], int]) -> str:
    shape = _probe_shape(key.rank, key.data_format, key.large)
    local = int(np.prod(shape))
    values = np.resize(_PROBE_VALUES, local).reshape(shape)
    with paddle.no_grad():
        x = paddle.to_tensor(values, place=place).astype(key.dtype)
        mean, variance, weight, bias = (paddle.to_tensor(np.full([1], value, np.float32), place=place)
                                        .astype(key.stat_dtype) for value in (0.0, 1.0, 1.0, 0.0))
        # Paddle's momentum weighs the old value: 0 leaves just the batch variance in the buffer.
        kernel(x, mean, variance, weight, bias, 0.0, 1e-5, key.data_format)
        read = float(variance.astype("float64").numpy()[0])
    count = count_over_ranks(local)  # every rank probes the same values, so the global biased variance is 5.25 too
    candidates = {BIASED: _PROBE_BIASED, UNBIASED: _PROBE_BIASED * count / (count - 1)}
    nearest = min(candidates, key=lambda name: abs(read - candidates[name]))
    gap = candidates[UNBIASED] - candidates[BIASED]
    # Within a quarter of the gap, or of the stats' own rounding where the two are closer than that.
    slack = max(gap / 4, 4 * _EPS.get(key.stat_dtype, 2.0**-23) * candidates[UNBIASED])
    if abs(read - candidates[nearest]) > slack:
        raise BatchNormKernelError(
            f"batch-norm kernel {key} updated the running variance of the probe to {read!r}; expected "
            f"{candidates[BIASED]} (biased) or {candidates[UNBIASED]!r} (unbiased, n={count}). "
            "Use running_var_mode='paddle' to keep the kernel's update unchanged.", key=key, read=read)
    logger.debug("batch-norm kernel %s updates the running variance %s (probe read %r)", key, nearest, read)
    return nearest


def kernel_update(key: KernelKey, place: Any = None, kernel: Callable = plain_kernel,
                  count_over_ranks: Callable[[int], int] = _local_count) -> str:
    """Find what a kernel does to the running variance, probing it once and caching the answer.

    While to_static traces, the probe runs eagerly at ``place``, outside the program.

    Args:
        key: The kernel to probe.
        place: Where to probe; None: the expected place (``paddle.set_device``'s).
        kernel: The call to probe, with :func:`plain_kernel`'s signature.
        count_over_ranks: Turns a rank's count of values per channel into the global one.

    Returns:
        ``BIASED`` or ``UNBIASED``.

    Raises:
        BatchNormKernelError: The probe read a value that neither update gives.
    """
    update = _kernel_updates.get(key)
    if update is None:
        if paddle.in_dynamic_mode():
            update = _probe(key, place, kernel, count_over_ranks)  # place None: to_tensor's default
        else:  # to_static is tracing: probe eagerly, outside the program being built
            with paddle.base.dygraph.guard(place or paddle.base.framework._current_expected_place()):
                update = _probe(key, None, kernel, count_over_ranks)
        _kernel_updates[key] = update
    return update


# --- the layers ---------------------------------------------------------------------------------

def _scale_in_place(param: paddle.Tensor, factor) -> None:
    with paddle.no_grad():
        if paddle.in_dynamic_mode():
            # set_value, not an in-place op: the BN grad node would see a bumped tensor version and refuse.
            param.set_value(param * factor)
        else:
            paddle.assign(param * (factor if isinstance(factor, float) else factor.astype(param.dtype)), output=param)


def _values_per_channel(x: paddle.Tensor, channels_last: bool):
    """n of the running-variance update: an int, or a Tensor where to_static left a dimension open."""
    shape = list(x.shape)
    channels = shape[-1] if channels_last else shape[1]
    if min(shape) >= 0:
        return math.prod(shape) // channels
    return paddle.numel(x).astype("float64") / channels


class _TorchVariance:
    """The torch-compatible training call, shared by the BN layers below."""

    running_var_mode: str

    # Plain Python on shapes, no tensor-dependent branches: to_static may run it as is.
    @paddle.jit.not_to_static
    def _torch_variance_call(self, x: paddle.Tensor, kernel_name: str, kernel: Callable,
                             count_over_ranks: Callable[[int], int] = _local_count) -> paddle.Tensor:
        rank = len(x.shape)
        channels_last = self._data_format in _CHANNELS_LAST
        local = _values_per_channel(x, channels_last)
        if isinstance(local, int) and local < 2:
            # Paddle would silently fall back to the running statistics; PyTorch refuses.
            raise ValueError(f"Expected more than 1 value per channel when training, got input size {list(x.shape)}")

        def call() -> paddle.Tensor:
            return kernel(x, self._mean, self._variance, self.weight, self.bias, self._momentum, self._epsilon,
                          self._data_format)

        place = x.place if paddle.in_dynamic_mode() else None
        updates = set()
        for large in ([False, True] if x.shape[0] < 0 and rank in (2, 3) else [is_large(rank, x.shape[0])]):
            key = KernelKey(kernel_name, str(place) if place is not None else f"Place({paddle.get_device()})",
                            _dtype_name(x.dtype), _dtype_name(self._variance.dtype), self._data_format, rank, large)
            updates.add(kernel_update(key, place, kernel, count_over_ranks))
        if len(updates) > 1:
            raise ValueError(f"input {list(x.shape)}: with an open batch size the kernel (and its running-variance "
                             "update) depends on it here; give to_static a fixed batch size")
        if updates == {UNBIASED}:
            return call()
        count = count_over_ranks(local) if isinstance(local, int) else local
        bessel = count / (count - 1)
        _scale_in_place(self._variance, 1.0 / bessel)
        try:
            return call()
        finally:  # also when the kernel raises: the buffer must not stay rescaled
            _scale_in_place(self._variance, bessel)

    @paddle.jit.not_to_static
    def _native_call(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.batch_norm(x, self._mean, self._variance, weight=self.weight, bias=self.bias, training=self.training,
                            momentum=self._momentum, epsilon=self._epsilon, data_format=self._data_format,
                            use_global_stats=self._use_global_stats)

    def _updates_stats(self) -> bool:
        return self.training and not self._use_global_stats


class _TorchVarianceBN(_TorchVariance):
    """Constructor and forward of the single-process layers below (SyncBatchNorm has its own)."""

    def __init__(self, num_features: int, momentum: float = 0.9, epsilon: float = 1e-5, *,
                 running_var_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(num_features, momentum=momentum, epsilon=epsilon, **kwargs)
        self.running_var_mode = _check_mode(running_var_mode or _default_mode)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        self._check_data_format(self._data_format)
        self._check_input_dim(x)
        if not self._updates_stats() or self.running_var_mode == "paddle":
            return self._native_call(x)
        return self._torch_variance_call(x, "batch_norm", plain_kernel)


class BatchNorm2D(_TorchVarianceBN, nn.BatchNorm2D):
    """``paddle.nn.BatchNorm2D`` with a selectable running-variance update.

    ``running_var_mode="torch"`` reproduces PyTorch's unbiased update on every kernel; ``"paddle"``
    keeps the kernel's. The state dict is that of ``nn.BatchNorm2D``.

    Args:
        num_features: Channels.
        momentum: Paddle's momentum (the weight of the old running value; torch's 0.1 is 0.9 here).
        epsilon: Added to the variance before the square root.
        running_var_mode: ``"torch"`` or ``"paddle"``; None: the module default
            (:func:`set_default_running_var_mode`).
        **kwargs: Passed on to ``paddle.nn.BatchNorm2D`` (``weight_attr``, ``bias_attr``,
            ``data_format``, ...).

    Raises:
        ValueError: An unknown ``running_var_mode``; in training, an input with one value per channel.
    """


class BatchNorm1D(_TorchVarianceBN, nn.BatchNorm1D):
    """``paddle.nn.BatchNorm1D`` (2-D or 3-D input) with the running-variance update of :class:`BatchNorm2D`.

    Args:
        num_features: Channels.
        momentum: Paddle's momentum (the weight of the old running value; torch's 0.1 is 0.9 here).
        epsilon: Added to the variance before the square root.
        running_var_mode: ``"torch"`` or ``"paddle"``; None: the module default
            (:func:`set_default_running_var_mode`).
        **kwargs: Passed on to ``paddle.nn.BatchNorm1D`` (``weight_attr``, ``bias_attr``,
            ``data_format``, ...).

    Raises:
        ValueError: An unknown ``running_var_mode``; in training, an input with one value per channel.
    """


def world_size() -> int:
    """Count the ranks that a SyncBatchNorm reduces over.

    Returns:
        The world size (1 outside ``paddle.distributed``).
    """
    return dist.get_world_size()


def sum_over_ranks(count: int) -> int:
    """Sum a count over all ranks (ranks may hold batches of different size).

    Args:
        count: This rank's count.

    Returns:
        The global count.
    """
    total = paddle.to_tensor([count], dtype="int64")
    dist.all_reduce(total)
    return int(total.item())


class SyncBatchNorm(_TorchVariance, nn.SyncBatchNorm):
    """Cross-rank BatchNorm with PyTorch's ``SyncBatchNorm`` semantics.

    Several ranks, training: Paddle's ``sync_batch_norm`` kernel normalises with the global
    statistics; in ``"torch"`` mode the running variance follows torch's unbiased update over the
    global count (the sum of every rank's N*H*W, reduced each step). One rank, or eval: plain
    batch norm, as torch's SyncBatchNorm does (so it also runs on a CPU, where Paddle has no
    sync kernel). Without affine parameters the layer has no ``weight``/``bias`` (torch's
    ``affine=False``), where Paddle's own SyncBatchNorm keeps constant ones.

    Args:
        num_features: Channels.
        momentum: Paddle's momentum (the weight of the old running value).
        epsilon: Added to the variance before the square root.
        weight_attr: The scale's ``ParamAttr``; False: no scale.
        bias_attr: The shift's ``ParamAttr``; False: no shift.
        data_format: The input's layout.
        name: Paddle's layer name.
        running_var_mode: ``"torch"`` or ``"paddle"``; None: the module default
            (:func:`set_default_running_var_mode`).

    Raises:
        ValueError: An unknown ``running_var_mode``.
    """

    def __init__(self, num_features: int, momentum: float = 0.9, epsilon: float = 1e-5,
                 weight_attr: paddle.ParamAttr | bool | None = None,
                 bias_attr: paddle.ParamAttr | bool | None = None, data_format: str = "NCHW",
                 name: str | None = None, *,
                 running_var_mode: str | None = None) -> None:
        super().__init__(num_features, momentum, epsilon, weight_attr, bias_attr, data_format, name)
        if weight_attr is False:
            self.weight = None
        if bias_attr is False:
            self.bias = None
        self.running_var_mode = _check_mode(running_var_mode or _default_mode)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Normalise ``x`` with batch statistics (training) or running statistics (eval).

        Args:
            x: The input, in the layer's data format.

        Returns:
            The normalised output, shaped like ``x``.

        Raises:
            ValueError: In training, an input with one value per channel.
        """
        self._check_data_format()  # Paddle's: NCL/NCDHW/... -> NCHW, channels-last -> NHWC
        if not self._updates_stats() or world_size() == 1:
            if self._updates_stats() and self.running_var_mode == "torch":
                return self._torch_variance_call(x, "batch_norm", plain_kernel)
            return self._native_call(x)
        channels = x.shape[-1 if self._data_format == "NHWC" else 1]

        def kernel(x, mean, variance, weight, bias, momentum, epsilon, data_format):
            # The sync kernel wants a scale and a shift even for an affine-free layer.
            weight = weight if weight is not None else paddle.ones([channels], dtype=variance.dtype)
            bias = bias if bias is not None else paddle.zeros([channels], dtype=variance.dtype)
            return sync_kernel(x, mean, variance, weight, bias, momentum, epsilon, data_format)

        if self.running_var_mode == "paddle":
            return kernel(x, self._mean, self._variance, self.weight, self.bias, self._momentum, self._epsilon,
                          self._data_format)
        return self._torch_variance_call(x, "sync_batch_norm", kernel, sum_over_ranks)

    @classmethod
    def convert_sync_batchnorm(cls, layer: nn.Layer) -> nn.Layer:
        """Replace every BN in ``layer`` (BatchNorm1D/2D/3D, ours or Paddle's) by this class, like torch's.

        Parameters and running statistics are shared, not copied; the state dict keeps its keys.
        Our BNs keep their ``running_var_mode``; native Paddle BNs get ``"paddle"``, so converting
        never changes an update rule. Legacy ``paddle.nn.BatchNorm`` is left alone, as Paddle does.

        Args:
            layer: A Paddle model or layer.

        Returns:
            ``layer`` with its BNs replaced (a new object where ``layer`` itself is a BN).
        """
        if isinstance(layer, nn.layer.norm._BatchNormBase) and not isinstance(layer, cls):
            converted = cls(layer._num_features, layer._momentum, layer._epsilon,
                            weight_attr=False if layer.weight is None else None,
                            bias_attr=False if layer.bias is None else None, data_format=layer._data_format,
                            running_var_mode=getattr(layer, "running_var_mode", "paddle"))
            for name in ("weight", "bias", "_mean", "_variance"):
                if getattr(layer, name) is not None:
                    setattr(converted, name, getattr(layer, name))
            converted._use_global_stats = layer._use_global_stats
            converted.training = layer.training
            layer = converted
        for name, child in list(layer.named_children()):
            layer.add_sublayer(name, cls.convert_sync_batchnorm(child))
        return layer


def convert_sync_batchnorm(layer: nn.Layer) -> nn.Layer:
    """Replace every BN in ``layer`` by :class:`SyncBatchNorm` (see :meth:`SyncBatchNorm.convert_sync_batchnorm`).

    Args:
        layer: A Paddle model or layer.

    Returns:
        The converted layer; parameters and running statistics are shared, the state-dict keys kept.
    """
    return SyncBatchNorm.convert_sync_batchnorm(layer)


def set_model_running_var_mode(model: nn.Layer, mode: str) -> int:
    """Set the running-variance mode of every paddle-rep BN in ``model``.

    Args:
        model: A Paddle model.
        mode: ``"torch"`` or ``"paddle"`` (see :func:`set_default_running_var_mode`).

    Returns:
        How many BNs were set.

    Raises:
        ValueError: An unknown mode.
    """
    return set_on_sublayers(model, _TorchVariance, "running_var_mode", _check_mode(mode))

