"""Exceptions raised by paddle-rep (kept importable here; defined in :mod:`paddle_rep.core.errors`)."""

from .core.errors import ArchMismatchError as ArchMismatchError
from .core.errors import CheckpointError as CheckpointError
from .core.errors import ConversionError as ConversionError
from .core.errors import ExportError as ExportError
from .core.errors import MappingError as MappingError
from .core.errors import ReparamError as ReparamError
from .core.errors import UnknownModelError as UnknownModelError
from .core.errors import UnsafeCheckpointError as UnsafeCheckpointError
from .core.errors import VerificationError as VerificationError
