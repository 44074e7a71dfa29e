"""Training checkpoints: everything a resumed run needs, written atomically, keep-last-N plus best.

A checkpoint is one pickle (protocol 5) holding only plain values and numpy arrays, read back with
the converter's restricted unpickler (no code can run from it)::

    {"format": FORMAT, "meta": {...}, "model": {key: array}, "ema": {key: array} (with --ema),
     "optimizer": {"p<index>.<accumulator>": array, ...}}

``meta`` holds the step, the epoch, the architecture and its constructor arguments, the resolved
recipe, the loss scaler's state and the best top-1 so far. The learning rate, the ODConv
temperature, the data order and every random draw are functions of ``(seed, step)``, so the step
restores them. Optimizer accumulators are keyed by the parameter's position in
``model.parameters()``, not by Paddle's generated names (those depend on what was built before).

Files: ``<out>/checkpoints/step-<step>.pdtrain`` (every epoch and every ``--save-every-steps``),
the newest ``--keep-last`` of them kept, and ``best.pdtrain`` (highest top-1 so far).
"""

import logging
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from paddle_rep.core.errors import CheckpointError

from ..convert.load import read_pickle_safely
from ..convert.write import PICKLE_PROTOCOL, write_atomically

logger = logging.getLogger(__name__)

FORMAT = "paddle-rep-train/1"
SUFFIX = ".pdtrain"
BEST = "best" + SUFFIX
_STEP_FILE = re.compile(r"^step-(\d+)\.pdtrain$")


def checkpoint_dir(out: Path) -> Path:
    """Name the folder that holds a run's training checkpoints.

    Args:
        out: The run's output folder.

    Returns:
        ``<out>/checkpoints``.
    """
    return Path(out) / "checkpoints"


def numpy_state(layer_or_state: Any) -> dict[str, np.ndarray]:
    """Convert a layer's state dict (or a dict of tensors) to numpy arrays.

    Args:
        layer_or_state: A layer, or a dict of tensors or arrays.

    Returns:
        The same keys, with numpy array values.
    """
    state = layer_or_state.state_dict() if hasattr(layer_or_state, "state_dict") else layer_or_state
    return {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in state.items()}


def _param_prefixes(model: paddle.nn.Layer) -> list[tuple[str, str]]:
    # Longest names first, so that "conv2d_1.w_0" never claims "conv2d_1.w_0_x"'s accumulators wrongly.
    pairs = [(p.name, f"p{i}") for i, p in enumerate(model.parameters())]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer) -> dict[str, np.ndarray]:
    """Take the optimizer's tensors under position-based keys (see the module docstring).

    Args:
        optimizer: The optimizer.
        model: The model it trains (the parameters' order gives the keys).

    Returns:
        ``{"p<index>.<accumulator>": array}``; the LR scheduler's state is left out.

    Raises:
        CheckpointError: An optimizer entry belongs to no parameter of ``model``.
    """
    prefixes = _param_prefixes(model)
    out = {}
    for key, value in optimizer.state_dict().items():
        if not hasattr(value, "numpy"):
            continue  # the LR scheduler's dict: the learning rate is set from the step
        name, stable = next(((n, s) for n, s in prefixes if key.startswith(n + "_") or key == n), (None, None))
        if name is None:
            raise CheckpointError(f"optimizer state {key!r} belongs to no model parameter")
        out[stable + key[len(name):]] = value.numpy()
    return out


def load_optimizer_state(optimizer: paddle.optimizer.Optimizer, model: paddle.nn.Layer,
                         state: dict[str, np.ndarray], path: str) -> None:
    """Restore the optimizer's tensors from :func:`optimizer_state`'s position-based keys.

    Args:
        optimizer: The optimizer to restore.
        model: The model it trains, built as the saved one was.
        state: The saved ``{"p<index>.<accumulator>": array}``.
        path: The checkpoint, named in errors.

    Raises:
        CheckpointError: An entry names a parameter position the model lacks.
    """
    names = {stable: name for name, stable in _param_prefixes(model)}
    restored = {}
    for key, value in state.items():
        stable = key.split("_", 1)[0]
        if stable not in names:
            raise CheckpointError(f"{path}: optimizer entry {key!r} names parameter {stable} the model lacks",
                                  path=path, key=key)
        restored[names[stable] + key[len(stable):]] = paddle.to_tensor(value)
    optimizer.set_state_dict(restored)


def save(out: Path, step: int, payload: dict[str, Any], keep_last: int) -> Path:
    """Write ``payload`` as ``step-<step>.pdtrain`` atomically, then drop all but the newest ``keep_last``.

    Args:
        out: The run's output folder.
        step: The training step, in the file name.
        payload: ``meta``, ``model``, ``optimizer`` and (with EMA) ``ema``; the format tag is added.
        keep_last: Step checkpoints to keep; 0 or less keeps all.

    Returns:
        The written file.
    """
    folder = checkpoint_dir(out)
    dst = folder / f"step-{step:09d}{SUFFIX}"
    write_atomically(dst, lambda f: pickle.dump({"format": FORMAT, **payload}, f, protocol=PICKLE_PROTOCOL))
    for old in step_files(out)[:-keep_last] if keep_last > 0 else []:
        old.unlink(missing_ok=True)
    logger.info("saved checkpoint %s", dst)
    return dst


def save_best(out: Path, source: Path) -> Path:
    """Copy the checkpoint ``source`` to ``best.pdtrain`` atomically.

    Args:
        out: The run's output folder.
        source: The step checkpoint to copy.

    Returns:
        The written ``best.pdtrain``.
    """
    dst = checkpoint_dir(out) / BEST
    data = source.read_bytes()
    write_atomically(dst, lambda f: f.write(data))
    return dst


def step_files(out: Path) -> list[Path]:
    """List the ``step-*.pdtrain`` files of a run, oldest first.

    Args:
        out: The run's output folder.

    Returns:
        The files; empty when there is no checkpoint folder.
    """
    folder = checkpoint_dir(out)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if _STEP_FILE.match(p.name)), key=lambda p: p.name)


def latest(out: Path) -> Path:
    """Find the newest step checkpoint of a run (what ``--resume`` without a value takes).

    Args:
        out: The run's output folder.

    Returns:
        The newest ``step-*.pdtrain``.

    Raises:
        CheckpointError: The run has no step checkpoint.
    """
    files = step_files(out)
    if not files:
        raise CheckpointError(f"--resume: no checkpoint in {checkpoint_dir(out)}", path=str(checkpoint_dir(out)))
    return files[-1]


def load(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint safely (no code can run from it).

    Args:
        path: The ``.pdtrain`` file.

    Returns:
        The checkpoint dict (``format``, ``meta``, ``model``, ``optimizer``, maybe ``ema``).

    Raises:
        CheckpointError: No such file, or a file of another kind (named in the message).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint", path=str(path))
    data = read_pickle_safely(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a paddle-rep training checkpoint (expected format {FORMAT}); "
                              "use --pretrained for model weights", path=str(path))
    return data
