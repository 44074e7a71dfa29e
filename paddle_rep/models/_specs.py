"""Architecture tables of the model zoo, shared by both frameworks (pure Python).

Numbers follow the official builders: RepVGG ``repvgg.py`` (``create_RepVGG_*``, ``g2_map``,
``g4_map``), ODConv ``models/od_resnet.py`` and ``models/od_mobilenetv2.py``, ACNet
``base_model/{resnet,stagewise_resnet,vgg,cfqk}.py`` and ``constants.py``.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class RepVGGSpec:
    """The architecture of one RepVGG or RepVGGplus variant (upstream's builder arguments).

    Attributes:
        num_blocks: Blocks in stages 1 to 4.
        width_multiplier: Width multipliers of stages 1 to 4.
        groups: Groups of the layers in :data:`GROUPWISE_LAYERS` (upstream ``g2_map`` / ``g4_map``).
        use_se: Squeeze-and-excitation in every block.
    """
    num_blocks: tuple[int, int, int, int]
    width_multiplier: tuple[float, float, float, float]
    groups: int = 1  # applied to the layers in GROUPWISE_LAYERS (upstream g2_map / g4_map)
    use_se: bool = False


# Layer indices count blocks across stages, stage0 = 0 (upstream ``optional_groupwise_layers``).
GROUPWISE_LAYERS = tuple(range(2, 27, 2))


def groups_map(groups: int) -> dict[int, int]:
    """Build upstream's ``g2_map`` / ``g4_map``: ``groups`` on every layer of :data:`GROUPWISE_LAYERS`.

    Args:
        groups: The groups of those layers.

    Returns:
        Layer index -> groups; empty for ``groups=1``.
    """
    return {} if groups == 1 else {layer: groups for layer in GROUPWISE_LAYERS}


_A, _B, _D = (2, 4, 14, 1), (4, 6, 16, 1), (8, 14, 24, 1)
REPVGG_SPECS: dict[str, RepVGGSpec] = {
    "repvgg_a0": RepVGGSpec(_A, (0.75, 0.75, 0.75, 2.5)),
    "repvgg_a1": RepVGGSpec(_A, (1, 1, 1, 2.5)),
    "repvgg_a2": RepVGGSpec(_A, (1.5, 1.5, 1.5, 2.75)),
    "repvgg_b0": RepVGGSpec(_B, (1, 1, 1, 2.5)),
    "repvgg_b1": RepVGGSpec(_B, (2, 2, 2, 4)),
    "repvgg_b1g2": RepVGGSpec(_B, (2, 2, 2, 4), groups=2),
    "repvgg_b1g4": RepVGGSpec(_B, (2, 2, 2, 4), groups=4),
    "repvgg_b2": RepVGGSpec(_B, (2.5, 2.5, 2.5, 5)),
    "repvgg_b2g2": RepVGGSpec(_B, (2.5, 2.5, 2.5, 5), groups=2),
    "repvgg_b2g4": RepVGGSpec(_B, (2.5, 2.5, 2.5, 5), groups=4),
    "repvgg_b3": RepVGGSpec(_B, (3, 3, 3, 5)),
    "repvgg_b3g2": RepVGGSpec(_B, (3, 3, 3, 5), groups=2),
    "repvgg_b3g4": RepVGGSpec(_B, (3, 3, 3, 5), groups=4),
    "repvgg_d2se": RepVGGSpec(_D, (2.5, 2.5, 2.5, 5), use_se=True),
}

# RepVGGplus (upstream ``repvggplus.py``): post-SE in every block; stage 3 split in two halves.
REPVGGPLUS_SPECS: dict[str, RepVGGSpec] = {
    "repvggplus_l2pse": RepVGGSpec(_D, (2.5, 2.5, 2.5, 5), use_se=True),
}

# ODConv ResNets: (block type, blocks per stage).
OD_RESNET_SPECS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "od_resnet18": ("basic", (2, 2, 2, 2)),
    "od_resnet34": ("basic", (3, 4, 6, 3)),
    "od_resnet50": ("bottleneck", (3, 4, 6, 3)),
    "od_resnet101": ("bottleneck", (3, 4, 23, 3)),
}

OD_MOBILENETV2_WIDTHS = {"od_mobilenetv2_050": 0.5, "od_mobilenetv2_075": 0.75, "od_mobilenetv2_100": 1.0}

# MobileNetV2 inverted residual stages: expansion t, channels c, repeats n, first stride s.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor``, never more than 10% below ``value`` (MobileNet rule).

    Args:
        value: The unrounded channel count.
        divisor: The multiple to round to.
        min_value: The smallest result; None: ``divisor``.

    Returns:
        The rounded channel count.
    """
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


# ACNet networks (upstream ``constants.py`` and ``base_model``).
ACNET_RESNET_BLOCKS = {"acnet_resnet18": (2, 2, 2, 2), "acnet_resnet34": (3, 4, 6, 3)}
ACNET_CIFAR_RESNET_BLOCKS = {"acnet_resnet56": 9, "acnet_resnet110": 18}  # blocks per stage: depth = 6n + 2
CIFAR_RESNET_WIDTHS = (16, 32, 64)
CIFAR_QUICK_DEPS = (32, 32, 64)
CIFAR_QUICK_HIDDEN = 64
VGG_DEPS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
VGG_POOL_AFTER = (2, 4, 7, 10, 13)  # 1-based conv indices followed by a 2x2 max pool
VGG_HIDDEN = 512
# ResNet-50 (upstream ``SBottleneckResNet``): blocks per stage and (bottleneck width, stage output) per stage.
ACNET_RESNET50_BLOCKS = (3, 4, 6, 3)
ACNET_BOTTLENECK_WIDTHS = ((64, 256), (128, 512), (256, 1024), (512, 2048))
# WRN-16-8 (upstream ``WRNCifarNet``): stem width, then one width per stage of two blocks.
WRN16_8_STEM = 16
WRN16_8_WIDTHS = (128, 256, 512)
WRN16_8_BLOCKS = 2
# MobileNetV1 (upstream ``MI1_ORIGIN_DEPS``): stem, then (depthwise, pointwise) channels of 13 blocks.
MOBILENETV1_DEPS = (32, 32, 64, 64, 128, 128, 128, 128, 256, 256, 256, 256, 512,
                    512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 512, 1024, 1024, 1024)
MOBILENETV1_STRIDE2_BLOCKS = (1, 3, 5, 11)


def uses_acb(kernel_size: int) -> bool:
    """Decide whether a conv becomes an ACBlock, as upstream's ``ACNetBuilder`` does.

    Args:
        kernel_size: The conv's square kernel size.

    Returns:
        True for 3x3 and 5x5; 1x1 and 7x7 or larger stay plain convs.
    """
    return 1 < kernel_size < 7
