"""Whole-model re-parameterization for PyTorch (twin of ``paddle_rep/reparam.py``)."""

import copy
import logging

from torch import nn

logger = logging.getLogger(__name__)

FUSE_METHODS = ("reparameterize", "switch_to_deploy", "re_parameterize")


def reparameterize_model(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Fuse every module that offers one of :data:`FUSE_METHODS`.

    ``DataParallel`` / ``DistributedDataParallel`` wrappers are unwrapped, so the result's state
    dict has the official keys (no ``module.`` prefix). The model is switched to eval mode, since
    fusion folds the running statistics. Modules that cannot be fused (ODConv2d) are left as they are.

    Args:
        model: Any torch model.
        inplace: Fuse ``model`` itself; by default a deep copy is fused and ``model`` is left untouched.

    Returns:
        The fused model, in eval mode.
    """
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    fused = 0
    for name, module in list(model.named_modules()):
        if getattr(module, "is_repped", False):
            continue
        for method in FUSE_METHODS:
            if callable(getattr(module, method, None)):
                getattr(module, method)()
                fused += 1
                logger.debug("fused %s (%s)", name or type(module).__name__, type(module).__name__)
                break
    logger.debug("re-parameterized %d modules", fused)
    return model
