"""Classification loss for plain logits and for RepVGGplus's dict of main + auxiliary logits."""

from collections.abc import Mapping

import paddle
from paddle.nn import functional as F

# Upstream RepVGG ``main.py``: every output whose name contains "aux" is weighted 0.1.
AUX_WEIGHT = 0.1
MAIN_KEY = "main"


def cross_entropy(logits: paddle.Tensor, labels: paddle.Tensor, label_smoothing: float = 0.0) -> paddle.Tensor:
    """Mean cross-entropy; with ``label_smoothing`` ``s``: ``(1 - s) * NLL + s * mean(-log p)`` over classes.

    The smoothed form is timm's ``LabelSmoothingCrossEntropy`` (RepVGG's training criterion),
    computed in float32 whatever the logits' dtype.

    Args:
        logits: Logits, ``[B, classes]``.
        labels: Class indices, ``[B]``.
        label_smoothing: Smoothing ``s`` in [0, 1); 0 is plain cross-entropy.

    Returns:
        The scalar loss.
    """
    if label_smoothing == 0.0:
        return F.cross_entropy(logits, labels)
    logp = F.log_softmax(logits.astype("float32"), axis=-1)
    nll = -paddle.take_along_axis(logp, labels.reshape([-1, 1]).astype("int64"), axis=1).squeeze(1)
    return ((1.0 - label_smoothing) * nll - label_smoothing * logp.mean(axis=-1)).mean()


def classification_loss(outputs: paddle.Tensor | Mapping[str, paddle.Tensor], labels: paddle.Tensor,
                        aux_weight: float = AUX_WEIGHT, label_smoothing: float = 0.0) -> paddle.Tensor:
    """Cross-entropy of ``outputs``; a dict gives ``CE(main) + aux_weight * sum(CE(aux))``.

    Args:
        outputs: Logits, or RepVGGplus's training-mode dict (``main``, ``stage1_aux``, ...).
        labels: Class indices.
        aux_weight: Weight of each auxiliary head's loss (upstream's 0.1).
        label_smoothing: Label smoothing of every head's cross-entropy (see ``cross_entropy``).

    Returns:
        The scalar loss.

    Raises:
        ValueError: A dict without ``main``, or with a key that is neither ``main`` nor an ``*aux*``
            head, so that nothing is silently left out of (or wrongly weighted in) the loss.
    """
    if not isinstance(outputs, Mapping):
        return cross_entropy(outputs, labels, label_smoothing)
    unknown = [k for k in outputs if k != MAIN_KEY and "aux" not in k]
    if MAIN_KEY not in outputs or unknown:
        raise ValueError(f"dict outputs need a {MAIN_KEY!r} entry and '*aux*' heads only; got keys {list(outputs)}")
    loss = cross_entropy(outputs[MAIN_KEY], labels, label_smoothing)
    for name, logits in outputs.items():
        if name != MAIN_KEY:
            loss = loss + aux_weight * cross_entropy(logits, labels, label_smoothing)
    return loss
