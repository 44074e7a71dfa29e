"""Exceptions raised by paddle-rep; all derive from :class:`ReparamError`."""


class ReparamError(Exception):
    """Base class of every paddle-rep error."""


class MappingError(ReparamError, ValueError):
    """A state dict cannot be mapped between the frameworks (names the key at fault)."""
