"""ACNet networks, PyTorch reference (twin of ``paddle_rep/models/acnet.py``).

Ding et al., ICCV 2019, arXiv:1908.03930; upstream https://github.com/DingXiaoH/ACNet
(MIT): ``acnet/acnet_builder.py`` decides which convs become ACBlocks, the networks are
``base_model/resnet.py`` (ImageNet ResNet-18/34), ``base_model/stagewise_resnet.py``
(``SRCNet``, CIFAR ResNet-56), ``base_model/cfqk.py`` (Cifar-quick with BN) and
``base_model/vgg.py`` (``VCNet``), ``stagewise_resnet.py`` again (``SBottleneckResNet``,
ResNet-50; ``SRCNet`` with 18 blocks, ResNet-110), ``base_model/wrn.py`` (``WRNCifarNet``,
WRN-16-8) and ``base_model/mobilenetv1.py`` (``MobileV1ImagenetNet``). Same module names, so
keys match upstream (``stage1.0.conv1.acb.square_conv.weight``). Upstream's builder at HEAD
passes a removed ``use_last_bn`` argument and fails; this follows its intent (no last BN).
Global pooling is adaptive: identical to upstream's fixed ``AvgPool2d(7)`` / ``(8)`` at 224 /
32 pixels. The tables of the ResNet-50, ResNet-110, WRN-16-8 and MobileNetV1 nets are written
here as upstream's ``constants.py`` / ``wrn.py`` write them, so this module needs nothing from
paddle_rep for them.
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

# Upstream ``RESNET50_ORIGIN_DEPS_FLATTENED``: the stem, then per stage the projection's output
# followed by (1x1, 3x3, 1x1) output channels of each bottleneck block (3, 4, 6, 3 blocks).
RESNET50_DEPS_FLATTENED = (
    64,
    256, *(64, 64, 256) * 3,
    512, *(128, 128, 512) * 4,
    1024, *(256, 256, 1024) * 6,
    2048, *(512, 512, 2048) * 3,
)
RESNET50_BLOCKS = (3, 4, 6, 3)
SRC110_BLOCKS = 18  # upstream ``create_SRC110``: SRCNet with 18 blocks per stage
# Upstream ``WRNCifarNet``'s ``converted_deps`` for WRN-16-8: the stem, then [conv1, conv2] output
# channels of the two blocks of each stage.
WRN16_8_DEPS = (16, ((128, 128), (128, 128)), ((256, 256), (256, 256)), ((512, 512), (512, 512)))
# Upstream ``MI1_ORIGIN_DEPS``: the stem, then (depthwise, pointwise) output channels of 13 blocks.
MI1_DEPS = (32,
            32, 64,
            64, 128,
            128, 128,
            128, 256,
            256, 256,
            256, 512,
            512, 512, 512, 512, 512, 512, 512, 512, 512, 512,
            512, 1024,
            1024, 1024)
MI1_STRIDE2_BLOCKS = (1, 3, 5, 11)


class ACNetBuilder:
    """Upstream ``ACNetBuilder``: 2..6-pixel kernels become ACBlocks, 1x1 and >=7x7 stay conv + BN."""

    def __init__(self, deploy: bool = False, gamma_init: float | None = None) -> None:
        self.deploy = deploy
        self.gamma_init = gamma_init

    def _acb(self, cin: int, cout: int, k: int, stride: int, padding: int, groups: int = 1,
             with_gamma_init: bool = True) -> ACBlock:
        gamma_init = self.gamma_init if with_gamma_init else None
        return ACBlock(cin, cout, k, stride=stride, padding=padding, groups=groups, deploy=self.deploy,
                       gamma_init=gamma_init)

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Module:
        """Upstream ``Conv2d``: a bare ACBlock (``bias`` ignored, the block has BNs), or a plain conv."""
        if uses_acb(k):
            return self._acb(cin, cout, k, stride, padding)
        return nn.Conv2d(cin, cout, k, stride, padding, bias=bias)

    def conv_bn(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Module:
        """Upstream ``Conv2dBN``: a bare ACBlock, or ``Sequential(conv, bn)``."""
        if uses_acb(k):
            return self._acb(cin, cout, k, stride, padding, groups)
        return nn.Sequential(OrderedDict(conv=nn.Conv2d(cin, cout, k, stride, padding, groups=groups, bias=False),
                                         bn=nn.BatchNorm2d(cout)))

    def conv_bn_relu(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
                     groups: int = 1) -> nn.Sequential:
        """Upstream ``Conv2dBNReLU``: ``Sequential(acb, relu)``, or ``Sequential(conv, bn, relu)``."""
        if uses_acb(k):
            return nn.Sequential(OrderedDict(acb=self._acb(cin, cout, k, stride, padding, groups), relu=nn.ReLU()))
        layers = self.conv_bn(cin, cout, k, stride, padding, groups)
        layers.add_module("relu", nn.ReLU())
        return layers

    def bn_relu_conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
        """Upstream ``BNReLUConv2d`` (pre-activation): ``Sequential(bn, relu, acb)`` or ``(bn, relu, conv)``.

        Upstream builds this ACBlock without ``gamma_init``, so the official WRN recipe's
        gamma_init reaches only the stem; kept, so the same arguments train the same network.
        """
        layers = OrderedDict(bn=nn.BatchNorm2d(cin), relu=nn.ReLU())
        if uses_acb(k):
            layers["acb"] = self._acb(cin, cout, k, stride, padding, with_gamma_init=False)
        else:
            layers["conv"] = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        return nn.Sequential(layers)


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


class BottleneckBranch(nn.Module):
    """The residual branch of a ResNet-50 block: 1x1 conv-BN-ReLU, 3x3 ACB-ReLU (carries the stride),
    1x1 conv-BN (upstream ``BottleneckBranch``); ``deps`` are the three output widths."""

    def __init__(self, builder: ACNetBuilder, in_channels: int, deps: tuple[int, int, int], stride: int = 1) -> None:
        super().__init__()
        self.conv1 = builder.conv_bn_relu(in_channels, deps[0], 1)
        self.conv2 = builder.conv_bn_relu(deps[0], deps[1], 3, stride=stride, padding=1)
        self.conv3 = builder.conv_bn(deps[1], deps[2], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(self.conv2(self.conv1(x)))


class ResNetBottleneckStage(nn.Module):
    """One ResNet-50 stage (upstream ``ResNetBottleneckStage``). ``stage_deps`` is upstream's slice:
    the projection's width, then three widths per block."""

    def __init__(self, builder: ACNetBuilder, in_planes: int, stage_deps: tuple[int, ...], stride: int = 1) -> None:
        super().__init__()
        self.num_blocks = (len(stage_deps) - 1) // 3
        out_channels = stage_deps[0]
        self.relu = nn.ReLU()
        self.projection = builder.conv_bn(in_planes, out_channels, 1, stride=stride)
        for i in range(self.num_blocks):
            deps = stage_deps[1 + 3 * i: 4 + 3 * i]
            setattr(self, f"block{i}", BottleneckBranch(builder, in_planes if i == 0 else out_channels, deps,
                                                        stride if i == 0 else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.projection(x) + self.block0(x))
        for i in range(1, self.num_blocks):
            out = self.relu(out + getattr(self, f"block{i}")(out))
        return out


class ACNetBottleneckResNet(nn.Module):
    """ImageNet ResNet-50 with an ACBlock for each bottleneck 3x3 (upstream ``SBottleneckResNet``);
    the 7x7 stem and every 1x1 conv stay plain."""

    def __init__(self, num_blocks: tuple[int, ...] = RESNET50_BLOCKS, num_classes: int = 1000, deploy: bool = False,
                 gamma_init: float | None = None, deps: tuple[int, ...] = RESNET50_DEPS_FLATTENED) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        self.conv1 = builder.conv_bn_relu(3, deps[0], 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        start, in_planes = 1, deps[0]
        stages = []
        for i, n in enumerate(num_blocks):
            stage_deps = deps[start: start + 3 * n + 1]
            stages.append(ResNetBottleneckStage(builder, in_planes, stage_deps, stride=1 if i == 0 else 2))
            start, in_planes = start + 3 * n + 1, stage_deps[0]
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(deps[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.maxpool(self.conv1(x))
        out = self.stage4(self.stage3(self.stage2(self.stage1(out))))
        return self.fc(self.gap(out).flatten(1))


class WRNCifarBlock(nn.Module):
    """Pre-activation wide block (upstream ``WRNCifarBlock``): BN-ReLU-ACB twice, plus the input, or
    a BN-ReLU-1x1 ``proj`` of it in a stage's first block; no activation after the sum."""

    def __init__(self, builder: ACNetBuilder, in_channels: int, block_channels: tuple[int, int], stride: int,
                 projection_shortcut: bool) -> None:
        super().__init__()
        if projection_shortcut:
            self.proj = builder.bn_relu_conv(in_channels, block_channels[1], 1, stride=stride)
        else:
            self.proj = nn.Identity()
        self.conv1 = builder.bn_relu_conv(in_channels, block_channels[0], 3, stride=stride, padding=1)
        self.dropout = nn.Identity()  # upstream's wrnc16plain: no dropout
        self.conv2 = builder.bn_relu_conv(block_channels[0], block_channels[1], 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.dropout(self.conv1(x))) + self.proj(x)


class ACNetWRN(nn.Module):
    """CIFAR WRN-16-8 with ACBlocks for the 3x3 stem and every pre-activation 3x3 (upstream
    ``WRNCifarNet``, ``wrnc16plain``); 32x32 inputs. As upstream, ``last_bn`` feeds the pooling
    directly (no ReLU after it)."""

    def __init__(self, num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None,
                 deps: tuple = WRN16_8_DEPS) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        self.conv1 = builder.conv(3, deps[0], 3, stride=1, padding=1, bias=False)
        in_channels = deps[0]
        stages = []
        for i, stage_deps in enumerate(deps[1:]):
            blocks: OrderedDict[str, nn.Module] = OrderedDict()
            for j, block_channels in enumerate(stage_deps):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks[f"block{j + 1}"] = WRNCifarBlock(builder, in_channels, block_channels, stride, j == 0)
                in_channels = block_channels[1]
            stages.append(nn.Sequential(blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.last_bn = nn.BatchNorm2d(in_channels)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        return self.linear(self.gap(self.last_bn(out)).flatten(1))


class MobileV1Block(nn.Module):
    """Depthwise 3x3 ACB-ReLU (groups = channels), then a plain 1x1 conv-BN-ReLU (upstream ``MobileV1Block``)."""

    def __init__(self, builder: ACNetBuilder, in_planes: int, out_planes: int, stride: int = 1) -> None:
        super().__init__()
        self.depthwise = builder.conv_bn_relu(in_planes, in_planes, 3, stride=stride, padding=1, groups=in_planes)
        self.pointwise = builder.conv_bn_relu(in_planes, out_planes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class ACNetMobileNetV1(nn.Module):
    """ImageNet MobileNetV1 (upstream ``MobileV1ImagenetNet``): the 3x3 stride-2 stem and the 13
    depthwise 3x3 convs are ACBlocks, the pointwise 1x1 convs stay plain."""

    def __init__(self, num_classes: int = 1000, deploy: bool = False, gamma_init: float | None = None,
                 deps: tuple[int, ...] = MI1_DEPS) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        self.conv1 = builder.conv_bn_relu(3, deps[0], 3, stride=2, padding=1)
        self.stem = nn.Sequential(*(
            MobileV1Block(builder, deps[2 * i + 1], deps[2 * i + 2], 2 if i in MI1_STRIDE2_BLOCKS else 1)
            for i in range(len(deps) // 2)))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(deps[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.gap(self.stem(self.conv1(x))).flatten(1))


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


@register_model
def acnet_resnet50(num_classes: int = 1000, deploy: bool = False,
                   gamma_init: float | None = None) -> ACNetBottleneckResNet:
    """ImageNet ResNet-50 with ACBlocks on the bottleneck 3x3 convs (upstream ``sres50``)."""
    return ACNetBottleneckResNet(RESNET50_BLOCKS, num_classes, deploy, gamma_init)


@register_model
def acnet_resnet110(num_classes: int = 10, deploy: bool = False,
                    gamma_init: float | None = None) -> ACNetCifarResNet:
    """CIFAR ResNet-110 with ACBlocks (upstream ``src110``)."""
    return ACNetCifarResNet(SRC110_BLOCKS, num_classes, deploy, gamma_init)


@register_model
def acnet_wrn16_8(num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> ACNetWRN:
    """CIFAR WRN-16-8, pre-activation, with ACBlocks (upstream ``wrnc16plain``)."""
    return ACNetWRN(num_classes, deploy, gamma_init)


@register_model
def acnet_mobilenetv1(num_classes: int = 1000, deploy: bool = False,
                      gamma_init: float | None = None) -> ACNetMobileNetV1:
    """ImageNet MobileNetV1 with ACBlocks on the stem and depthwise 3x3 convs (upstream ``smi1``)."""
    return ACNetMobileNetV1(num_classes, deploy, gamma_init)
