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
        x = self.stage1(self.stem_act(self.stem(x)))
        x = self.stage2(self.od_act(self.od_bn(self.odconv(x))))
        return self.linear(global_avg_pool(x).flatten(1))


@register_model
def rep_tiny(num_classes: int = 10, in_channels: int = 3, width: int = 16, kernel_num: int = 4,
             deploy: bool = False) -> RepTiny:
    """The demo network (about 60k parameters at width 16)."""
    return RepTiny(num_classes, in_channels, width, kernel_num, deploy)
