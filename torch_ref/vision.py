"""A torch twin of ``paddle.vision.models.resnet18`` (torchvision is not a dependency).

Same layer names and order as Paddle's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``,
``layer2.0.downsample.0``, ``fc``), so state dicts map key for key through
``paddle_rep.core.interop``. Initialisation is torch's default; weights are meant to be copied.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN pairs with a residual; ``downsample`` projects it when the shape changes.

    Args:
        inplanes: Input channels.
        planes: Output channels.
        stride: The first conv's stride.
        downsample: The projection of the residual, or None for the identity.
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: The input, ``[B, inplanes, H, W]``.

        Returns:
            The output, ``[B, planes, H/stride, W/stride]``.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with BasicBlocks, laid out as ``paddle.vision.models.ResNet`` (``with_pool=True``).

    Args:
        layers: Blocks per stage.
        num_classes: Classes of the ``fc`` head; 0 or less: no head (the pooled features are returned).
    """

    def __init__(self, layers: tuple[int, int, int, int] = (2, 2, 2, 2), num_classes: int = 1000) -> None:
        super().__init__()
        self.inplanes = 64
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        if num_classes > 0:
            self.fc = nn.Linear(512, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the network.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits ``[B, num_classes]``, or pooled features ``[B, 512, 1, 1]`` without a head.
        """
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        if self.num_classes > 0:
            x = self.fc(torch.flatten(x, 1))
        return x


def resnet18(num_classes: int = 1000) -> ResNet:
    """Build ResNet-18 with the layer names of ``paddle.vision.models.resnet18``.

    Args:
        num_classes: Classes of the head.

    Returns:
        The model.
    """
    return ResNet((2, 2, 2, 2), num_classes=num_classes)
