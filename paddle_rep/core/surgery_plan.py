"""Framework-free half of model surgery: conv geometry, eligibility, name patterns, reports.

``paddle_rep/surgery.py`` and ``torch_ref/surgery.py`` read the conv attributes of their
framework into a :class:`ConvSpec` and leave every decision (which layers, why not) to this
module, so both frameworks convert exactly the same layers for the same reasons.
"""

import fnmatch
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .checks import check_choice
from .errors import SurgeryError

BLOCK_KINDS = ("acb", "repvgg", "qarepvgg", "dbb", "odconv", "mobileone")
# Attribute set on every block insert_blocks creates: the ConvSpec of the conv it replaced.
REPLACED_CONV = "replaced_conv"
# Geometry comes from the replaced conv, never from block_kwargs.
GEOMETRY_ARGS = frozenset({"in_channels", "out_channels", "in_planes", "out_planes", "kernel_size", "stride",
                           "padding", "dilation", "groups", "padding_mode"})
# Block arguments that would break the function-preserving start (or the restore to one conv).
REJECTED_ARGS = {
    "deploy": "a deploy-form block has no branches to train; convert, train, then fuse_back",
    "use_affine": "the square BN must carry the conv's scale and bias, and the new branches start at gamma 0",
    "reduce_gamma": "it rescales the square BN, so the converted model would no longer equal the original",
    "gamma_init": "it rescales the square BN, so the converted model would no longer equal the original",
    "use_se": "SE gates the output, which the original conv does not do, and cannot be fused away",
    "nonlinear": "the original conv has no activation after it, and an activation cannot be fused away",
}
_WILDCARDS = set("*?[")


@dataclass(frozen=True)
class ConvSpec:
    """The geometry of a square, symmetric 2-D conv, as ints.

    Attributes:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel side.
        stride: Stride.
        padding: Padding, equal on all sides.
        dilation: Dilation.
        groups: Groups.
        padding_mode: Padding mode.
        has_bias: Whether the conv has a bias.
    """

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    padding: int
    dilation: int
    groups: int
    padding_mode: str
    has_bias: bool


@dataclass
class InsertReport:
    """What :func:`insert_blocks` did: the names that became blocks, and the skipped ones with the reason.

    Attributes:
        to: The block kind inserted.
        inserted: The dotted names of the convs that became blocks.
        skipped: The other convs' names, each with the reason.
    """

    to: str
    inserted: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"insert_blocks(to={self.to!r}): {len(self.inserted)} inserted, {len(self.skipped)} skipped"]
        lines += [f"  inserted {name}" for name in self.inserted]
        lines += [f"  skipped   {name}: {reason}" for name, reason in self.skipped.items()]
        return "\n".join(lines)


@dataclass
class FuseBackReport:
    """What :func:`fuse_back` did: restored convs, where each bias went, what stayed a block.

    Attributes:
        restored: The names of the blocks turned back into plain convs.
        bias_folded: Conv name -> the BN that took its fused bias.
        bias_kept: Conv name -> why it still has a bias.
        skipped: Block name -> why it stayed a block.
    """

    restored: list[str] = field(default_factory=list)
    bias_folded: dict[str, str] = field(default_factory=dict)  # conv name -> BN that took its bias
    bias_kept: dict[str, str] = field(default_factory=dict)  # conv name -> why it still has a bias
    skipped: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """Summarise the report in one line.

        Returns:
            The counts of restored convs, folded and kept biases, and blocks kept.
        """
        return (f"fuse_back: {len(self.restored)} convs restored, {len(self.bias_folded)} biases folded, "
                f"{len(self.bias_kept)} kept, {len(self.skipped)} blocks kept")

    def __str__(self) -> str:
        lines = [self.summary()]
        lines += [f"  bias of {conv} folded into {bn}" for conv, bn in self.bias_folded.items()]
        lines += [f"  bias of {conv} kept: {why}" for conv, why in self.bias_kept.items()]
        lines += [f"  kept {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


# Reasons fuse_back reports, the same in both frameworks.
ODCONV_NOT_FUSED_BACK = "ODConv's kernel depends on the input; it has no single-conv form"
BIAS_NEEDS_EXAMPLE = "the original had none; pass example_input to fold it into the following BN"


def check_to(to: object) -> str:
    """Check a block kind against :data:`BLOCK_KINDS`.

    Args:
        to: The block kind given.

    Returns:
        ``to`` unchanged.

    Raises:
        ValueError: ``to`` is not one of :data:`BLOCK_KINDS`.
    """
    return check_choice("to", to, BLOCK_KINDS)


def check_block_kwargs(to: str, block_cls: type, block_kwargs: dict) -> None:
    """Check the extra block arguments passed to ``insert_blocks``.

    Args:
        to: The block kind, used in the error message.
        block_cls: The block class the arguments are for.
        block_kwargs: The arguments to check.

    Raises:
        ValueError: An argument is geometry (copied from each conv), would change the model's
            function, or is not taken by ``block_cls``; the message names it.
    """
    accepted = set(inspect.signature(block_cls.__init__).parameters) - {"self"}
    for name in block_kwargs:
        if name in GEOMETRY_ARGS:
            raise ValueError(f"block argument {name!r} is copied from each replaced conv; do not pass it")
        if name in REJECTED_ARGS and name in accepted:
            raise ValueError(f"block argument {name!r} is not supported by insert_blocks: {REJECTED_ARGS[name]}")
        if name not in accepted:
            options = sorted(accepted - GEOMETRY_ARGS - set(REJECTED_ARGS))
            raise ValueError(f"{block_cls.__name__} (to={to!r}) takes no argument {name!r}; options: {options}")


def _as_patterns(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    patterns = (value,) if isinstance(value, str) else tuple(value)
    if not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{what} must be a non-empty string or a sequence of them, got {value!r}")
    return patterns


def _pair(value: object) -> tuple[int, int] | None:
    """Two ints from an int or a length-2 sequence; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        if all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return int(value[0]), int(value[1])
    return None


def symmetric_padding(padding: object) -> int | None:
    """Reduce a padding that is equal on all four sides to one int.

    Args:
        padding: An int, ``[p, p]``, ``[p, p, p, p]`` or ``[[p, p], [p, p]]``.

    Returns:
        The padding as one int, or None when it is not one value for all sides.
    """
    if isinstance(padding, int) and not isinstance(padding, bool):
        return padding
    if isinstance(padding, str) or not isinstance(padding, Sequence):
        return None
    flat: list = []
    for item in padding:
        flat.extend(item if isinstance(item, Sequence) and not isinstance(item, str) else [item])
    if len(flat) in (2, 4) and all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        if len(set(flat)) == 1:
            return int(flat[0])
    return None


def make_spec(*, in_channels: int, out_channels: int, kernel_size: object, stride: object, padding: object,
              dilation: object, groups: int, padding_mode: str, has_bias: bool,
              channel_last: bool = False) -> ConvSpec | str:
    """Describe a conv's geometry as a :class:`ConvSpec`, or say why it is not a square, symmetric NCHW conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: The kernel size, an int or a pair.
        stride: The stride, an int or a pair.
        padding: The padding, in any form :func:`symmetric_padding` takes.
        dilation: The dilation, an int or a pair.
        groups: Groups.
        padding_mode: The padding mode.
        has_bias: Whether the conv has a bias.
        channel_last: Whether the conv takes NHWC input.

    Returns:
        The spec, or the reason (a string) the conv cannot become a block.
    """
    if channel_last:
        return "channel-last (NHWC) conv; the blocks are NCHW"
    kernel, strides, dilations = _pair(kernel_size), _pair(stride), _pair(dilation)
    if kernel is None or kernel[0] != kernel[1]:
        return f"kernel {kernel_size} is not square"
    if strides is None or strides[0] != strides[1]:
        return f"stride {stride} differs between height and width"
    if dilations is None or dilations[0] != dilations[1]:
        return f"dilation {dilation} differs between height and width"
    pad = symmetric_padding(padding)
    if pad is None:
        return f"padding {padding!r} is not one int for all sides"
    return ConvSpec(in_channels, out_channels, kernel[0], strides[0], pad, dilations[0], groups, padding_mode,
                    has_bias)


def ineligible_reason(to: str, spec: ConvSpec) -> str | None:
    """Say why a conv of this geometry cannot become a block of kind ``to``.

    Args:
        to: The block kind, one of :data:`BLOCK_KINDS`.
        spec: The conv's geometry.

    Returns:
        The reason, or None when the conv can be converted.
    """
    k = spec.kernel_size
    if to == "acb":
        if k % 2 == 0:
            return f"ACBlock needs an odd kernel, got {k}x{k}"
        if k == 1:
            return "1x1 kernel: the 1x1 asymmetric branches would only duplicate it (ACNet keeps 1x1 plain)"
    elif to == "dbb":
        if k % 2 == 0 or k == 1:
            return f"DiverseBranchBlock needs an odd kernel >= 3 (DBB keeps 1x1 plain), got {k}x{k}"
        if spec.padding != k // 2:
            return f"DiverseBranchBlock needs padding kernel_size // 2 = {k // 2}, got {spec.padding}"
        if spec.dilation != 1:
            return f"DiverseBranchBlock needs dilation 1, got {spec.dilation}"
        if spec.padding_mode != "zeros":
            return f"DiverseBranchBlock pads with zeros only, the conv uses padding_mode {spec.padding_mode!r}"
    elif to in ("repvgg", "qarepvgg"):
        block = "RepVGGBlock" if to == "repvgg" else "QARepVGGBlockV2"
        if k != 3 or spec.padding != 1:
            return f"{block} needs a 3x3 kernel with padding 1, got {k}x{k} padding {spec.padding}"
        if spec.stride not in (1, 2):
            return f"{block} takes stride 1 or 2, got {spec.stride}"
        if spec.dilation != 1:
            return f"{block} needs dilation 1, got {spec.dilation}"
    elif to == "odconv" and spec.padding_mode != "zeros":
        return f"ODConv2D pads with zeros only, the conv uses padding_mode {spec.padding_mode!r}"
    elif to == "mobileone":
        return _mobileone_ineligible(spec)
    return None


def _mobileone_ineligible(spec: ConvSpec) -> str | None:
    """MobileOneBlock: odd kernel, padding k // 2 (centred scale and identity branches), dilation 1, zero padding."""
    k = spec.kernel_size
    if k % 2 == 0 or spec.padding != k // 2:
        return f"MobileOneBlock needs an odd kernel with padding kernel_size // 2, got {k}x{k} padding {spec.padding}"
    if spec.dilation != 1:
        return f"MobileOneBlock needs dilation 1, got {spec.dilation}"
    if spec.padding_mode != "zeros":
        return f"MobileOneBlock pads with zeros only, the conv uses padding_mode {spec.padding_mode!r}"
    return None


def plan_conversion(convs: dict[str, ConvSpec | str], to: str, include: str | Sequence[str] | None,
                    exclude: str | Sequence[str] | None) -> InsertReport:
    """Decide, for every conv name, convert or skip (with the reason).

    Args:
        convs: Each conv's dotted name mapped to its spec or to the reason it cannot be a block.
        to: The block kind, one of :data:`BLOCK_KINDS`.
        include: Shell-style name patterns to convert; None converts every eligible conv.
        exclude: Shell-style name patterns to leave alone.

    Returns:
        The plan: the names to convert and the skipped names with their reasons.

    Raises:
        ValueError: ``include`` or ``exclude`` is not a non-empty string or a sequence of them.
        SurgeryError: A pattern matches no conv, or an exact include name (no wildcard) names a conv
            that cannot be converted; raised before anything changes.
    """
    includes, excludes = _as_patterns(include, "include"), _as_patterns(exclude, "exclude")
    for what, patterns in (("include", includes), ("exclude", excludes)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in convs):
                examples = ", ".join(list(convs)[:5]) or "none"
                raise SurgeryError(f"{what} pattern {pattern!r} matches no Conv2D layer (conv names: {examples}...)")
    explicit = {p for p in includes if not _WILDCARDS & set(p)}
    report, refused = InsertReport(to), []
    for name, spec in convs.items():
        excluded_by = _first_match(name, excludes)
        if excluded_by is not None:
            report.skipped[name] = f"excluded by {excluded_by!r}"
            continue
        if includes and _first_match(name, includes) is None:
            report.skipped[name] = "not matched by include"
            continue
        reason = spec if isinstance(spec, str) else ineligible_reason(to, spec)
        if reason is None:
            report.inserted.append(name)
        elif name in explicit:
            refused.append(f"{name}: {reason}")
        else:
            report.skipped[name] = reason
    if refused:
        raise SurgeryError(f"cannot convert the layers named in include to {to!r}: " + "; ".join(refused))
    return report


def _first_match(name: str, patterns: Iterable[str]) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def odconv_weight_scale(has_filter: bool, has_spatial: bool) -> float:
    """Compute the factor on ODConv's kernels that cancels its sigmoid heads at their zero start.

    Args:
        has_filter: Whether the block has a filter attention head.
        has_spatial: Whether the block has a spatial attention head.

    Returns:
        ``2 ** (1 + has_filter + has_spatial)`` (each sigmoid head gives 0.5 at zero).
    """
    return 2.0 ** (1 + int(has_filter) + int(has_spatial))


def split_name(name: str) -> tuple[str, str]:
    """Split a dotted layer name into its parent's name and its own.

    Args:
        name: A dotted layer name such as ``"layer1.0.conv1"``.

    Returns:
        ``(parent, leaf)``; the parent is ``""`` for a top-level layer.
    """
    parent, _, leaf = name.rpartition(".")
    return parent, leaf


def nested_outputs(value: object) -> list:
    """Flatten a forward input or output made of tuples, lists and dicts.

    Args:
        value: The nested value.

    Returns:
        Its leaves, in order.
    """
    if isinstance(value, (tuple, list)):
        return [leaf for item in value for leaf in nested_outputs(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in nested_outputs(item)]
    return [value]


def pick_following_bn(conv_name: str, consumers: list[str], bn_names: set[str]) -> str | None:
    """Find the BN that alone consumes a conv's output, ignoring containers that passed the tensor on.

    A consumer that is an ancestor of another consumer (a Sequential handing the tensor to its
    first child) does not count. Functional consumers (``y + z``) are invisible here, which is
    why the caller checks the folded model's output.

    Args:
        conv_name: The conv's dotted name.
        consumers: The layers whose forward input was the conv's output tensor.
        bn_names: The names of the model's BN layers.

    Returns:
        The BN's name, or None when the output does not go to exactly one BN.
    """
    leaves = [c for c in set(consumers) if not any(o != c and o.startswith(c + ".") for o in consumers)]
    if len(leaves) == 1 and leaves[0] in bn_names and leaves[0] != conv_name:
        return leaves[0]
    return None
