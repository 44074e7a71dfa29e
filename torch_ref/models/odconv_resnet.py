"""ODConv ResNets, PyTorch reference (twin of ``paddle_rep/models/odconv_resnet.py``).

Li, Zhou and Yao, ICLR 2022, arXiv:2209.07947; upstream https://github.com/OSVAI/ODConv
``models/od_resnet.py`` (MIT). Same structure, initialisation and state-dict keys
(``layer1.0.conv1.attention.fc.weight``, ``fc.weight``): every 3x3 conv of a BasicBlock and
all three convs of a Bottleneck are ODConv; stem, downsample and head stay plain.
"""

import torch
from torch import nn

from paddle_rep.core.schedules import set_temperature

from ..odconv import ODConv2d
from ._registry import register_model


def odconv3x3(in_planes: int, out_planes: int, stride: int = 1, reduction: float = 0.0625,
              kernel_num: int = 1) -> ODConv2d:
    """Build a 3x3 ODConv with padding 1 (upstream ``odconv3x3``).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Stride.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.

    Returns:
        The ODConv.
    """
    return ODConv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, reduction=reduction,
                    kernel_num=kernel_num)


def odconv1x1(in_planes: int, out_planes: int, stride: int = 1, reduction: float = 0.0625,
              kernel_num: int = 1) -> ODConv2d:
    """Build a 1x1 ODConv (upstream ``odconv1x1``).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        stride: Stride.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.

    Returns:
        The ODConv.
    """
    return ODConv2d(in_planes, out_planes, kernel_size=1, stride=stride, padding=0, reduction=reduction,
                    kernel_num=kernel_num)


class BasicBlock(nn.Module):
    """ResNet basic block with two 3x3 ODConvs, each followed by BN (upstream ``BasicBlock``).

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: The first conv's stride.
        downsample: The projection of the residual, or None for the identity.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.
    """
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 reduction: float = 0.0625, kernel_num: int = 1) -> None:
        super().__init__()
        self.conv1 = odconv3x3(inplanes, planes, stride, reduction=reduction, kernel_num=kernel_num)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = odconv3x3(planes, planes, reduction=reduction, kernel_num=kernel_num)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """ResNet bottleneck block, 1x1-3x3-1x1, every conv an ODConv (upstream ``Bottleneck``).

    Args:
        inplanes: Input channels.
        planes: Width inside; the output has ``4 * planes`` channels.
        stride: The 3x3 conv's stride.
        downsample: The projection of the residual, or None for the identity.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.
    """
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 reduction: float = 0.0625, kernel_num: int = 1) -> None:
        super().__init__()
        self.conv1 = odconv1x1(inplanes, planes, reduction=reduction, kernel_num=kernel_num)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = odconv3x3(planes, planes, stride, reduction=reduction, kernel_num=kernel_num)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = odconv1x1(planes, planes * self.expansion, reduction=reduction, kernel_num=kernel_num)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ODResNet(nn.Module):
    """Upstream ``OD_ResNet``: torchvision-style ResNet with ODConv in the residual blocks.

    Args:
        block: The residual block, :class:`BasicBlock` or :class:`Bottleneck`.
        layers: Blocks in each of the four stages.
        num_classes: Classes of the ``fc`` head.
        dropout: Dropout before ``fc``.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.
    """

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: list[int], num_classes: int = 1000,
                 dropout: float = 0.1, reduction: float = 0.0625, kernel_num: int = 1) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], 1, reduction, kernel_num)
        self.layer2 = self._make_layer(block, 128, layers[1], 2, reduction, kernel_num)
        self.layer3 = self._make_layer(block, 256, layers[2], 2, reduction, kernel_num)
        self.layer4 = self._make_layer(block, 512, layers[3], 2, reduction, kernel_num)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        # As upstream: every nn.Conv2d, the attention convs included, is re-initialised;
        # ODConv2d.weight is a plain parameter and keeps its own init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def net_update_temperature(self, temperature: float) -> None:
        """Set the attention temperature of every ODConv (annealed 30 -> 1 in upstream training).

        Args:
            temperature: The new temperature (1.0 for evaluation).
        """
        set_temperature(self, temperature)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int, stride: int,
                    reduction: float, kernel_num: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, reduction=reduction, kernel_num=kernel_num)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, reduction=reduction, kernel_num=kernel_num) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(self.dropout(x))


# Upstream ``od_resnet18`` ... ``od_resnet101``: the block type and blocks per stage.
OD_RESNET_ARCHS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], list[int]]] = {
    "od_resnet18": (BasicBlock, [2, 2, 2, 2]),
    "od_resnet34": (BasicBlock, [3, 4, 6, 3]),
    "od_resnet50": (Bottleneck, [3, 4, 6, 3]),
    "od_resnet101": (Bottleneck, [3, 4, 23, 3]),
}


def _build(name: str, num_classes: int, deploy: bool, kernel_num: int, reduction: float,
           dropout: float) -> ODResNet:
    # ODConv's attentions depend on the input, so there is no static fused form: the deploy
    # model is the training-time model and ``deploy`` only keeps create_model's interface uniform.
    del deploy
    block, layers = OD_RESNET_ARCHS[name]
    return ODResNet(block, list(layers), num_classes=num_classes, dropout=dropout, reduction=reduction,
                    kernel_num=kernel_num)


@register_model
def od_resnet18(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1, reduction: float = 0.0625,
                dropout: float = 0.1) -> ODResNet:
    """Build ODConv ResNet-18 (upstream ``od_resnet18``).

    11.94M parameters at kernel_num 1, 44.90M at 4.

    ODConv has no fused form (its kernels depend on the input), so ``deploy`` builds the
    same model.

    Args:
        num_classes: Classes of the head.
        deploy: Accepted for a uniform ``create_model`` interface; changes nothing.
        kernel_num: Kernels each ODConv mixes per sample (upstream's ``kernel_num``).
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        dropout: Dropout before the classifier.

    Returns:
        The model.
    """
    return _build("od_resnet18", num_classes, deploy, kernel_num, reduction, dropout)


@register_model
def od_resnet34(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1, reduction: float = 0.0625,
                dropout: float = 0.1) -> ODResNet:
    """Build ODConv ResNet-34 (upstream ``od_resnet34``).

    ODConv has no fused form (its kernels depend on the input), so ``deploy`` builds the
    same model.

    Args:
        num_classes: Classes of the head.
        deploy: Accepted for a uniform ``create_model`` interface; changes nothing.
        kernel_num: Kernels each ODConv mixes per sample (upstream's ``kernel_num``).
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        dropout: Dropout before the classifier.

    Returns:
        The model.
    """
    return _build("od_resnet34", num_classes, deploy, kernel_num, reduction, dropout)


@register_model
def od_resnet50(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1, reduction: float = 0.0625,
                dropout: float = 0.1) -> ODResNet:
    """Build ODConv ResNet-50 (upstream ``od_resnet50``).

    28.64M parameters at kernel_num 1, 90.67M at 4.

    ODConv has no fused form (its kernels depend on the input), so ``deploy`` builds the
    same model.

    Args:
        num_classes: Classes of the head.
        deploy: Accepted for a uniform ``create_model`` interface; changes nothing.
        kernel_num: Kernels each ODConv mixes per sample (upstream's ``kernel_num``).
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        dropout: Dropout before the classifier.

    Returns:
        The model.
    """
    return _build("od_resnet50", num_classes, deploy, kernel_num, reduction, dropout)


@register_model
def od_resnet101(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1, reduction: float = 0.0625,
                 dropout: float = 0.1) -> ODResNet:
    """Build ODConv ResNet-101 (upstream ``od_resnet101``).

    50.82M parameters at kernel_num 1, 90.44M at 2.

    ODConv has no fused form (its kernels depend on the input), so ``deploy`` builds the
    same model.

    Args:
        num_classes: Classes of the head.
        deploy: Accepted for a uniform ``create_model`` interface; changes nothing.
        kernel_num: Kernels each ODConv mixes per sample (upstream's ``kernel_num``).
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        dropout: Dropout before the classifier.

    Returns:
        The model.
    """
    return _build("od_resnet101", num_classes, deploy, kernel_num, reduction, dropout)
