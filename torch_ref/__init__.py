"""PyTorch reference implementations of ACBlock, RepVGGBlock and ODConv2d.

Faithful to the official code (same constructor arguments, attribute and state-dict names),
so official checkpoints load with ``strict=True``. Never imports paddle.
"""

from paddle_rep.core.logs import quiet_package_logger  # pure Python: imports no framework

from .acblock import ACBlock as ACBlock
from .losses import classification_loss as classification_loss
from .models import create_model as create_model
from .models import list_models as list_models
from .odconv import ODConv2d as ODConv2d
from .reparam import reparameterize_model as reparameterize_model
from .repvgg import RepVGGBlock as RepVGGBlock
from .repvgg import RepVGGplusBlock as RepVGGplusBlock
from .repvgg import SEBlock as SEBlock
from .surgery import convert_model as convert_model
from .surgery import revert_model as revert_model

quiet_package_logger(__name__)

__all__ = [
    "ACBlock", "ODConv2d", "RepVGGBlock", "RepVGGplusBlock", "SEBlock", "classification_loss",
    "convert_model", "create_model", "list_models",
    "reparameterize_model", "revert_model",
]
