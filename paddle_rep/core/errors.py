"""Exceptions raised by paddle-rep; all derive from :class:`PaddleRepError`."""


class PaddleRepError(Exception):
    """Base class of every paddle-rep error."""


class MappingError(PaddleRepError, ValueError):
    """A state dict cannot be mapped between the frameworks (names the key at fault)."""


class UnknownModelError(PaddleRepError, ValueError):
    """``create_model`` got a name that no builder registered (the message lists close matches)."""


class UnsupportedModelError(PaddleRepError, ValueError):
    """A registered model that the requested operation does not apply to (the message lists those it does)."""


class ExportError(PaddleRepError, RuntimeError):
    """Exporting an inference or ONNX model failed, or an optional exporter is missing."""


class CheckpointError(PaddleRepError, ValueError):
    """A checkpoint file cannot be used: unreadable, corrupt, not a checkpoint, or a bad tensor.

    Args:
        message: The error message.
        path: The file at fault, when known (kept as ``self.path``).
        key: The state-dict key to blame, when one is (kept as ``self.key``).
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
    """A state dict does not fit the requested architecture; lists every offending key at once.

    Args:
        message: The error message.
        path: The checkpoint file, when known (kept as ``self.path``).
        missing: Keys the architecture needs and the state dict lacks.
        unexpected: Keys of the state dict the architecture does not have.
        mismatched: Keys whose shapes differ.
    """

    def __init__(self, message: str, path: str | None = None, missing: tuple[str, ...] = (),
                 unexpected: tuple[str, ...] = (), mismatched: tuple[str, ...] = ()) -> None:
        super().__init__(message, path)
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


class VerificationError(PaddleRepError):
    """The converted model's outputs differ from the source model's beyond the verify tolerance.

    Args:
        message: The error message.
        comparisons: Every comparison made, passing ones too, so all figures can be shown
            (kept as ``self.comparisons``).
    """

    def __init__(self, message: str, comparisons: tuple = ()) -> None:
        super().__init__(message)
        self.comparisons = comparisons


class SurgeryError(PaddleRepError, ValueError):
    """``insert_blocks`` / ``fuse_back`` cannot change a model as asked (names the layer or pattern at fault)."""


class BatchNormKernelError(PaddleRepError, RuntimeError):
    """The running-variance probe read a value that neither a biased nor an unbiased update gives.

    Args:
        message: The error message.
        key: The kernel probed (place, dtypes, data format, input rank, size class).
        read: The running variance read back.
    """

    def __init__(self, message: str, key: object = None, read: float | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.read = read


class MissingPackageError(PaddleRepError, ImportError):
    """An optional package is not installed; the message names it and the pip extra that installs it.

    Args:
        message: The error message.
        package: The missing package's import name.
        extra: The pip extra of paddle-rep that installs it.
    """

    def __init__(self, message: str, package: str, extra: str) -> None:
        super().__init__(message)
        self.package = package
        self.extra = extra


class MissingExportPackageError(MissingPackageError, ExportError):
    """A package needed by ONNX export or by a non-default inference backend is missing."""


class DataError(PaddleRepError, ValueError):
    """A training data set cannot be used: a missing or empty folder, an unparsable label-list line
    (``line``), a label outside the classes, or an image that does not decode (``path``).

    Args:
        message: What is wrong, naming the file or line at fault.
        path: The file or folder at fault, if any.
        line: The 1-based line of the label list at fault, if any.
    """

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.line = line


class CalibrationError(PaddleRepError, ValueError):
    """int8 calibration data cannot be used.

    Args:
        message: What is wrong, naming the file or sample at fault.
        source: The file, or the sample index, at fault, if any.
    """

    def __init__(self, message: str, source: str | int | None = None) -> None:
        super().__init__(message)
        self.source = source


class QuantizationError(PaddleRepError, RuntimeError):
    """Post-training quantization or quantization-aware training failed, or an int8 file is missing."""


class InputContractError(PaddleRepError, ValueError):
    """An input breaks a predictor's input contract (rank, channels, dtype, fixed H/W or batch).

    The message names what was expected and what came; it is the same on every backend.
    """


class ManifestError(PaddleRepError, ValueError):
    """An export's manifest, or a file it lists, is missing, unreadable or edited.

    Args:
        message: What is wrong, naming the file.
        path: The file at fault, if any.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PredictorClosedError(PaddleRepError, RuntimeError):
    """A predictor was called after :meth:`~paddle_rep.apps.predictor.Predictor.close`."""
