"""Model zoo, PyTorch reference: RepVGG, ODConv ResNet / MobileNetV2 and ACNet networks by name.

``create_model("repvgg_a0", deploy=True)``; ``list_models("od_*")``.
"""

from . import acnet, dbb, mobileone, odconv_mobilenetv2, odconv_resnet, repvgg, repvggplus, tiny  # noqa: F401  (registers the builders)
from ._registry import create_model as create_model
from ._registry import list_models as list_models
from ._registry import register_model as register_model
from .acnet import ACNetBottleneckResNet as ACNetBottleneckResNet
from .acnet import ACNetCifarQuick as ACNetCifarQuick
from .acnet import ACNetCifarResNet as ACNetCifarResNet
from .acnet import ACNetMobileNetV1 as ACNetMobileNetV1
from .acnet import ACNetResNet as ACNetResNet
from .acnet import ACNetVGG as ACNetVGG
from .acnet import ACNetWRN as ACNetWRN
from .dbb import DBBMobileNet as DBBMobileNet
from .dbb import DBBResNet as DBBResNet
from .mobileone import MobileOne as MobileOne
from .odconv_mobilenetv2 import ODMobileNetV2 as ODMobileNetV2
from .odconv_resnet import ODResNet as ODResNet
from .repvgg import RepVGG as RepVGG
from .repvggplus import RepVGGplus as RepVGGplus

__all__ = [
    "ACNetBottleneckResNet", "ACNetCifarQuick", "ACNetCifarResNet", "ACNetMobileNetV1", "ACNetResNet", "ACNetVGG",
    "ACNetWRN", "DBBMobileNet", "DBBResNet", "MobileOne", "ODMobileNetV2", "ODResNet", "RepVGG", "RepVGGplus",
    "create_model", "list_models", "register_model",
]
