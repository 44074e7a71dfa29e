"""ACNet networks for Paddle.

Ding et al., ICCV 2019, arXiv:1908.03930; upstream https://github.com/DingXiaoH/ACNet
(MIT): ``acnet/acnet_builder.py`` decides which convs become ACBlocks, the networks are
``base_model/resnet.py`` (ImageNet ResNet-18/34), ``base_model/stagewise_resnet.py``
(``SRCNet``, CIFAR ResNet-56), ``base_model/cfqk.py`` (Cifar-quick with BN) and
``base_model/vgg.py`` (``VCNet``), ``stagewise_resnet.py`` again (``SBottleneckResNet``,
ResNet-50; ``SRCNet`` with 18 blocks, ResNet-110), ``base_model/wrn.py`` (``WRNCifarNet``,
WRN-16-8) and ``base_model/mobilenetv1.py`` (``MobileV1ImagenetNet``). Same attribute names as
upstream and ``torch_ref.models.acnet``. Upstream's builder at HEAD passes a removed
``use_last_bn`` argument and fails; this follows its intent (no last BN). Global pooling is
adaptive: identical to upstream's fixed ``AvgPool2d(7)`` / ``(8)`` at 224 / 32 pixels.
"""

import paddle
from paddle import nn
from paddle.nn import functional as F

from ..acblock import ACBlock
from ..bn import BatchNorm2D
from ..pooling import GlobalAvgPool2D
from ._blocks import MobileV1Block
from ._registry import register_model
from ._specs import (
    ACNET_BOTTLENECK_WIDTHS,
    ACNET_CIFAR_RESNET_BLOCKS,
    ACNET_RESNET50_BLOCKS,
    ACNET_RESNET_BLOCKS,
    CIFAR_QUICK_DEPS,
    CIFAR_QUICK_HIDDEN,
    CIFAR_RESNET_WIDTHS,
    MOBILENETV1_DEPS,
    MOBILENETV1_STRIDE2_BLOCKS,
    VGG_DEPS,
    VGG_HIDDEN,
    VGG_POOL_AFTER,
    WRN16_8_BLOCKS,
    WRN16_8_STEM,
    WRN16_8_WIDTHS,
    uses_acb,
)


class ACNetBuilder:
    """Upstream ``ACNetBuilder``: 2..6-pixel kernels become ACBlocks, 1x1 and >=7x7 stay conv + BN.

    Args:
        deploy: Build every ACBlock in its fused form.
        gamma_init: Start the BN scales of the ACBlocks it builds at this value; None keeps 1.
    """

    def __init__(self, deploy: bool = False, gamma_init: float | None = None) -> None:
        self.deploy = deploy
        self.gamma_init = gamma_init

    def _acb(self, cin: int, cout: int, k: int, stride: int, padding: int, groups: int = 1,
             with_gamma_init: bool = True) -> ACBlock:
        gamma_init = self.gamma_init if with_gamma_init else None
        return ACBlock(cin, cout, k, stride=stride, padding=padding, groups=groups, deploy=self.deploy,
                       gamma_init=gamma_init)

    def conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> nn.Layer:
        """Build upstream's ``Conv2d``: a bare ACBlock (``bias`` ignored, the block has BNs), or a plain conv.

        Args:
            cin: Input channels.
            cout: Output channels.
            k: Square kernel size.
            stride: Stride.
            padding: Padding.
            bias: Whether a plain conv gets a bias.

        Returns:
            The ACBlock or the ``paddle.nn.Conv2D``.
        """
        if uses_acb(k):
            return self._acb(cin, cout, k, stride, padding)
        return nn.Conv2D(cin, cout, k, stride, padding, bias_attr=None if bias else False)

    def conv_bn(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Layer:
        """Build upstream's ``Conv2dBN``: a bare ACBlock, or ``Sequential(conv, bn)``.

        Args:
            cin: Input channels.
            cout: Output channels.
            k: Square kernel size.
            stride: Stride.
            padding: Padding.
            groups: Groups.

        Returns:
            The ACBlock or the conv-BN pair.
        """
        if uses_acb(k):
            return self._acb(cin, cout, k, stride, padding, groups)
        return nn.Sequential(("conv", nn.Conv2D(cin, cout, k, stride, padding, groups=groups, bias_attr=False)),
                             ("bn", BatchNorm2D(cout)))

    def conv_bn_relu(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
                     groups: int = 1) -> nn.Sequential:
        """Build upstream's ``Conv2dBNReLU``: ``Sequential(acb, relu)``, or ``Sequential(conv, bn, relu)``.

        Args:
            cin: Input channels.
            cout: Output channels.
            k: Square kernel size.
            stride: Stride.
            padding: Padding.
            groups: Groups.

        Returns:
            The sequence.
        """
        if uses_acb(k):
            return nn.Sequential(("acb", self._acb(cin, cout, k, stride, padding, groups)), ("relu", nn.ReLU()))
        layers = self.conv_bn(cin, cout, k, stride, padding, groups)
        layers.add_sublayer("relu", nn.ReLU())
        return layers

    def bn_relu_conv(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
        """Build upstream's ``BNReLUConv2d`` (pre-activation): ``Sequential(bn, relu, acb)`` or ``(bn, relu, conv)``.

        Upstream builds this ACBlock without ``gamma_init``, so the official WRN recipe's
        gamma_init reaches only the stem; kept, so the same arguments train the same network.

        Args:
            cin: Input channels.
            cout: Output channels.
            k: Square kernel size.
            stride: Stride.
            padding: Padding.

        Returns:
            The sequence.
        """
        if uses_acb(k):
            last: tuple[str, nn.Layer] = ("acb", self._acb(cin, cout, k, stride, padding, with_gamma_init=False))
        else:
            last = ("conv", nn.Conv2D(cin, cout, k, stride, padding, bias_attr=False))
        return nn.Sequential(("bn", BatchNorm2D(cin)), ("relu", nn.ReLU()), last)


class BasicBlock(nn.Layer):
    """ImageNet ResNet basic block (upstream ``base_model/resnet.py``).

    Args:
        builder: Decides which convs become ACBlocks and how they are built.
        in_planes: Input channels.
        planes: Output channels.
        stride: The first conv's stride (a 1x1 conv-BN shortcut when it or the width changes).
    """

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

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the block.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class ACNetResNet(nn.Layer):
    """ImageNet ResNet-18/34 with ACBlocks in the basic blocks; 7x7 stem and 1x1 shortcuts plain.

    Args:
        num_blocks: Basic blocks in each of the four stages.
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

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
        self.gap = GlobalAvgPool2D()
        self.linear = nn.Linear(512 * BasicBlock.expansion, num_classes)

    def _make_stage(self, builder: ACNetBuilder, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        blocks = []
        for i in range(num_blocks):
            blocks.append(BasicBlock(builder, self.in_planes, planes, stride if i == 0 else 1))
            self.in_planes = planes * BasicBlock.expansion
        return nn.Sequential(*blocks)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        out = self.stage4(self.stage3(self.stage2(self.stage1(out))))
        return self.linear(paddle.flatten(self.gap(out), start_axis=1))


class BasicBranch(nn.Layer):
    """The residual branch of a CIFAR ResNet block: ACB-ReLU, ACB (upstream ``BasicBranch``).

    Args:
        builder: Decides which convs become ACBlocks and how they are built.
        in_channels: Input channels.
        channels: Output channels.
        stride: The first conv's stride.
    """

    def __init__(self, builder: ACNetBuilder, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = builder.conv_bn_relu(in_channels, channels, 3, stride=stride, padding=1)
        self.conv2 = builder.conv_bn(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the branch.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        return self.conv2(self.conv1(x))


class ResNetBasicStage(nn.Layer):
    """One CIFAR ResNet stage (upstream ``ResNetBasicStage``).

    ``conv1`` (first stage) or a 1x1 ``projection``, then ``block0``, ``block1``, ... each added to
    its input and ReLU'd.

    Args:
        builder: Decides which convs become ACBlocks and how they are built.
        in_planes: Input channels.
        channels: Output channels.
        num_blocks: Residual blocks.
        stride: The first block's stride.
        is_first: The network's first stage (a 3x3 ``conv1`` instead of the projection).
    """

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

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the stage.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        if self.is_first:
            base = self.relu(self.conv1(x))
            out = base + self.block0(base)
        else:
            out = self.projection(x) + self.block0(x)
        out = self.relu(out)
        for i in range(1, self.num_blocks):
            out = self.relu(out + getattr(self, f"block{i}")(out))
        return out


class ACNetCifarResNet(nn.Layer):
    """CIFAR ResNet-(6n+2) with every 3x3 conv an ACBlock (upstream ``SRCNet``).

    Args:
        blocks_per_stage: n, the residual blocks in each of the three stages.
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, deploy: bool = False,
                 gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        w1, w2, w3 = CIFAR_RESNET_WIDTHS
        self.stage1 = ResNetBasicStage(builder, 3, w1, blocks_per_stage, stride=1, is_first=True)
        self.stage2 = ResNetBasicStage(builder, w1, w2, blocks_per_stage, stride=2)
        self.stage3 = ResNetBasicStage(builder, w2, w3, blocks_per_stage, stride=2)
        self.gap = GlobalAvgPool2D()
        self.linear = nn.Linear(w3, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = self.stage3(self.stage2(self.stage1(x)))
        return self.linear(paddle.flatten(self.gap(out), start_axis=1))


class ACNetCifarQuick(nn.Layer):
    """Cifar-quick with BN and three 5x5 ACBlocks (upstream ``CFQKBN``); needs 32x32 inputs.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

    def __init__(self, num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        d1, d2, d3 = CIFAR_QUICK_DEPS
        self.conv1 = builder.conv_bn_relu(3, d1, 5, padding=2)
        self.conv2 = builder.conv_bn_relu(d1, d2, 5, padding=2)
        self.conv3 = builder.conv_bn_relu(d2, d3, 5, padding=2)
        self.fc1 = nn.Linear(3 * 3 * d3, CIFAR_QUICK_HIDDEN)
        self.fc2 = nn.Linear(CIFAR_QUICK_HIDDEN, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``, 32x32.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2)  # 32 -> 15
        x = F.avg_pool2d(self.conv2(x), kernel_size=3, stride=2)  # 15 -> 7
        x = F.avg_pool2d(self.conv3(x), kernel_size=3, stride=2)  # 7 -> 3
        return self.fc2(F.relu(self.fc1(paddle.flatten(x, start_axis=1))))


class ACNetVGG(nn.Layer):
    """CIFAR VGG-16 style: 13 3x3 ACBlocks, five 2x2 max pools, two linears (upstream ``VCNet``); 32x32 inputs.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

    def __init__(self, num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        stem: list[tuple[str, nn.Layer]] = []
        in_channels = 3
        for i, channels in enumerate(VGG_DEPS, start=1):
            stem.append((f"conv{i}", builder.conv_bn_relu(in_channels, channels, 3, padding=1)))
            in_channels = channels
            if i in VGG_POOL_AFTER:
                stem.append((f"maxpool{VGG_POOL_AFTER.index(i) + 1}", nn.MaxPool2D(kernel_size=2)))
        self.stem = nn.Sequential(*stem)
        self.flatten = nn.Flatten()
        self.linear1 = nn.Linear(VGG_DEPS[-1], VGG_HIDDEN)
        self.relu = nn.ReLU()
        self.linear2 = nn.Linear(VGG_HIDDEN, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``, 32x32.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        return self.linear2(self.relu(self.linear1(self.flatten(self.stem(x)))))


class BottleneckBranch(nn.Layer):
    """The residual branch of a ResNet-50 block (upstream ``BottleneckBranch``).

    1x1 conv-BN-ReLU, 3x3 ACB-ReLU (carries the stride), 1x1 conv-BN.

    Args:
        builder: Decides which convs become ACBlocks and how they are built.
        in_channels: Input channels.
        mid_channels: Width of the 1x1 and 3x3 convs inside.
        out_channels: Output channels.
        stride: The 3x3 conv's stride.
    """

    def __init__(self, builder: ACNetBuilder, in_channels: int, mid_channels: int, out_channels: int,
                 stride: int = 1) -> None:
        super().__init__()
        self.conv1 = builder.conv_bn_relu(in_channels, mid_channels, 1)
        self.conv2 = builder.conv_bn_relu(mid_channels, mid_channels, 3, stride=stride, padding=1)
        self.conv3 = builder.conv_bn(mid_channels, out_channels, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the branch.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        return self.conv3(self.conv2(self.conv1(x)))


class ResNetBottleneckStage(nn.Layer):
    """One ResNet-50 stage (upstream ``ResNetBottleneckStage``).

    A 1x1 ``projection`` shortcut for ``block0``, identity shortcuts for ``block1``, ``block2``,
    ...; ReLU after every sum.

    Args:
        builder: Decides which convs become ACBlocks and how they are built.
        in_planes: Input channels.
        mid_channels: Width inside each bottleneck.
        out_channels: Output channels.
        num_blocks: Bottleneck blocks.
        stride: The first block's stride.
    """

    def __init__(self, builder: ACNetBuilder, in_planes: int, mid_channels: int, out_channels: int,
                 num_blocks: int, stride: int = 1) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.relu = nn.ReLU()
        self.projection = builder.conv_bn(in_planes, out_channels, 1, stride=stride)
        for i in range(num_blocks):
            setattr(self, f"block{i}", BottleneckBranch(builder, in_planes if i == 0 else out_channels,
                                                        mid_channels, out_channels, stride if i == 0 else 1))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the stage.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        out = self.relu(self.projection(x) + self.block0(x))
        for i in range(1, self.num_blocks):
            out = self.relu(out + getattr(self, f"block{i}")(out))
        return out


class ACNetBottleneckResNet(nn.Layer):
    """ImageNet ResNet-50 with an ACBlock for each bottleneck 3x3 (upstream ``SBottleneckResNet``).

    The 7x7 stem and every 1x1 conv stay plain.

    Args:
        num_blocks: Bottleneck blocks in each of the four stages.
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

    def __init__(self, num_blocks: list[int], num_classes: int = 1000, deploy: bool = False,
                 gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        self.conv1 = builder.conv_bn_relu(3, 64, 7, stride=2, padding=3)
        self.maxpool = nn.MaxPool2D(kernel_size=3, stride=2, padding=1)
        in_planes = 64
        stages = []
        for i, ((mid, out), n) in enumerate(zip(ACNET_BOTTLENECK_WIDTHS, num_blocks, strict=True)):
            stages.append(ResNetBottleneckStage(builder, in_planes, mid, out, n, stride=1 if i == 0 else 2))
            in_planes = out
        self.stage1, self.stage2, self.stage3, self.stage4 = stages
        self.gap = GlobalAvgPool2D()
        self.fc = nn.Linear(in_planes, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = self.maxpool(self.conv1(x))
        out = self.stage4(self.stage3(self.stage2(self.stage1(out))))
        return self.fc(paddle.flatten(self.gap(out), start_axis=1))


class WRNCifarBlock(nn.Layer):
    """Pre-activation wide block (upstream ``WRNCifarBlock``).

    BN-ReLU-ACB twice, plus the input, or a BN-ReLU-1x1 ``proj`` of it in a stage's first block;
    no activation after the sum.

    Args:
        builder: Decides which convs become ACBlocks and how they are built.
        in_channels: Input channels.
        channels: Output channels.
        stride: The first conv's (and the projection's) stride.
        projection_shortcut: Project the shortcut (a stage's first block).
    """

    def __init__(self, builder: ACNetBuilder, in_channels: int, channels: int, stride: int,
                 projection_shortcut: bool) -> None:
        super().__init__()
        if projection_shortcut:
            self.proj = builder.bn_relu_conv(in_channels, channels, 1, stride=stride)
        else:
            self.proj = nn.Identity()
        self.conv1 = builder.bn_relu_conv(in_channels, channels, 3, stride=stride, padding=1)
        self.dropout = nn.Identity()  # upstream's wrnc16plain: no dropout
        self.conv2 = builder.bn_relu_conv(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the block.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        return self.conv2(self.dropout(self.conv1(x))) + self.proj(x)


class ACNetWRN(nn.Layer):
    """CIFAR WRN-16-8 with ACBlocks for the 3x3 stem and every pre-activation 3x3.

    Upstream ``WRNCifarNet``, ``wrnc16plain``; 32x32 inputs. As upstream, ``last_bn`` feeds the
    pooling directly (no ReLU after it).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

    def __init__(self, num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        self.conv1 = builder.conv(3, WRN16_8_STEM, 3, stride=1, padding=1, bias=False)
        in_channels = WRN16_8_STEM
        stages = []
        for i, width in enumerate(WRN16_8_WIDTHS):
            blocks = []
            for j in range(WRN16_8_BLOCKS):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append((f"block{j + 1}", WRNCifarBlock(builder, in_channels, width, stride, j == 0)))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.last_bn = BatchNorm2D(in_channels)
        self.gap = GlobalAvgPool2D()
        self.linear = nn.Linear(in_channels, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``, 32x32.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = self.stage3(self.stage2(self.stage1(self.conv1(x))))
        return self.linear(paddle.flatten(self.gap(self.last_bn(out)), start_axis=1))


class ACNetMobileNetV1(nn.Layer):
    """ImageNet MobileNetV1 (upstream ``MobileV1ImagenetNet``).

    The 3x3 stride-2 stem and the 13 depthwise 3x3 convs are ACBlocks, the pointwise 1x1 convs
    stay plain.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.
    """

    def __init__(self, num_classes: int = 1000, deploy: bool = False, gamma_init: float | None = None) -> None:
        super().__init__()
        builder = ACNetBuilder(deploy, gamma_init)
        deps = MOBILENETV1_DEPS
        self.conv1 = builder.conv_bn_relu(3, deps[0], 3, stride=2, padding=1)
        blocks = [MobileV1Block(builder, deps[2 * i + 1], deps[2 * i + 2], 2 if i in MOBILENETV1_STRIDE2_BLOCKS else 1)
                  for i in range(len(deps) // 2)]
        self.stem = nn.Sequential(*blocks)
        self.gap = GlobalAvgPool2D()
        self.linear = nn.Linear(deps[-1], num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = self.stem(self.conv1(x))
        return self.linear(paddle.flatten(self.gap(out), start_axis=1))


@register_model
def acnet_resnet18(num_classes: int = 1000, deploy: bool = False, gamma_init: float | None = None) -> ACNetResNet:
    """ImageNet ResNet-18 with ACBlocks (upstream ``sres18``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetResNet(list(ACNET_RESNET_BLOCKS["acnet_resnet18"]), num_classes, deploy, gamma_init)


@register_model
def acnet_resnet34(num_classes: int = 1000, deploy: bool = False, gamma_init: float | None = None) -> ACNetResNet:
    """ImageNet ResNet-34 with ACBlocks (upstream ``sres34``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetResNet(list(ACNET_RESNET_BLOCKS["acnet_resnet34"]), num_classes, deploy, gamma_init)


@register_model
def acnet_resnet56(num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> ACNetCifarResNet:
    """CIFAR ResNet-56 with ACBlocks (upstream ``src56``; trained with gamma_init 1/3).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetCifarResNet(ACNET_CIFAR_RESNET_BLOCKS["acnet_resnet56"], num_classes, deploy, gamma_init)


@register_model
def acnet_cifar_quick(num_classes: int = 10, deploy: bool = False,
                      gamma_init: float | None = None) -> ACNetCifarQuick:
    """Cifar-quick + BN with 5x5 ACBlocks (upstream ``cfqkbnc``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetCifarQuick(num_classes, deploy, gamma_init)


@register_model
def acnet_vgg16(num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> ACNetVGG:
    """CIFAR VGG-16 with ACBlocks (upstream ``vc``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetVGG(num_classes, deploy, gamma_init)


@register_model
def acnet_resnet50(num_classes: int = 1000, deploy: bool = False,
                   gamma_init: float | None = None) -> ACNetBottleneckResNet:
    """ImageNet ResNet-50 with ACBlocks on the bottleneck 3x3 convs (upstream ``sres50``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetBottleneckResNet(list(ACNET_RESNET50_BLOCKS), num_classes, deploy, gamma_init)


@register_model
def acnet_resnet110(num_classes: int = 10, deploy: bool = False,
                    gamma_init: float | None = None) -> ACNetCifarResNet:
    """CIFAR ResNet-110 with ACBlocks (upstream ``src110``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetCifarResNet(ACNET_CIFAR_RESNET_BLOCKS["acnet_resnet110"], num_classes, deploy, gamma_init)


@register_model
def acnet_wrn16_8(num_classes: int = 10, deploy: bool = False, gamma_init: float | None = None) -> ACNetWRN:
    """CIFAR WRN-16-8, pre-activation, with ACBlocks (upstream ``wrnc16plain``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetWRN(num_classes, deploy, gamma_init)


@register_model
def acnet_mobilenetv1(num_classes: int = 1000, deploy: bool = False,
                      gamma_init: float | None = None) -> ACNetMobileNetV1:
    """ImageNet MobileNetV1 with ACBlocks on the stem and depthwise 3x3 convs (upstream ``smi1``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one conv per ACBlock) directly.
        gamma_init: Start the ACBlocks' BN scales at this value (upstream's ``gamma_init``); None keeps 1.

    Returns:
        The model.
    """
    return ACNetMobileNetV1(num_classes, deploy, gamma_init)
