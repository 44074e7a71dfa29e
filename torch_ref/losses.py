"""Classification loss for plain logits and RepVGGplus's dict outputs (twin of ``paddle_rep/losses.py``)."""

from collections.abc import Mapping

import torch
from torch.nn import functional as F

AUX_WEIGHT = 0.1  # upstream RepVGG main.py: 0.1 per "aux" output
MAIN_KEY = "main"


def classification_loss(outputs: torch.Tensor | Mapping[str, torch.Tensor], labels: torch.Tensor,
                        aux_weight: float = AUX_WEIGHT) -> torch.Tensor:
    """Cross-entropy of ``outputs``; a dict gives ``CE(main) + aux_weight * sum(CE(aux))``.

    Args:
        outputs: Logits, or RepVGGplus's training-mode dict (``main``, ``stage1_aux``, ...).
        labels: Class indices.
        aux_weight: Weight of each auxiliary head's loss (upstream's 0.1).

    Returns:
        The scalar loss.

    Raises:
        ValueError: A dict without ``main``, or with a key that is neither ``main`` nor an ``*aux*`` head.
    """
    if not isinstance(outputs, Mapping):
        return F.cross_entropy(outputs, labels)
    unknown = [k for k in outputs if k != MAIN_KEY and "aux" not in k]
    if MAIN_KEY not in outputs or unknown:
        raise ValueError(f"dict outputs need a {MAIN_KEY!r} entry and '*aux*' heads only; got keys {list(outputs)}")
    loss = F.cross_entropy(outputs[MAIN_KEY], labels)
    for name, logits in outputs.items():
        if name != MAIN_KEY:
            loss = loss + aux_weight * F.cross_entropy(logits, labels)
    return loss
