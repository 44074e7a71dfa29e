"""QARepVGG's block (``QARepVGGBlockV2``), PyTorch reference (twin of ``paddle_rep/qarepvgg.py``).

Chu et al., "Make RepVGG Greater Again: A Quantization-aware Approach", AAAI 2024,
arXiv:2212.01593; upstream https://github.com/cxxgtxy/QARepVGG ``repvgg.py`` (``QARepVGGBlockV2``,
the repository's default block). Same arguments, attribute names and state-dict keys, so upstream
state dicts load with ``strict=True``.

Train form: a 3x3 conv+BN (``rbr_dense``), a bias-free 1x1 conv without BN (``rbr_1x1``), a bare
identity when shapes allow (``rbr_identity``), then one BN after the sum (``bn``):
``act(bn(se(drop_path(dense + 1x1) + identity)))``. Deploy: one biased 3x3 ``rbr_reparam``.

Departures from upstream: with ``use_se=True`` the post-sum BN stays a layer after the SE in the
deploy form (upstream folds it through the SE, which changes the output); ``padding_mode``
reaches the train-time 3x3 conv (upstream gives it to the deploy conv only).
"""

import torch
from torch import nn

from paddle_rep.core.checks import check_input_channels, check_repvgg_args, check_se_width
from paddle_rep.core.deploy import DeployProtocol

from . import fusion
from .repvgg import SEBlock, conv_bn


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's ``DropPath``, which upstream uses); identity in eval mode.

    Args:
        drop_prob: Probability of zeroing a sample's branch output in training (the kept ones are
            scaled by ``1 / (1 - drop_prob)``).
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Zero whole samples with probability ``drop_prob`` in training, rescaling the rest.

        Args:
            x: The input, batch first.

        Returns:
            ``x`` itself in eval mode or at ``drop_prob`` 0, else ``x * mask / (1 - drop_prob)``.
        """
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def make_activation(act: type | nn.Module | None, out_channels: int) -> nn.Module:
    """Build the activation from upstream's ``act`` argument.

    Args:
        act: A module (used as is), a class (instantiated; ``nn.PReLU`` gets one slope per
            channel), or None for ReLU.
        out_channels: Channels of the block's output (the PReLU slope count).

    Returns:
        The activation module.
    """
    if act is None:
        return nn.ReLU()
    if isinstance(act, type):
        return act(num_parameters=out_channels) if act is nn.PReLU else act()
    return act


class QARepVGGBlockV2(DeployProtocol, nn.Module):
    """3x3 conv-BN + 1x1 conv + identity -> (SE) -> BN -> act; fuses to one biased 3x3 conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Must be 3 (as upstream).
        stride: Stride of the 3x3 and the 1x1 conv; the identity exists only at stride 1 and in == out.
        padding: Must be 1 (as upstream).
        dilation: Must be 1 (upstream gives it to the deploy conv only, so train and deploy differ).
        groups: Groups of both convs.
        padding_mode: Padding of the 3x3 conv.
        deploy: Build the fused form only.
        use_se: SE of width out/16 on the branch sum, before the post-sum BN.
        use_scale: Stored and unused, as upstream.
        act: Activation module or class (default ReLU; ``nn.PReLU`` gets ``out_channels`` slopes).
        drop_path_ratio: Stochastic depth on the conv branches, only where the identity exists (as upstream).

    Raises:
        ValueError: A bad argument (kernel_size other than 3, padding other than 1, dilation other
            than 1, drop_path_ratio outside [0, 1), use_se with fewer than 16 output channels,
            unknown padding mode, ...), named in the message.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, padding_mode: str = "zeros", deploy: bool = False,
                 use_se: bool = False, use_scale: bool = False, act: type | nn.Module | None = None,
                 drop_path_ratio: float = 0.0) -> None:
        super().__init__()
        check_repvgg_args("QARepVGGBlockV2", in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                          padding_mode)
        if not 0.0 <= drop_path_ratio < 1.0:
            raise ValueError(f"drop_path_ratio must be in [0, 1), got {drop_path_ratio}")
        if use_se:
            check_se_width("use_se", out_channels, 16)
        self.deploy = deploy
        self.groups = groups
        self.in_channels, self.out_channels = in_channels, out_channels
        self.use_se, self.use_scale = use_se, use_scale
        self.drop_path = DropPath(drop_path_ratio)
        self.nonlinearity = make_activation(act, out_channels)
        self.se = SEBlock(out_channels, internal_neurons=out_channels // 16) if use_se else nn.Identity()
        if deploy:
            self.rbr_reparam = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups, bias=True, padding_mode=padding_mode)
            self.bn = nn.BatchNorm2d(out_channels) if use_se else None
            return
        self.rbr_identity = nn.Identity() if out_channels == in_channels and stride == 1 else None
        self.rbr_dense = conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups, padding_mode)
        self.rbr_1x1 = nn.Conv2d(in_channels, out_channels, 1, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the branches, sum them, then SE, post-sum BN and activation; or the fused conv once deployed.

        Args:
            inputs: The input, ``[B, in_channels, H, W]``.

        Returns:
            The output, ``[B, out_channels, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        check_input_channels(type(self).__name__, self.in_channels, list(inputs.shape))
        if self.deploy:
            out = self.se(self.rbr_reparam(inputs))
            return self.nonlinearity(self.bn(out) if self.bn is not None else out)
        out = self.rbr_dense(inputs) + self.rbr_1x1(inputs)
        if self.rbr_identity is not None:
            out = self.drop_path(out) + self.rbr_identity(inputs)
        return self.nonlinearity(self.bn(self.se(out)))

    def _branch_sum_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Kernel and bias of ``dense + 1x1 + identity``, before the post-sum BN."""
        size = self.rbr_dense.conv.weight.shape[2:]
        kernel, bias = fusion.fuse_bn_branch(self.rbr_dense.conv.weight, self.rbr_dense.bn, self.groups, size)
        kernel = kernel + fusion.pad_kernel_to(self.rbr_1x1.weight, size)
        if self.rbr_identity is not None:
            kernel = kernel + fusion.identity_kernel(self.in_channels, self.groups, size, kernel.dtype, kernel.device)
        return kernel, bias

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the fused 3x3 kernel and bias (differentiable).

        The post-sum BN is folded in unless SE sits before it (then it stays a layer).

        Returns:
            ``(kernel, bias)``, shaped ``[out, in/groups, 3, 3]`` and ``[out]``.
        """
        kernel, bias = self._branch_sum_kernel_bias()
        if self.use_se:
            return kernel, bias
        return fusion.fuse_biased_conv_bn(kernel, bias, self.bn)

    def get_custom_L2(self) -> torch.Tensor:  # noqa: N802 - upstream's name
        """Compute upstream's L2 on the equivalent kernel (off by default in its training script).

        The BN-scaled 3x3 ring gets plain L2; the centre tap is decayed as the sum of the scaled 3x3
        centre, the 1x1 kernel and (where present) the identity.

        Returns:
            The penalty, a scalar tensor.
        """
        bn = self.rbr_dense.bn
        t3 = fusion.bn_scale_shift(bn)[0].reshape(-1, 1, 1, 1).detach()
        k3, k1 = self.rbr_dense.conv.weight, self.rbr_1x1.weight
        scaled = k3 * t3
        c = k3.shape[2] // 2
        l2_ring = (scaled ** 2).sum() - (scaled[:, :, c:c + 1, c:c + 1] ** 2).sum()
        equivalent = k3[:, :, c:c + 1, c:c + 1] * t3 + k1
        if self.rbr_identity is not None:
            equivalent = equivalent + fusion.identity_kernel(self.in_channels, self.groups, (1, 1), k1.dtype, k1.device)
        return (equivalent ** 2).sum() + l2_ring

    @torch.no_grad()
    def _fuse_branches(self) -> None:
        """Fuse into ``rbr_reparam`` and delete the branches (and the post-sum BN unless SE precedes it)."""
        kernel, bias = self.get_equivalent_kernel_bias()
        reference, post_bn = self.rbr_dense.conv, (self.bn if self.use_se else None)
        for name in ("rbr_dense", "rbr_1x1", "rbr_identity", "bn"):
            delattr(self, name)
        self.rbr_reparam = fusion.make_fused_conv(reference, kernel, bias)
        self.bn = post_bn  # after rbr_reparam, so the keys come in deploy=True's order
