"""Model zoo for Paddle: RepVGG, ODConv ResNet / MobileNetV2 and ACNet networks by name.

``create_model("repvgg_a0", deploy=True)``; ``list_models("od_*")``. Attributes load lazily,
so the pure-Python parts (``_registry``, ``_specs``) import without Paddle.
"""

from ..core.lazy import lazy_exports

_EXPORTS = {
    "create_model": "_registry",
    "list_models": "_registry",
    "register_model": "_registry",
    "RepVGG": "repvgg",
    "RepVGGplus": "repvggplus",
    "MobileOne": "mobileone",
    "ODResNet": "odconv_resnet",
    "ODMobileNetV2": "odconv_mobilenetv2",
    "ACNetResNet": "acnet",
    "ACNetCifarResNet": "acnet",
    "ACNetCifarQuick": "acnet",
    "ACNetVGG": "acnet",
    "ACNetBottleneckResNet": "acnet",
    "ACNetWRN": "acnet",
    "ACNetMobileNetV1": "acnet",
    "DBBResNet": "dbb",
    "DBBMobileNet": "dbb",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
