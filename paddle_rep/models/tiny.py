"""``rep_tiny``: a small classifier using all three blocks (twin of ``torch_ref/models/tiny.py``)."""

import paddle
from paddle import nn

from ..acblock import ACBlock
from ..bn import BatchNorm2D
from ..odconv import ODConv2D
from ..pooling import global_avg_pool
from ..repvgg import RepVGGBlock
from ._registry import register_model


class RepTiny(nn.Layer):
    """A small classifier using all three blocks: ACBlock stem, RepVGG block, ODConv, RepVGG block with SE.

    Args:
        num_classes: Classes of the head.
        in_channels: Input channels.
        width: The stem's width; the stages are 2x and 4x as wide.
        kernel_num: Kernels the ODConv mixes per sample.
        deploy: Build the ACBlock and RepVGG blocks fused.
    """
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16, kernel_num: int = 4,
                 deploy: bool = False) -> None:
        super().__init__()
        self.stem = ACBlock(in_channels, width, 3, padding=1, deploy=deploy)
        self.stem_act = nn.ReLU()
        self.stage1 = RepVGGBlock(width, 2 * width, 3, stride=2, padding=1, deploy=deploy)
        self.odconv = ODConv2D(2 * width, 2 * width, 3, padding=1, kernel_num=kernel_num)
        self.od_bn = BatchNorm2D(2 * width)
        self.od_act = nn.ReLU()
        self.stage2 = RepVGGBlock(2 * width, 4 * width, 3, stride=2, padding=1, deploy=deploy, use_se=True)
        self.linear = nn.Linear(4 * width, num_classes)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Classify a batch of images.

        Args:
            x: Images, ``[B, in_channels, H, W]``.

        Returns:
            Logits, ``[B, num_classes]``.
        """
        x = self.stage1(self.stem_act(self.stem(x)))
        x = self.stage2(self.od_act(self.od_bn(self.odconv(x))))
        return self.linear(global_avg_pool(x).flatten(1))


@register_model
def rep_tiny(num_classes: int = 10, in_channels: int = 3, width: int = 16, kernel_num: int = 4,
             deploy: bool = False) -> RepTiny:
    """Build the demo network (about 60k parameters at width 16); paddle-rep's own, no upstream model.

    Args:
        num_classes: Classes of the head.
        in_channels: Input channels.
        width: The stem's width; the stages are 2x and 4x as wide.
        kernel_num: Kernels the ODConv mixes per sample.
        deploy: Build the ACBlock and RepVGG blocks fused.

    Returns:
        The model.
    """
    return RepTiny(num_classes, in_channels, width, kernel_num, deploy)
