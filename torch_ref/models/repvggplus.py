"""RepVGGplus, PyTorch reference (twin of ``paddle_rep/models/repvggplus.py``).

Upstream https://github.com/DingXiaoH/RepVGG ``repvggplus.py`` (``RepVGGplus``,
``create_RepVGGplus_L2pse``; MIT). Same structure and state-dict keys (``stageN.blocks.i``,
``stage3_first`` / ``stage3_second``, aux heads ``stage1_aux`` / ``stage2_aux`` /
``stage3_first_aux``), so the official checkpoints load with ``strict=True``.

Training mode with aux heads returns upstream's dict ``{'main', 'stage1_aux', 'stage2_aux',
'stage3_first_aux'}``; eval mode, a fused model and ``deploy=True`` return the main logits.
"""

import torch
from torch import nn

from ..repvgg import RepVGGplusBlock
from ._registry import register_model
from .repvgg import run_block

AUX_HEADS = ("stage1_aux", "stage2_aux", "stage3_first_aux")


class RepVGGplusStage(nn.Module):
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
        strides = [stride] + [1] * (num_blocks - 1)
        self.in_planes = in_planes
        blocks = []
        for block_stride in strides:
            blocks.append(RepVGGplusBlock(self.in_planes, planes, kernel_size=3, stride=block_stride, padding=1,
                                          deploy=deploy, use_post_se=use_post_se))
            self.in_planes = planes
        self.blocks = nn.ModuleList(blocks)
        self.use_checkpoint = use_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the blocks in order.

        Args:
            x: The input feature map, ``[B, in_planes, H, W]``.

        Returns:
            The output feature map.
        """
        for block in self.blocks:
            x = run_block(block, x, self.use_checkpoint)
        return x


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int) -> nn.Sequential:
    """Build upstream's ``conv_bn_relu``: ``Sequential(conv, bn, relu)`` with a bias-free conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: The conv's stride.
        padding: The conv's padding.

    Returns:
        The sequence.
    """
    result = nn.Sequential()
    result.add_module("conv", nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                        bias=False))
    result.add_module("bn", nn.BatchNorm2d(out_channels))
    result.add_module("relu", nn.ReLU())
    return result


class RepVGGplus(nn.Module):
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
        stage_channels = [int(64 * width_multiplier[0]), int(128 * width_multiplier[1]),
                          int(256 * width_multiplier[2]), int(512 * width_multiplier[3])]
        kw = {"use_checkpoint": use_checkpoint, "use_post_se": use_post_se, "deploy": deploy}
        self.stage0 = RepVGGplusBlock(3, in_channels, kernel_size=3, stride=2, padding=1, deploy=deploy,
                                      use_post_se=use_post_se)
        self.stage1 = RepVGGplusStage(in_channels, stage_channels[0], num_blocks[0], stride=2, **kw)
        self.stage2 = RepVGGplusStage(stage_channels[0], stage_channels[1], num_blocks[1], stride=2, **kw)
        # stage 3 in two halves, so that an aux classifier can follow the first
        self.stage3_first = RepVGGplusStage(stage_channels[1], stage_channels[2], num_blocks[2] // 2, stride=2, **kw)
        self.stage3_second = RepVGGplusStage(stage_channels[2], stage_channels[2], num_blocks[2] - num_blocks[2] // 2,
                                             stride=1, **kw)
        self.stage4 = RepVGGplusStage(stage_channels[2], stage_channels[3], num_blocks[3], stride=2, **kw)
        self.gap = nn.AdaptiveAvgPool2d(output_size=1)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(stage_channels[3], num_classes)
        if not deploy:
            self.stage1_aux = self._build_aux_for_stage(self.stage1)
            self.stage2_aux = self._build_aux_for_stage(self.stage2)
            self.stage3_first_aux = self._build_aux_for_stage(self.stage3_first)

    def _build_aux_for_stage(self, stage: RepVGGplusStage) -> nn.Sequential:
        channels = stage.blocks[-1].rbr_dense.conv.out_channels
        downsample = conv_bn_relu(channels, channels, kernel_size=3, stride=2, padding=1)
        return nn.Sequential(downsample, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, self.num_classes))

    @property
    def has_aux(self) -> bool:
        """Whether the auxiliary heads are present (built in training form and not fused yet).

        Returns:
            True while the model has ``stage1_aux``.
        """
        return hasattr(self, "stage1_aux")

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
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
        return [m for m in self.modules() if isinstance(m, RepVGGplusBlock)]

    def get_custom_L2(self) -> torch.Tensor:  # noqa: N802 - upstream's name
        """Compute upstream ``repvggplus_custom_L2.py``'s ``L2``: the sum of every block's custom L2.

        Per block it is RepVGGBlock's formula (identity ignored); the aux heads are not included.

        Returns:
            The penalty, a scalar tensor.
        """
        return torch.stack([block.get_custom_L2() for block in self.rep_blocks()]).sum()

    @torch.no_grad()
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
    return RepVGGplus(num_blocks=[8, 14, 24, 1], num_classes=num_classes, width_multiplier=[2.5, 2.5, 2.5, 5],
                      deploy=deploy, use_post_se=True, use_checkpoint=use_checkpoint)
