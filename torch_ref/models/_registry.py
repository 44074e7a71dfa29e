"""The torch model registry: one :class:`~paddle_rep.core.registry.ModelRegistry` for ``torch_ref.models``."""

from typing import Any

from paddle_rep.core.registry import ModelRegistry

registry = ModelRegistry("torch_ref.models")
register_model = registry.register


def create_model(name: str, **kwargs: Any) -> Any:
    """Build the torch model registered as ``name`` (e.g. ``"repvgg_a0"``, ``deploy=True``)."""
    return registry.create(name, **kwargs)


def list_models(pattern: str | None = None) -> list[str]:
    """Sorted names of the torch models, filtered by a shell-style ``pattern`` if given."""
    return registry.names(pattern)
