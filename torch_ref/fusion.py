"""Re-parameterization math for PyTorch, the twin of ``paddle_rep/fusion.py``.

Written once and shared by every block; any kernel shape, any ``groups``, BN with or
without affine parameters (all ``_BatchNorm`` subclasses, SyncBatchNorm included).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def is_batch_norm(module: object) -> bool:
    """Tell whether a module is a batch norm.

    Args:
        module: Any object.

    Returns:
        True for BatchNorm1d/2d/3d and SyncBatchNorm (every ``_BatchNorm`` subclass).
    """
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BN as ``x * scale + shift`` per channel.

    Args:
        bn: The BN; without affine parameters it counts as weight 1, bias 0.

    Returns:
        ``(scale, shift)``, one value per channel.
    """
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def fuse_conv_bn(kernel: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the bias-free conv kernel before it.

    Args:
        kernel: The conv kernel, ``[out, in/groups, kh, kw]``.
        bn: The BN after the conv; without affine parameters it counts as scale 1, shift 0.

    Returns:
        ``(kernel, bias)`` of the equivalent biased conv.
    """
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape(-1, 1, 1, 1), shift


def fuse_biased_conv_bn(kernel: torch.Tensor, bias: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the biased conv ``(kernel, bias)`` before it (QARepVGG's post-sum BN).

    Args:
        kernel: The conv kernel, ``[out, in/groups, kh, kw]``.
        bias: The conv bias, ``[out]``.
        bn: The BN after the conv.

    Returns:
        ``(kernel, bias)`` of the equivalent biased conv.
    """
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape(-1, 1, 1, 1), bias * scale + shift


def pad_kernel_to(kernel: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad a ``[out, in, kh, kw]`` kernel symmetrically to a larger size.

    Args:
        kernel: The kernel.
        size: The target ``(H, W)``.

    Returns:
        The padded kernel (``kernel`` itself when it already has that size).

    Raises:
        ValueError: The kernel is larger than ``size`` or cannot be centred in it.
    """
    kh, kw = kernel.shape[2], kernel.shape[3]
    th, tw = int(size[0]), int(size[1])
    if (th - kh) % 2 or (tw - kw) % 2 or th < kh or tw < kw:
        raise ValueError(f"cannot centre a {kh}x{kw} kernel in {th}x{tw}")
    top, left = (th - kh) // 2, (tw - kw) // 2
    if top == 0 and left == 0:
        return kernel
    return F.pad(kernel, [left, left, top, top])


def identity_kernel(channels: int, groups: int, size: Sequence[int], dtype: torch.dtype,
                    device: torch.device | None = None) -> torch.Tensor:
    """Build the kernel of a grouped conv that returns its input: one centre tap per channel.

    Args:
        channels: Channels in and out.
        groups: The conv's groups.
        size: The kernel's ``(H, W)``.
        dtype: The kernel's dtype.
        device: The kernel's device; None: the default.

    Returns:
        The kernel, ``[channels, channels/groups, H, W]``.

    Raises:
        ValueError: ``channels`` is not divisible by ``groups``.
    """
    if channels % groups:
        raise ValueError(f"channels={channels} is not divisible by groups={groups}")
    input_dim = channels // groups
    kh, kw = int(size[0]), int(size[1])
    kernel = torch.zeros(channels, input_dim, kh, kw, dtype=dtype, device=device)
    index = torch.arange(channels, device=device)
    kernel[index, index % input_dim, kh // 2, kw // 2] = 1.0
    return kernel


def fuse_bn_branch(conv_weight: torch.Tensor | None, bn: nn.Module, groups: int,
                   size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold one conv+BN branch, or a bare BN, into a kernel and bias of a given size.

    Args:
        conv_weight: The branch's conv kernel; None for a bare BN (an identity branch).
        bn: The branch's BN.
        groups: The conv's groups.
        size: The fused kernel's ``(H, W)``.

    Returns:
        ``(kernel, bias)``, the kernel zero-padded to ``size``.
    """
    if conv_weight is None:
        mean = bn.running_mean
        conv_weight = identity_kernel(mean.shape[0], groups, size, mean.dtype, mean.device)
    kernel, bias = fuse_conv_bn(conv_weight, bn)
    return pad_kernel_to(kernel, size), bias


def sum_branches(branches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Add the (kernel, bias) pairs of branches that share the same output geometry.

    Args:
        branches: At least one ``(kernel, bias)`` pair, kernels of equal shape.

    Returns:
        The summed ``(kernel, bias)``.
    """
    kernel, bias = branches[0]
    for other_kernel, other_bias in branches[1:]:
        kernel = kernel + other_kernel
        bias = bias + other_bias
    return kernel, bias


def make_fused_conv(reference: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """Build a biased ``Conv2d`` with the geometry of ``reference`` holding ``kernel`` and ``bias``.

    Args:
        reference: The conv whose stride, padding, dilation, groups and padding mode to copy.
        kernel: The fused kernel; its shape gives the kernel size, its device and dtype the conv's.
        bias: The fused bias.

    Returns:
        The new conv.
    """
    conv = nn.Conv2d(reference.in_channels, reference.out_channels, tuple(kernel.shape[2:]),
                     stride=reference.stride, padding=reference.padding, dilation=reference.dilation,
                     groups=reference.groups, bias=True, padding_mode=reference.padding_mode,
                     device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
    return conv


# --- MobileOne: the branch sum ----------------------------------------------------------------------


def fuse_branch_sum(conv_bns: Sequence[tuple[torch.Tensor, nn.Module]], skip_bn: nn.Module | None, groups: int,
                    size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
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
# (avg_pool_kernel), VI multi-scale (pad_kernel_to, which also centres non-square kernels).

def concat_branches(kernels: Sequence[torch.Tensor],
                    biases: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack kernels and biases along the output channels (DBB transform IV, depth concat).

    Args:
        kernels: Kernels ``[out_i, in/groups, kh, kw]`` of equal trailing shape.
        biases: Their biases ``[out_i]``.

    Returns:
        ``(kernel, bias)`` with ``sum(out_i)`` output channels.
    """
    return torch.cat(list(kernels), dim=0), torch.cat(list(biases))


def merge_1x1_kxk(k1: torch.Tensor, b1: torch.Tensor, k2: torch.Tensor, b2: torch.Tensor,
                  groups: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    k1_t = k1.permute(1, 0, 2, 3)  # [in/groups, mid, 1, 1]: a conv over k2's input channels
    kernels, biases = [], []
    for g in range(groups):
        k1_g = k1_t[:, g * mid_width:(g + 1) * mid_width]
        k2_g = k2[g * out_width:(g + 1) * out_width]
        kernels.append(F.conv2d(k2_g, k1_g))
        biases.append((k2_g * b1[g * mid_width:(g + 1) * mid_width].reshape(1, -1, 1, 1)).sum((1, 2, 3)))
    kernel, bias = concat_branches(kernels, biases)
    return kernel, bias + b2


def avg_pool_kernel(channels: int, kernel_size: int, groups: int, dtype: torch.dtype,
                    device: torch.device | None = None) -> torch.Tensor:
    """The kernel of a grouped conv that averages each channel over a kxk window (DBB transform V).

    Args:
        channels: Channels in and out.
        kernel_size: The window side k.
        groups: The conv's groups.
        dtype: The kernel's dtype.
        device: The kernel's device; None: the default.

    Returns:
        The kernel, ``[channels, channels/groups, k, k]``, ``1/k^2`` on each channel's own input.

    Raises:
        ValueError: ``channels`` is not divisible by ``groups``.
    """
    if channels % groups:
        raise ValueError(f"channels={channels} is not divisible by groups={groups}")
    input_dim = channels // groups
    kernel = torch.zeros(channels, input_dim, kernel_size, kernel_size, dtype=dtype, device=device)
    index = torch.arange(channels, device=device)
    kernel[index, index % input_dim] = 1.0 / kernel_size ** 2
    return kernel
