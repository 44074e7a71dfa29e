"""MobileOne networks, PyTorch reference (twin of ``paddle_rep/models/mobileone.py``).

Vasu et al., arXiv:2206.04040; upstream https://github.com/apple/ml-mobileone ``mobileone.py``
(``MobileOne``, ``mobileone(variant="s0".."s4")``, its ``PARAMS`` table). Same module tree and
state-dict keys (``stage0.rbr_conv.0.conv.weight``, ``stage1.0.rbr_skip.running_mean``,
``stage3.11.se.reduce.weight``, ``linear.weight``), so Apple's checkpoints load with ``strict=True``.
"""

from collections.abc import Sequence

import torch
from torch import nn

from ..mobileone import MobileOneBlock
from ._registry import register_model

# Upstream's PARAMS (twin of paddle_rep.models._specs.MOBILEONE_VARIANTS; test_mobileone checks they agree):
# width multipliers of stages 1-4, conv branches per block, SE in s4 only.
MOBILEONE_VARIANTS: dict[str, dict] = {
    "s0": {"width_multipliers": (0.75, 1.0, 1.0, 2.0), "num_conv_branches": 4},
    "s1": {"width_multipliers": (1.5, 1.5, 2.0, 2.5)},
    "s2": {"width_multipliers": (1.5, 2.0, 2.5, 4.0)},
    "s3": {"width_multipliers": (2.0, 2.5, 3.0, 4.0)},
    "s4": {"width_multipliers": (3.0, 3.5, 3.5, 4.0), "use_se": True},
}


class MobileOne(nn.Module):
    """stage0 (one stride-2 3x3 block) + four stages of depthwise-3x3 / pointwise-1x1 block pairs + pool + linear.

    Args:
        num_blocks_per_stage: Block pairs in each of the four stages (the first of each has stride 2).
        num_classes: Outputs of the linear head.
        width_multipliers: Four width factors on 64, 128, 256, 512 channels.
        inference_mode: Build every block fused (upstream's name; same as ``deploy``).
        use_se: SE on the last half of stage 3's pairs and on all of stage 4's (upstream's s4 layout).
        num_conv_branches: kxk conv branches of every block after stage0 (stage0 has one, as upstream).
        deploy: Build every block fused (this project's name; same as ``inference_mode``).

    Raises:
        ValueError: ``width_multipliers`` or ``num_blocks_per_stage`` does not hold four values.
    """

    def __init__(self, num_blocks_per_stage: Sequence[int] = (2, 8, 10, 1), num_classes: int = 1000,
                 width_multipliers: Sequence[float] | None = None, inference_mode: bool = False,
                 use_se: bool = False, num_conv_branches: int = 1, deploy: bool = False) -> None:
        super().__init__()
        if width_multipliers is None or len(width_multipliers) != 4:
            raise ValueError(f"width_multipliers needs 4 values, got {width_multipliers!r}")
        if len(num_blocks_per_stage) != 4:
            raise ValueError(f"num_blocks_per_stage needs 4 values, got {num_blocks_per_stage!r}")
        self.inference_mode = bool(inference_mode or deploy)
        self.use_se, self.num_conv_branches = use_se, num_conv_branches
        self.in_planes = min(64, int(64 * width_multipliers[0]))
        self.stage0 = MobileOneBlock(3, self.in_planes, 3, stride=2, padding=1, inference_mode=self.inference_mode)
        blocks = num_blocks_per_stage
        se_blocks = (0, 0, blocks[2] // 2 if use_se else 0, blocks[3] if use_se else 0)
        self.stage1, self.stage2, self.stage3, self.stage4 = (
            self._make_stage(int(width * factor), count, se)
            for width, factor, count, se in zip((64, 128, 256, 512), width_multipliers, blocks, se_blocks,
                                                strict=True))
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(int(512 * width_multipliers[3]), num_classes)

    def _make_stage(self, planes: int, num_blocks: int, num_se_blocks: int) -> nn.Sequential:
        """A depthwise 3x3 block then a pointwise 1x1 block per step; SE on the last ``num_se_blocks`` steps."""
        blocks = []
        for index in range(num_blocks):
            use_se = index >= num_blocks - num_se_blocks
            common = {"inference_mode": self.inference_mode, "use_se": use_se,
                      "num_conv_branches": self.num_conv_branches}
            blocks.append(MobileOneBlock(self.in_planes, self.in_planes, 3, stride=2 if index == 0 else 1, padding=1,
                                         groups=self.in_planes, **common))
            blocks.append(MobileOneBlock(self.in_planes, planes, 1, **common))
            self.in_planes = planes
        return nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        for stage in (self.stage0, self.stage1, self.stage2, self.stage3, self.stage4):
            x = stage(x)
        return self.linear(torch.flatten(self.gap(x), 1))


def mobileone(num_classes: int = 1000, inference_mode: bool = False, variant: str = "s0") -> MobileOne:
    """Build a MobileOne variant (upstream's ``mobileone``).

    Args:
        num_classes: Outputs of the linear head.
        inference_mode: Build the fused form.
        variant: ``"s0"`` ... ``"s4"``.

    Returns:
        The model.

    Raises:
        ValueError: ``variant`` is not one of s0-s4.
    """
    if variant not in MOBILEONE_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(MOBILEONE_VARIANTS)}, got {variant!r}")
    return MobileOne(num_classes=num_classes, inference_mode=inference_mode, **MOBILEONE_VARIANTS[variant])


@register_model
def mobileone_s0(num_classes: int = 1000, deploy: bool = False) -> MobileOne:
    """MobileOne-S0 (upstream ``mobileone(variant="s0")``: four conv branches per block).

    Args:
        num_classes: Outputs of the linear head.
        deploy: Build the fused form.

    Returns:
        The model.
    """
    return mobileone(num_classes, deploy, "s0")


@register_model
def mobileone_s1(num_classes: int = 1000, deploy: bool = False) -> MobileOne:
    """MobileOne-S1 (upstream ``mobileone(variant="s1")``).

    Args:
        num_classes: Outputs of the linear head.
        deploy: Build the fused form.

    Returns:
        The model.
    """
    return mobileone(num_classes, deploy, "s1")


@register_model
def mobileone_s2(num_classes: int = 1000, deploy: bool = False) -> MobileOne:
    """MobileOne-S2 (upstream ``mobileone(variant="s2")``).

    Args:
        num_classes: Outputs of the linear head.
        deploy: Build the fused form.

    Returns:
        The model.
    """
    return mobileone(num_classes, deploy, "s2")


@register_model
def mobileone_s3(num_classes: int = 1000, deploy: bool = False) -> MobileOne:
    """MobileOne-S3 (upstream ``mobileone(variant="s3")``).

    Args:
        num_classes: Outputs of the linear head.
        deploy: Build the fused form.

    Returns:
        The model.
    """
    return mobileone(num_classes, deploy, "s3")


@register_model
def mobileone_s4(num_classes: int = 1000, deploy: bool = False) -> MobileOne:
    """MobileOne-S4 (upstream ``mobileone(variant="s4")``: SE in stages 3 and 4).

    Args:
        num_classes: Outputs of the linear head.
        deploy: Build the fused form.

    Returns:
        The model.
    """
    return mobileone(num_classes, deploy, "s4")
