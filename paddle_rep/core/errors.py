"""Exceptions raised by paddle-rep; all derive from :class:`ReparamError`."""


class ReparamError(Exception):
    """Base class of every paddle-rep error."""


class MappingError(ReparamError, ValueError):
    """A state dict cannot be mapped between the frameworks (names the key at fault)."""


class UnknownModelError(ReparamError, ValueError):
    """``create_model`` got a name that no builder registered (the message lists close matches)."""


class ExportError(ReparamError, RuntimeError):
    """Exporting an inference or ONNX model failed, or an optional exporter is missing."""


class CheckpointError(ReparamError, ValueError):
    """A checkpoint file cannot be used: unreadable, corrupt, not a checkpoint, or a bad tensor.

    ``path`` is the file at fault and ``key`` the state-dict key, when one is to blame.
    """

    def __init__(self, message: str, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


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


class VerificationError(ReparamError):
    """The converted model's outputs differ from the source model's beyond the verify tolerance.

    ``comparisons`` holds every comparison made (passing ones too), so all figures can be shown.
    """

    def __init__(self, message: str, comparisons: tuple = ()) -> None:
        super().__init__(message)
        self.comparisons = comparisons


class ConversionError(ReparamError, ValueError):
    """A model cannot be converted to or restored from re-param blocks (names the layer or pattern at fault)."""
