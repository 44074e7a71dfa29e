"""Exceptions raised by paddle-rep; all derive from :class:`PaddleRepError`."""


class PaddleRepError(Exception):
    """Base class of every paddle-rep error."""


class MappingError(PaddleRepError, ValueError):
    """A state dict cannot be mapped between the frameworks (names the key at fault)."""


class UnknownModelError(PaddleRepError, ValueError):
    """``create_model`` got a name that no builder registered (the message lists close matches)."""


class ExportError(PaddleRepError, RuntimeError):
    """Exporting an inference or ONNX model failed, or an optional exporter is missing."""


class CheckpointError(PaddleRepError, ValueError):
    """A checkpoint file cannot be used: unreadable, corrupt, not a checkpoint, or a bad tensor.

    ``path`` is the file at fault and ``key`` the state-dict key, when one is to blame.
    """

    def __init__(self, message: str, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


class UnsupportedDtypeError(PaddleRepError, ValueError):
    """The destination format cannot hold the requested dtype (HDF5 has no bfloat16)."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint asks to import or call code beyond plain tensors; it was not loaded."""


class ArchMismatchError(CheckpointError):
    """A state dict does not fit the requested architecture; lists every offending key at once."""

    def __init__(self, message: str, path: str | None = None, missing: tuple[str, ...] = (),
                 unexpected: tuple[str, ...] = (), mismatched: tuple[str, ...] = ()) -> None:
        super().__init__(message, path)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


class VerificationError(PaddleRepError):
    """The converted model's outputs differ from the source model's beyond the verify tolerance.

    ``comparisons`` holds every comparison made (passing ones too), so all figures can be shown.
    """

    def __init__(self, message: str, comparisons: tuple = ()) -> None:
        super().__init__(message)
        self.comparisons = comparisons


class SurgeryError(PaddleRepError, ValueError):
    """``insert_blocks`` / ``fuse_back`` cannot change a model as asked (names the layer or pattern at fault)."""


class BatchNormKernelError(PaddleRepError, RuntimeError):
    """The running-variance probe read a value that neither a biased nor an unbiased update gives.

    ``key`` names the kernel (place, dtypes, data format, input rank, size class) and ``read`` the value.
    """

    def __init__(self, message: str, key: object = None, read: float | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.read = read


class MissingPackageError(PaddleRepError, ImportError):
    """An optional package is not installed; the message names it and the pip extra that installs it."""

    def __init__(self, message: str, package: str, extra: str) -> None:
        super().__init__(message)
        self.package = package
        self.extra = extra


class MissingExportPackageError(MissingPackageError, ExportError):
    """A package needed by ONNX export or by a non-default inference backend is missing."""


class DataError(PaddleRepError, ValueError):
    """A training data set cannot be used: a missing or empty folder, an unparsable label-list line
    (``line``), a label outside the classes, or an image that does not decode (``path``)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line
