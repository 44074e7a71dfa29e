"""The torch <-> Paddle state-dict mapping, numpy only (kept importable here; defined in
:mod:`paddle_rep.core.interop`)."""

from .core.interop import LEAF_RENAMES as LEAF_RENAMES
from .core.interop import LINEAR_WEIGHT_LEAF as LINEAR_WEIGHT_LEAF
from .core.interop import NUM_BATCHES_TRACKED as NUM_BATCHES_TRACKED
from .core.interop import LeafRename as LeafRename
from .core.interop import from_torch as from_torch
from .core.interop import paddle_key_to_torch as paddle_key_to_torch
from .core.interop import to_numpy as to_numpy
from .core.interop import to_torch as to_torch
from .core.interop import torch_key_to_paddle as torch_key_to_paddle
