"""Paddle Inference int8: ``paddle.quantization`` post-training quantization of the fused model, run by
Paddle Inference's oneDNN int8 kernels (``Config.enable_mkldnn_int8``).

What works, and how (measured on Paddle 3.3.1; docs/int8.md, "Paddle Inference int8"):

- :func:`quantize_paddle` wraps every Conv2D and Linear (less the stem conv and the classifier with
  ``keep_float="first_and_linear"``) with ``paddle.quantization.PTQ``: weights observed per output
  channel (:class:`PerChannelAbsmaxObserver`; per tensor with ``per_channel=False``), inputs by their
  absolute maximum over all the calibration data; ``PTQ.convert`` then gives quantize_linear /
  dequantize_linear pairs and integer-valued weights.
- The weights are stored as **int8 parameters**: the oneDNN pass that reads such a program
  (``quant_dequant_onednn_pass``) reads a quantized weight's data as int8; the float32 parameter that
  ``PTQ.convert`` leaves holds the same integers as float32 and is read as garbage (outputs off by
  100 % and more).
- The program is saved in the **legacy program format** (``.pdmodel``), also under Paddle 3: Paddle
  Inference's PIR pipeline has no CPU int8 pass. On a PIR program of the converted model every
  predictor fails to build (``Tensor holds no memory``), and with the weights left float
  (``remain_weight=True``) the quantize/dequantize pairs are deleted and the model runs float32.
- :func:`fuse_conv_bias_adds` then puts each conv's bias add back in the form oneDNN fuses into the
  int8 conv (Paddle 3's legacy tracing writes one it does not: 28 % of repvgg_a0's int8 time).
- Paddle 3's legacy static tracing has no kernels for several ops (``sigmoid``, ``exp``, ``tanh``,
  ``matmul``, ``gelu``: ``must be Value, but got Variable``): models with ODConv or SE blocks
  cannot be saved in that format there, and :func:`quantize_paddle` raises
  :class:`~paddle_rep.core.errors.QuantizationError` for them.
"""

import contextlib
import copy
import logging
from pathlib import Path

import numpy as np
import paddle
from paddle import nn
from paddle.nn.quant.format import ConvertibleQuantedLayer
from paddle.quantization import PTQ, QuantConfig
from paddle.quantization.base_observer import BaseObserver
from paddle.quantization.factory import ObserverFactory
from paddle.quantization.observers import AbsmaxObserver

from paddle_rep.core.errors import QuantizationError
from paddle_rep.odconv import ODConv2D

from ..console import captured_output, quiet_warnings
from .ptq import Int8Options

logger = logging.getLogger(__name__)

MODEL_SUFFIX = ".pdmodel"  # the legacy program format: the only one Paddle Inference's int8 passes read
PARAMS_SUFFIX = ".pdiparams"


class _PerChannelAbsmaxObserverLayer(BaseObserver):
    """Records ``max |w|`` per output channel (Conv2D: axis 0; Paddle's Linear weight is ``[in, out]``: axis 1)."""

    def __init__(self, layer: nn.Layer, quant_bits: int = 8) -> None:
        super().__init__()
        self._bits = quant_bits
        self._axis = 0 if isinstance(layer, nn.Conv2D) else 1
        self._absmax = None

    def forward(self, weight: paddle.Tensor) -> paddle.Tensor:
        reduce = [axis for axis in range(weight.ndim) if axis != self._axis]
        self._absmax = paddle.clip(paddle.amax(paddle.abs(weight.detach()), axis=reduce), min=1e-8)
        return weight

    def cal_thresholds(self) -> None:
        """Nothing to compute: the range is the abs-max itself."""

    def scales(self) -> paddle.Tensor:
        """The per-channel range ``max |w_c|`` (Paddle's quantize_linear takes the range, not the step)."""
        return self._absmax

    def zero_points(self) -> paddle.Tensor:
        """Zeros: symmetric."""
        return paddle.zeros_like(self._absmax)

    def quant_axis(self) -> int:
        """The channel axis."""
        return self._axis

    def bit_length(self) -> int:
        """Bits per weight."""
        return self._bits

    def min_value(self) -> float:
        """Unused by the conversion; symmetric."""
        return 0.0

    def max_value(self) -> float:
        """Unused by the conversion; see :meth:`scales`."""
        return 0.0


class PerChannelAbsmaxObserver(ObserverFactory):
    """Weight observer for ``paddle.quantization.PTQ``: symmetric int8 per output channel (Paddle ships a
    per-tensor ``AbsmaxObserver`` only)."""

    def __init__(self, quant_bits: int = 8) -> None:
        """Make the factory.

        Args:
            quant_bits: The integer width (8: codes -127..127).
        """
        super().__init__(quant_bits=quant_bits)

    def _get_class(self):
        return _PerChannelAbsmaxObserverLayer


def _legacy_program_guard():
    """A context that traces into the legacy program format (Paddle 3: PIR off for its duration; Paddle 2.6
    traces into it by default)."""
    try:
        pir_on = bool(paddle.get_flags(["FLAGS_enable_pir_api"])["FLAGS_enable_pir_api"])
    except (ValueError, KeyError):  # a Paddle without the flag has no PIR
        pir_on = False
    if not pir_on:
        return contextlib.nullcontext()
    from paddle.pir_utils import OldIrGuard  # Paddle 3: present wherever the PIR flag is

    return OldIrGuard()


@contextlib.contextmanager
def _legacy_static():
    """Static mode on the legacy program format for the duration (what ``load_inference_model`` needs)."""
    with _legacy_program_guard():
        enabled = paddle.in_dynamic_mode()
        if enabled:
            paddle.enable_static()
        try:
            yield
        finally:
            if enabled:
                paddle.disable_static()


def fuse_conv_bias_adds(prefix: str) -> int:
    """Rewrite ``<prefix>.pdmodel`` so that oneDNN fuses each conv's bias into the int8 conv; returns the count.

    Paddle 3's legacy tracing adds a conv bias as ``reshape2(bias) -> elementwise_add(axis=-1)``, which
    ``conv_bias_onednn_fuse_pass`` rejects (``Check the Attr(axis) of Op(elementwise_add) ... failed``), so
    the bias add and the activation after it run as separate float32 ops. Here each such add reads the
    1-D bias itself with ``axis=1`` (Paddle 2.6's form; the same broadcast, bitwise the same output) and
    the orphaned reshape2 is dropped. Measured on repvgg_a0 at batch 8, 224x224: int8 159 -> 115 ms.
    A conv whose biased output goes into another elementwise_add (a residual connection) keeps its
    form: with the bias fused, oneDNN also fuses that residual add into the int8 conv, with scales it
    estimates itself (acnet_resnet18 at 32x32: 0.036 relative error against float32 became 0.135).

    Args:
        prefix: the saved program's prefix (``.pdmodel`` + ``.pdiparams``), rewritten in place.

    Returns:
        How many bias adds were rewired (0: nothing written).
    """
    with _legacy_static():
        executor = paddle.static.Executor(paddle.CPUPlace())
        program, feeds, fetches = paddle.static.load_inference_model(prefix, executor)
        block = program.global_block()
        producer = {name: op for op in block.ops for name in op.output_arg_names}
        residual = {name for op in block.ops if op.type == "elementwise_add" for name in op.input_arg_names}
        count = 0
        for op in block.ops:
            if op.type != "elementwise_add" or op.attr("axis") != -1 or op.output("Out")[0] in residual:
                continue  # a conv whose biased output meets a residual add: see the docstring
            conv, reshape = producer.get(op.input("X")[0]), producer.get(op.input("Y")[0])
            if conv is None or conv.type not in ("conv2d", "depthwise_conv2d") or reshape is None \
                    or reshape.type != "reshape2" or conv.attr("data_format") not in ("NCHW", "AnyLayout"):
                continue
            bias = block.var(reshape.input("X")[0])
            if not bias.persistable or len(bias.shape) != 1:
                continue
            op._rename_input(op.input("Y")[0], bias.name)
            op._set_attr("axis", 1)
            count += 1
        if not count:
            return 0
        read = {name for op in block.ops for name in op.input_arg_names}
        for index in reversed(range(len(block.ops))):
            op = block.ops[index]
            if op.type == "reshape2" and not read & set(op.output_arg_names):
                block._remove_op(index)
        paddle.static.save_inference_model(prefix, [block.var(name) for name in feeds], fetches, executor,
                                           program=program)
    return count


def quantizable_layers(model: nn.Layer, options: Int8Options) -> list[nn.Layer]:
    """The Conv2D and Linear layers :func:`quantize_paddle` quantizes, in definition order.

    Args:
        model: the fused model.
        options: ``keep_float="first_and_linear"`` leaves the first Conv2D and the last Linear float, and so
            does ``"auto"`` here (the measured choice is the ONNX runtimes'; Paddle int8 keeps the safe one).

    Returns:
        The layers (possibly empty).
    """
    layers = [layer for layer in model.sublayers() if isinstance(layer, (nn.Conv2D, nn.Linear))]
    if options.keep_float in ("auto", "first_and_linear"):
        convs = [layer for layer in layers if isinstance(layer, nn.Conv2D)]
        linears = [layer for layer in layers if isinstance(layer, nn.Linear)]
        dropped = {id(layer) for layer in (convs[:1] + linears[-1:])}
        layers = [layer for layer in layers if id(layer) not in dropped]
    return layers


def _int8_weights(model: nn.Layer) -> int:
    """Store each converted layer's integer-valued float32 weight as an int8 parameter; returns the count."""
    count = 0
    for layer in model.sublayers():
        if not isinstance(layer, ConvertibleQuantedLayer) or getattr(layer, "weight_quanter", None) is None:
            continue
        values = layer.weight.numpy()
        if np.any(values != np.round(values)) or values.min() < -128 or values.max() > 127:
            raise QuantizationError(f"{type(layer).__name__}: PTQ.convert left a weight that is not int8 "
                                    f"(range {values.min()}..{values.max()})")
        weight = layer.create_parameter(list(values.shape), dtype="int8",
                                        default_initializer=nn.initializer.Constant(0.0))
        weight.set_value(values.astype(np.int8))
        weight.stop_gradient = True
        layer.weight = weight
        count += 1
    return count


def quantize_paddle(model: nn.Layer, prefix: str | Path, input_shape: tuple, calibration: np.ndarray,
                    options: Int8Options | None = None, batch_size: int | None = None,
                    input_name: str = "x") -> tuple[str, str]:
    """Write Paddle Inference int8 files of the fused ``model``: ``<prefix>.pdmodel`` + ``<prefix>.pdiparams``.

    Args:
        model: the fused (deploy-form) model in eval mode; not modified.
        prefix: output prefix (the export uses ``<path>.int8``).
        input_shape: ``(C, H, W)``; H/W may be None (dynamic).
        calibration: ``[N, C, H, W]`` float32 samples; the activation ranges are the abs-max over all of them.
        options: :class:`~paddle_rep.apps.quantize.ptq.Int8Options` (``per_channel``, ``keep_float``,
            ``batch_size`` as for the ONNX quantizers; ``dynamic`` does not apply).
        batch_size: the saved program's batch (None: dynamic).
        input_name: the program's input name.

    Returns:
        ``(model_file, params_file)``.

    Raises:
        QuantizationError: the model has ODConv layers, nothing to quantize, or tracing failed (Paddle 3
            cannot trace some ops into the legacy program: SE blocks' ``sigmoid``).
    """
    options = options or Int8Options()
    if any(isinstance(layer, ODConv2D) for layer in model.sublayers(include_self=True)):
        raise QuantizationError("Paddle Inference int8 does not take ODConv models: the legacy program format its "
                                "int8 passes read cannot hold ODConv's ops under Paddle 3 (sigmoid, matmul); use "
                                "int8_backends=('onnxruntime', 'openvino') (docs/int8.md)")
    quantized = copy.deepcopy(model)
    quantized.eval()
    layers = quantizable_layers(quantized, options)
    if not layers:
        raise QuantizationError("Paddle Inference int8: the model has no Conv2D or Linear layer left to quantize "
                                f"(keep_float={options.keep_float!r})")
    weight = PerChannelAbsmaxObserver() if options.per_channel else AbsmaxObserver()
    config = QuantConfig(activation=None, weight=None)
    config.add_layer_config(layers, activation=AbsmaxObserver(), weight=weight)
    ptq = PTQ(config)
    quantized = ptq.quantize(quantized, inplace=True)
    with paddle.no_grad():  # eager: any batch size calibrates, whatever the saved program's batch
        for start in range(0, len(calibration), options.batch_size):
            quantized(paddle.to_tensor(calibration[start:start + options.batch_size]))

    with quiet_warnings():  # convert's own paddle.to_tensor(tensor) UserWarning
        quantized = ptq.convert(quantized, inplace=True)
    count = _int8_weights(quantized)
    prefix = str(prefix)
    spec = paddle.static.InputSpec([batch_size, *input_shape], "float32", input_name)
    try:
        with _legacy_program_guard(), quiet_warnings(), captured_output("paddle.jit.save (int8)"):
            static = paddle.jit.to_static(quantized, input_spec=[spec], full_graph=True)
            paddle.jit.save(static, prefix)
    except Exception as error:  # Paddle raises TypeError/ValueError/RuntimeError from deep inside tracing
        lines = [line.strip() for line in str(error).splitlines() if "Error" in line]
        raise QuantizationError("Paddle Inference int8: tracing the quantized model into the legacy program "
                                f"format failed ({lines[-1] if lines else type(error).__name__}); SE blocks and "
                                "ODConv need ops Paddle 3 cannot trace there (docs/int8.md)") from error
    model_file, params_file = prefix + MODEL_SUFFIX, prefix + PARAMS_SUFFIX
    if not Path(model_file).is_file() or not Path(params_file).is_file():
        raise QuantizationError(f"paddle.jit.save wrote no {model_file} (Paddle Inference int8 needs the legacy "
                                "program format)")
    with quiet_warnings(), captured_output("the conv bias rewrite"):
        rewired = fuse_conv_bias_adds(prefix)
    logger.info("saved Paddle Inference int8 model %s (%d int8 layers, %d conv bias adds made fusable)", model_file,
                count, rewired)
    return model_file, params_file
