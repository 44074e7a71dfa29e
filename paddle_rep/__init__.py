"""paddle-rep: ACNet's ACBlock, RepVGG's RepVGGBlock and ODConv's ODConv2D for PaddlePaddle.

The library: blocks, fusion, BatchNorm, models, re-parameterization and block insertion. The
applications built on it (checkpoint conversion, export and inference, the command line,
training, the demo, the benchmark) live in :mod:`paddle_rep.apps`; nothing here imports them.

Names are imported on first use, so ``import paddle_rep`` imports no framework until a
Paddle-backed name is touched (``torch_ref`` reads the framework-free :mod:`paddle_rep.core`).
"""

from .core.lazy import lazy_exports
from .core.logs import quiet_package_logger

__version__ = "0.1.0"

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
    "ODConv2D": "odconv",
    "BatchNorm1D": "bn",
    "BatchNorm2D": "bn",
    "SyncBatchNorm": "bn",
    "convert_sync_batchnorm": "bn",
    "set_default_running_var_mode": "bn",
    "set_model_running_var_mode": "bn",
    "classification_loss": "losses",
    "reparameterize_model": "reparam",
    "insert_blocks": "surgery",
    "fuse_back": "surgery",
    "create_model": "models",
    "list_models": "models",
    "get_temperature": "core.schedules",
    "set_temperature": "core.schedules",
    "PaddleRepError": "core.errors",
    "MappingError": "core.errors",
    "SurgeryError": "core.errors",
    "ExportError": "core.errors",
    "UnknownModelError": "core.errors",
    "UnsupportedModelError": "core.errors",
    "CheckpointError": "core.errors",
    "UnsafeCheckpointError": "core.errors",
    "ArchMismatchError": "core.errors",
    "VerificationError": "core.errors",
    "BatchNormKernelError": "core.errors",
    "MissingPackageError": "core.errors",
    "DataError": "core.errors",
    "CalibrationError": "core.errors",
    "QuantizationError": "core.errors",
    "InputContractError": "core.errors",
    "ManifestError": "core.errors",
    "PredictorClosedError": "core.errors",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
