"""RepVGG networks, PyTorch reference (twin of ``paddle_rep/models/repvgg.py``).

Ding et al., CVPR 2021, arXiv:2101.03697; upstream https://github.com/DingXiaoH/RepVGG
``repvgg.py`` (``RepVGG``, ``create_RepVGG_*``; MIT). Same structure and state-dict keys
(``stage0.rbr_dense.conv.weight``, ``stage1.0...``, ``linear.weight``), so the released
checkpoints load with ``strict=True``. ``use_checkpoint`` wraps each stage block in
``torch.utils.checkpoint`` while training, as upstream.
"""

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..repvgg import RepVGGBlock
from ._registry import register_model

# Upstream's builder arguments, stated here independently of paddle_rep's tables so that the
# structure test compares two statements. Layer indices count blocks from stage0 = 0.
optional_groupwise_layers = [2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26]
g2_map = {layer: 2 for layer in optional_groupwise_layers}
g4_map = {layer: 4 for layer in optional_groupwise_layers}

_A_BLOCKS, _B_BLOCKS, _D_BLOCKS = [2, 4, 14, 1], [4, 6, 16, 1], [8, 14, 24, 1]
REPVGG_ARCHS: dict[str, dict] = {
    "repvgg_a0": dict(num_blocks=_A_BLOCKS, width_multiplier=[0.75, 0.75, 0.75, 2.5]),
    "repvgg_a1": dict(num_blocks=_A_BLOCKS, width_multiplier=[1, 1, 1, 2.5]),
    "repvgg_a2": dict(num_blocks=_A_BLOCKS, width_multiplier=[1.5, 1.5, 1.5, 2.75]),
    "repvgg_b0": dict(num_blocks=_B_BLOCKS, width_multiplier=[1, 1, 1, 2.5]),
    "repvgg_b1": dict(num_blocks=_B_BLOCKS, width_multiplier=[2, 2, 2, 4]),
    "repvgg_b1g2": dict(num_blocks=_B_BLOCKS, width_multiplier=[2, 2, 2, 4], override_groups_map=g2_map),
    "repvgg_b1g4": dict(num_blocks=_B_BLOCKS, width_multiplier=[2, 2, 2, 4], override_groups_map=g4_map),
    "repvgg_b2": dict(num_blocks=_B_BLOCKS, width_multiplier=[2.5, 2.5, 2.5, 5]),
    "repvgg_b2g2": dict(num_blocks=_B_BLOCKS, width_multiplier=[2.5, 2.5, 2.5, 5], override_groups_map=g2_map),
    "repvgg_b2g4": dict(num_blocks=_B_BLOCKS, width_multiplier=[2.5, 2.5, 2.5, 5], override_groups_map=g4_map),
    "repvgg_b3": dict(num_blocks=_B_BLOCKS, width_multiplier=[3, 3, 3, 5]),
    "repvgg_b3g2": dict(num_blocks=_B_BLOCKS, width_multiplier=[3, 3, 3, 5], override_groups_map=g2_map),
    "repvgg_b3g4": dict(num_blocks=_B_BLOCKS, width_multiplier=[3, 3, 3, 5], override_groups_map=g4_map),
    "repvgg_d2se": dict(num_blocks=_D_BLOCKS, width_multiplier=[2.5, 2.5, 2.5, 5], use_se=True),
}


def run_block(block: nn.Module, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    """Run ``block(x)``, through ``torch.utils.checkpoint`` (as upstream) when asked and training.

    Non-reentrant, as torch recommends. Unlike upstream, the recomputation in the backward pass
    leaves the BN running statistics (and ``num_batches_tracked``) as the first forward set
    them, instead of updating them a second time. Eval and no-grad calls run plainly.

    Args:
        block: The block.
        x: Its input.
        use_checkpoint: Whether to recompute the block in the backward pass.

    Returns:
        ``block(x)``.
    """
    if use_checkpoint and block.training and torch.is_grad_enabled():
        return checkpoint(_RecomputeKeepingBNStats(block), x, use_reentrant=False)
    return block(x)


class _RecomputeKeepingBNStats:
    """Calls ``block``; on every later call (the backward-pass recomputation) restores the BN buffers."""

    def __init__(self, block: nn.Module) -> None:
        self.block = block
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.block(x)
        buffers = [b for m in self.block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                   for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
        saved = [b.clone() for b in buffers]
        try:  # torch stops a non-reentrant recomputation early by raising inside the block
            return self.block(x)
        finally:
            with torch.no_grad():
                for buffer, value in zip(buffers, saved, strict=True):
                    buffer.copy_(value)


class RepVGG(nn.Module):
    """stage0 (one stride-2 block) + four stages of RepVGG blocks + global pool + linear head.

    Args:
        num_blocks: Blocks in stages 1 to 4.
        num_classes: Classes of the linear head.
        width_multiplier: Four multipliers of the stage widths 64, 128, 256, 512 (stage0 is
            ``min(64, 64 * width_multiplier[0])`` wide).
        override_groups_map: Block index (stage0 = 0, counted across stages) -> groups; upstream's
            ``g2_map`` / ``g4_map``.
        deploy: Build every block in its fused form.
        use_se: Squeeze-and-excitation in every block (D2se).
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing).
        block_cls: The block (upstream QARepVGG's ``RepVGG`` argument): ``RepVGGBlock`` or ``QARepVGGBlockV2``.

    Raises:
        ValueError: ``width_multiplier`` or ``num_blocks`` does not have 4 values, or
            ``override_groups_map`` groups layer 0.
    """

    def __init__(self, num_blocks: list[int], num_classes: int = 1000, width_multiplier: list[float] | None = None,
                 override_groups_map: dict[int, int] | None = None, deploy: bool = False,
                 use_se: bool = False, use_checkpoint: bool = False, block_cls: type[nn.Module] = RepVGGBlock) -> None:
        super().__init__()
        if width_multiplier is None or len(width_multiplier) != 4:
            raise ValueError(f"width_multiplier needs 4 values, got {width_multiplier!r}")
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks needs 4 values, got {num_blocks!r}")
        self.deploy = deploy
        self.override_groups_map = dict(override_groups_map or {})
        if 0 in self.override_groups_map:
            raise ValueError("override_groups_map cannot group layer 0 (stage0 sees the 3 input channels)")
        self.use_se = use_se
        self.use_checkpoint = use_checkpoint
        self.block_cls = block_cls  # QARepVGG's builders pass QARepVGGBlockV2, as upstream's block_cls
        self.in_planes = min(64, int(64 * width_multiplier[0]))
        self.stage0 = block_cls(3, self.in_planes, kernel_size=3, stride=2, padding=1, deploy=deploy, use_se=use_se)
        self.cur_layer_idx = 1
        widths = (64, 128, 256, 512)
        self.stage1, self.stage2, self.stage3, self.stage4 = (
            self._make_stage(int(w * m), n) for w, m, n in zip(widths, width_multiplier, num_blocks, strict=True)
        )
        self.gap = nn.AdaptiveAvgPool2d(output_size=1)
        self.linear = nn.Linear(int(512 * width_multiplier[3]), num_classes)

    def _make_stage(self, planes: int, num_blocks: int) -> nn.ModuleList:
        blocks = []
        for i in range(num_blocks):
            groups = self.override_groups_map.get(self.cur_layer_idx, 1)
            blocks.append(self.block_cls(self.in_planes, planes, kernel_size=3, stride=2 if i == 0 else 1, padding=1,
                                         groups=groups, deploy=self.deploy, use_se=self.use_se))
            self.in_planes = planes
            self.cur_layer_idx += 1
        return nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        out = self.stage0(x)
        for stage in (self.stage1, self.stage2, self.stage3, self.stage4):
            for block in stage:
                out = run_block(block, out, self.use_checkpoint)
        out = self.gap(out).flatten(1)
        return self.linear(out)


def _build(name: str, num_classes: int, deploy: bool, use_checkpoint: bool) -> RepVGG:
    return RepVGG(**REPVGG_ARCHS[name], num_classes=num_classes, deploy=deploy, use_checkpoint=use_checkpoint)


@register_model
def repvgg_a0(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-A0 (upstream ``create_RepVGG_A0``): 9.11M params training-time, 8.31M deployed.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_a0", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_a1(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-A1 (upstream ``create_RepVGG_A1``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_a1", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_a2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-A2 (upstream ``create_RepVGG_A2``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_a2", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b0(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B0 (upstream ``create_RepVGG_B0``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b0", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b1(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B1 (upstream ``create_RepVGG_B1``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b1", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b1g2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B1g2 (upstream ``create_RepVGG_B1g2``): groups 2 on the odd blocks of stages 1-3.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b1g2", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b1g4(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B1g4 (upstream ``create_RepVGG_B1g4``): groups 4 on the odd blocks of stages 1-3.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b1g4", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B2 (upstream ``create_RepVGG_B2``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b2", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b2g2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B2g2 (upstream ``create_RepVGG_B2g2``): groups 2 on the odd blocks of stages 1-3.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b2g2", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b2g4(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B2g4 (upstream ``create_RepVGG_B2g4``): groups 4 on the odd blocks of stages 1-3.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b2g4", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b3(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B3 (upstream ``create_RepVGG_B3``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b3", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b3g2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B3g2 (upstream ``create_RepVGG_B3g2``): groups 2 on the odd blocks of stages 1-3.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b3g2", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_b3g4(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-B3g4 (upstream ``create_RepVGG_B3g4``): groups 4 on the odd blocks of stages 1-3.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_b3g4", num_classes, deploy, use_checkpoint)


@register_model
def repvgg_d2se(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build RepVGG-D2se (upstream ``create_RepVGG_D2se``): deeper stages, SE in every block.

    The SE (out/16, before the ReLU) is in stage0 too.

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    return _build("repvgg_d2se", num_classes, deploy, use_checkpoint)
