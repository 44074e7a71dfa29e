"""Re-parameterization math for PyTorch, the twin of ``paddle_rep/fusion.py``.

Written once and shared by every block; any kernel shape, any ``groups``, BN with or
without affine parameters (all ``_BatchNorm`` subclasses, SyncBatchNorm included).
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def is_batch_norm(module: object) -> bool:
    """True for BatchNorm1d/2d/3d and SyncBatchNorm."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


def bn_scale_shift(bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """An eval-mode BN as ``x * scale + shift`` per channel (no affine: weight 1, bias 0)."""
    std = (bn.running_var + bn.eps).sqrt()
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    scale = gamma / std
    return scale, beta - bn.running_mean * scale


def fuse_conv_bn(kernel: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the bias-free conv kernel before it (no affine: weight 1, bias 0)."""
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape(-1, 1, 1, 1), shift


def fuse_biased_conv_bn(kernel: torch.Tensor, bias: torch.Tensor, bn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BN into the biased conv ``(kernel, bias)`` before it (QARepVGG's post-sum BN)."""
    scale, shift = bn_scale_shift(bn)
    return kernel * scale.reshape(-1, 1, 1, 1), bias * scale + shift


def pad_kernel_to(kernel: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad a ``[out, in, kh, kw]`` kernel symmetrically to ``size = (H, W)``."""
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
    """The kernel of a grouped conv that returns its input: one centre tap per channel."""
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
    """Fold one conv+BN branch (or a bare BN when ``conv_weight`` is None) into a ``size`` kernel."""
    if conv_weight is None:
        mean = bn.running_mean
        conv_weight = identity_kernel(mean.shape[0], groups, size, mean.dtype, mean.device)
    kernel, bias = fuse_conv_bn(conv_weight, bn)
    return pad_kernel_to(kernel, size), bias


def sum_branches(branches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Add (kernel, bias) pairs of branches that share the same output geometry."""
    kernel, bias = branches[0]
    for other_kernel, other_bias in branches[1:]:
        kernel = kernel + other_kernel
        bias = bias + other_bias
    return kernel, bias


def make_fused_conv(reference: nn.Conv2d, kernel: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A biased ``Conv2d`` with the geometry of ``reference`` holding ``kernel`` and ``bias``."""
    conv = nn.Conv2d(reference.in_channels, reference.out_channels, tuple(kernel.shape[2:]),
                     stride=reference.stride, padding=reference.padding, dilation=reference.dilation,
                     groups=reference.groups, bias=True, padding_mode=reference.padding_mode,
                     device=kernel.device, dtype=kernel.dtype)
    with torch.no_grad():
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
    return conv
