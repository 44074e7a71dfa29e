"""The model side of training: pretrained weights with a new head, parameter groups, custom L2, EMA."""

import logging
from pathlib import Path

import numpy as np
import paddle
from paddle import nn

from paddle_rep.repvgg import RepVGGBlock

from ..convert.arch import check_state
from ..convert.load import read_checkpoint
from .recipes import Recipe

logger = logging.getLogger(__name__)

BRANCH_CONV_WEIGHTS = ("rbr_dense.conv.weight", "rbr_1x1.conv.weight")


def head_keys(model: nn.Layer, num_classes: int) -> set[str]:
    """Find the state-dict keys of the classifier heads: every Linear with ``num_classes`` outputs (aux heads too).

    Args:
        model: The model.
        num_classes: The heads' output count.

    Returns:
        The heads' weight and bias keys.
    """
    keys = set()
    for name, layer in model.named_sublayers():
        if isinstance(layer, nn.Linear) and layer.weight.shape[-1] == num_classes:
            keys |= {f"{name}.{leaf}" for leaf, _ in layer.named_parameters()}
    return keys


def load_pretrained(model: nn.Layer, path: str | Path, num_classes: int, arch: str) -> list[str]:
    """Load a checkpoint written by ``paddle-rep convert`` (any container) into ``model``.

    Classifier-head weights whose shape differs (another ``--num-classes``) keep the model's fresh
    initialisation. Any other difference raises :class:`ArchMismatchError` listing every missing,
    unexpected and mismatched key.

    Args:
        model: The model to load into.
        path: The checkpoint (torch or Paddle, any container ``convert`` writes).
        num_classes: The model's classes (its heads may differ from the checkpoint's).
        arch: The architecture's name, for the error message.

    Returns:
        The head keys that kept the model's initialisation (empty when the heads fit).

    Raises:
        ArchMismatchError: A key is missing, unexpected or of another shape (heads aside).
        CheckpointError: The file cannot be read as a checkpoint.
    """
    loaded = read_checkpoint(path)
    if loaded.framework == "torch":
        from paddle_rep.core import interop

        state = interop.from_torch(loaded.state, dtype=None)
    else:
        state = dict(loaded.state)
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    fresh = sorted(k for k in head_keys(model, num_classes) if k in state and tuple(state[k].shape) != own[k])
    check_state({k: v for k, v in state.items() if k not in fresh}, {k: s for k, s in own.items() if k not in fresh},
                arch, str(path), heading=f"{path} does not fit {arch} (--pretrained; only mismatched classifier "
                                         "heads are re-initialised):")
    current = model.state_dict()
    for key in fresh:  # the model's own fresh initialisation
        state[key] = current[key]
    model.set_state_dict({k: paddle.to_tensor(np.ascontiguousarray(v)).astype(current[k].dtype)
                          if isinstance(v, np.ndarray) else v for k, v in state.items()})
    if fresh:
        logger.info("--pretrained %s: new head for %d classes (%s kept their initialisation)", path, num_classes,
                    ", ".join(fresh))
    return fresh


def parameter_groups(model: nn.Layer, recipe: Recipe) -> list[dict]:
    """Parameters with and without weight decay, following the recipe.

    ``decay_1d=False`` (RepVGG ``set_weight_decay``): no decay on 1-D parameters and biases, except
    names containing ``identity.weight``. ``custom_l2``: no decay on the 3x3 and 1x1 branch conv
    weights either (their L2 is in the loss).

    Args:
        model: The model; frozen parameters (``stop_gradient``) are left out.
        recipe: The recipe (``weight_decay``, ``decay_1d``, ``custom_l2``).

    Returns:
        The optimizer's parameter groups: the decayed one, then (if any) the one with no decay.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.stop_gradient:
            continue
        skip = not recipe.decay_1d and (len(param.shape) == 1 or name.endswith(".bias")) \
            and "identity.weight" not in name
        skip = skip or (recipe.custom_l2 and name.endswith(BRANCH_CONV_WEIGHTS))
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": recipe.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def custom_l2(model: nn.Layer) -> paddle.Tensor | None:
    """Sum ``get_custom_L2()`` over the model's RepVGG blocks that still have their branches.

    Args:
        model: The model.

    Returns:
        The penalty, or None when the model has no such block.
    """
    terms = [layer.get_custom_L2() for layer in model.sublayers()
             if isinstance(layer, RepVGGBlock) and getattr(layer, "rbr_dense", None) is not None]
    return paddle.add_n(terms) if terms else None


class EMA:
    """Exponential moving average of every floating state entry (weights and BN statistics), as RepVGG's EMA.

    ``ema = decay * ema + (1 - decay) * value`` after each optimizer step, on the model's device.

    Args:
        model: The model to average.
        decay: The decay, in (0, 1).
        state: A saved average to resume from (numpy arrays); None starts from the model's state.

    Raises:
        ValueError: ``decay`` is outside (0, 1).
    """

    def __init__(self, model: nn.Layer, decay: float, state: dict[str, np.ndarray] | None = None) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"--ema-decay must be in (0, 1), got {decay}")
        self.decay = decay
        source = state if state is not None else {k: v.numpy() for k, v in model.state_dict().items()}
        self.state = {k: paddle.to_tensor(np.array(source[k])) for k in model.state_dict()}

    @paddle.no_grad()
    def update(self, model: nn.Layer) -> None:
        """Move the average towards the model's state (integer entries are copied).

        Args:
            model: The model, after an optimizer step.
        """
        for key, value in model.state_dict().items():
            if value.dtype in (paddle.float16, paddle.bfloat16, paddle.float32, paddle.float64):
                self.state[key] = self.state[key] * self.decay + value.detach() * (1.0 - self.decay)
            else:
                self.state[key] = value.detach().clone()

    def numpy(self) -> dict[str, np.ndarray]:
        """Return the average as numpy arrays (for a checkpoint).

        Returns:
            The averaged state dict.
        """
        return {k: v.numpy() for k, v in self.state.items()}
