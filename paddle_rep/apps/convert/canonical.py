"""The converter's canonical form, and every crossing between it and Paddle's names.

Canonical form: a flat ``{key: numpy array}`` dict under the official (torch) names and layouts,
``num_batches_tracked`` included. The torch <-> Paddle mapping (:mod:`paddle_rep.core.interop`)
runs only here, once per crossing, over a whole state:

* :func:`from_paddle_names` at the read end, for a source saved under Paddle's names; it keeps
  the source's own Paddle form too, so that form is never mapped again;
* :func:`to_paddle` once for a torch-named source, when a Paddle model or a Paddle file needs it;
* :func:`paddle_model_state` where the fused Paddle model's weights go back to torch names
  (only for a torch or HDF5 destination).

A :class:`PaddleForm` carries each Paddle key's canonical name from its crossing, so the write
end and the report name tensors without mapping again. :func:`official_shapes` maps a model's
shapes to canonical names only to word an error of the strict check.

Nothing here imports a framework; a model is only handed in by the caller.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from paddle_rep.core import interop
from paddle_rep.core.errors import MappingError
from paddle_rep.core.numeric import contiguous

from ..console import progress as progress_bar
from .bf16 import float32_to_bfloat16_bits

NBT = interop.NUM_BATCHES_TRACKED
# Leaves that exist only under Paddle's names (``_mean``, ``_variance``): a canonical key never ends so.
PADDLE_ONLY_LEAVES = frozenset(row.paddle_leaf for row in interop.LEAF_RENAMES
                               if row.paddle_leaf not in (None, row.torch_leaf))
RUNNING_VAR = "running_var"  # interop.to_torch gives the BN of this leaf its counter


def leaf(key: str) -> str:
    """The last dotted component of a state-dict key."""
    return key.rpartition(".")[2]


def is_counter(key: str) -> bool:
    """True for a BN ``num_batches_tracked`` entry (an integer, no Paddle counterpart)."""
    return leaf(key) == NBT


def is_linear_weight(key: str, value: np.ndarray) -> bool:
    """True for a Linear weight (interop's transpose rule: a 2-D tensor under the ``weight`` leaf)."""
    return leaf(key) == interop.LINEAR_WEIGHT_LEAF and value.ndim == 2


def weights_only(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``state`` without its ``num_batches_tracked`` counters (what a Paddle model holds)."""
    return {k: v for k, v in state.items() if not is_counter(k)}


def paddle_leaf_keys(state: Iterable[str]) -> list[str]:
    """Keys of a torch-named state that end in a Paddle-only leaf (they would not map back)."""
    return [k for k in state if leaf(k) in PADDLE_ONLY_LEAVES]


@dataclass
class PaddleForm:
    """Weights under Paddle's names and layouts, each with its canonical name."""

    state: dict[str, np.ndarray]
    official: dict[str, str]  # Paddle key -> canonical key, for every key of ``state`` the crossing mapped
    dropped: list[str] = field(default_factory=list)  # canonical keys with no Paddle counterpart (counters)

    def official_name(self, key: str) -> str:
        """The canonical name of ``key``; a key that no crossing mapped (a fused layer's) keeps its name."""
        return self.official.get(key, key)


def _paired(source: list[str], mapped: list[str], what: str) -> dict[str, str]:
    """``{source key: mapped key}``: the mapping keeps the order of the keys and drops none of these."""
    if len(source) != len(mapped):  # two keys mapped onto one name: find them (error path only)
        names = {}
        for key in source:
            names.setdefault(interop.torch_key_to_paddle(key) if what == "paddle" else
                             interop.paddle_key_to_torch(key), []).append(key)
        clashes = [" and ".join(keys) for keys in names.values() if len(keys) > 1]
        raise MappingError(f"keys map onto the same {what} name: {'; '.join(clashes)}")
    return dict(zip(source, mapped, strict=True))


def from_paddle_names(state: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], PaddleForm]:
    """A state saved under Paddle's names, in canonical form (every BN gets a counter of 0), and as it was."""
    official = interop.to_torch(state, dtype=None, num_batches_tracked=0)
    names = _paired(list(state), [k for k in official if not is_counter(k)], "torch")
    form = PaddleForm(dict(state), names, [k for k in official if is_counter(k)])
    return official, form


def to_paddle(state: Mapping[str, np.ndarray]) -> PaddleForm:
    """The canonical ``state`` under Paddle's names (dtypes kept); counters are dropped."""
    weights = weights_only(state)
    mapped = interop.from_torch(weights, dtype=None)
    names = _paired(list(weights), list(mapped), "paddle")
    return PaddleForm(mapped, {p: c for c, p in names.items()}, [k for k in state if is_counter(k)])


def fits(form: PaddleForm, shapes: Mapping[str, tuple[int, ...]]) -> bool:
    """True when ``form`` holds exactly the keys and shapes of a Paddle model's ``shapes``."""
    return form.state.keys() == shapes.keys() and all(tuple(v.shape) == tuple(shapes[k])
                                                      for k, v in form.state.items())


def official_shapes(paddle_shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """A Paddle model's state-dict shapes under canonical names (Linear weights back to ``[out, in]``)."""
    out: dict[str, tuple[int, ...]] = {}
    for key, shape in paddle_shapes.items():
        name = interop.paddle_key_to_torch(key)
        is_linear = leaf(name) == interop.LINEAR_WEIGHT_LEAF and len(shape) == 2  # interop's transpose rule
        out[name] = tuple(reversed(shape)) if is_linear else tuple(shape)
    return out


def load_paddle_model(model, form: PaddleForm, dtype: str | None) -> tuple[list, list]:
    """Load ``form`` into a Paddle ``model``, cast to ``dtype`` (None keeps each tensor's).

    Returns:
        Paddle's (missing, unexpected) keys.
    """
    return model.set_state_dict({k: contiguous(v.astype(dtype or v.dtype, copy=False), writeable=True)
                                 for k, v in form.state.items()})


def fused_form(model, form: PaddleForm) -> PaddleForm:
    """The fused Paddle ``model``'s weights; ``form`` (what it was loaded with) names the surviving keys.

    Each surviving BatchNorm drops a counter, as the fused torch state dict holds one per BN.
    """
    state = {k: np.asarray(v.numpy()) for k, v in model.state_dict().items()}
    fused = PaddleForm(state, {k: form.official[k] for k in state if k in form.official})
    for key in state:
        name = fused.official_name(key)
        if leaf(name) == RUNNING_VAR:
            fused.dropped.append(name[: -len(RUNNING_VAR)] + NBT)
    return fused


def paddle_model_state(model, counters: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A Paddle ``model``'s weights in canonical form; each BN takes its counter from ``counters``, else 0."""
    state = interop.to_torch(model.state_dict(), dtype=None, num_batches_tracked=0)
    for key in state:
        if is_counter(key) and key in counters:
            state[key] = counters[key]
    return state


@dataclass
class TargetState:
    """The final state under the destination framework's names, ready for a writer."""

    state: dict[str, np.ndarray]
    dropped: list[str] = field(default_factory=list)  # canonical keys with no counterpart in the target
    transposed: list[str] = field(default_factory=list)  # canonical Linear weights stored transposed


def to_target(final: Mapping[str, np.ndarray] | PaddleForm, dtype: str | None, bf16: frozenset[str] = frozenset(),
              progress: bool | None = None) -> TargetState:
    """Cast the final state for a writer: a canonical dict for torch names, a :class:`PaddleForm` for Paddle's.

    ``dtype`` casts every floating tensor (None keeps each one's); keys in ``bf16`` (canonical
    names) become bfloat16 bit patterns (uint16 arrays, rounded as torch rounds). Counters are
    never cast. No name is mapped here: a Paddle form was mapped at its crossing.
    """
    paddle = isinstance(final, PaddleForm)
    state = final.state if paddle else final
    out = TargetState({}, dropped=list(final.dropped) if paddle else [])
    with progress_bar(state.items(), total=len(state), desc="convert", unit="tensor", enabled=progress) as items:
        for key, value in items:
            name = final.official_name(key) if paddle else key
            if name in bf16:
                out.state[key] = float32_to_bfloat16_bits(value)
            else:
                out.state[key] = value if is_counter(key) else value.astype(dtype or value.dtype, copy=False)
            if paddle and is_linear_weight(name, value):
                out.transposed.append(name)
    return out
