"""The Paddle model registry: one :class:`~paddle_rep.core.registry.ModelRegistry` for ``paddle_rep.models``.

The mechanics live in :mod:`paddle_rep.core.registry`, shared with ``torch_ref``.
"""

from typing import Any

from ..core.registry import ModelRegistry

registry = ModelRegistry("paddle_rep.models")
register_model = registry.register
"""Decorator: register a builder function under its own name (``@register_model``); a second builder of
the same name raises ``ValueError``."""


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the Paddle model registered as ``name`` (e.g. ``"repvgg_a0"``, ``deploy=True``)."""
    return registry.create(name, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the Paddle models, filtered by a shell-style ``pattern`` if given."""
    return registry.names(pattern)
