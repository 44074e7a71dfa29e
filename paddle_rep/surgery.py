"""Put ACBlock, RepVGGBlock or ODConv2D in place of the Conv2D layers of any model, and back.

``insert_blocks`` swaps each eligible ``nn.Conv2D`` for a block of the same geometry whose
eval output equals the conv's (pretrained weights keep working); ``fuse_back`` fuses the
trained blocks and puts a plain ``nn.Conv2D`` back under the original name, so the deployed
model has the original layer tree and state-dict keys.

Function-preserving start (eval mode; train-mode BN normalises with batch statistics, which
no initialisation can undo):

- ACB: ``square_conv`` takes the kernel, ``square_bn`` is an identity (mean 0, variance
  1 - eps, gamma 1) whose beta carries the conv bias; ``ver_bn``/``hor_bn`` gamma and beta
  are 0, so those branches start silent but train (gradient reaches gamma).
- RepVGG: the same for ``rbr_dense``; ``rbr_1x1`` and ``rbr_identity`` start at gamma 0, and
  the block's ReLU is replaced by ``nn.Identity`` since the conv had none.
- ODConv: the attention heads start at weight 0 and bias 0, so every sigmoid is exactly 0.5
  and the kernel softmax exactly uniform at any temperature; the ``kernel_num`` kernels are
  the conv's kernel times 2**(number of sigmoid heads) plus zero-mean jitter across kernels
  (their average is exactly the kernel; the jitter lets them diverge in training). The
  output equals the conv's up to rounding. A conv bias is kept by :class:`BiasedODConv2D`.
  ODConv cannot be reverted: its kernel depends on the input.

A conv followed by a BN keeps that BN (the layout of ACNet's ``use_last_bn``): the layer tree
cannot show dataflow, so the BN is not absorbed. ``fuse_back(..., example_input=x)``
traces which BN alone consumes each restored conv and folds the fused bias into that BN's
running mean (exact in eval and train mode), so the result loads into the original model.
"""

import copy
import logging
from collections.abc import Sequence
from typing import Any

import paddle
from paddle import nn

from .acblock import ACBlock
from .core import surgery_plan as common
from .core.deploy import ACBLOCK_FUSED_ATTR, DBB_FUSED_ATTR, MOBILEONE_FUSED_ATTR, REPVGG_FUSED_ATTR
from .core.errors import SurgeryError
from .core.surgery_plan import REPLACED_CONV, ConvSpec, FuseBackReport, InsertReport
from .dbb import DiverseBranchBlock
from .fusion import device_of, identity_kernel, is_batch_norm
from .mobileone import MobileOneBlock
from .odconv import Attention, ODConv2D
from .qarepvgg import QARepVGGBlockV2
from .reparam import reparameterize_model
from .repvgg import RepVGGBlock

logger = logging.getLogger(__name__)

ODCONV_KERNEL_JITTER = 0.1  # std of the per-kernel jitter, relative to the std of the conv kernel
FOLD_CHECK_REL = 1e-7  # float64 check: a wrong bias fold moves outputs by the bias, far above rounding
_BLOCKS = {"acb": ACBlock, "repvgg": RepVGGBlock, "qarepvgg": QARepVGGBlockV2, "dbb": DiverseBranchBlock,
           "odconv": ODConv2D,
           "mobileone": MobileOneBlock}
_FUSED_ATTR = {ACBlock: ACBLOCK_FUSED_ATTR, RepVGGBlock: REPVGG_FUSED_ATTR, QARepVGGBlockV2: REPVGG_FUSED_ATTR,
               DiverseBranchBlock: DBB_FUSED_ATTR,
               MobileOneBlock: MOBILEONE_FUSED_ATTR}
# convs inside these are never converted: every block family (a new one cannot be forgotten), ODConv's heads
_OPAQUE = (*_BLOCKS.values(), Attention)


class BiasedODConv2D(ODConv2D):
    """``ODConv2D`` plus a per-channel ``bias`` (upstream has none), used for convs that had one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the ODConv and its bias.

        Args:
            *args: The ODConv's positional arguments.
            **kwargs: The ODConv's keyword arguments.
        """
        super().__init__(*args, **kwargs)
        self.bias = self.create_parameter([self.out_planes], is_bias=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the ODConv, then add the bias.

        Args:
            x: ``[N, C, H, W]``.

        Returns:
            The biased output.
        """
        return super().forward(x) + self.bias.reshape([1, -1, 1, 1])


def conv_spec(conv: nn.Conv2D) -> ConvSpec | str:
    """The geometry of a Paddle conv, or why it is not a square, symmetric NCHW conv.

    Args:
        conv: The conv.

    Returns:
        Its :class:`ConvSpec`, or a sentence saying why surgery skips it.
    """
    return common.make_spec(
        in_channels=conv._in_channels, out_channels=conv._out_channels, kernel_size=conv._kernel_size,
        stride=conv._stride, padding=conv._padding, dilation=conv._dilation, groups=conv._groups,
        padding_mode=conv._padding_mode, has_bias=conv.bias is not None,
        channel_last=conv._data_format != "NCHW")


def _sublayer(model: nn.Layer, name: str) -> nn.Layer:
    layer = model
    for part in name.split(".") if name else ():
        layer = layer._sub_layers[part]
    return layer


def _replace(model: nn.Layer, name: str, new: nn.Layer) -> None:
    parent, leaf = common.split_name(name)
    # add_sublayer on an existing name keeps its position, so the tree order is unchanged.
    _sublayer(model, parent).add_sublayer(leaf, new)


def _survey(model: nn.Layer) -> dict[str, ConvSpec | str]:
    """Every Conv2D by dotted name: its spec, or the reason it cannot be replaced."""
    convs: dict[str, ConvSpec | str] = {}
    opaque: list[tuple[str, str]] = []
    for name, layer in model.named_sublayers(include_self=True):
        inside = next((kind for prefix, kind in opaque if name.startswith(prefix + ".")), None)
        if isinstance(layer, _OPAQUE) and inside is None and name:
            opaque.append((name, type(layer).__name__))
        if not isinstance(layer, nn.Conv2D):
            continue
        if inside is not None:
            convs[name] = f"part of an existing {inside}"
        elif not name:
            convs[name] = "the model itself is a Conv2D; wrap it in a Layer to convert it"
        else:
            convs[name] = conv_spec(layer)
    return convs


def _set(param: paddle.Tensor, value: paddle.Tensor | float) -> None:
    if not isinstance(value, paddle.Tensor):
        value = paddle.full(param.shape, value, dtype=param.dtype)
    param.set_value(value.astype(param.dtype))


def _identity_bn(bn: nn.Layer, bias: paddle.Tensor | None) -> None:
    """Eval-mode identity (plus ``bias``): variance 1 - eps so that sqrt(var + eps) is 1."""
    _set(bn._mean, 0.0)
    _set(bn._variance, 1.0 - bn._epsilon)
    _set(bn.weight, 1.0)
    _set(bn.bias, bias if bias is not None else 0.0)


def _silent_bn(bn: nn.Layer) -> None:
    _set(bn.weight, 0.0)
    _set(bn.bias, 0.0)


def _build_block(to: str, spec: ConvSpec, conv: nn.Conv2D, block_kwargs: dict) -> nn.Layer:
    geometry = dict(stride=spec.stride, padding=spec.padding, dilation=spec.dilation, groups=spec.groups)
    if to == "odconv":
        cls = BiasedODConv2D if spec.has_bias else ODConv2D
        block = cls(spec.in_channels, spec.out_channels, spec.kernel_size, **geometry, **block_kwargs)
    else:
        # DBB and MobileOne pad with zeros only (no padding_mode argument)
        padding_mode = {} if to in ("dbb", "mobileone") else {"padding_mode": spec.padding_mode}
        block = _BLOCKS[to](spec.in_channels, spec.out_channels, spec.kernel_size, **geometry, **padding_mode,
                            **block_kwargs)
    block.to(device=device_of(conv.weight), dtype=conv.weight.dtype)
    with paddle.no_grad():
        _init_block(to, block, conv)
    setattr(block, REPLACED_CONV, spec)
    block.train() if conv.training else block.eval()
    return block


def _init_mobileone(block: MobileOneBlock, weight: paddle.Tensor, bias: paddle.Tensor | None) -> None:
    """The conv in the first kxk branch; the other branches, the scale branch and the BN identity start silent."""
    first, *others = block.rbr_conv
    _set(first.conv.weight, weight)
    _identity_bn(first.bn, bias)
    for branch in (*others, block.rbr_scale):
        if branch is not None:
            _silent_bn(branch.bn)
    if block.rbr_skip is not None:
        _silent_bn(block.rbr_skip)
    block.activation = nn.Identity()  # the conv had no activation


def _init_block(to: str, block: nn.Layer, conv: nn.Conv2D) -> None:
    weight, bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    if to == "acb":
        _set(block.square_conv.weight, weight)
        _identity_bn(block.square_bn, bias)
        _silent_bn(block.ver_bn)
        _silent_bn(block.hor_bn)
    elif to == "repvgg":
        _set(block.rbr_dense.conv.weight, weight)
        _identity_bn(block.rbr_dense.bn, bias)
        _silent_bn(block.rbr_1x1.bn)
        if block.rbr_identity is not None:
            _silent_bn(block.rbr_identity)
        block.nonlinearity = nn.Identity()  # the conv had no activation
    elif to == "mobileone":
        _init_mobileone(block, weight, bias)
    elif to == "dbb":
        _set(block.dbb_origin.conv.weight, weight)
        _identity_bn(block.dbb_origin.bn, bias)
        for bn in (block.dbb_avg.avgbn, block.dbb_1x1_kxk.bn2, getattr(block, "dbb_1x1", None)):
            if bn is not None:
                _silent_bn(bn if is_batch_norm(bn) else bn.bn)  # the other branches' last BN starts at 0
    elif to == "qarepvgg":
        # The bare identity has no weight to silence: the 1x1 starts at minus the identity instead.
        _set(block.rbr_dense.conv.weight, weight)
        _identity_bn(block.rbr_dense.bn, bias)
        minus_identity = -identity_kernel(block.in_channels, block.groups, (1, 1), weight.dtype)
        _set(block.rbr_1x1.weight, minus_identity if block.rbr_identity is not None else 0.0)
        _identity_bn(block.bn, None)
        block.nonlinearity = nn.Identity()
    else:
        attention = block.attention
        for head in (attention.channel_fc, attention.filter_fc, attention.spatial_fc, attention.kernel_fc):
            if head is not None:
                _set(head.weight, 0.0)
                _set(head.bias, 0.0)
        scale = common.odconv_weight_scale(attention.filter_fc is not None, attention.spatial_fc is not None)
        kernels = weight.unsqueeze(0).expand([block.kernel_num, *weight.shape])
        if block.kernel_num > 1:
            std = float(((weight - weight.mean()) ** 2).mean().sqrt())  # Tensor.std() warns of dtype promotion
            jitter = paddle.randn(kernels.shape, dtype=weight.dtype) * (ODCONV_KERNEL_JITTER * std)
            kernels = kernels + (jitter - jitter.mean(axis=0, keepdim=True))
        _set(block.weight, kernels * scale)
        if bias is not None:
            _set(block.bias, bias)


def insert_blocks(model: nn.Layer, to: str, *, include: str | Sequence[str] | None = None,
                  exclude: str | Sequence[str] | None = None, inplace: bool = False,
                  **block_kwargs: Any) -> tuple[nn.Layer, InsertReport]:
    """Replace every eligible ``nn.Conv2D`` of ``model`` by an ACBlock / RepVGGBlock / ODConv2D.

    New branches start silent, so the converted model's eval output equals the original's;
    groups and depthwise convs are honoured.

    Args:
        model: The model to convert, usually with trained weights.
        to: ``"acb"`` (square odd kernel >= 3), ``"repvgg"`` or ``"qarepvgg"`` (3x3, padding 1, stride 1 or 2),
            ``"dbb"`` (odd kernel >= 3, padding k // 2, zero padding), ``"mobileone"`` (odd kernel, padding
            k // 2, zero padding; ``num_conv_branches`` in ``block_kwargs``) or ``"odconv"`` (any square kernel,
            zero padding).
        include: fnmatch pattern(s) on dotted layer names; only matching convs are converted.
        exclude: fnmatch pattern(s) of convs to leave as they are.
        inplace: Convert ``model`` itself instead of a deep copy.
        **block_kwargs: Passed to each block (e.g. ``kernel_num``, ``reduction`` for ODConv).

    Returns:
        ``(model, report)``: the converted model and an :class:`~paddle_rep.core.surgery_plan.InsertReport`
        listing what was inserted and what was skipped, and why.

    Raises:
        ValueError: A bad ``to`` or block argument.
        SurgeryError: A pattern matches no conv, or a conv named exactly in ``include`` cannot be converted.
    """
    to = common.check_to(to)
    common.check_block_kwargs(to, _BLOCKS[to], block_kwargs)
    report = common.plan_conversion(_survey(model), to, include, exclude)
    if not inplace:
        model = copy.deepcopy(model)
    for name in report.inserted:
        conv = _sublayer(model, name)
        _replace(model, name, _build_block(to, conv_spec(conv), conv, block_kwargs))
        logger.debug("converted %s to %s", name, to)
    logger.info("insert_blocks(to=%r): %d inserted, %d skipped", to, len(report.inserted), len(report.skipped))
    return model, report


def _plain_conv(spec: ConvSpec, weight: paddle.Tensor, bias: paddle.Tensor | None) -> nn.Conv2D:
    conv = nn.Conv2D(spec.in_channels, spec.out_channels, spec.kernel_size, stride=spec.stride,
                     padding=spec.padding, dilation=spec.dilation, groups=spec.groups,
                     padding_mode=spec.padding_mode, bias_attr=None if bias is not None else False)
    conv.to(device=device_of(weight), dtype=weight.dtype)
    with paddle.no_grad():
        conv.weight.set_value(weight.detach())
        if bias is not None:
            conv.bias.set_value(bias.detach())
    conv.eval()
    return conv


def _run(model: nn.Layer, example_input: object) -> list[paddle.Tensor]:
    with paddle.no_grad():
        inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
        return [t for t in common.nested_outputs(model(*inputs)) if isinstance(t, paddle.Tensor)]


def _trace_consumers(model: nn.Layer, convs: list[str], example_input: object) -> dict[str, list[str]]:
    """For each named conv, the layers whose input was that conv's output tensor (one eval forward)."""
    produced: dict[int, str] = {}
    keep_alive: list = []  # ids stay unique only while the tensors live
    consumers: dict[str, list[str]] = {name: [] for name in convs}

    def on_output(name: str):
        def hook(layer, inputs, output):
            keep_alive.append(output)
            produced[id(output)] = name
        return hook

    def on_input(name: str):
        def hook(layer, inputs):
            for tensor in common.nested_outputs(inputs):
                if id(tensor) in produced:
                    consumers[produced[id(tensor)]].append(name)
        return hook

    handles = [_sublayer(model, name).register_forward_post_hook(on_output(name)) for name in convs]
    handles += [layer.register_forward_pre_hook(on_input(name)) for name, layer in model.named_sublayers()]
    try:
        _run(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    return consumers


def _apply_folds(model: nn.Layer, folds: dict[str, str], specs: dict[str, ConvSpec]) -> None:
    with paddle.no_grad():
        for name, bn_name in folds.items():
            conv, bn = _sublayer(model, name), _sublayer(model, bn_name)
            bn._mean.set_value(bn._mean - conv.bias.detach())
            _replace(model, name, _plain_conv(specs[name], conv.weight, None))


def _as_float64(value: object) -> object:
    if isinstance(value, (tuple, list)):
        return type(value)(_as_float64(v) for v in value)
    if isinstance(value, paddle.Tensor) and value.is_floating_point():
        return value.astype("float64")
    return value


def _fold_biases(model: nn.Layer, report: FuseBackReport, specs: dict[str, ConvSpec], example_input: object) -> None:
    """Move each restored conv's bias into the BN that alone consumes it, then drop the bias.

    The folds are first tried on a float64 copy: there a correct fold changes the output only
    by float64 rounding, while a BN whose input is also used elsewhere moves it by the bias.
    (In float32, rounding amplified through a deep trained net reaches ~1e-4 and would mask it.)
    """
    gained_bias = [name for name in report.restored if not specs[name].has_bias]
    bns = {name for name, layer in model.named_sublayers() if is_batch_norm(layer)}
    consumers = _trace_consumers(model, gained_bias, example_input)
    folds = {}
    for name in gained_bias:
        bn_name = common.pick_following_bn(name, consumers[name], bns)
        if bn_name is None:
            report.bias_kept[name] = f"no single BN consumes its output (consumers: {consumers[name] or 'none'})"
        else:
            folds[name] = bn_name
    probe = copy.deepcopy(model)
    probe.to(dtype="float64")
    probe_input = _as_float64(example_input)
    before = _run(probe, probe_input)
    _apply_folds(probe, folds, specs)
    after = _run(probe, probe_input)
    worst = max(float((a - b).abs().max()) / max(float(b.abs().max()), 1e-300)
                for a, b in zip(after, before, strict=True))
    if worst > FOLD_CHECK_REL:
        raise SurgeryError(
            f"folding conv biases into BNs changed the output by {worst:.2e} relative: a BN's input is also "
            f"used elsewhere ({folds}); call fuse_back without example_input to keep the biases")
    _apply_folds(model, folds, specs)
    report.bias_folded.update(folds)


def fuse_back(model: nn.Layer, *, example_input: object = None,
                 inplace: bool = False) -> tuple[nn.Layer, FuseBackReport]:
    """Fuse the blocks ``insert_blocks`` made and put a plain ``nn.Conv2D`` back under each original name.

    Each restored conv has the original geometry and the fused bias. Where the original had
    no bias and ``example_input`` is given, the bias is folded into the BN that alone consumes
    the conv's output, and the model's output on ``example_input`` is checked to be unchanged;
    the state dict then matches the original model's keys and shapes. ODConv blocks stay
    (reported in ``skipped``).

    Args:
        model: A model converted by :func:`insert_blocks` (and trained).
        example_input: A tensor, or tuple of tensors for ``model(*inputs)``, to fold biases into BNs with.
        inplace: Fuse ``model`` itself instead of a deep copy.

    Returns:
        ``(model, report)``: the fused model in eval mode and a
        :class:`~paddle_rep.core.surgery_plan.FuseBackReport`.

    Raises:
        SurgeryError: Folding a bias into its BN changed the output on ``example_input``.
    """
    model = reparameterize_model(model, inplace=inplace)
    report, specs = FuseBackReport(), {}
    for name, layer in list(model.named_sublayers()):
        spec = getattr(layer, REPLACED_CONV, None)
        if spec is None:
            continue
        if isinstance(layer, ODConv2D):
            report.skipped[name] = common.ODCONV_NOT_FUSED_BACK
            continue
        fused = getattr(layer, _FUSED_ATTR[type(layer)])
        _replace(model, name, _plain_conv(spec, fused.weight, fused.bias))
        report.restored.append(name)
        specs[name] = spec
        if not spec.has_bias and example_input is None:
            report.bias_kept[name] = common.BIAS_NEEDS_EXAMPLE
    if example_input is not None and report.restored:
        _fold_biases(model, report, specs, example_input)
    logger.info("%s", report.summary())
    return model, report
