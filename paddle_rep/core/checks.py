"""Argument checks shared by the blocks of both frameworks: each error names the argument and the value."""

from collections.abc import Sequence
from typing import TypeVar

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_Choice = TypeVar("_Choice")


def check_choice(name: str, value: _Choice, choices: Sequence[_Choice]) -> _Choice:
    """Check that a value is one of the allowed choices.

    Args:
        name: The argument's name, used in the error message.
        value: The value given.
        choices: The allowed values.

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: ``value`` is not in ``choices``; the message names ``name``, the choices and the value.
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_int(name: str, value: object, minimum: int = 0) -> int:
    """Check that a value is a plain int no smaller than ``minimum``.

    Tuples, floats and bools are rejected where the official code takes a plain int.

    Args:
        name: The argument's name, used in the error message.
        value: The value given.
        minimum: The smallest value allowed.

    Returns:
        ``value`` unchanged.

    Raises:
        ValueError: ``value`` is not an int (or is a bool), or is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_conv_args(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                    dilation: int, groups: int) -> None:
    """Validate the geometry of a square conv block.

    Args:
        in_channels: Input channels (at least 1, divisible by ``groups``).
        out_channels: Output channels (at least 1, divisible by ``groups``).
        kernel_size: Kernel side (at least 1).
        stride: Stride (at least 1).
        padding: Padding (at least 0).
        dilation: Dilation (at least 1).
        groups: Groups (at least 1).

    Raises:
        ValueError: An argument is not a plain int, is out of range, or a channel count is not
            divisible by ``groups``; the message names the argument.
    """
    check_int("in_channels", in_channels, 1)
    check_int("out_channels", out_channels, 1)
    check_int("kernel_size", kernel_size, 1)
    check_int("stride", stride, 1)
    check_int("padding", padding, 0)
    check_int("dilation", dilation, 1)
    check_int("groups", groups, 1)
    if in_channels % groups:
        raise ValueError(f"in_channels={in_channels} is not divisible by groups={groups}")
    if out_channels % groups:
        raise ValueError(f"out_channels={out_channels} is not divisible by groups={groups}")


def check_padding_mode(padding_mode: str) -> str:
    """Check a padding mode against :data:`PADDING_MODES`, the values ``nn.Conv2d`` takes.

    Args:
        padding_mode: The padding mode given.

    Returns:
        ``padding_mode`` unchanged.

    Raises:
        ValueError: ``padding_mode`` is not one of :data:`PADDING_MODES`.
    """
    return check_choice("padding_mode", padding_mode, PADDING_MODES)


def check_repvgg_args(block: str, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                      dilation: int, groups: int, padding_mode: str) -> None:
    """Validate the arguments of a RepVGG-style block (RepVGG, RepVGGplus, QARepVGG): a 3x3 conv with padding 1.

    Dilation must be 1: upstream gives it to the fused conv only, so train and deploy would differ.

    Args:
        block: The block's name, used in the error message.
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Must be 3.
        stride: Stride (at least 1).
        padding: Must be 1.
        dilation: Must be 1.
        groups: Groups (dividing both channel counts).
        padding_mode: One of :data:`PADDING_MODES`.

    Raises:
        ValueError: A bad argument, named in the message with its value.
    """
    check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
    if kernel_size != 3:
        raise ValueError(f"{block} needs kernel_size=3, got {kernel_size}")
    if padding != 1:
        raise ValueError(f"{block} needs padding=1, got {padding}")
    if dilation != 1:
        raise ValueError(f"{block} supports dilation=1 only, got {dilation}")
    check_padding_mode(padding_mode)


def check_se_width(flag: str, out_channels: int, reduction: int) -> None:
    """Check that an SE block of width ``out_channels // reduction`` has at least one channel.

    Args:
        flag: The argument that asks for the SE block, used in the error message.
        out_channels: The channels the SE block gates.
        reduction: The SE width's divisor.

    Raises:
        ValueError: ``out_channels`` is below ``reduction``.
    """
    if out_channels < reduction:
        raise ValueError(f"{flag} needs out_channels >= {reduction} (SE width is out_channels // {reduction}), "
                         f"got {out_channels}")


def _shape_text(shape: list) -> str:
    # A traced graph gives -1 or a symbolic value for a dynamic dimension: show "?".
    return "[" + ", ".join(str(d) if isinstance(d, int) and d >= 0 else "?" for d in shape) + "]"


def check_input_channels(block: str, expected: int, shape: list) -> None:
    """Check a block's input shape, for a clear error instead of a kernel-level shape message.

    Args:
        block: The block's name, used in the error message.
        expected: The number of input channels the block was built for.
        shape: The input's shape (a dynamic dimension may be -1 or symbolic).

    Raises:
        ValueError: The input is not 4-D NCHW or its channel count is not ``expected``.
    """
    if len(shape) != 4:
        raise ValueError(f"{block} expects a 4-D NCHW input, got shape {_shape_text(shape)}")
    if shape[1] != expected:
        raise ValueError(f"{block} expects {expected} input channels, got shape {_shape_text(shape)}")
