"""ACNet networks, PyTorch reference (twin of ``paddle_rep/models/acnet.py``).

Ding et al., ICCV 2019, arXiv:1908.03930; upstream https://github.com/DingXiaoH/ACNet
(MIT): ``acnet/acnet_builder.py`` decides which convs become ACBlocks, the networks are
``base_model/resnet.py`` (ImageNet ResNet-18/34), ``base_model/stagewise_resnet.py``
(``SRCNet``, CIFAR ResNet-56), ``base_model/cfqk.py`` (Cifar-quick with BN) and
``base_model/vgg.py`` (``VCNet``). Same module names, so keys match upstream
(``stage1.0.conv1.acb.square_conv.weight``). Upstream's builder at HEAD passes a removed
``use_last_bn`` argument and fails; this follows its intent (no last BN). Global pooling is
adaptive: identical to upstream's fixed ``AvgPool2d(7)`` / ``(8)`` at 224 / 32 pixels.
"""

from collections import OrderedDict
from itertools import accumulate

import torch
import torch.nn.functional as F
from torch import nn

from ..acblock import ACBlock
from ._registry import register_model

# The networks' tables as upstream states them (``constants.py``, ``base_model``), written here
# independently of paddle_rep's, so the structure test compares two statements.
ACNET_RESNET_BLOCKS = {"acnet_resnet18": [2, 2, 2, 2], "acnet_resnet34": [3, 4, 6, 3]}
ACNET_CIFAR_RESNET_BLOCKS = {"acnet_resnet56": (56 - 2) // 6}  # ResNet-(6n+2): n blocks per stage
CIFAR_RESNET_WIDTHS = (16, 32, 64)
CIFAR_QUICK_DEPS = (32, 32, 64)  # upstream CFQK_ORIGIN_DEPS
CIFAR_QUICK_HIDDEN = 64
VGG_DEPS = [64] * 2 + [128] * 2 + [256] * 3 + [512] * 3 + [512] * 3  # upstream VGG_ORIGIN_DEPS
VGG_CONVS_PER_POOL = (2, 2, 3, 3, 3)  # the stem's five blocks, each closed by a 2x2 max pool
VGG_POOL_AFTER = tuple(accumulate(VGG_CONVS_PER_POOL))  # 1-based conv indices followed by a pool
VGG_HIDDEN = 512


def uses_acb(kernel_size: int) -> bool:
    """Upstream ``ACNetBuilder``: a 1x1 or a 7x7-and-larger conv stays conv + BN, the rest become ACBlocks."""
    return not (kernel_size == 1 or kernel_size >= 7)


class ACNetBuilder:
    """Upstream ``ACNetBuilder``: 2..6-pixel kernels become ACBlocks, 1x1 and >=7x7 stay conv + BN."""

    def __init__(self, deploy: bool = False, gamma_init: float | None = None) -> None:
        self.deploy = deploy
        self.gamma_init = gamma_init

    def _acb(self, cin: int, cout: int, k: int, stride: int, padding: int) -> ACBlock:
        return ACBlock(cin, cout, k, stride=stride, padding=padding, deploy=self.deploy, gamma_init=self.gamma_init)

    def conv_bn(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Module:
        """Upstream ``Conv2dBN``: a bare ACBlock, or ``Sequential(conv, bn)``."""
        if uses_acb(k):
            return self._acb(cin, cout, k, stride, padding)
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, k, stride, padding, bias=False),
                                         bn=nn.BatchNorm2d(cout)))

    def conv_bn_relu(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
        """Upstream ``Conv2dBNReLU``: ``Sequential(acb, relu)``, or ``Sequential(conv, bn, relu)``."""
        if uses_acb(k):
            return nn.Sequential(OrderedDict(acb=self._acb(cin, cout, k, stride, padding), relu=nn.ReLU()))
        layers = self.conv_bn(cin, cout, k, stride, padding)
        layers.add_module("relu", nn.ReLU())
        return layers


class BasicBlock(nn.Module):
    """ImageNet ResNet basic block (upstream ``base_model/resnet.py``)."""

    expansion = 1

    def __init__(self, builder: ACNetBuilder, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.relu = nn.ReLU()
        if stride != 1 or in_planes != planes:
            self.shortcut = builder.conv_bn(in_planes, planes, 1, stride=stride)
        else:
            self.shortcut = nn.Identity()
        self.conv1 = builder.conv_bn_relu(in_planes, planes, 3, stride=stride, padding=1)
        self.conv2 = builder.conv_bn(planes, planes, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ACNetResNet(nn.Module):
    """ImageNet ResNet-18/34 with ACBlocks in the basic blocks; 7x7 stem and 1x1 shortcuts plain."""

    def __init__(self, num_blocks: list[int], num_classes: int = 1000, deploy: bool = False,
                 gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        self.in_planes = 64
        self.conv1 = builder.conv_bn_relu(3, 64, 7, stride=2, padding=3)
        self.stage1, self.stage2, self.stage3, self.stage4 = (
            self._make_stage(builder, planes, n, 1 if i == 0 else 2)
            for i, (planes, n) in enumerate(zip((64, 128, 256, 512), num_blocks, strict=True))
        )
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(512 * BasicBlock.expansion, num_classes)

    def _make_stage(self, builder: ACNetBuilder, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for i in range(num_blocks):
            blocks.append(BasicBlock(builder, self.in_planes, planes, stride if i == 0 else 1))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        out = self.stage4(self.stage3(self.stage2(self.stage1(out))))
        return self.linear(self.gap(out).flatten(1))


class BasicBranch(nn.Module):
    """The residual branch of a CIFAR ResNet block: ACB-ReLU, ACB (upstream ``BasicBranch``)."""

    def __init__(self, builder: ACNetBuilder, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = builder.conv_bn_relu(in_channels, channels, 3, stride=stride, padding=1)
        self.conv2 = builder.conv_bn(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class ResNetBasicStage(nn.Module):
    """One CIFAR ResNet stage (upstream ``ResNetBasicStage``): ``conv1`` (first stage) or a 1x1
    ``projection``, then ``block0``, ``block1``, ... each added to its input and ReLU'd."""

    def __init__(self, builder: ACNetBuilder, in_planes: int, channels: int, num_blocks: int, stride: int = 1,
                 is_first: bool = False) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.is_first = is_first
        if is_first:
            self.conv1 = builder.conv_bn(in_planes, channels, 3, stride=1, padding=1)
        else:
            self.projection = builder.conv_bn(in_planes, channels, 1, stride=stride)
        self.relu = nn.ReLU()
        for i in range(num_blocks):
            in_c = channels if (i > 0 or is_first) else in_planes
            setattr(self, f"block{i}", BasicBranch(builder, in_c, channels, stride if i == 0 else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_first:
            base = self.relu(self.conv1(x))
            out = base + self.block0(base)
        else:
            out = self.projection(x) + self.block0(x)
        out = self.relu(out)
        for i in range(1, self.num_blocks):
            out = self.relu(out + getattr(self, f"block{i}")(out))
        return out


class ACNetCifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) with every 3x3 conv an ACBlock (upstream ``SRCNet``)."""

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, deploy: bool = False,
                 gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        w1, w2, w3 = CIFAR_RESNET_WIDTHS
        self.stage1 = ResNetBasicStage(builder, 3, w1, blocks_per_stage, stride=1, is_first=True)
        self.stage2 = ResNetBasicStage(builder, w1, w2, blocks_per_stage, stride=2)
        self.stage3 = ResNetBasicStage(builder, w2, w3, blocks_per_stage, stride=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(w3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stage3(self.stage2(self.stage1(x)))
        return self.linear(self.gap(out).flatten(1))


class ACNetCifarQuick(nn.Module):
    """Cifar-quick with BN and three 5x5 ACBlocks (upstream ``CFQKBN``); needs 32x32 inputs."""

    def __init__(self, num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        d1, d2, d3 = CIFAR_QUICK_DEPS
        self.conv1 = builder.conv_bn_relu(3, d1, 5, padding=2)
        self.conv2 = builder.conv_bn_relu(d1, d2, 5, padding=2)
        self.conv3 = builder.conv_bn_relu(d2, d3, 5, padding=2)
        self.fc1 = nn.Linear(3 * 3 * d3, CIFAR_QUICK_HIDDEN)
        self.fc2 = nn.Linear(CIFAR_QUICK_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2)  # 32 -> 15
        x = F.avg_pool2d(self.conv2(x), kernel_size=3, stride=2)  # 15 -> 7
        x = F.avg_pool2d(self.conv3(x), kernel_size=3, stride=2)  # 7 -> 3
        return self.fc2(F.relu(self.fc1(x.flatten(1))))


class ACNetVGG(nn.Module):
    """CIFAR VGG-16 style: 13 3x3 ACBlocks, five 2x2 max pools, two linears (upstream ``VCNet``); 32x32 inputs."""

    def __init__(self, num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        stem: OrderedDict[str, nn.Module] = OrderedDict()
        in_channels = 3
        for i, channels in enumerate(VGG_DEPS, start=1):
            stem[f"conv{i}"] = builder.conv_bn_relu(in_channels, channels, 3, padding=1)
            in_channels = channels
            if i in VGG_POOL_AFTER:
                stem[f"maxpool{VGG_POOL_AFTER.index(i) + 1}"] = nn.MaxPool2d(kernel_size=2)
        self.stem = nn.Sequential(stem)
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(VGG_DEPS[-1], VGG_HIDDEN)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(VGG_HIDDEN, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.relu(self.linear1(self.flatten(self.stem(x)))))


@register_model
def acnet_resnet18(num_classes: int = 1000, deploy: bool = False, gamma_init: float | None = None) -> ACNetResNet:
    """ImageNet ResNet-18 with ACBlocks (upstream ``sres18``)."""
    return ACNetResNet(list(ACNET_RESNET_BLOCKS["acnet_resnet18"]), num_classes, deploy, gamma_init)


@register_model
def acnet_resnet34(num_classes: int = 1000, deploy: bool = False, gamma_init: float | None = None) -> ACNetResNet:
    """ImageNet ResNet-34 with ACBlocks (upstream ``sres34``)."""
    return ACNetResNet(list(ACNET_RESNET_BLOCKS["acnet_resnet34"]), num_classes, deploy, gamma_init)


@register_model
def acnet_resnet56(num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> ACNetCifarResNet:
    """CIFAR ResNet-56 with ACBlocks (upstream ``src56``; trained with gamma_init 1/3)."""
    return ACNetCifarResNet(ACNET_CIFAR_RESNET_BLOCKS["acnet_resnet56"], num_classes, deploy, gamma_init)


@register_model
def acnet_cifar_quick(num_classes: int = 10, deploy: bool = False,
                      gamma_init: float | None = None) -> ACNetCifarQuick:
    """Cifar-quick + BN with 5x5 ACBlocks (upstream ``cfqkbnc``)."""
    return ACNetCifarQuick(num_classes, deploy, gamma_init)


@register_model
def acnet_vgg16(num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> ACNetVGG:
    """CIFAR VGG-16 with ACBlocks (upstream ``vc``)."""
    return ACNetVGG(num_classes, deploy, gamma_init)
