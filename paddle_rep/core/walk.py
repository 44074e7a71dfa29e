"""Walking a Paddle or a torch model without importing either (duck-typed on the framework's walk)."""

from typing import Any


def sublayers(model: Any) -> list:
    """``model`` and every layer under it: ``sublayers(include_self=True)`` in Paddle, ``modules()`` in torch."""
    return list(model.sublayers(include_self=True) if hasattr(model, "sublayers") else model.modules())


def set_on_sublayers(model: Any, layer_type: type | tuple[type, ...], attribute: str, value: Any) -> int:
    """Set ``attribute = value`` on every layer of ``layer_type`` in ``model`` (itself included); returns how many."""
    count = 0
    for layer in sublayers(model):
        if isinstance(layer, layer_type):
            setattr(layer, attribute, value)
            count += 1
    return count
