"""Loading a checkpoint file straight into a Paddle model (what ``paddle-rep export --checkpoint`` does).

The file is read by :func:`.load.read_checkpoint`, so it is treated as untrusted like every source
of the converter. No framework is imported here: the caller hands in the model.
"""

from pathlib import Path

from ..errors import MappingError
from .canonical import load_paddle_model
from .load import read_checkpoint


def load_checkpoint(model, checkpoint: str | Path) -> None:
    """Load a ``.pdparams`` (or official torch) state dict into ``model`` strictly: every key must match.

    Raises :class:`MappingError` naming the missing and unexpected keys; no pickled code is run.
    """
    loaded = read_checkpoint(checkpoint)
    if loaded.framework == "paddle":
        missing, unexpected = model.set_state_dict(loaded.state)
    else:
        missing, unexpected = load_paddle_model(model, loaded.state, dtype=None)
    if missing or unexpected:
        raise MappingError(f"{checkpoint} does not fit the model: missing {sorted(missing)[:10]}, "
                           f"unexpected {sorted(unexpected)[:10]}")
