"""Exceptions raised by paddle-rep (kept importable here; defined in :mod:`paddle_rep.core.errors`)."""

from .core import errors as _core
from .core.errors import ArchMismatchError as ArchMismatchError
from .core.errors import BatchNormKernelError as BatchNormKernelError
from .core.errors import CheckpointError as CheckpointError
from .core.errors import ExportError as ExportError
from .core.errors import MappingError as MappingError
from .core.errors import MissingExportPackageError as MissingExportPackageError
from .core.errors import MissingPackageError as MissingPackageError
from .core.errors import PaddleRepError as PaddleRepError
from .core.errors import SurgeryError as SurgeryError
from .core.errors import UnknownModelError as UnknownModelError
from .core.errors import UnsafeCheckpointError as UnsafeCheckpointError
from .core.errors import UnsupportedDtypeError as UnsupportedDtypeError
from .core.errors import VerificationError as VerificationError

__getattr__ = _core.__getattr__  # the deprecated old names, with their warning
