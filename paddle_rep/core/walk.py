"""Walking a Paddle or a torch model without importing either (duck-typed on the framework's walk)."""

from typing import Any


def sublayers(model: Any) -> list:
    """List a model and every layer under it, in Paddle or torch.

    Args:
        model: A ``paddle.nn.Layer`` or a ``torch.nn.Module``.

    Returns:
        ``model.sublayers(include_self=True)`` in Paddle, ``model.modules()`` in torch, as a list.
    """
    return list(model.sublayers(include_self=True) if hasattr(model, "sublayers") else model.modules())


def set_on_sublayers(model: Any, layer_type: type | tuple[type, ...], attribute: str, value: Any) -> int:
    """Set an attribute on every layer of a type in a model, the model itself included.

    Args:
        model: A ``paddle.nn.Layer`` or a ``torch.nn.Module``.
        layer_type: The layer type (or types) to change.
        attribute: The attribute's name.
        value: The value to set.

    Returns:
        How many layers were changed.
    """
    count = 0
    for layer in sublayers(model):
        if isinstance(layer, layer_type):
            setattr(layer, attribute, value)
            count += 1
    return count
