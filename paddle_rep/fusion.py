"""Re-parameterization math for Paddle, written once and shared by every block.

Each function mirrors a step of the official fusion code (RepVGG ``_fuse_bn_tensor``,
ACNet ``_add_to_square_kernel``) but takes any kernel shape, any ``groups`` and BN layers
without affine parameters. ``torch_ref/fusion.py`` is the PyTorch twin.
"""

from collections.abc import Sequence

import numpy as np
import paddle
from paddle import nn
from paddle.nn import functional as F

BatchNormLayer = (nn.layer.norm._BatchNormBase, nn.BatchNorm)


def is_batch_norm(layer: object) -> bool:
    """True for every Paddle batch-norm flavour (BatchNorm1D/2D/3D, SyncBatchNorm, legacy)."""
    return isinstance(layer, BatchNormLayer)


def bn_scale_shift(bn: nn.Layer) -> tuple[paddle.Tensor, paddle.Tensor]:
    """An eval-mode BN as ``x * scale + shift`` per channel.

    BN without affine parameters counts as weight 1, bias 0 (the official ACNet crashes there).
    """
    # eps as a tensor of the BN's dtype: Paddle 2.6 rounds a Python scalar to float32.
    std = paddle.sqrt(bn._variance + paddle.full([1], bn._epsilon, dtype=bn._variance.dtype))
    gamma = bn.weight if bn.weight is not None else paddle.ones_like(std)
    beta = bn.bias if bn.bias is not None else paddle.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn._mean * scale


def fuse_conv_bn(kernel: paddle.Tensor, bn: nn.Layer) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold an eval-mode BN into the bias-free conv kernel before it."""
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape([-1, 1, 1, 1]), shift


def fuse_biased_conv_bn(kernel: paddle.Tensor, bias: paddle.Tensor,
                        bn: nn.Layer) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold an eval-mode BN into the biased conv ``(kernel, bias)`` before it (QARepVGG's post-sum BN)."""
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape([-1, 1, 1, 1]), bias * scale + shift


def pad_kernel_to(kernel: paddle.Tensor, size: Sequence[int]) -> paddle.Tensor:
    """Zero-pad a ``[out, in, kh, kw]`` kernel symmetrically to ``size = (H, W)``.

    Used for 1x1 -> kxk (RepVGG) and kx1 / 1xk -> kxk (ACNet): the smaller kernel lands on the
    centre taps of the larger one.
    """
    kh, kw = kernel.shape[2], kernel.shape[3]
    th, tw = int(size[0]), int(size[1])
    if (th - kh) % 2 or (tw - kw) % 2 or th < kh or tw < kw:
        raise ValueError(f"cannot centre a {kh}x{kw} kernel in {th}x{tw}")
    top, left = (th - kh) // 2, (tw - kw) // 2
    if top == 0 and left == 0:
        return kernel
    # Paddle's 4-element pad order is [left, right, top, bottom].
    return F.pad(kernel, [left, left, top, top])


def identity_kernel(channels: int, groups: int, size: Sequence[int], dtype: paddle.dtype | str) -> paddle.Tensor:
    """The kernel of a grouped conv that returns its input: one centre tap per channel."""
    if channels % groups:
        raise ValueError(f"channels={channels} is not divisible by groups={groups}")
    input_dim = channels // groups
    kh, kw = int(size[0]), int(size[1])
    kernel = np.zeros((channels, input_dim, kh, kw), dtype=np.float64)
    kernel[np.arange(channels), np.arange(channels) % input_dim, kh // 2, kw // 2] = 1.0
    return paddle.to_tensor(kernel).astype(dtype)


def fuse_bn_branch(
    conv_weight: paddle.Tensor | None, bn: nn.Layer, groups: int, size: Sequence[int]
) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold one conv+BN branch (or a bare BN when ``conv_weight`` is None) into a ``size`` kernel."""
    if conv_weight is None:
        conv_weight = identity_kernel(bn._mean.shape[0], groups, size, bn._mean.dtype)
    kernel, bias = fuse_conv_bn(conv_weight, bn)
    return pad_kernel_to(kernel, size), bias


def sum_branches(branches: Sequence[tuple[paddle.Tensor, paddle.Tensor]]) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Add (kernel, bias) pairs of branches that share the same output geometry."""
    kernel, bias = branches[0]
    for other_kernel, other_bias in branches[1:]:
        kernel = kernel + other_kernel
        bias = bias + other_bias
    return kernel, bias


def device_of(tensor: paddle.Tensor) -> str | None:
    """``"cpu"`` / ``"gpu:N"`` (Paddle 2.6's ``Layer.to`` takes a string, not a Place); None: default."""
    place = tensor.place
    if place.is_gpu_place():
        return f"gpu:{place.gpu_device_id()}"
    return "cpu" if place.is_cpu_place() else None


def make_fused_conv(reference: nn.Conv2D, kernel: paddle.Tensor, bias: paddle.Tensor) -> nn.Conv2D:
    """A biased ``Conv2D`` with the geometry of ``reference`` holding ``kernel`` and ``bias``.

    It keeps the dtype and device of ``kernel``, so fusing a float64 or GPU block stays there.
    """
    conv = nn.Conv2D(
        reference._in_channels,
        reference._out_channels,
        kernel_size=list(kernel.shape[2:]),
        stride=reference._stride,
        padding=reference._padding,
        dilation=reference._dilation,
        groups=reference._groups,
        padding_mode=reference._padding_mode,
        bias_attr=True,
    )
    conv.to(device=device_of(kernel), dtype=kernel.dtype)
    conv.weight.set_value(kernel.detach())
    conv.bias.set_value(bias.detach())
    return conv
