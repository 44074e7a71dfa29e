"""ODConv's temperature schedule, framework-free (shared by ``paddle_rep`` and ``torch_ref``).

Upstream (``utils/misc.py::get_temperature`` and ``main.py``) anneals the attention temperature
linearly from ``temp_init`` to 1 over the first ``temp_epoch`` epochs, updated every iteration,
and evaluates at 1.0.
"""

from .walk import sublayers

EVAL_TEMPERATURE = 1.0


def get_temperature(iteration: int, epoch: int, iter_per_epoch: int, temp_epoch: int = 10,
                    temp_init: float = 30.0) -> float:
    """ODConv's temperature schedule (upstream's): ``temp_init`` -> 1 linearly over ``temp_epoch`` epochs.

    Upstream calls it with ``batch_idx + 1`` after each step and with ``(0, start_epoch)``
    before training, so a fresh start begins at ``temp_init`` and epoch ``temp_epoch - 1``
    ends at exactly 1.0.

    Args:
        iteration: Step within ``epoch`` (0-based).
        epoch: Current epoch (0-based).
        iter_per_epoch: Steps per epoch.
        temp_epoch: Epochs over which the temperature falls to 1.
        temp_init: Starting temperature.

    Returns:
        The temperature; 1.0 from epoch ``temp_epoch`` on.

    Raises:
        ValueError: ``iter_per_epoch`` or ``temp_epoch`` below 1.
    """
    if iter_per_epoch < 1 or temp_epoch < 1:
        raise ValueError(f"iter_per_epoch and temp_epoch must be >= 1, got {iter_per_epoch}, {temp_epoch}")
    total = iter_per_epoch * temp_epoch
    current = iteration + epoch * iter_per_epoch
    return 1.0 + max(0.0, (temp_init - 1.0) * (total - current) / total)


def set_temperature(model: object, temperature: float) -> int:
    """Call ``update_temperature`` on every sub-layer of a Paddle or torch model.

    The framework-free form of upstream's ``net_update_temperature``.

    Args:
        model: A Paddle layer or torch module.
        temperature: The kernel attention's softmax temperature.

    Returns:
        How many layers were updated.
    """
    layers = [layer for layer in sublayers(model) if callable(getattr(layer, "update_temperature", None))]
    for layer in layers:
        layer.update_temperature(temperature)
    return len(layers)
