"""DBB networks, PyTorch reference (twin of ``paddle_rep/models/dbb.py``).

Ding et al., CVPR 2021, arXiv:2103.13425; upstream https://github.com/DingXiaoH/DiverseBranchBlock
(Apache-2.0): ``convnet_utils.py`` (``conv_bn`` / ``conv_bn_relu`` after
``switch_conv_bn_impl('DBB')``: 1x1 and >=7x7 convs stay ``ConvBN``, the others become
``DiverseBranchBlock``), ``resnet.py`` (``create_Res18``, ``create_Res50``) and ``mobilenet.py``
(``create_MobileNet``). Same module names, so upstream state dicts load with ``strict=True``
(``stage1.0.conv1.dbb_origin.conv.weight``, ``stem.0.depthwise.dbb_avg.avgbn.running_mean``).
"""

import torch
import torch.nn.functional as F
from torch import nn

from paddle_rep.core.deploy import DeployProtocol

from .. import fusion
from ..dbb import DiverseBranchBlock
from ._blocks import MobileV1Block
from ._registry import register_model

# Upstream mobilenet.py's MOBILE_CHANNELS: the stem, then (depthwise, pointwise) outputs of 13 blocks.
MOBILE_CHANNELS = (32, 32, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256, 512, *(512,) * 10, 512, 1024, 1024, 1024)
MOBILE_STRIDE2_BLOCKS = (1, 3, 5, 11)
RESNET_BLOCKS = {"dbb_resnet18": (2, 2, 2, 2), "dbb_resnet50": (3, 4, 6, 3)}


class ConvBN(DeployProtocol, nn.Module):
    """Upstream ``convnet_utils.ConvBN``: a bias-free conv ``conv`` and a BN ``bn``, then ``nonlinear``.

    Deploy form: ``conv`` with a bias and no ``bn``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: Stride.
        padding: Padding.
        dilation: Dilation.
        groups: Groups.
        deploy: Build the fused form.
        nonlinear: A module after the BN (None: identity).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, deploy: bool = False, nonlinear: nn.Module | None = None) -> None:
        super().__init__()
        self.deploy = deploy
        self.nonlinear = nn.Identity() if nonlinear is None else nonlinear
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                              dilation=dilation, groups=groups, bias=deploy)
        if not deploy:
            self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Conv, BN (until fused), ``nonlinear``.

        Args:
            x: The input, ``[B, in_channels, H, W]``.

        Returns:
            The output.
        """
        out = self.conv(x)
        return self.nonlinear(out if self.deploy else self.bn(out))

    @torch.no_grad()
    def _fuse_branches(self) -> None:
        kernel, bias = fusion.fuse_conv_bn(self.conv.weight, self.bn)
        self.conv = fusion.make_fused_conv(self.conv, kernel, bias)
        del self.bn


class DBBBuilder:
    """Upstream ``convnet_utils.conv_bn`` / ``conv_bn_relu`` with ``CONV_BN_IMPL = 'DBB'``.

    Args:
        deploy: Build every block in its fused form (upstream's ``switch_deploy_flag``).
    """

    def __init__(self, deploy: bool = False) -> None:
        self.deploy = deploy

    def conv_bn(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                groups: int = 1, nonlinear: nn.Module | None = None) -> nn.Module:
        """A ``DiverseBranchBlock``, or a ``ConvBN`` for 1x1 and >=7x7 kernels (as upstream).

        Args:
            in_channels: Input channels.
            out_channels: Output channels.
            kernel_size: Square kernel size.
            stride: Stride.
            padding: Padding.
            groups: Groups.
            nonlinear: A module after the block (None: identity).

        Returns:
            The block.
        """
        cls = ConvBN if kernel_size == 1 or kernel_size >= 7 else DiverseBranchBlock
        return cls(in_channels, out_channels, kernel_size, stride=stride, padding=padding, groups=groups,
                   deploy=self.deploy, nonlinear=nonlinear)

    def conv_bn_relu(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                     padding: int = 0, groups: int = 1) -> nn.Module:
        """:meth:`conv_bn` with a ReLU as its ``nonlinear``.

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
        return self.conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups, nonlinear=nn.ReLU())


class BasicBlock(nn.Module):
    """Upstream ``resnet.BasicBlock``: ``conv1`` (3x3, ReLU), ``conv2`` (3x3), ``shortcut``, ReLU.

    The last ReLU is functional, as upstream's; ACNet's BasicBlock follows its own upstream with a
    ``relu`` sublayer, so the two stay apart.

    Args:
        builder: Makes the conv blocks.
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of ``conv1`` and the projection shortcut.
    """

    expansion = 1

    def __init__(self, builder: DBBBuilder, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        if stride != 1 or in_planes != planes:
            self.shortcut = builder.conv_bn(in_planes, planes, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.conv1 = builder.conv_bn_relu(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = builder.conv_bn(planes, planes, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block.

        Args:
            x: The input.

        Returns:
            ``relu(conv2(conv1(x)) + shortcut(x))``.
        """
        return F.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    """Upstream ``resnet.Bottleneck``: 1x1 (ReLU), 3x3 (ReLU, the stride), 1x1 x4, ``shortcut``, ReLU.

    Args:
        builder: Makes the conv blocks.
        in_planes: Input channels.
        planes: Bottleneck width (output ``4 * planes``).
        stride: Stride of ``conv2`` and the projection shortcut.
    """

    expansion = 4

    def __init__(self, builder: DBBBuilder, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out = self.expansion * planes
        if stride != 1 or in_planes != out:
            self.shortcut = builder.conv_bn(in_planes, out, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.conv1 = builder.conv_bn_relu(in_planes, planes, 1)
        self.conv2 = builder.conv_bn_relu(planes, planes, 3, stride=stride, padding=1)
        self.conv3 = builder.conv_bn(planes, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual bottleneck.

        Args:
            x: The input.

        Returns:
            ``relu(conv3(conv2(conv1(x))) + shortcut(x))``.
        """
        return F.relu(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


class DBBResNet(nn.Module):
    """Upstream ``resnet.ResNet`` with DBB convs: ``stage0`` (7x7 ConvBN + max pool), ``stage1..4``, ``linear``.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        num_blocks: Blocks per stage (four values).
        num_classes: Classifier outputs.
        width_multiplier: Scales every stage's width.
        deploy: Build every block fused.
    """

    def __init__(self, block: type[nn.Module], num_blocks: tuple[int, ...], num_classes: int = 1000,
                 width_multiplier: float = 1.0, deploy: bool = False) -> None:
        super().__init__()
        builder = DBBBuilder(deploy)
        self.in_planes = int(64 * width_multiplier)
        self.stage0 = nn.Sequential()
        self.stage0.add_module("conv1", builder.conv_bn_relu(3, self.in_planes, 7, stride=2, padding=3))
        self.stage0.add_module("maxpool", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
        stages = []
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True)):
            blocks = []
            for stride in [1 if i == 0 else 2] + [1] * (depth - 1):
                blocks.append(block(builder, self.in_planes, int(width * width_multiplier), stride))
                self.in_planes = int(width * width_multiplier) * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(int(512 * block.expansion * width_multiplier), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = self.stage4(self.stage3(self.stage2(self.stage1(self.stage0(x)))))
        return self.linear(torch.flatten(self.gap(out), 1))


class DBBMobileNet(nn.Module):
    """Upstream ``mobilenet.MobileV1`` with DBB convs: ``conv1`` (3x3 s2), ``stem`` (13 blocks), ``linear``.

    Args:
        num_classes: Classifier outputs.
        channels: The stem width, then (depthwise, pointwise) output channels of the 13 blocks.
        deploy: Build every block fused.

    Raises:
        ValueError: ``channels`` does not hold 27 values.
    """

    def __init__(self, num_classes: int = 1000, channels: tuple[int, ...] = MOBILE_CHANNELS,
                 deploy: bool = False) -> None:
        super().__init__()
        if len(channels) != 27:
            raise ValueError(f"channels needs 27 values (stem + 13 blocks x 2), got {len(channels)}")
        builder = DBBBuilder(deploy)
        self.conv1 = builder.conv_bn_relu(3, channels[0], 3, stride=2, padding=1)
        self.stem = nn.Sequential(*[
            MobileV1Block(builder, channels[2 * i + 1], channels[2 * i + 2], 2 if i in MOBILE_STRIDE2_BLOCKS else 1)
            for i in range(13)])
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        return self.linear(torch.flatten(self.gap(self.stem(self.conv1(x))), 1))


@register_model
def dbb_resnet18(num_classes: int = 1000, deploy: bool = False) -> DBBResNet:
    """DBB ResNet-18 (upstream ``build_model('ResNet-18')`` with ``switch_conv_bn_impl('DBB')``).

    Args:
        num_classes: Classifier outputs.
        deploy: Build every block fused.

    Returns:
        The model.
    """
    return DBBResNet(BasicBlock, RESNET_BLOCKS["dbb_resnet18"], num_classes=num_classes, deploy=deploy)


@register_model
def dbb_resnet50(num_classes: int = 1000, deploy: bool = False) -> DBBResNet:
    """DBB ResNet-50 (upstream ``build_model('ResNet-50')`` with ``switch_conv_bn_impl('DBB')``).

    Args:
        num_classes: Classifier outputs.
        deploy: Build every block fused.

    Returns:
        The model.
    """
    return DBBResNet(Bottleneck, RESNET_BLOCKS["dbb_resnet50"], num_classes=num_classes, deploy=deploy)


@register_model
def dbb_mobilenet(num_classes: int = 1000, deploy: bool = False) -> DBBMobileNet:
    """DBB MobileNet (V1; upstream ``build_model('MobileNet')`` with ``switch_conv_bn_impl('DBB')``).

    Args:
        num_classes: Classifier outputs.
        deploy: Build every block fused.

    Returns:
        The model.
    """
    return DBBMobileNet(num_classes=num_classes, deploy=deploy)
