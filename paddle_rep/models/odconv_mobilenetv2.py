"""ODConv MobileNetV2 for Paddle.

Li, Zhou and Yao, ICLR 2022, arXiv:2209.07947; upstream https://github.com/OSVAI/ODConv
``models/od_mobilenetv2.py`` (MIT). Same structure, initialisation and attribute names as
upstream and ``torch_ref.models.odconv_mobilenetv2`` (``features.N.conv...``,
``classifier.1``): the stem is a plain conv, every other conv is ODConv.
"""

import paddle
from paddle import nn

from ..bn import BatchNorm2D
from ..core.schedules import set_temperature
from ..odconv import ODConv2D
from ..pooling import global_avg_pool
from ._registry import register_model
from ._specs import INVERTED_RESIDUAL_SETTING, OD_MOBILENETV2_WIDTHS, make_divisible
from .odconv_resnet import init_like_upstream


class ConvBNReLU(nn.Sequential):
    """Plain conv, BN, ReLU6 (upstream ``ConvBNReLU``); the network's stem.

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        kernel_size: Square kernel size (padding keeps the size at stride 1).
        stride: Stride.
        groups: Groups.
    """
    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2D(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias_attr=False),
            BatchNorm2D(out_planes),
            nn.ReLU6(),
        )


class ODConvBNReLU(nn.Sequential):
    """ODConv, BN, ReLU6 (upstream ``ODConvBNReLU``).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        kernel_size: Square kernel size (padding keeps the size at stride 1).
        stride: Stride.
        groups: Groups.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.
    """
    def __init__(self, in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 reduction: float = 0.0625, kernel_num: int = 1) -> None:
        padding = (kernel_size - 1) // 2
        super().__init__(
            ODConv2D(in_planes, out_planes, kernel_size, stride, padding, groups=groups, reduction=reduction,
                     kernel_num=kernel_num),
            BatchNorm2D(out_planes),
            nn.ReLU6(),
        )


class InvertedResidual(nn.Layer):
    """MobileNetV2 inverted residual with ODConvs (upstream ``InvertedResidual``).

    1x1 expansion, 3x3 depthwise, 1x1 projection.

    The input is added back when the stride is 1 and the widths match.

    Args:
        inp: Input channels.
        oup: Output channels.
        stride: The depthwise conv's stride.
        expand_ratio: Width of the inside relative to ``inp`` (1: no expansion conv).
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.
    """
    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int, reduction: float = 0.0625,
                 kernel_num: int = 1) -> None:
        super().__init__()
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Layer] = []
        if expand_ratio != 1:
            layers.append(ODConvBNReLU(inp, hidden_dim, kernel_size=1, reduction=reduction, kernel_num=kernel_num))
        layers += [
            ODConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, reduction=reduction,
                         kernel_num=kernel_num),
            ODConv2D(hidden_dim, oup, 1, 1, 0, reduction=reduction, kernel_num=kernel_num),
            BatchNorm2D(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the block.

        Args:
            x: The input feature map, ``[B, C, H, W]``.

        Returns:
            The output feature map.
        """
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class ODMobileNetV2(nn.Layer):
    """Upstream ``OD_MobileNetV2`` (BatchNorm, the default inverted-residual table).

    Args:
        num_classes: Classes of the classifier.
        width_mult: Multiplier of every width.
        round_nearest: Widths are rounded to a multiple of this.
        dropout: Dropout before the classifier.
        reduction: Attention width of each ODConv = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Kernels each ODConv mixes per sample.
    """

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, round_nearest: int = 8,
                 dropout: float = 0.2, reduction: float = 0.0625, kernel_num: int = 1) -> None:
        super().__init__()
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Layer] = [ConvBNReLU(3, input_channel, stride=2)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channel, output_channel, s if i == 0 else 1, expand_ratio=t,
                                                 reduction=reduction, kernel_num=kernel_num))
                input_channel = output_channel
        features.append(ODConvBNReLU(input_channel, self.last_channel, kernel_size=1, reduction=reduction,
                                     kernel_num=kernel_num))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.last_channel, num_classes))
        init_like_upstream(self)

    def net_update_temperature(self, temperature: float) -> None:
        """Set the attention temperature of every ODConv (annealed 30 -> 1 in upstream training).

        Args:
            temperature: The new temperature (1.0 for evaluation).
        """
        set_temperature(self, temperature)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        x = self.features(x)
        x = paddle.flatten(global_avg_pool(x), start_axis=1)
        return self.classifier(x)


def _build(name: str, num_classes: int, deploy: bool, kernel_num: int, reduction: float,
           dropout: float) -> ODMobileNetV2:
    del deploy  # ODConv has no static fused form; see odconv_resnet._build
    return ODMobileNetV2(num_classes=num_classes, width_mult=OD_MOBILENETV2_WIDTHS[name], dropout=dropout,
                         reduction=reduction, kernel_num=kernel_num)


@register_model
def od_mobilenetv2_050(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1,
                       reduction: float = 0.0625, dropout: float = 0.2) -> ODMobileNetV2:
    """Build ODConv MobileNetV2 0.5x (upstream ``od_mobilenetv2_050``).

    2.43M parameters at kernel_num 1, 4.44M at 4.

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
    return _build("od_mobilenetv2_050", num_classes, deploy, kernel_num, reduction, dropout)


@register_model
def od_mobilenetv2_075(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1,
                       reduction: float = 0.0625, dropout: float = 0.2) -> ODMobileNetV2:
    """Build ODConv MobileNetV2 0.75x (upstream ``od_mobilenetv2_075``).

    3.51M parameters at kernel_num 1, 7.50M at 4.

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
    return _build("od_mobilenetv2_075", num_classes, deploy, kernel_num, reduction, dropout)


@register_model
def od_mobilenetv2_100(num_classes: int = 1000, deploy: bool = False, kernel_num: int = 1,
                       reduction: float = 0.0625, dropout: float = 0.2) -> ODMobileNetV2:
    """Build ODConv MobileNetV2 1.0x (upstream ``od_mobilenetv2_100``).

    4.94M parameters at kernel_num 1, 11.51M at 4.

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
    return _build("od_mobilenetv2_100", num_classes, deploy, kernel_num, reduction, dropout)
