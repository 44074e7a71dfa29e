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
    """Build the Paddle model registered as ``name``.

    Args:
        name: A registered name (``list_models()``), e.g. ``"repvgg_a0"``.
        **kwargs: Passed to the builder, e.g. ``num_classes``, ``deploy=True``, ``kernel_num``.

    Returns:
        The model.

    Raises:
        UnknownModelError: ``name`` is not registered; the message lists the closest names.
    """
    return registry.create(name, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """The registered Paddle model names.

    Args:
        pattern: A shell-style filter such as ``"repvgg_b*"``; all names when None.

    Returns:
        The matching names, sorted.
    """
    return registry.names(pattern)
