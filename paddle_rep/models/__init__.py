"""Model zoo for Paddle: RepVGG, ODConv ResNet / MobileNetV2 and ACNet networks by name.

``create_model("repvgg_a0", deploy=True)``; ``list_models("od_*")``. Attributes load lazily,
so the pure-Python parts (``_registry``, ``_specs``) import without Paddle.
"""

from typing import TYPE_CHECKING

from ..core.lazy import lazy_exports

_EXPORTS = {
    "create_model": "_registry",
    "list_models": "_registry",
    "register_model": "_registry",
    "RepVGG": "repvgg",
    "RepVGGplus": "repvggplus",
    "ODResNet": "odconv_resnet",
    "ODMobileNetV2": "odconv_mobilenetv2",
    "ACNetResNet": "acnet",
    "ACNetCifarResNet": "acnet",
    "ACNetCifarQuick": "acnet",
    "ACNetVGG": "acnet",
    "ACNetBottleneckResNet": "acnet",
    "ACNetWRN": "acnet",
    "ACNetMobileNetV1": "acnet",
}

__all__ = sorted(_EXPORTS)

# For type checkers only: the same names as _EXPORTS (parity_tests/test_layout.py checks).
if TYPE_CHECKING:
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
    from .odconv_mobilenetv2 import ODMobileNetV2 as ODMobileNetV2
    from .odconv_resnet import ODResNet as ODResNet
    from .repvgg import RepVGG as RepVGG
    from .repvggplus import RepVGGplus as RepVGGplus


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
