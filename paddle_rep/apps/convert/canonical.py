"""The converter's canonical form, and every crossing between it and Paddle's names.

Canonical form: a flat ``{key: numpy array}`` dict under the official (torch) names and layouts,
``num_batches_tracked`` included. Every step of :func:`paddle_rep.apps.convert.convert_checkpoint`
between reading and writing takes and returns this form; the torch <-> Paddle key mapping
(:mod:`paddle_rep.core.interop`) is applied only here:

* :func:`from_paddle_names` / :func:`official_name` at the read end, for a source saved under
  Paddle's names;
* :func:`to_target` at the write end, once over the whole state, for a Paddle destination;
* :func:`load_paddle_model` / :func:`paddle_model_state` where a step runs a Paddle model
  (fusion and the self-check), which holds its weights under Paddle's names;
* :func:`official_shapes` turns a Paddle model's state-dict shapes into canonical names, so the
  strict check compares canonical keys with canonical keys.

Nothing here imports a framework; a model is only handed in by the caller.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from paddle_rep.core import interop

from ..progress import progress as progress_bar
from .bf16 import float32_to_bfloat16_bits
from .write import contiguous

NBT = interop.NUM_BATCHES_TRACKED


def leaf(key: str) -> str:
    """The last dotted component of a state-dict key."""
    return key.rpartition(".")[2]


def is_counter(key: str) -> bool:
    """True for a BN ``num_batches_tracked`` entry (an integer, no Paddle counterpart)."""
    return leaf(key) == NBT


def weights_only(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` without its ``num_batches_tracked`` counters (what a Paddle model holds)."""
    return {k: v for k, v in state.items() if not is_counter(k)}


def official_name(paddle_key: str) -> str:
    """The canonical name of a key saved under Paddle's names."""
    return interop.paddle_key_to_torch(paddle_key)


def from_paddle_names(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A state saved under Paddle's names, in canonical form; every BN gets a counter of 0."""
    return interop.to_torch(state, dtype=None, num_batches_tracked=0)


def official_shapes(paddle_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """A Paddle model's state-dict shapes under canonical names (Linear weights back to ``[out, in]``)."""
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in paddle_shapes.items():
        name = interop.paddle_key_to_torch(key)
        is_linear = leaf(name) == interop.LINEAR_WEIGHT_LEAF and len(shape) == 2  # interop's transpose rule
        out[name] = tuple(reversed(shape)) if is_linear else tuple(shape)
    return out


def load_paddle_model(model, state: Mapping[str, np.ndarray], dtype: str | None) -> tuple[list, list]:
    """Load the canonical ``state`` into a Paddle ``model``; returns Paddle's (missing, unexpected) keys."""
    mapped = interop.from_torch(state, dtype=dtype)
    return model.set_state_dict({k: contiguous(v) for k, v in mapped.items()})


def paddle_model_state(model, counters: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Paddle ``model``'s weights in canonical form; each BN takes its counter from ``counters``, else 0."""
    state = interop.to_torch(model.state_dict(), dtype=None, num_batches_tracked=0)
    for key in state:
        if is_counter(key) and key in counters:
            state[key] = counters[key]
    return state


@dataclass
class TargetState:
    """The canonical state under the destination framework's names, ready for a writer."""

    state: dict[str, np.ndarray]
    dropped: list[str] = field(default_factory=list)  # canonical keys with no counterpart in the target
    transposed: list[str] = field(default_factory=list)  # canonical Linear weights stored transposed


def to_target(state: Mapping[str, np.ndarray], names: str, dtype: str | None,
              bf16: frozenset[str] = frozenset(), progress: bool | None = None) -> TargetState:
    """Map the canonical ``state`` to ``names`` ("paddle" or "torch") and cast it, in one pass.

    ``dtype`` casts every floating tensor (None keeps each one's); keys in ``bf16`` become
    bfloat16 bit patterns (uint16 arrays, rounded as torch rounds). Counters are never cast.
    """
    out = TargetState({})
    with progress_bar(state.items(), total=len(state), desc="convert", unit="tensor", enabled=progress) as items:
        for key, value in items:
            if names == "torch":
                if key in bf16:
                    out.state[key] = float32_to_bfloat16_bits(value)
                else:
                    out.state[key] = value if is_counter(key) else value.astype(dtype or value.dtype, copy=False)
                continue
            mapped = interop.from_torch({key: value}, dtype="float32" if key in bf16 else dtype)
            if key in bf16:
                mapped = {k: float32_to_bfloat16_bits(v) for k, v in mapped.items()}
            if not mapped:
                out.dropped.append(key)
            elif leaf(key) == interop.LINEAR_WEIGHT_LEAF and value.ndim == 2:
                out.transposed.append(key)
            out.state.update(mapped)
    return out
