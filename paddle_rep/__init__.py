"""paddle-rep: ACNet's ACBlock, RepVGG's RepVGGBlock and ODConv's ODConv2D for PaddlePaddle.

Attributes are imported lazily, so ``paddle_rep.interop`` (numpy only) can be used without
importing Paddle, and importing the package never imports torch.
"""

from typing import TYPE_CHECKING

from .core.lazy import lazy_exports
from .core.logs import quiet_package_logger

__version__ = "0.1.0"

quiet_package_logger(__name__)

_EXPORTS = {
    "ACBlock": "acblock",
    "RepVGGBlock": "repvgg",
    "RepVGGplusBlock": "repvgg",
    "classification_loss": "losses",
    "SEBlock": "repvgg",
    "ODConv2D": "odconv",
    "BatchNorm2D": "bn",
    "BatchNorm1D": "bn",
    "SyncBatchNorm": "bn",
    "convert_sync_batchnorm": "bn",
    "BatchNormKernelError": "errors",
    "set_default_running_var_mode": "bn",
    "set_model_running_var_mode": "bn",
    "set_bn_running_var_mode": "bn",
    "set_running_var_mode": "bn",
    "reparameterize_model": "reparam",
    "PaddleRepError": "errors",
    "ReparamError": "errors",
    "MappingError": "errors",
    "SurgeryError": "errors",
    "ConversionError": "errors",
    "convert_model": "surgery",
    "revert_model": "surgery",
    "ExportError": "errors",
    "export": "exporter",
    "UnknownModelError": "errors",
    "create_model": "models",
    "list_models": "models",
    "convert_checkpoint": "convert",
    "CheckpointError": "errors",
    "UnsafeCheckpointError": "errors",
    "ArchMismatchError": "errors",
    "VerificationError": "errors",
}

# Old names, served by their modules with a DeprecationWarning until the next release.
_DEPRECATED = frozenset({"ReparamError", "ConversionError", "set_bn_running_var_mode", "set_running_var_mode"})

__all__ = sorted(set(_EXPORTS) - _DEPRECATED)

# For type checkers only: the same names as _EXPORTS less _DEPRECATED (parity_tests/test_layout.py checks).
if TYPE_CHECKING:
    from .acblock import ACBlock as ACBlock
    from .bn import BatchNorm1D as BatchNorm1D
    from .bn import BatchNorm2D as BatchNorm2D
    from .bn import SyncBatchNorm as SyncBatchNorm
    from .bn import convert_sync_batchnorm as convert_sync_batchnorm
    from .bn import set_default_running_var_mode as set_default_running_var_mode
    from .bn import set_model_running_var_mode as set_model_running_var_mode
    from .convert import convert_checkpoint as convert_checkpoint
    from .errors import ArchMismatchError as ArchMismatchError
    from .errors import BatchNormKernelError as BatchNormKernelError
    from .errors import CheckpointError as CheckpointError
    from .errors import ExportError as ExportError
    from .errors import MappingError as MappingError
    from .errors import PaddleRepError as PaddleRepError
    from .errors import SurgeryError as SurgeryError
    from .errors import UnknownModelError as UnknownModelError
    from .errors import UnsafeCheckpointError as UnsafeCheckpointError
    from .errors import VerificationError as VerificationError
    from .exporter import export as export
    from .losses import classification_loss as classification_loss
    from .models import create_model as create_model
    from .models import list_models as list_models
    from .odconv import ODConv2D as ODConv2D
    from .reparam import reparameterize_model as reparameterize_model
    from .repvgg import RepVGGBlock as RepVGGBlock
    from .repvgg import RepVGGplusBlock as RepVGGplusBlock
    from .repvgg import SEBlock as SEBlock
    from .surgery import convert_model as convert_model
    from .surgery import revert_model as revert_model


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
