"""Network blocks that two families' upstream code defines alike (twin of ``paddle_rep/models/_blocks.py``)."""

from typing import Protocol

import torch
from torch import nn


class ConvBNReLUBuilder(Protocol):
    """What a block needs of a family's builder (``ACNetBuilder``, ``DBBBuilder``)."""

    def conv_bn_relu(self, in_channels: int, out_channels: int, kernel_size: int, /, stride: int = 1,
                     padding: int = 0, groups: int = 1) -> nn.Module:
        """Build a conv block with BN and ReLU, re-parameterizable where the family puts one.

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_size: Square kernel size.
            stride: Stride.
            padding: Padding.
            groups: Groups.

        Returns:
            The block.
        """


class MobileV1Block(nn.Module):
    """Upstream ``MobileV1Block`` (ACNet ``mobilenetv1.py``, DBB ``mobilenet.py``): depthwise 3x3, pointwise 1x1.

    Both are conv-BN-ReLU blocks from ``builder``: the depthwise one (groups = channels) becomes the
    family's block (ACBlock, DBB), the pointwise 1x1 stays a plain conv with BN.

    Args:
        builder: The family's builder; decides which convs are re-parameterizable and how they are built.
        in_planes: Input channels.
        out_planes: Output channels.
        stride: The depthwise conv's stride.
    """

    def __init__(self, builder: ConvBNReLUBuilder, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = builder.conv_bn_relu(in_planes, in_planes, 3, stride=stride, padding=1, groups=in_planes)
        self.pointwise = builder.conv_bn_relu(in_planes, out_planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise, then pointwise.

        Args:
            x: The input feature map, ``[B, in_planes, H, W]``.

        Returns:
            The output feature map, ``[B, out_planes, H / stride, W / stride]``.
        """
        return self.pointwise(self.depthwise(x))
