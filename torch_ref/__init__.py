"""PyTorch reference implementations of ACBlock, RepVGGBlock and ODConv2d.

Faithful to the official code (same constructor arguments, attribute and state-dict names),
so official checkpoints load with ``strict=True``. Never imports paddle.
"""

from paddle_rep.core.lazy import lazy_exports  # pure Python: imports no framework
from paddle_rep.core.logs import quiet_package_logger

quiet_package_logger(__name__)

# The public API, written once: name -> submodule that defines it.
_EXPORTS = {
    "ACBlock": "acblock",
    "RepVGGBlock": "repvgg",
    "RepVGGplusBlock": "repvgg",
    "SEBlock": "repvgg",
    "QARepVGGBlockV2": "qarepvgg",
    "MobileOneBlock": "mobileone",
    "MobileOneSEBlock": "mobileone",
    "DiverseBranchBlock": "dbb",
    "ODConv2d": "odconv",
    "classification_loss": "losses",
    "reparameterize_model": "reparam",
    "insert_blocks": "surgery",
    "fuse_back": "surgery",
    "create_model": "models",
    "list_models": "models",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
