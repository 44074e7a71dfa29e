"""QARepVGG networks, PyTorch reference (twin of ``paddle_rep/models/qarepvgg.py``).

Chu et al., arXiv:2212.01593; upstream https://github.com/cxxgtxy/QARepVGG ``repvgg.py``
(``create_QARepVGGBlockV2_A0`` ... ``_B2g4``): upstream's ``RepVGG`` with ``block_cls=QARepVGGBlockV2``,
RepVGG's widths, depths and group maps, so upstream state dicts load with ``strict=True``.
"""

from ..qarepvgg import QARepVGGBlockV2
from ._registry import register_model
from .repvgg import REPVGG_ARCHS, RepVGG


def _build(name: str, num_classes: int, deploy: bool, use_checkpoint: bool) -> RepVGG:
    return RepVGG(**REPVGG_ARCHS[name.replace("qarepvgg", "repvgg")], num_classes=num_classes, deploy=deploy,
                  use_checkpoint=use_checkpoint, block_cls=QARepVGGBlockV2)


@register_model
def qarepvgg_a0(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-A0 (upstream ``create_QARepVGGBlockV2_A0``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_a0", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_a1(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-A1 (upstream ``create_QARepVGGBlockV2_A1``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_a1", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_a2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-A2 (upstream ``create_QARepVGGBlockV2_A2``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_a2", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_b0(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-B0 (upstream ``create_QARepVGGBlockV2_B0``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_b0", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_b1(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-B1 (upstream ``create_QARepVGGBlockV2_B1``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_b1", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_b1g2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-B1g2 (upstream ``create_QARepVGGBlockV2_B1g2``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_b1g2", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_b1g4(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-B1g4 (upstream ``create_QARepVGGBlockV2_B1g4``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_b1g4", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_b2(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-B2 (upstream ``create_QARepVGGBlockV2_B2``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_b2", num_classes, deploy, use_checkpoint)


@register_model
def qarepvgg_b2g4(num_classes: int = 1000, deploy: bool = False, use_checkpoint: bool = False) -> RepVGG:
    """Build QARepVGG-B2g4 (upstream ``create_QARepVGGBlockV2_B2g4``).

    Args:
        num_classes: Classes of the linear head.
        deploy: Build the fused form (one biased 3x3 conv per block) directly.
        use_checkpoint: Recompute each stage block in the backward pass (gradient checkpointing) to save memory.

    Returns:
        The model (a ``RepVGG`` with ``QARepVGGBlockV2`` blocks).
    """
    return _build("qarepvgg_b2g4", num_classes, deploy, use_checkpoint)
