"""Other projects' key layouts for the same networks, mapped onto the official names, as data.

A :class:`Layout` is recognised by sentinel keys and rewrites keys with ordered :class:`KeyRule`
rows (a regex, a replacement template, an optional tensor transform). Every key of a non-official
layout must be touched by some rule, so an unknown top-level part (a neck, an auxiliary head) is
reported rather than passed through; an unknown name inside a known stage is renamed by the stage
rule only and left to the strict ``--arch`` check.
The names were read from timm's ``models/byobnet.py`` (RepVGG and MobileOne), mmpretrain's
``models/backbones/repvgg.py`` and PaddleClas's ``legendary_models/resnet.py`` (its DBB ResNet-18, the
one layout also written: :func:`to_layout`); ``docs/converting.md`` tabulates them.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from paddle_rep.core.errors import MappingError

TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "transpose": lambda a: np.ascontiguousarray(a.T),
}


@dataclass(frozen=True)
class KeyRule:
    """Rewrite every match of ``source`` (a regex) with ``target``.

    ``target`` is a ``str.format`` template over the regex groups (``{1}`` is the first group);
    ``offset`` is added to every group that is an integer (timm counts stages from 0, the
    official code from 1). ``transform`` names an entry of :data:`TRANSFORMS` or is None.
    """

    source: str
    target: str
    offset: int = 0
    transform: str | None = None


@dataclass(frozen=True)
class Layout:
    name: str
    sentinel: str  # a regex; the layout applies when some key matches it
    rules: tuple[KeyRule, ...]
    # official -> this layout, for writing it (``convert --layout``); empty: the layout is read-only
    reverse: tuple[KeyRule, ...] = ()
    deploy_writable: bool = True  # False: the layout has no fused form of some official layer


def _rename(old: str, new: str) -> KeyRule:
    """A rule for one dotted name component sequence, anywhere in the key."""
    return KeyRule(rf"(^|\.){re.escape(old)}\.", "{1}" + new + ".")


TIMM_REPVGG = Layout(
    "timm-repvgg",
    r"^(stem|stages\.\d+\.\d+)\.(conv_kxk|conv_1x1|reparam_conv)\.",
    (
        KeyRule(r"^stem\.", "stage0."),
        KeyRule(r"^stages\.(\d+)\.", "stage{1}.", offset=1),
        _rename("conv_kxk", "rbr_dense"),  # its .conv/.bn children keep their names
        _rename("conv_1x1", "rbr_1x1"),
        _rename("identity", "rbr_identity"),
        _rename("reparam_conv", "rbr_reparam"),
        _rename("attn.fc1", "se.down"),
        _rename("attn.fc2", "se.up"),
        KeyRule(r"^head\.fc\.", "linear."),
    ),
)

MMPRETRAIN_REPVGG = Layout(
    "mmpretrain-repvgg",
    r"^backbone\.(stem|stage_\d+\.\d+)\.(branch_3x3|branch_1x1|branch_norm|branch_reparam)\.",
    (
        KeyRule(r"^backbone\.stem\.", "stage0."),
        KeyRule(r"^backbone\.stage_(\d+)\.", "stage{1}."),
        _rename("branch_3x3.conv", "rbr_dense.conv"),
        _rename("branch_3x3.norm", "rbr_dense.bn"),
        _rename("branch_1x1.conv", "rbr_1x1.conv"),
        _rename("branch_1x1.norm", "rbr_1x1.bn"),
        _rename("branch_norm", "rbr_identity"),
        _rename("branch_reparam", "rbr_reparam"),
        _rename("se_layer.conv1.conv", "se.down"),
        _rename("se_layer.conv2.conv", "se.up"),
        KeyRule(r"^head\.fc\.", "linear."),
    ),
)

# timm ``byobnet.py`` ``mobileone_s0..s4``: ``stem`` / ``stages.N.M`` blocks with ``conv_kxk.K``, ``conv_scale``,
# ``identity`` (the BN skip), ``attn.fc1/fc2`` (SE) and ``head.fc``. Only the train form is told apart by its keys:
# a deploy timm MobileOne holds ``reparam_conv`` keys alone, as a deploy timm RepVGG does.
TIMM_MOBILEONE = Layout(
    "timm-mobileone",
    r"^(stem|stages\.\d+\.\d+)\.(conv_kxk\.\d+|conv_scale)\.",
    (
        KeyRule(r"^stem\.", "stage0."),
        KeyRule(r"^stages\.(\d+)\.", "stage{1}.", offset=1),
        _rename("conv_kxk", "rbr_conv"),  # its .K.conv/.K.bn children keep their names
        _rename("conv_scale", "rbr_scale"),
        _rename("identity", "rbr_skip"),
        _rename("attn.fc1", "se.reduce"),
        _rename("attn.fc2", "se.expand"),
        KeyRule(r"^head\.fc\.", "linear."),
    ),
)



# PaddleClas's ResNet18 with layer_type="DiverseBranchBlock" (ppcls/arch/backbone/legendary_models/resnet.py,
# config ResNet18_dbb): the same network as upstream DBB's ResNet-18, its blocks numbered flat
# (blocks.0 .. blocks.7), conv0/conv1 for conv1/conv2, ``short`` for the projection, ``stem.0`` and ``fc``.
# The DBB keys inside are upstream's. Its stem and projections are ConvBNLayer, which has no fused
# form, so deployed (fused) checkpoints cannot be written in this layout.
_RESNET18_BLOCKS = [(stage, index) for stage in range(1, 5) for index in range(2)]


def _paddleclas_resnet18_rules(reverse: bool) -> tuple[KeyRule, ...]:
    pairs = [("stem.0.", "stage0.conv1."), ("fc.", "linear.")]
    for flat, (stage, index) in enumerate(_RESNET18_BLOCKS):
        for theirs, ours in (("conv0", "conv1"), ("conv1", "conv2"), ("short", "shortcut")):
            pairs.append((f"blocks.{flat}.{theirs}.", f"stage{stage}.{index}.{ours}."))
    return tuple(KeyRule("^" + re.escape(ours if reverse else theirs), theirs if reverse else ours)
                 for theirs, ours in pairs)


PADDLECLAS_RESNET18_DBB = Layout(
    "paddleclas-resnet18-dbb",
    r"^blocks\.\d+\.conv0\.dbb_",
    _paddleclas_resnet18_rules(reverse=False),
    reverse=_paddleclas_resnet18_rules(reverse=True),
    deploy_writable=False,
)

OFFICIAL = Layout("official", r"", ())
LAYOUTS: tuple[Layout, ...] = (TIMM_REPVGG, MMPRETRAIN_REPVGG, PADDLECLAS_RESNET18_DBB, TIMM_MOBILEONE)
WRITABLE = {layout.name: layout for layout in LAYOUTS if layout.reverse}


def detect_layout(keys: list[str]) -> Layout:
    """The layout whose sentinel matches the most keys; :data:`OFFICIAL` when none matches."""
    counts = [(sum(1 for k in keys if re.search(layout.sentinel, k)), layout) for layout in LAYOUTS]
    best = max(counts, key=lambda c: c[0], default=(0, OFFICIAL))
    return best[1] if best[0] else OFFICIAL


def _apply_rule(rule: KeyRule, key: str) -> str:
    def replace(match: re.Match) -> str:
        groups = [match.group(0)] + [
            str(int(g) + rule.offset) if g is not None and g.isdigit() else (g or "") for g in match.groups()
        ]
        return rule.target.format(*groups)

    return re.sub(rule.source, replace, key)


def apply_layout(state: Mapping[str, np.ndarray], layout: Layout) -> tuple[dict[str, np.ndarray], int]:
    """Rename ``state`` from ``layout`` to the official names; returns it and the number of keys renamed.

    Raises :class:`MappingError` naming every key no rule covers, and any two keys that would
    collide under the new names.
    """
    if not layout.rules:
        return dict(state), 0
    out: dict[str, np.ndarray] = {}
    uncovered, renamed = [], 0
    for key, value in state.items():
        new = key
        touched = False
        for rule in layout.rules:
            result = _apply_rule(rule, new)
            if result != new:
                touched = True
                new = result
                if rule.transform:
                    value = TRANSFORMS[rule.transform](value)
        if not touched:
            uncovered.append(key)
            continue
        if new in out:
            raise MappingError(f"{layout.name}: keys map onto the same name {new!r}")
        renamed += 1
        out[new] = value
    if uncovered:
        raise MappingError(f"{layout.name} layout: no mapping rule covers {len(uncovered)} key(s): "
                           f"{', '.join(uncovered[:20])}{' ...' if len(uncovered) > 20 else ''}")
    return out, renamed


def to_layout(state: Mapping[str, np.ndarray], name: str, deploy: bool = False) -> dict[str, np.ndarray]:
    """Rename an official-name ``state`` into the writable layout ``name`` (the inverse of :func:`apply_layout`).

    Args:
        state: Tensors under the official names.
        name: A key of :data:`WRITABLE`, e.g. ``"paddleclas-resnet18-dbb"``.
        deploy: ``state`` is a fused model.

    Returns:
        The tensors under the layout's names.

    Raises:
        MappingError: An unknown or read-only layout, a fused model for a layout without a fused form, or
            keys no rule covers (named).
    """
    if name not in WRITABLE:
        raise MappingError(f"layout {name!r} cannot be written; writable layouts: {sorted(WRITABLE)}")
    layout = WRITABLE[name]
    if deploy and not layout.deploy_writable:
        raise MappingError(f"layout {name!r} has no fused form of every layer; write it without deploy")
    return apply_layout(state, Layout(name, layout.sentinel, layout.reverse))[0]
