"""RepVGG's quantization-aware training in Paddle (upstream README "Solution C"), exported as QDQ ONNX.

Steps (:func:`quantization_aware_training`): fuse and insert a BN after each fused conv, initialised
from data so outputs are unchanged (:func:`paddle_rep.quant.insert_bn`); wrap every Conv2D and
Linear with ``paddle.quantization.QAT``: weights per output channel, symmetric int8
(:class:`PerChannelAbsmaxQuanter`: ``paddle.quantization`` ships only a per-tensor quanter,
``FakeQuanterWithAbsMaxObserver``, in 2.6 and 3.x, so this module adds one through its
``quanter`` factory), activations per tensor with ``FakeQuanterWithAbsMaxObserver`` (moving
average of abs-max, symmetric); train; freeze the BN statistics and the activation observers for the
last ``freeze_steps`` (upstream ``freeze_quant_bn``); ``QAT.convert`` and :func:`export_qat_onnx`
write a QDQ ONNX file through paddle2onnx that :func:`~.ptq.int8_runner` runs.

Fake-quant rule (:func:`fake_quant_symmetric`): ``clip(round(x / s), -127, 127) * s`` with
``s = absmax / 127``, halves to even; torch's qint8 rule keeps the code -128 (``docs/int8.md``).
"""

import copy
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn
from paddle.quantization import QAT, QuantConfig
from paddle.quantization.base_quanter import BaseQuanter
from paddle.quantization.factory import QuanterFactory
from paddle.quantization.quanters import FakeQuanterWithAbsMaxObserver
from paddle.quantization.quanters.abs_max import FakeQuanterWithAbsMaxObserverLayer

from paddle_rep.bn import BatchNorm2D
from paddle_rep.core.errors import QuantizationError
from paddle_rep.quant import insert_bn

logger = logging.getLogger(__name__)
QMAX = 127


def fake_quant_symmetric(x: paddle.Tensor, scale: paddle.Tensor, axis: int | None = None,
                         qmax: int = QMAX) -> paddle.Tensor:
    """This module's fake-quant rule: ``clip(round(x / scale), -qmax, qmax) * scale``, symmetric, no zero point.

    Halves round to even, as ONNX's QuantizeLinear (what the int8 runtimes execute) and torch's
    ``fake_quantize_*`` do, spelled out here because ``paddle.round`` is documented (Paddle 2.6) to
    round halves away from zero; the codes are ``[-127, 127]`` (torch's qint8 per-channel symmetric
    keeps ``-128``; docs/int8.md).

    Args:
        x: the tensor.
        scale: the step, per tensor (one value) or per channel along ``axis``.
        axis: the channel axis of a per-channel ``scale`` (None: per tensor).
        qmax: the largest code.

    Returns:
        The fake-quantized tensor (no gradient rule; see :class:`PerChannelAbsmaxQuanterLayer`).
    """
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale = scale.reshape(shape)
    return paddle.clip(round_half_even(x / scale), -qmax, qmax) * scale


def round_half_even(x: paddle.Tensor) -> paddle.Tensor:
    """Round to the nearest integer, halves to the even neighbour (the same on every Paddle version).

    Args:
        x: the tensor.

    Returns:
        ``x`` rounded, elementwise.
    """
    up = paddle.floor(x + 0.5)
    tie = (up - x) == 0.5
    odd = paddle.remainder(up, paddle.full_like(up, 2.0)) != 0
    return paddle.where(tie & odd, up - 1.0, up)


class PerChannelAbsmaxQuanterLayer(BaseQuanter):
    """Symmetric int8 fake quant of a weight per output channel (axis 0), scale ``max|w_c| / 127``,
    straight-through gradient. The scale follows the weight at every step.

    Args:
        layer: the ``Conv2D`` or ``Linear`` whose weight it quantizes (output channels on axis 0 of a
            Conv2D's weight, axis 1 of a Linear's ``[in, out]`` weight).
        bit_length: bits of the codes (8: ``[-127, 127]``).
    """

    def __init__(self, layer: nn.Layer, bit_length: int = 8) -> None:
        super().__init__()
        self._bits = bit_length
        self._axis = 0 if isinstance(layer, nn.Conv2D) else 1  # paddle Linear weight is [in, out]
        channels = layer.weight.shape[self._axis]
        self._scale = self.create_parameter([channels], default_initializer=nn.initializer.Constant(1.0))
        self._scale.stop_gradient = True

    def forward(self, weight: paddle.Tensor) -> paddle.Tensor:
        """Fake-quantize ``weight`` per output channel and record its abs-max range (:meth:`scales`).

        Args:
            weight: the layer's weight.

        Returns:
            The fake-quantized weight; its gradient passes straight through to ``weight``.
        """
        qmax = 2 ** (self._bits - 1) - 1
        reduce = [a for a in range(weight.ndim) if a != self._axis]
        absmax = paddle.clip(paddle.amax(paddle.abs(weight.detach()), axis=reduce), min=1e-8)
        scale = absmax / qmax
        with paddle.no_grad():
            self._scale.set_value(absmax)  # Paddle's quantize_linear takes the range, not the step
        quantized = fake_quant_symmetric(weight, scale, self._axis, qmax)
        return weight + (quantized - weight).detach()

    def scales(self) -> paddle.Tensor:
        """The per-channel range ``QAT.convert`` puts into ``quantize_linear``.

        Returns:
            ``max |w_c|`` per output channel from the last :meth:`forward` (the range, not the step:
            Paddle's quantize_linear takes the range).
        """
        return self._scale

    def zero_points(self) -> paddle.Tensor:
        """The zero points (symmetric quantization).

        Returns:
            Zeros, one per output channel.
        """
        return paddle.zeros_like(self._scale)

    def quant_axis(self) -> int:
        """The weight's output-channel axis.

        Returns:
            0 for a Conv2D, 1 for a Linear.
        """
        return self._axis

    def bit_length(self) -> int:
        """The bits of the codes.

        Returns:
            The constructor's ``bit_length``.
        """
        return self._bits


class PerChannelAbsmaxQuanter(QuanterFactory):
    """Factory for :class:`PerChannelAbsmaxQuanterLayer` (what ``QuantConfig(weight=...)`` takes).

    Args:
        bit_length: bits of the codes of each layer it makes.
    """

    def __init__(self, bit_length: int = 8) -> None:
        super().__init__(bit_length=bit_length)

    def _get_class(self):
        return PerChannelAbsmaxQuanterLayer


class _ActivationQuanterLayer(FakeQuanterWithAbsMaxObserverLayer):
    """Paddle's per-tensor abs-max quanter with a zero point: its own ``zero_points()`` returns None,
    which ``QAT.convert`` cannot handle (``TypeError`` in ``LinearQuanter``, Paddle 3.3.1)."""

    def zero_points(self) -> paddle.Tensor:
        return paddle.zeros_like(self._scale)


class ActivationQuanter(FakeQuanterWithAbsMaxObserver):
    """Factory of :class:`_ActivationQuanterLayer` (moving average of the abs-max, symmetric int8)."""

    def _get_class(self):
        return _ActivationQuanterLayer


def qat_config(moving_rate: float = 0.9) -> QuantConfig:
    """The quantization of :func:`quantization_aware_training`, for every Conv2D and Linear.

    Args:
        moving_rate: the activation quanters' moving-average rate of the abs-max.

    Returns:
        Per-channel int8 weights (:class:`PerChannelAbsmaxQuanter`), per-tensor abs-max int8 activations.
    """
    return QuantConfig(activation=ActivationQuanter(moving_rate=moving_rate), weight=PerChannelAbsmaxQuanter())


@dataclass
class QATConfig:
    """Training settings (upstream README: 20 epochs, lr 1e-3, weight decay 4e-5, on ImageNet)."""

    steps: int = 200
    freeze_steps: int = 50  # the last steps run with BN statistics and activation observers frozen
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 4e-5
    calibration_batches: int = 4  # batches of the training data that initialise the inserted BNs
    losses: list[float] = field(default_factory=list)


def quantization_aware_training(model: nn.Layer, batches: Callable[[], Iterator[tuple[np.ndarray, np.ndarray]]],
                                config: QATConfig | None = None) -> nn.Layer:
    """Solution C on a RepVGG / RepVGGplus model; returns the fake-quantized model (eval mode), not converted.

    Args:
        model: the trained float model (not modified).
        batches: called once per pass, yields ``(x [N, C, H, W] float32, y [N] int64)`` training batches.
        config: training settings.

    Returns:
        The QAT model; export it with :func:`export_qat_onnx`.
    """
    config = config or QATConfig()
    stream = _forever(batches)
    calibration = [next(stream)[0] for _ in range(config.calibration_batches)]
    with_bn = insert_bn(model, calibration)
    with_bn.train()
    prepared = QAT(qat_config()).quantize(with_bn, inplace=True)
    optimizer = paddle.optimizer.Momentum(learning_rate=config.lr, momentum=config.momentum,
                                          parameters=prepared.parameters(), weight_decay=config.weight_decay)
    prepared.train()
    for step in range(config.steps):
        if step == config.steps - config.freeze_steps:
            freeze(prepared)
        x, y = next(stream)
        logits = prepared(paddle.to_tensor(x))
        logits = logits["main"] if isinstance(logits, dict) else logits
        loss = nn.functional.cross_entropy(logits, paddle.to_tensor(y))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        config.losses.append(float(loss))
    prepared.eval()
    return prepared


def _forever(batches: Callable[[], Iterator]) -> Iterator:
    while True:
        empty = True
        for item in batches():
            empty = False
            yield item
        if empty:
            raise QuantizationError("the QAT training data yielded no batches")


def freeze(model: nn.Layer) -> None:
    """Freeze BN statistics (BNs use their running statistics and stop updating them) and the
    activation observers' scales; weights keep training (upstream ``freeze_bn_stats`` + ``disable_observer``).

    Args:
        model: the QAT model; its BNs and activation quanters are put in eval mode, in place.
    """
    for layer in model.sublayers():
        if isinstance(layer, (BatchNorm2D, nn.BatchNorm2D, FakeQuanterWithAbsMaxObserverLayer)):
            layer.eval()


def export_qat_onnx(model: nn.Layer, onnx_file: str | Path, input_shape: tuple[int, int, int], batch_size: int = 1,
                    opset_version: int = 13) -> str:
    """Convert a QAT model (``QAT.convert``: quantize_linear / dequantize_linear pairs) and write it
    as QDQ ONNX through paddle2onnx, for batches of ``batch_size``; written atomically. Returns the path.

    paddle2onnx runs in a child process: on Paddle 3.3.1's converted program, paddle2onnx 2.1.0
    aborts the whole process (``Only support e4m3 or e5m2 now``, SIGABRT), which then surfaces here
    as a :class:`QuantizationError` instead of killing the caller.

    Args:
        model: the QAT model from :func:`quantization_aware_training` (not modified: a copy is converted).
        onnx_file: where to write the ONNX file.
        input_shape: ``(C, H, W)``.
        batch_size: the graph's fixed batch (Paddle's converted layers fail on a dynamic one).
        opset_version: ONNX opset.

    Returns:
        The ONNX file's path.

    Raises:
        QuantizationError: conversion or export failed.
    """
    converted = QAT(qat_config()).convert(copy.deepcopy(model), inplace=True)
    converted.eval()
    onnx_file = Path(onnx_file)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=onnx_file.parent, prefix=".qat-") as tmp:
        prefix = str(Path(tmp) / "qat")
        # A fixed batch: Paddle's converted quantize_linear layers build their state from the input
        # shape and fail on a dynamic batch (``shape[0] = -1``, Paddle 3.3.1).
        spec = paddle.static.InputSpec([batch_size, *input_shape], "float32", "x")
        try:
            static = paddle.jit.to_static(converted, input_spec=[spec], full_graph=True)
            paddle.jit.save(static, prefix)
        except Exception as error:
            raise QuantizationError(f"saving the converted QAT model failed: {error}") from error
        model_file = next(prefix + s for s in (".json", ".pdmodel") if Path(prefix + s).is_file())
        draft = Path(tmp) / onnx_file.name
        script = ("import sys, paddle2onnx; paddle2onnx.export(sys.argv[1], sys.argv[2], save_file=sys.argv[3], "
                  "opset_version=int(sys.argv[4]), optimize_tool='None')")
        done = subprocess.run([sys.executable, "-c", script, model_file, prefix + ".pdiparams", str(draft),
                               str(opset_version)], capture_output=True, text=True, check=False)
        if done.returncode or not draft.is_file():
            errors = [line for line in (done.stdout + done.stderr).splitlines() if "ERROR" in line]
            raise QuantizationError(f"paddle2onnx could not convert the QAT model (exit {done.returncode}): "
                                    f"{'; '.join(errors) or done.stderr[-500:]}")
        draft.replace(onnx_file)
    return str(onnx_file)


def qat_float_model(qat_model: nn.Layer, template: nn.Layer) -> nn.Layer:
    """The float32 deploy-form model holding what QAT learned: ``template`` (an :func:`insert_bn` model of
    the same architecture) loads the QAT model's weights and BN statistics (its quanters dropped), then
    :func:`~paddle_rep.quant.fuse_inserted_bn` folds the BNs. ``template`` is changed in place.

    Args:
        qat_model: from :func:`quantization_aware_training`.
        template: an :func:`~paddle_rep.quant.insert_bn` model of the same architecture.

    Returns:
        ``template``, now the fused float model with the learned weights.

    Raises:
        QuantizationError: the QAT model's parameters do not match ``template``'s.
    """
    from paddle_rep.quant import fuse_inserted_bn

    learned = {key.replace("._observed", ""): value for key, value in qat_model.state_dict().items()
               if "quanter" not in key and "._observer." not in key}
    wanted = template.state_dict()
    if set(learned) != set(wanted):
        missing, unexpected = sorted(set(wanted) - set(learned))[:5], sorted(set(learned) - set(wanted))[:5]
        raise QuantizationError(f"the QAT model does not match the template: missing {missing}, "
                                f"unexpected {unexpected}")
    template.set_state_dict(learned)
    return fuse_inserted_bn(template)


def export_qat(qat_model: nn.Layer, template: nn.Layer, path: str | Path, input_shape: str | Sequence,
               calibration: Any, **kwargs: Any) -> Any:
    """Export a QAT model for the int8 predictors without paddle2onnx's QAT converter (see :func:`export_qat_onnx`).

    The learned weights are folded into a float deploy-form model (:func:`qat_float_model`), exported
    to ONNX, then quantized like any export (``export(..., calibration=...)``): weights per output
    channel, symmetric, scale ``max |w_c| / 127`` (the grid the QAT's weight quanter trained on: BN
    folding scales a channel and its scale alike), activation ranges calibrated on ``calibration`` (the
    min and max there, not the QAT's moving abs-max). ``Predictor(result, backend, precision="int8")``
    then runs the QAT result.

    Args:
        qat_model: from :func:`quantization_aware_training`.
        template: an :func:`~paddle_rep.quant.insert_bn` model of the same architecture (changed in place).
        path: export prefix.
        input_shape: ``(C, H, W)``.
        calibration: calibration data (see :func:`~paddle_rep.apps.quantize.load_calibration`).
        **kwargs: passed to :func:`~paddle_rep.apps.exporter.export` (``fold_batch_sizes``, ``int8_backends``...).

    Returns:
        The :class:`~paddle_rep.apps.exporter.ExportedModel` with its int8 files.

    Raises:
        QuantizationError: the QAT model's parameters do not match ``template``'s, or a quantizer failed.
        CalibrationError: the calibration data is unusable.
        ExportError: tracing or ONNX conversion failed.
    """
    from paddle_rep.apps.exporter import export

    return export(qat_float_model(qat_model, template), path, input_shape, onnx=True, calibration=calibration,
                  **kwargs)
