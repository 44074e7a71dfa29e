"""RepVGG networks for Paddle.

Ding et al., CVPR 2021, arXiv:2101.03697; upstream https://github.com/DingXiaoH/RepVGG
``repvgg.py`` (``RepVGG``, ``create_RepVGG_*``; MIT). Same structure and attribute names as
upstream and ``torch_ref.models.repvgg``, so torch state dicts map key for key through
:mod:`paddle_rep.core.interop` (``stage0.rbr_dense.conv.weight``, ``stage1.0...``, ``linear.weight``).
"""

import paddle
from paddle import nn
from paddle.nn.layer.norm import _BatchNormBase

from ..pooling import GlobalAvgPool2D
from ..repvgg import RepVGGBlock
from ._registry import register_model
from ._specs import REPVGG_SPECS, groups_map


def run_block(block: nn.Layer, x: paddle.Tensor, use_checkpoint: bool) -> paddle.Tensor:
    """Run ``block(x)``, recomputed in the backward pass (gradient checkpointing) when asked and training.

    Upstream ``use_checkpoint`` (``torch.utils.checkpoint`` per block); here Paddle's
    ``recompute`` (non-reentrant, so parameters get gradients whatever the input). The
    recomputation leaves the BN running statistics as the first forward set them (upstream's
    updates them twice per step). Eval and no-grad calls run plainly, so export and inference
    never trace the recompute wrapper.

    Args:
        block: The block.
        x: Its input.
        use_checkpoint: Whether to recompute the block in the backward pass.

    Returns:
        ``block(x)``.
    """
    if use_checkpoint and block.training and paddle.is_grad_enabled():
        from paddle.distributed.fleet.utils import recompute

        # The blocks draw no random numbers; preserving the RNG state also fails on CPU in Paddle 2.6.
        return recompute(_RecomputeKeepingBNStats(block), x, use_reentrant=False, preserve_rng_state=False)
    return block(x)


class _RecomputeKeepingBNStats:
    """Calls ``block``; on every later call (the backward-pass recomputation) restores the BN statistics."""

    def __init__(self, block: nn.Layer) -> None:
        self.block = block
        self.calls = 0

    def __call__(self, x: paddle.Tensor) -> paddle.Tensor:
        self.calls += 1
        if self.calls == 1:
            return self.block(x)
        stats = [t for m in self.block.sublayers(include_self=True) if isinstance(m, _BatchNormBase)
                 for t in (m._mean, m._variance)]
        with paddle.no_grad():
            saved = [t.clone() for t in stats]  # on the tensors' own device
        try:
            return self.block(x)
        finally:
            with paddle.no_grad():
                for tensor, value in zip(stats, saved, strict=True):
                    tensor.set_value(value)


class RepVGG(nn.Layer):
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
                 use_se: bool = False, use_checkpoint: bool = False, block_cls: type[nn.Layer] = RepVGGBlock) -> None:
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
        self.gap = GlobalAvgPool2D()
        self.linear = nn.Linear(int(512 * width_multiplier[3]), num_classes)

    def _make_stage(self, planes: int, num_blocks: int) -> nn.LayerList:
        blocks = []
        for i in range(num_blocks):
            groups = self.override_groups_map.get(self.cur_layer_idx, 1)
            blocks.append(self.block_cls(self.in_planes, planes, kernel_size=3, stride=2 if i == 0 else 1, padding=1,
                                         groups=groups, deploy=self.deploy, use_se=self.use_se))
            self.in_planes = planes
            self.cur_layer_idx += 1
        return nn.LayerList(blocks)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
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
        out = paddle.flatten(self.gap(out), start_axis=1)
        return self.linear(out)


def _build(name: str, num_classes: int, deploy: bool, use_checkpoint: bool) -> RepVGG:
    spec = REPVGG_SPECS[name]
    return RepVGG(list(spec.num_blocks), num_classes=num_classes, width_multiplier=list(spec.width_multiplier),
                  override_groups_map=groups_map(spec.groups), deploy=deploy, use_se=spec.use_se,
                  use_checkpoint=use_checkpoint)


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
