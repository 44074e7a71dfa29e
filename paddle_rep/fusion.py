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
    """Tell whether ``layer`` is a Paddle batch norm of any flavour.

    Args:
        layer: Any object.

    Returns:
        True for BatchNorm1D/2D/3D, SyncBatchNorm and the legacy ``nn.BatchNorm``.
    """
    return isinstance(layer, BatchNormLayer)


def bn_scale_shift(bn: nn.Layer, float32_eps: bool = False) -> tuple[paddle.Tensor, paddle.Tensor]:
    """An eval-mode BN as ``x * scale + shift`` per channel.

    BN without affine parameters counts as weight 1, bias 0 (the official ACNet crashes there).

    Args:
        bn: The BN.
        float32_eps: Round ``epsilon`` to float32 first, as Paddle's BN kernel receives it: what a
            float64 BN itself outputs (DBB's pad value). Off: the exact epsilon, as the fusion uses.

    Returns:
        ``(scale, shift)``, one value per channel.
    """
    eps = float(np.float32(bn._epsilon)) if float32_eps else bn._epsilon
    # eps as a tensor of the BN's dtype: Paddle 2.6 rounds a Python scalar to float32.
    std = paddle.sqrt(bn._variance + paddle.full([1], eps, dtype=bn._variance.dtype))
    gamma = bn.weight if bn.weight is not None else paddle.ones_like(std)
    beta = bn.bias if bn.bias is not None else paddle.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn._mean * scale


def fuse_conv_bn(kernel: paddle.Tensor, bn: nn.Layer) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold an eval-mode BN into the bias-free conv kernel before it.

    Args:
        kernel: ``[out, in / groups, kh, kw]``.
        bn: The BN after the conv (``out`` channels).

    Returns:
        ``(kernel, bias)`` of one biased conv equal to conv then BN.
    """
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape([-1, 1, 1, 1]), shift


def fuse_biased_conv_bn(kernel: paddle.Tensor, bias: paddle.Tensor,
                        bn: nn.Layer) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold an eval-mode BN into the biased conv ``(kernel, bias)`` before it (QARepVGG's post-sum BN).

    Args:
        kernel: ``[out, in / groups, kh, kw]``.
        bias: ``[out]``.
        bn: The BN after the conv.

    Returns:
        ``(kernel, bias)`` of one biased conv equal to the biased conv then BN.
    """
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape([-1, 1, 1, 1]), bias * scale + shift


def pad_kernel_to(kernel: paddle.Tensor, size: Sequence[int]) -> paddle.Tensor:
    """Zero-pad a ``[out, in, kh, kw]`` kernel symmetrically to ``size = (H, W)``.

    Used for 1x1 -> kxk (RepVGG) and kx1 / 1xk -> kxk (ACNet): the smaller kernel lands on the
    centre taps of the larger one.

    Args:
        kernel: ``[out, in, kh, kw]``.
        size: The target ``(H, W)``.

    Returns:
        The padded kernel (``kernel`` itself when it already has that size).

    Raises:
        ValueError: The kernel is larger than ``size`` or cannot be centred in it (odd difference).
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
    """The kernel of a grouped conv that returns its input: one centre tap per channel.

    Args:
        channels: Input and output channels.
        groups: The conv's groups.
        size: The kernel's ``(H, W)``; the tap sits at ``(H // 2, W // 2)``.
        dtype: The kernel's dtype.

    Returns:
        ``[channels, channels / groups, H, W]``.

    Raises:
        ValueError: ``channels`` is not divisible by ``groups``.
    """
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
    """Fold one conv+BN branch (or a bare BN when ``conv_weight`` is None) into a ``size`` kernel.

    Args:
        conv_weight: The branch conv's kernel; None for a BN identity branch.
        bn: The branch's BN.
        groups: The block's groups (the identity kernel's layout).
        size: The fused kernel's ``(H, W)``.

    Returns:
        ``(kernel, bias)``, the kernel centred in ``size``.
    """
    if conv_weight is None:
        conv_weight = identity_kernel(bn._mean.shape[0], groups, size, bn._mean.dtype)
    kernel, bias = fuse_conv_bn(conv_weight, bn)
    return pad_kernel_to(kernel, size), bias


def sum_branches(branches: Sequence[tuple[paddle.Tensor, paddle.Tensor]]) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Add (kernel, bias) pairs of branches that share the same output geometry.

    Args:
        branches: At least one ``(kernel, bias)`` pair, all of the same shapes.

    Returns:
        The summed ``(kernel, bias)``.
    """
    kernel, bias = branches[0]
    for other_kernel, other_bias in branches[1:]:
        kernel = kernel + other_kernel
        bias = bias + other_bias
    return kernel, bias


def device_of(tensor: paddle.Tensor) -> str | None:
    """Name the device of ``tensor`` as ``Layer.to`` takes it (Paddle 2.6 takes a string, not a Place).

    Args:
        tensor: Any tensor.

    Returns:
        ``"cpu"`` or ``"gpu:N"``; None for another place (the default device then).
    """
    place = tensor.place
    if place.is_gpu_place():
        return f"gpu:{place.gpu_device_id()}"
    return "cpu" if place.is_cpu_place() else None


def make_fused_conv(reference: nn.Conv2D, kernel: paddle.Tensor, bias: paddle.Tensor) -> nn.Conv2D:
    """A biased ``Conv2D`` with the geometry of ``reference`` holding ``kernel`` and ``bias``.

    It keeps the dtype and device of ``kernel``, so fusing a float64 or GPU block stays there.

    Args:
        reference: The conv whose stride, padding, dilation, groups and padding mode the result takes.
        kernel: The fused kernel (its spatial size may differ from the reference's).
        bias: The fused bias.

    Returns:
        The new conv.
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


# --- MobileOne: the branch sum ----------------------------------------------------------------------


def fuse_branch_sum(conv_bns: Sequence[tuple[paddle.Tensor, nn.Layer]], skip_bn: nn.Layer | None, groups: int,
                    size: Sequence[int]) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold a sum of conv+BN branches and an optional BN identity into one biased conv (MobileOne's block).

    Args:
        conv_bns: ``(conv_weight, bn)`` of each conv+BN branch, in the order they are added (MobileOne: the
            over-parameterized kxk branches, then the 1x1 scale branch, zero-padded to ``size``).
        skip_bn: The BN of the identity branch; None when there is none.
        groups: The convs' groups (the identity kernel follows them).
        size: The fused kernel's ``(H, W)``.

    Returns:
        ``(kernel, bias)`` of the equivalent conv.

    Raises:
        ValueError: ``conv_bns`` is empty, or a kernel cannot be centred in ``size``.
    """
    if not conv_bns:
        raise ValueError("fuse_branch_sum needs at least one conv+BN branch")
    branches = [fuse_bn_branch(weight, bn, groups, size) for weight, bn in conv_bns]
    if skip_bn is not None:
        branches.append(fuse_bn_branch(None, skip_bn, groups, size))
    return sum_branches(branches)
# --- DBB (Diverse Branch Block) transforms ------------------------------------------------------
# Upstream's dbb_transforms.py names six: I fuse BN (fuse_conv_bn), II add branches (sum_branches),
# III 1x1 then kxk (merge_1x1_kxk), IV depth concat (concat_branches), V average pool as a conv
# (avg_pool_kernel), VI multi-scale (pad_kernel_to, in Paddle's [left, right, top, bottom] order).

def concat_branches(kernels: Sequence[paddle.Tensor],
                    biases: Sequence[paddle.Tensor]) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Stack kernels and biases along the output channels (DBB transform IV, depth concat).

    Args:
        kernels: Kernels ``[out_i, in/groups, kh, kw]`` of equal trailing shape.
        biases: Their biases ``[out_i]``.

    Returns:
        ``(kernel, bias)`` with ``sum(out_i)`` output channels.
    """
    return paddle.concat(list(kernels), axis=0), paddle.concat(list(biases))


def merge_1x1_kxk(k1: paddle.Tensor, b1: paddle.Tensor, k2: paddle.Tensor, b2: paddle.Tensor,
                  groups: int) -> tuple[paddle.Tensor, paddle.Tensor]:
    """Fold a biased 1x1 conv followed by a biased kxk conv into one kxk conv (DBB transform III).

    Exact only when the 1x1 output is padded with its bias (``BNAndPadLayer``) before the kxk conv.

    Args:
        k1: The 1x1 kernel, ``[mid, in/groups, 1, 1]``.
        b1: Its bias, ``[mid]``.
        k2: The kxk kernel, ``[out, mid/groups, kh, kw]``.
        b2: Its bias, ``[out]``.
        groups: The groups of both convs.

    Returns:
        ``(kernel, bias)``: ``[out, in/groups, kh, kw]`` and ``[out]``.

    Raises:
        ValueError: ``k1`` is not 1x1, or a channel count is not divisible by ``groups``.
    """
    if tuple(k1.shape[2:]) != (1, 1):
        raise ValueError(f"merge_1x1_kxk needs a 1x1 first kernel, got {tuple(k1.shape[2:])}")
    if k1.shape[0] % groups or k2.shape[0] % groups:
        raise ValueError(f"channels {k1.shape[0]} / {k2.shape[0]} are not divisible by groups={groups}")
    mid_width, out_width = k1.shape[0] // groups, k2.shape[0] // groups
    k1_t = paddle.transpose(k1, [1, 0, 2, 3])  # [in/groups, mid, 1, 1]: a conv over k2's input channels
    kernels, biases = [], []
    for g in range(groups):
        k1_g = k1_t[:, g * mid_width:(g + 1) * mid_width]
        k2_g = k2[g * out_width:(g + 1) * out_width]
        kernels.append(F.conv2d(k2_g, k1_g))
        biases.append((k2_g * b1[g * mid_width:(g + 1) * mid_width].reshape([1, -1, 1, 1])).sum(axis=[1, 2, 3]))
    kernel, bias = concat_branches(kernels, biases)
    return kernel, bias + b2


def avg_pool_kernel(channels: int, kernel_size: int, groups: int, dtype: paddle.dtype | str) -> paddle.Tensor:
    """The kernel of a grouped conv that averages each channel over a kxk window (DBB transform V).

    Args:
        channels: Channels in and out.
        kernel_size: The window side k.
        groups: The conv's groups.
        dtype: The kernel's dtype.

    Returns:
        The kernel, ``[channels, channels/groups, k, k]``, ``1/k^2`` on each channel's own input.

    Raises:
        ValueError: ``channels`` is not divisible by ``groups``.
    """
    if channels % groups:
        raise ValueError(f"channels={channels} is not divisible by groups={groups}")
    input_dim = channels // groups
    kernel = np.zeros((channels, input_dim, kernel_size, kernel_size), dtype=np.float64)
    kernel[np.arange(channels), np.arange(channels) % input_dim] = 1.0 / kernel_size ** 2
    return paddle.to_tensor(kernel).astype(dtype)
