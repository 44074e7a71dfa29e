"""PyTorch reference implementations of ACBlock, RepVGGBlock and ODConv2d.

Faithful to the official code (same constructor arguments, attribute and state-dict names),
so official checkpoints load with ``strict=True``. Never imports paddle.
"""

import logging

from .acblock import ACBlock as ACBlock
from .models import create_model as create_model
from .models import list_models as list_models
from .odconv import ODConv2d as ODConv2d
from .reparam import reparameterize_model as reparameterize_model
from .repvgg import RepVGGBlock as RepVGGBlock
from .repvgg import SEBlock as SEBlock
from .surgery import convert_model as convert_model
from .surgery import revert_model as revert_model

_logger = logging.getLogger(__name__)
_logger.addHandler(logging.NullHandler())
# `import paddle` sets the root logger to INFO with a console handler, which would print this
# library's routine INFO lines (files saved, conversion summaries) for every Paddle user. Default
# to WARNING unless the level was set before import; setLevel(logging.INFO) to see them.
if _logger.level == logging.NOTSET:
    _logger.setLevel(logging.WARNING)

__all__ = [
    "ACBlock", "ODConv2d", "RepVGGBlock", "SEBlock", "convert_model", "create_model", "list_models",
    "reparameterize_model", "revert_model",
]
