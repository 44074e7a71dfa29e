"""The configuration matrix of the block parity suite, as data with readable ids."""

from dataclasses import dataclass, field

import paddle_rep
import torch_ref


@dataclass(frozen=True)
class BlockCase:
    id: str
    family: str  # "acb" | "repvgg" | "repvggplus" | "qarepvgg" | "dbb" | "mobileone" | "odconv"
    in_channels: int
    out_channels: int
    kernel_size: int
    kwargs: dict = field(default_factory=dict)
    batch: int = 4
    hw: tuple[int, int] = (9, 11)  # non-square on purpose: catches H/W mix-ups
    temperature: float = 1.0

    @property
    def fusable(self) -> bool:
        return self.family in ("acb", "repvgg", "repvggplus", "qarepvgg", "dbb", "mobileone")

    @property
    def zero_grad_suffixes(self) -> tuple[str, ...]:
        """Parameters whose exact training gradient is zero: a shift that a train-mode BN removes.

        QARepVGG's post-sum BN removes the 3x3 BN's bias, unless an SE (a per-sample scale) sits between.
        """
        return ("rbr_dense.bn.bias",) if self.family == "qarepvgg" and not self.kwargs.get("use_se") else ()

    @property
    def step_scaled_suffixes(self) -> tuple[str, ...]:
        """Gradients a train-mode BN all but cancels (DBB depthwise ``conv1``: one input per output, then BN;
        MobileOne's depthwise 1x1 scale branch: one scalar per channel, then BN)."""
        depthwise = self.kwargs.get("groups", 1) == self.in_channels
        if self.family == "mobileone":
            return ("rbr_scale.conv.weight",) if depthwise and self.in_channels == self.out_channels else ()
        return ("dbb_1x1_kxk.conv1.weight",) if self.family == "dbb" and depthwise else ()

    @property
    def trains(self) -> bool:
        # A training batch of one sample gives ODConv's attention BN one value per channel,
        # which torch refuses (tested separately); such cases are eval-only.
        # DBB with k=1 (never built by upstream's nets) pads nothing, so dbb_avg's inner BN meets the
        # train-mode avgbn per channel: both its gradients are exactly zero, noise on both sides. Eval-only.
        dbb_k1 = self.family == "dbb" and self.kernel_size == 1
        return not (self.family == "odconv" and self.batch == 1) and not dbb_k1

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.batch, self.in_channels, *self.hw)

    def build(self, framework: str):
        """The block in ``"torch"`` or ``"paddle"``, at this case's temperature for ODConv."""
        block = _CLASSES[framework][self.family](self.in_channels, self.out_channels, self.kernel_size,
                                                 **self.kwargs)
        if self.family == "odconv":
            block.update_temperature(self.temperature)
        return block

    def torch_block(self):
        return self.build("torch")

    def paddle_block(self):
        return self.build("paddle")


_CLASSES = {
    "torch": {"acb": torch_ref.ACBlock, "repvgg": torch_ref.RepVGGBlock, "repvggplus": torch_ref.RepVGGplusBlock,
              "qarepvgg": torch_ref.QARepVGGBlockV2, "dbb": torch_ref.DiverseBranchBlock, "odconv": torch_ref.ODConv2d,
              "mobileone": torch_ref.MobileOneBlock},
    "paddle": {"acb": paddle_rep.ACBlock, "repvgg": paddle_rep.RepVGGBlock, "repvggplus": paddle_rep.RepVGGplusBlock,
               "qarepvgg": paddle_rep.QARepVGGBlockV2, "dbb": paddle_rep.DiverseBranchBlock,
               "odconv": paddle_rep.ODConv2D, "mobileone": paddle_rep.MobileOneBlock},
}


def _acb(id_: str, cin: int = 4, cout: int = 8, k: int = 3, **kw) -> BlockCase:
    return BlockCase(f"acb-{id_}", "acb", cin, cout, k, kw)


def _rep(id_: str, cin: int, cout: int, hw: tuple[int, int] = (9, 11), **kw) -> BlockCase:
    return BlockCase(f"repvgg-{id_}", "repvgg", cin, cout, 3, {"padding": 1, **kw}, hw=hw)


def _plus(id_: str, cin: int, cout: int, hw: tuple[int, int] = (9, 11), **kw) -> BlockCase:
    return BlockCase(f"repvggplus-{id_}", "repvggplus", cin, cout, 3, {"padding": 1, **kw}, hw=hw)


def _qa(id_: str, cin: int, cout: int, hw: tuple[int, int] = (9, 11), **kw) -> BlockCase:
    return BlockCase(f"qarepvgg-{id_}", "qarepvgg", cin, cout, 3, {"padding": 1, **kw}, hw=hw)


def _dbb(id_: str, cin: int, cout: int, k: int = 3, **kw) -> BlockCase:
    return BlockCase(f"dbb-{id_}", "dbb", cin, cout, k, {"padding": k // 2, **kw})


def _od(id_: str, cin: int = 8, cout: int = 16, k: int = 3, batch: int = 4, temperature: float = 1.0,
        **kw) -> BlockCase:
    return BlockCase(f"odconv-{id_}", "odconv", cin, cout, k, kw, batch=batch, temperature=temperature)


ACB_CASES = [
    _acb("k3p1", padding=1),
    _acb("k3p0-crop", padding=0),
    _acb("k3p2", padding=2),
    _acb("k5p2", k=5, padding=2),
    _acb("k5p1-crop", k=5, padding=1),
    _acb("k5p0-crop", k=5, padding=0),
    _acb("k3p1-s2", padding=1, stride=2),
    _acb("k5p1-crop-s2", k=5, padding=1, stride=2),
    _acb("k3p1-g2", padding=1, groups=2),
    _acb("k3p1-depthwise", cin=8, cout=8, padding=1, groups=8),
    _acb("k3p1-depthwise-s2", cin=8, cout=8, padding=1, groups=8, stride=2),
    _acb("k3p2-d2", padding=2, dilation=2),
    _acb("k3p1-d2-crop", padding=1, dilation=2),
    _acb("k5p4-d2", k=5, padding=4, dilation=2),
    _acb("k3p1-reflect", padding=1, padding_mode="reflect"),
    _acb("k3p1-replicate", padding=1, padding_mode="replicate"),
    _acb("k3p1-circular", padding=1, padding_mode="circular"),
    _acb("k5p2-reflect", k=5, padding=2, padding_mode="reflect"),
    _acb("k5p1-crop-circular", k=5, padding=1, padding_mode="circular"),
    _acb("k3p2-d2-replicate", padding=2, dilation=2, padding_mode="replicate"),
    _acb("k3p1-noaffine", padding=1, use_affine=False),
    _acb("k5p1-crop-noaffine", k=5, padding=1, use_affine=False),
]

REPVGG_CASES = [
    _rep("identity", 8, 8),
    _rep("in-ne-out", 8, 16),
    _rep("s2", 8, 16, stride=2),
    _rep("identity-s2", 8, 8, stride=2),
    _rep("g2", 8, 8, groups=2),
    _rep("g4", 16, 16, groups=4),
    _rep("g4-s2", 16, 32, groups=4, stride=2),
    _rep("se", 64, 64, use_se=True),
    _rep("se-square", 32, 64, hw=(10, 10), use_se=True),
    _rep("se-g4-s2", 32, 64, groups=4, stride=2, use_se=True),
    _rep("reflect", 8, 8, padding_mode="reflect"),
]

# RepVGGplusBlock: post-SE (out // 4, after the ReLU) with and without, identity branch and not.
REPVGGPLUS_CASES = [
    _plus("identity", 8, 8),
    _plus("in-ne-out-s2", 8, 16, stride=2),
    _plus("post-se-identity", 16, 16, use_post_se=True),
    _plus("post-se-s2", 16, 32, stride=2, use_post_se=True),
    _plus("post-se-in-ne-out-square", 8, 16, hw=(10, 10), use_post_se=True),
]

# QARepVGGBlockV2: bare identity and 1x1 without BN, one BN after the sum; SE before that BN.
QAREPVGG_CASES = [
    _qa("identity", 8, 8),
    _qa("in-ne-out", 8, 16),
    _qa("s2", 8, 16, stride=2),
    _qa("identity-s2", 8, 8, stride=2),
    _qa("g2", 8, 8, groups=2),
    _qa("g4-s2", 16, 32, groups=4, stride=2),
    _qa("depthwise", 8, 8, groups=8),
    _qa("se-identity", 64, 64, hw=(6, 6), use_se=True),
    _qa("se-s2", 32, 32, stride=2, use_se=True),
    _qa("reflect", 8, 8, padding_mode="reflect"),
]

# DiverseBranchBlock: with groups < out_channels every branch exists (1x1-avg through BNAndPadLayer);
# groups >= out_channels is the depthwise form (pool-only avg branch, 2x internal width).
DBB_CASES = [
    _dbb("k3-in-ne-out", 8, 16),
    _dbb("k3-identity-width", 8, 8),
    _dbb("k3-s2", 8, 16, stride=2),
    _dbb("k5", 8, 8, k=5),
    _dbb("k5-s2-g2", 8, 16, k=5, stride=2, groups=2),
    _dbb("g2", 8, 8, groups=2),
    _dbb("g4-s2", 16, 32, groups=4, stride=2),
    _dbb("depthwise", 8, 8, groups=8),
    _dbb("depthwise-s2", 8, 8, groups=8, stride=2),
    _dbb("depthwise-k5-s2", 8, 8, k=5, groups=8, stride=2),
    _dbb("grouped-in-gt-out", 16, 8, groups=8),  # upstream crashes here (departure)
    _dbb("internal-12", 8, 16, internal_channels_1x1_3x3=12),
    _dbb("k1", 8, 16, k=1),
]

ODCONV_CASES = [
    _od("k3-kn4", padding=1, kernel_num=4),
    _od("k3-kn1", padding=1, kernel_num=1),
    _od("k1-kn1-pw", k=1, kernel_num=1),
    _od("k1-kn4", k=1, kernel_num=4),
    _od("k3-kn4-depthwise", cin=16, cout=16, padding=1, groups=16, kernel_num=4),
    _od("k3-kn1-depthwise-s2", cin=16, cout=16, padding=1, groups=16, stride=2, kernel_num=1),
    _od("k3-kn4-g4", cin=16, cout=16, padding=1, groups=4, kernel_num=4),
    _od("k3-kn4-s2", padding=1, stride=2, kernel_num=4),
    _od("k3-kn2-d2", padding=2, dilation=2, kernel_num=2),
    _od("k5-kn4-p2", k=5, padding=2, kernel_num=4),
    _od("k3-kn4-r0.25", cin=128, cout=32, padding=1, kernel_num=4, reduction=0.25),
    _od("k3-kn4-T30", padding=1, kernel_num=4, temperature=30.0),
    _od("k1-kn1-pw-T30", k=1, kernel_num=1, temperature=30.0),
    _od("k3-kn4-b1", padding=1, kernel_num=4, batch=1),
    _od("k1-kn1-pw-b1", k=1, kernel_num=1, batch=1),
]


# --- MobileOneBlock: BN identity + k kxk conv-BN branches + 1x1 conv-BN scale branch, SE, ReLU ----------


def _mo(id_: str, cin: int, cout: int, k: int = 3, hw: tuple[int, int] = (9, 11), **kw) -> BlockCase:
    return BlockCase(f"mobileone-{id_}", "mobileone", cin, cout, k, {"padding": k // 2, **kw}, hw=hw)


MOBILEONE_CASES = [
    _mo("identity", 8, 8),
    _mo("in-ne-out-nb2", 8, 16, num_conv_branches=2),
    _mo("s2", 8, 16, stride=2),
    _mo("depthwise-nb4", 8, 8, groups=8, num_conv_branches=4),
    _mo("depthwise-s2-nb2", 8, 8, groups=8, stride=2, num_conv_branches=2),
    _mo("g2-nb3", 8, 8, groups=2, num_conv_branches=3),
    _mo("k1-identity", 8, 8, k=1),
    _mo("k1-in-ne-out-nb3", 8, 16, k=1, num_conv_branches=3),
    _mo("k1-s2", 8, 16, k=1, stride=2),
    _mo("se-depthwise-nb2", 16, 16, hw=(6, 6), groups=16, use_se=True, num_conv_branches=2),
    _mo("se-k1", 16, 32, k=1, use_se=True),
    _mo("k5-no-scale-no-act", 8, 8, k=5, use_scale_branch=False, use_act=False),
]

ALL_CASES = (ACB_CASES + REPVGG_CASES + REPVGGPLUS_CASES + QAREPVGG_CASES + DBB_CASES + ODCONV_CASES
             + MOBILEONE_CASES)
