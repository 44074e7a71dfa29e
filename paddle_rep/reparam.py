"""Whole-model re-parameterization: fuse every re-parameterizable block in any layer tree."""

import copy
import logging

import paddle
from paddle import nn

logger = logging.getLogger(__name__)

# Method names that fuse a layer in place, as used by timm, RepVGG/ACNet and PaddleClas.
FUSE_METHODS = ("reparameterize", "switch_to_deploy", "re_parameterize")


def reparameterize_model(model: nn.Layer, inplace: bool = False) -> nn.Layer:
    """Fuse every layer that offers one of :data:`FUSE_METHODS`.

    Works on any tree (a user's model with our blocks inside, SyncBatchNorm layers). A
    ``paddle.DataParallel`` wrapper is unwrapped: the result is the inner model, whose state
    dict has the plain (official) keys. The model is switched to eval mode, since fusion
    folds the running statistics. Layers that cannot be fused (ODConv2D) are left as they are.

    Args:
        model: Any Paddle model.
        inplace: Fuse ``model`` itself; by default a deep copy is fused and ``model`` is left untouched.

    Returns:
        The fused model, in eval mode.
    """
    if isinstance(model, paddle.DataParallel):
        model = model._layers
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    fused = 0
    for name, layer in list(model.named_sublayers(include_self=True)):
        if getattr(layer, "is_repped", False):
            continue
        for method in FUSE_METHODS:
            if callable(getattr(layer, method, None)):
                getattr(layer, method)()
                fused += 1
                logger.debug("fused %s (%s)", name or type(layer).__name__, type(layer).__name__)
                break
    logger.debug("re-parameterized %d layers", fused)
    return model
