"""Model surgery for PyTorch, the twin of ``paddle_rep/surgery.py`` (same rules, same start, same names).

``insert_blocks`` swaps each eligible ``nn.Conv2d`` for an ACBlock / RepVGGBlock / ODConv2d
whose eval output equals the conv's; ``fuse_back`` fuses them and puts a plain
``nn.Conv2d`` back under the original name. The decisions (eligibility, patterns, reports)
live in ``paddle_rep/_surgery_common.py``, shared with Paddle; see ``paddle_rep/surgery.py``
for the initialisation of each block.
"""

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from paddle_rep.core import surgery_plan as common
from paddle_rep.core.deploy import ACBLOCK_FUSED_ATTR, DBB_FUSED_ATTR, MOBILEONE_FUSED_ATTR, REPVGG_FUSED_ATTR
from paddle_rep.core.errors import SurgeryError
from paddle_rep.core.surgery_plan import REPLACED_CONV, ConvSpec, FuseBackReport, InsertReport

from .acblock import ACBlock
from .dbb import DiverseBranchBlock
from .fusion import identity_kernel, is_batch_norm
from .mobileone import MobileOneBlock
from .odconv import Attention, ODConv2d
from .qarepvgg import QARepVGGBlockV2
from .reparam import reparameterize_model
from .repvgg import RepVGGBlock

logger = logging.getLogger(__name__)

ODCONV_KERNEL_JITTER = 0.1
FOLD_CHECK_REL = 1e-7
_BLOCKS = {"acb": ACBlock, "repvgg": RepVGGBlock, "qarepvgg": QARepVGGBlockV2, "dbb": DiverseBranchBlock,
           "odconv": ODConv2d,
           "mobileone": MobileOneBlock}
_FUSED_ATTR = {ACBlock: ACBLOCK_FUSED_ATTR, RepVGGBlock: REPVGG_FUSED_ATTR, QARepVGGBlockV2: REPVGG_FUSED_ATTR,
               DiverseBranchBlock: DBB_FUSED_ATTR,
               MobileOneBlock: MOBILEONE_FUSED_ATTR}
# convs inside these are never converted: every block family (a new one cannot be forgotten), ODConv's heads
_OPAQUE = (*_BLOCKS.values(), Attention)


class BiasedODConv2d(ODConv2d):
    """``ODConv2d`` plus a per-channel ``bias`` (upstream has none), used for convs that had one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Build the ODConv and its bias.

        Args:
            *args: The ODConv's positional arguments.
            **kwargs: The ODConv's keyword arguments.
        """
        super().__init__(*args, **kwargs)
        self.bias = nn.Parameter(torch.zeros(self.out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the ODConv, then add the bias.

        Args:
            x: ``[N, C, H, W]``.

        Returns:
            The biased output.
        """
        return super().forward(x) + self.bias.view(1, -1, 1, 1)


def conv_spec(conv: nn.Conv2d) -> ConvSpec | str:
    """The geometry of a torch conv, or why it is not a square, symmetric conv.

    Args:
        conv: The conv.

    Returns:
        Its :class:`ConvSpec`, or a sentence saying why surgery skips it.
    """
    return common.make_spec(
        in_channels=conv.in_channels, out_channels=conv.out_channels, kernel_size=tuple(conv.kernel_size),
        stride=tuple(conv.stride), padding=conv.padding if isinstance(conv.padding, str) else tuple(conv.padding),
        dilation=tuple(conv.dilation), groups=conv.groups, padding_mode=conv.padding_mode,
        has_bias=conv.bias is not None)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, leaf = common.split_name(name)
    setattr(model.get_submodule(parent), leaf, new)


def _survey(model: nn.Module) -> dict[str, ConvSpec | str]:
    convs: dict[str, ConvSpec | str] = {}
    opaque: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        inside = next((kind for prefix, kind in opaque if name.startswith(prefix + ".")), None)
        if isinstance(module, _OPAQUE) and inside is None and name:
            opaque.append((name, type(module).__name__))
        if not isinstance(module, nn.Conv2d):
            continue
        if inside is not None:
            convs[name] = f"part of an existing {inside}"
        elif not name:
            convs[name] = "the model itself is a Conv2D; wrap it in a Layer to convert it"
        else:
            convs[name] = conv_spec(module)
    return convs


def _identity_bn(bn: nn.Module, bias: torch.Tensor | None) -> None:
    bn.running_mean.zero_()
    bn.running_var.fill_(1.0 - bn.eps)
    bn.weight.fill_(1.0)
    bn.bias.copy_(bias) if bias is not None else bn.bias.zero_()


def _silent_bn(bn: nn.Module) -> None:
    bn.weight.zero_()
    bn.bias.zero_()


def _build_block(to: str, spec: ConvSpec, conv: nn.Conv2d, block_kwargs: dict) -> nn.Module:
    geometry = dict(stride=spec.stride, padding=spec.padding, dilation=spec.dilation, groups=spec.groups)
    if to == "odconv":
        cls = BiasedODConv2d if spec.has_bias else ODConv2d
        block = cls(spec.in_channels, spec.out_channels, spec.kernel_size, **geometry, **block_kwargs)
    else:
        # DBB and MobileOne pad with zeros only (no padding_mode argument)
        padding_mode = {} if to in ("dbb", "mobileone") else {"padding_mode": spec.padding_mode}
        block = _BLOCKS[to](spec.in_channels, spec.out_channels, spec.kernel_size, **geometry, **padding_mode,
                            **block_kwargs)
    block.to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        _init_block(to, block, conv)
    setattr(block, REPLACED_CONV, spec)
    block.train(conv.training)
    return block


def _init_mobileone(block: MobileOneBlock, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """The conv in the first kxk branch; the other branches, the scale branch and the BN identity start silent."""
    first, *others = block.rbr_conv
    first.conv.weight.copy_(weight)
    _identity_bn(first.bn, bias)
    for branch in (*others, block.rbr_scale):
        if branch is not None:
            _silent_bn(branch.bn)
    if block.rbr_skip is not None:
        _silent_bn(block.rbr_skip)
    block.activation = nn.Identity()  # the conv had no activation


def _init_block(to: str, block: nn.Module, conv: nn.Conv2d) -> None:
    weight, bias = conv.weight.detach(), None if conv.bias is None else conv.bias.detach()
    if to == "acb":
        block.square_conv.weight.copy_(weight)
        _identity_bn(block.square_bn, bias)
        _silent_bn(block.ver_bn)
        _silent_bn(block.hor_bn)
    elif to == "repvgg":
        block.rbr_dense.conv.weight.copy_(weight)
        _identity_bn(block.rbr_dense.bn, bias)
        _silent_bn(block.rbr_1x1.bn)
        if block.rbr_identity is not None:
            _silent_bn(block.rbr_identity)
        block.nonlinearity = nn.Identity()
    elif to == "mobileone":
        _init_mobileone(block, weight, bias)
    elif to == "dbb":
        block.dbb_origin.conv.weight.copy_(weight)
        _identity_bn(block.dbb_origin.bn, bias)
        for bn in (block.dbb_avg.avgbn, block.dbb_1x1_kxk.bn2, getattr(block, "dbb_1x1", None)):
            if bn is not None:
                _silent_bn(bn if is_batch_norm(bn) else bn.bn)  # the other branches' last BN starts at 0
    elif to == "qarepvgg":
        # The bare identity has no weight to silence: the 1x1 starts at minus the identity instead.
        block.rbr_dense.conv.weight.copy_(weight)
        _identity_bn(block.rbr_dense.bn, bias)
        if block.rbr_identity is not None:
            block.rbr_1x1.weight.copy_(-identity_kernel(block.in_channels, block.groups, (1, 1),
                                                               weight.dtype, weight.device))
        else:
            block.rbr_1x1.weight.zero_()
        _identity_bn(block.bn, None)
        block.nonlinearity = nn.Identity()
    else:
        attention = block.attention
        for head in (attention.channel_fc, attention.filter_fc, attention.spatial_fc, attention.kernel_fc):
            if head is not None:
                head.weight.zero_()
                head.bias.zero_()
        scale = common.odconv_weight_scale(attention.filter_fc is not None, attention.spatial_fc is not None)
        kernels = weight.unsqueeze(0).expand(block.kernel_num, *weight.shape)
        if block.kernel_num > 1:
            jitter = torch.randn_like(kernels) * (ODCONV_KERNEL_JITTER * float(weight.std(unbiased=False)))
            kernels = kernels + (jitter - jitter.mean(dim=0, keepdim=True))
        block.weight.copy_(kernels * scale)
        if bias is not None:
            block.bias.copy_(bias)


def insert_blocks(model: nn.Module, to: str, *, include: str | Sequence[str] | None = None,
                  exclude: str | Sequence[str] | None = None, inplace: bool = False,
                  **block_kwargs: Any) -> tuple[nn.Module, InsertReport]:
    """Replace every eligible ``nn.Conv2d`` by an ACBlock / RepVGGBlock / ODConv2d.

    The twin of ``paddle_rep.insert_blocks``, with the same rules and the same start.

    Args:
        model: The model to convert.
        to: ``"acb"``, ``"repvgg"``, ``"qarepvgg"``, ``"odconv"`` or ``"mobileone"``.
        include: fnmatch pattern(s) on dotted module names; only matching convs are converted.
        exclude: fnmatch pattern(s) of convs to leave as they are.
        inplace: Convert ``model`` itself instead of a deep copy.
        **block_kwargs: Passed to each block.

    Returns:
        ``(model, report)``, the report an :class:`~paddle_rep.core.surgery_plan.InsertReport`.

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
        conv = model.get_submodule(name)
        _replace(model, name, _build_block(to, conv_spec(conv), conv, block_kwargs))
        logger.debug("converted %s to %s", name, to)
    logger.info("insert_blocks(to=%r): %d inserted, %d skipped", to, len(report.inserted), len(report.skipped))
    return model, report


def _plain_conv(spec: ConvSpec, weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Conv2d:
    conv = nn.Conv2d(spec.in_channels, spec.out_channels, spec.kernel_size, stride=spec.stride,
                     padding=spec.padding, dilation=spec.dilation, groups=spec.groups,
                     padding_mode=spec.padding_mode, bias=bias is not None,
                     device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        conv.weight.copy_(weight)
        if bias is not None:
            conv.bias.copy_(bias)
    return conv.eval()


def _run(model: nn.Module, example_input: object) -> list[torch.Tensor]:
    with torch.no_grad():
        inputs = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
        return [t for t in common.nested_outputs(model(*inputs)) if isinstance(t, torch.Tensor)]


def _trace_consumers(model: nn.Module, convs: list[str], example_input: object) -> dict[str, list[str]]:
    produced: dict[int, str] = {}
    keep_alive: list = []
    consumers: dict[str, list[str]] = {name: [] for name in convs}

    def on_output(name: str):
        def hook(module, inputs, output):
            keep_alive.append(output)
            produced[id(output)] = name
        return hook

    def on_input(name: str):
        def hook(module, inputs):
            for tensor in common.nested_outputs(inputs):
                if id(tensor) in produced:
                    consumers[produced[id(tensor)]].append(name)
        return hook

    handles = [model.get_submodule(name).register_forward_hook(on_output(name)) for name in convs]
    handles += [module.register_forward_pre_hook(on_input(name)) for name, module in model.named_modules() if name]
    try:
        _run(model, example_input)
    finally:
        for handle in handles:
            handle.remove()
    return consumers


def _apply_folds(model: nn.Module, folds: dict[str, str], specs: dict[str, ConvSpec]) -> None:
    with torch.no_grad():
        for name, bn_name in folds.items():
            conv, bn = model.get_submodule(name), model.get_submodule(bn_name)
            bn.running_mean.sub_(conv.bias)
            _replace(model, name, _plain_conv(specs[name], conv.weight, None))


def _as_float64(value: object) -> object:
    if isinstance(value, (tuple, list)):
        return type(value)(_as_float64(v) for v in value)
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.double()
    return value


def _fold_biases(model: nn.Module, report: FuseBackReport, specs: dict[str, ConvSpec], example_input: object) -> None:
    """Fold each restored conv's bias into the BN that alone consumes it, checked first on a float64 copy."""
    gained_bias = [name for name in report.restored if not specs[name].has_bias]
    bns = {name for name, module in model.named_modules() if is_batch_norm(module)}
    consumers = _trace_consumers(model, gained_bias, example_input)
    folds = {}
    for name in gained_bias:
        bn_name = common.pick_following_bn(name, consumers[name], bns)
        if bn_name is None:
            report.bias_kept[name] = f"no single BN consumes its output (consumers: {consumers[name] or 'none'})"
        else:
            folds[name] = bn_name
    probe = copy.deepcopy(model).double()
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


def fuse_back(model: nn.Module, *, example_input: object = None,
                 inplace: bool = False) -> tuple[nn.Module, FuseBackReport]:
    """Fuse the converted blocks and put a plain ``nn.Conv2d`` back under each name.

    The twin of ``paddle_rep.fuse_back``.

    Args:
        model: A model converted by :func:`insert_blocks`.
        example_input: A tensor, or tuple of tensors, to fold biases into BNs with.
        inplace: Fuse ``model`` itself instead of a deep copy.

    Returns:
        ``(model, report)`` in eval mode, the report a :class:`~paddle_rep.core.surgery_plan.FuseBackReport`.

    Raises:
        SurgeryError: Folding a bias into its BN changed the output on ``example_input``.
    """
    model = reparameterize_model(model, inplace=inplace)
    report, specs = FuseBackReport(), {}
    for name, module in list(model.named_modules()):
        spec = getattr(module, REPLACED_CONV, None)
        if spec is None:
            continue
        if isinstance(module, ODConv2d):
            report.skipped[name] = common.ODCONV_NOT_FUSED_BACK
            continue
        fused = getattr(module, _FUSED_ATTR[type(module)])
        _replace(model, name, _plain_conv(spec, fused.weight, fused.bias))
        report.restored.append(name)
        specs[name] = spec
        if not spec.has_bias and example_input is None:
            report.bias_kept[name] = common.BIAS_NEEDS_EXAMPLE
    if example_input is not None and report.restored:
        _fold_biases(model, report, specs, example_input)
    logger.info("%s", report.summary())
    return model, report
