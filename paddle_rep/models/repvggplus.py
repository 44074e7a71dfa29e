"""RepVGGplus for Paddle (RepVGGplus-L2pse, the top model of the official RepVGG README).

Upstream https://github.com/DingXiaoH/RepVGG ``repvggplus.py`` (MIT). Same structure and
state-dict keys as upstream and ``torch_ref.models.repvggplus``: blocks in
``stageN.blocks.i``, stage 3 split into ``stage3_first`` / ``stage3_second`` so that an
auxiliary classifier can follow each of ``stage1``, ``stage2`` and ``stage3_first``.

Outputs: in training mode (with the aux heads present) a dict ``{'main', 'stage1_aux',
'stage2_aux', 'stage3_first_aux'}`` as upstream, for :func:`paddle_rep.losses.classification_loss`;
in eval mode, and whenever the model is fused or built with ``deploy=True``, the main logits
only (upstream returns the dict in eval too, and its deploy forward fails on the missing aux heads).
"""

import paddle
from paddle import nn

from ..bn import BatchNorm2D
from ..pooling import GlobalAvgPool2D
from ..repvgg import RepVGGplusBlock
from ._registry import register_model
from ._specs import REPVGGPLUS_SPECS
from .repvgg import run_block

AUX_HEADS = ("stage1_aux", "stage2_aux", "stage3_first_aux")


class RepVGGplusStage(nn.Layer):
    """``num_blocks`` RepVGGplus blocks in ``blocks``, the first one with ``stride``.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        num_blocks: Blocks.
        stride: The first block's stride.
        use_checkpoint: Recompute each block in the backward pass (gradient checkpointing).
        use_post_se: Squeeze-and-excitation after each block's ReLU.
        deploy: Build every block in its fused form.
    """

    def __init__(self, in_planes: int, planes: int, num_blocks: int, stride: int, use_checkpoint: bool,
                 use_post_se: bool = False, deploy: bool = False) -> None:
        super().__init__()
        self.in_planes = in_planes
        blocks = []
        for i in range(num_blocks):
            blocks.append(RepVGGplusBlock(self.in_planes, planes, kernel_size=3, stride=stride if i == 0 else 1,
                                          padding=1, deploy=deploy, use_post_se=use_post_se))
            self.in_planes = planes
        self.blocks = nn.LayerList(blocks)
        self.use_checkpoint = use_checkpoint

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the blocks in order.

        Args:
            x: The input feature map, ``[B, in_planes, H, W]``.

        Returns:
            The output feature map.
        """
        for block in self.blocks:
            x = run_block(block, x, self.use_checkpoint)
        return x


def _aux_head(channels: int, num_classes: int) -> nn.Sequential:
    """Upstream's aux classifier: conv-BN-ReLU (3x3, stride 2), global pool, flatten, linear."""
    downsample = nn.Sequential(
        ("conv", nn.Conv2D(channels, channels, 3, stride=2, padding=1, bias_attr=False)),
        ("bn", BatchNorm2D(channels)),
        ("relu", nn.ReLU()),
    )
    return nn.Sequential(downsample, GlobalAvgPool2D(), nn.Flatten(), nn.Linear(channels, num_classes))


class RepVGGplus(nn.Layer):
    """stage0, stage1, stage2, stage3_first, stage3_second, stage4, pool, linear; aux heads while training.

    Args:
        num_blocks: Blocks in stages 1 to 4 (stage 3 is split in two halves, so at least 2 there).
        num_classes: Classes of the main and the auxiliary heads.
        width_multiplier: Four multipliers of the stage widths 64, 128, 256, 512.
        deploy: Build every block fused and leave the aux heads out.
        use_post_se: Squeeze-and-excitation after every block's ReLU (L2pse).
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing).

    Raises:
        ValueError: ``width_multiplier`` or ``num_blocks`` does not have 4 values, or ``num_blocks[2] < 2``.
    """

    def __init__(self, num_blocks: list[int], num_classes: int, width_multiplier: list[float],
                 deploy: bool = False, use_post_se: bool = False, use_checkpoint: bool = False) -> None:
        super().__init__()
        if len(width_multiplier) != 4:
            raise ValueError(f"width_multiplier needs 4 values, got {width_multiplier!r}")
        if len(num_blocks) != 4:
            raise ValueError(f"num_blocks needs 4 values, got {num_blocks!r}")
        if num_blocks[2] < 2:
            raise ValueError(f"num_blocks[2] must be >= 2 (stage 3 is split in two halves), got {num_blocks[2]}")
        self.deploy = deploy
        self.is_repped = deploy
        self.num_classes = num_classes
        self.use_checkpoint = use_checkpoint
        in_channels = min(64, int(64 * width_multiplier[0]))
        widths = [int(w * m) for w, m in zip((64, 128, 256, 512), width_multiplier, strict=True)]
        n3_first = num_blocks[2] // 2

        def stage(cin: int, cout: int, n: int, stride: int) -> RepVGGplusStage:
            return RepVGGplusStage(cin, cout, n, stride, use_checkpoint, use_post_se=use_post_se, deploy=deploy)

        self.stage0 = RepVGGplusBlock(3, in_channels, kernel_size=3, stride=2, padding=1, deploy=deploy,
                                      use_post_se=use_post_se)
        self.stage1 = stage(in_channels, widths[0], num_blocks[0], 2)
        self.stage2 = stage(widths[0], widths[1], num_blocks[1], 2)
        self.stage3_first = stage(widths[1], widths[2], n3_first, 2)
        self.stage3_second = stage(widths[2], widths[2], num_blocks[2] - n3_first, 1)
        self.stage4 = stage(widths[2], widths[3], num_blocks[3], 2)
        self.gap = GlobalAvgPool2D()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(widths[3], num_classes)
        if not deploy:
            self.stage1_aux = _aux_head(widths[0], num_classes)
            self.stage2_aux = _aux_head(widths[1], num_classes)
            self.stage3_first_aux = _aux_head(widths[2], num_classes)

    @property
    def has_aux(self) -> bool:
        """Whether the auxiliary heads are present (built in training form and not fused yet).

        Returns:
            True while the model has ``stage1_aux``.
        """
        return hasattr(self, "stage1_aux")

    def forward(self, x: paddle.Tensor) -> paddle.Tensor | dict[str, paddle.Tensor]:
        """Classify a batch of images; in training with aux heads, also return each head's logits.

        Args:
            x: Images, ``[B, 3, H, W]``.

        Returns:
            Logits ``[B, num_classes]``; in training mode with the aux heads present, the dict
            ``{"main", "stage1_aux", "stage2_aux", "stage3_first_aux"}`` of logits
            (for ``classification_loss``).
        """
        with_aux = self.training and self.has_aux
        aux = {}
        out = self.stage1(self.stage0(x))
        if with_aux:
            aux["stage1_aux"] = self.stage1_aux(out)
        out = self.stage2(out)
        if with_aux:
            aux["stage2_aux"] = self.stage2_aux(out)
        out = self.stage3_first(out)
        if with_aux:
            aux["stage3_first_aux"] = self.stage3_first_aux(out)
        out = self.stage4(self.stage3_second(out))
        logits = self.linear(self.flatten(self.gap(out)))
        return {"main": logits, **aux} if with_aux else logits

    def rep_blocks(self) -> list[RepVGGplusBlock]:
        """List every RepVGGplus block, stage0 first, in forward order.

        Returns:
            The blocks.
        """
        return [m for m in self.sublayers() if isinstance(m, RepVGGplusBlock)]

    def get_custom_L2(self) -> paddle.Tensor:  # noqa: N802 - upstream's name
        """Compute upstream ``repvggplus_custom_L2.py``'s ``L2``: the sum of every block's custom L2.

        Per block it is RepVGGBlock's formula (identity ignored); the aux heads are not included.

        Returns:
            The penalty, a scalar tensor.
        """
        return paddle.add_n([block.get_custom_L2() for block in self.rep_blocks()])

    @paddle.no_grad()
    def switch_to_deploy(self) -> None:
        """Upstream ``switch_repvggplus_to_deploy``: fuse every block, drop the aux heads; idempotent."""
        if self.deploy:
            return
        for block in self.rep_blocks():
            block.switch_to_deploy()
        for name in AUX_HEADS:
            if hasattr(self, name):
                delattr(self, name)
        self.deploy = True
        self.is_repped = True

    switch_repvggplus_to_deploy = switch_to_deploy
    reparameterize = switch_to_deploy
    re_parameterize = switch_to_deploy


@register_model
def repvggplus_l2pse(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGGplus:
    """Build RepVGGplus-L2pse (upstream ``create_RepVGGplus_L2pse``): post-SE in every block.

    146.06M trainable parameters with the aux heads, 127.15M deployed.

    Args:
        num_classes: Classes of the main and the auxiliary heads.
        deploy: Build the fused form (no aux heads) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model.
    """
    spec = REPVGGPLUS_SPECS["repvggplus_l2pse"]
    return RepVGGplus(list(spec.num_blocks), num_classes, list(spec.width_multiplier), deploy=deploy,
                      use_post_se=spec.use_se, use_checkpoint=use_checkpoint)
