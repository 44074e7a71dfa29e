"""RepVGG's block for Paddle, and RepVGGplus's (the same branches with SE after the ReLU).

Ding et al., "RepVGG: Making VGG-style ConvNets Great Again", CVPR 2021, arXiv:2101.03697.
Upstream: https://github.com/DingXiaoH/RepVGG (``repvgg.py``, ``se_block.py``, MIT licence).
Same arguments, attribute names and state-dict keys as upstream. Unlike upstream, SE pools
globally on non-square inputs, ``padding_mode`` reaches the train-time 3x3 conv and survives
fusion, and the fused layer drops the branches (PaddleClas keeps them).
"""

import paddle
from paddle import nn
from paddle.nn import functional as F

from . import fusion
from .bn import BatchNorm2D
from .core.checks import check_input_channels, check_repvgg_args, check_se_width
from .core.deploy import DeployProtocol
from .pooling import global_avg_pool


class ConvBN(nn.Sequential):
    """Upstream ``conv_bn``: a bias-free conv named ``conv`` followed by a BN named ``bn``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Square kernel size.
        stride: The conv's stride.
        padding: The conv's padding.
        groups: The conv's groups.
        padding_mode: The conv's padding mode.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int,
                 groups: int = 1, padding_mode: str = "zeros") -> None:
        super().__init__(
            ("conv", nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                               groups=groups, padding_mode=padding_mode, bias_attr=False)),
            ("bn", BatchNorm2D(out_channels)),
        )


class SEBlock(nn.Layer):
    """Squeeze-and-excitation with 1x1 convs ``down`` and ``up`` (upstream ``se_block.py``).

    Upstream pools with a kernel of the input width, which is global only for square maps;
    this pools over the whole map, identical on square inputs.

    Args:
        input_channels: Channels in and out.
        internal_neurons: Channels between ``down`` and ``up``.
    """

    def __init__(self, input_channels: int, internal_neurons: int) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.down = nn.Conv2D(input_channels, internal_neurons, 1, bias_attr=True)
        self.up = nn.Conv2D(internal_neurons, input_channels, 1, bias_attr=True)

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        """Scale each channel of ``inputs`` by its gate.

        Args:
            inputs: The input, ``[B, input_channels, H, W]``.

        Returns:
            The gated input, shaped like ``inputs``.
        """
        x = global_avg_pool(inputs)
        x = F.sigmoid(self.up(F.relu(self.down(x))))
        return inputs * x.reshape([-1, self.input_channels, 1, 1])


class RepVGGBlock(DeployProtocol, nn.Layer):
    """3x3 conv-BN + 1x1 conv-BN (+ identity BN) -> optional SE -> ReLU; fuses to one 3x3 conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels; equal to ``in_channels`` at stride 1 adds the identity branch.
        kernel_size: Must be 3.
        stride: 1 or 2.
        padding: Must be 1.
        dilation: Must be 1 (upstream dilates the fused conv only, which would change the function).
        groups: As ``paddle.nn.Conv2D``.
        padding_mode: Padding of the 3x3 branch, kept by the fused conv.
        deploy: Build the fused form (``rbr_reparam``) directly.
        use_se: Squeeze-and-excitation of width out/16 before the ReLU (needs ``out_channels >= 16``).

    Raises:
        ValueError: A bad argument, named in the message.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, padding_mode: str = "zeros",
                 deploy: bool = False, use_se: bool = False) -> None:
        super().__init__()
        check_repvgg_args("RepVGGBlock", in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                          padding_mode)
        self.deploy = deploy
        self.groups = groups
        self.in_channels, self.out_channels = in_channels, out_channels
        self.nonlinearity = nn.ReLU()
        self._add_attention(out_channels, use_se)
        if deploy:
            self.rbr_reparam = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups, padding_mode=padding_mode)
            return
        has_identity = out_channels == in_channels and stride == 1
        self.rbr_identity = BatchNorm2D(in_channels) if has_identity else None
        self.rbr_dense = ConvBN(in_channels, out_channels, kernel_size, stride, padding, groups, padding_mode)
        self.rbr_1x1 = ConvBN(in_channels, out_channels, 1, stride, padding - kernel_size // 2, groups)

    def _add_attention(self, out_channels: int, enabled: bool) -> None:
        """Upstream's ``se``: SE of width out/16, applied before the ReLU (RepVGGplusBlock overrides this)."""
        if enabled:
            check_se_width("use_se", out_channels, 16)
        self.se = SEBlock(out_channels, internal_neurons=out_channels // 16) if enabled else nn.Identity()

    def _branches(self, inputs: paddle.Tensor) -> paddle.Tensor:
        """The pre-activation output: the fused conv, or the sum of the training-time branches."""
        check_input_channels(type(self).__name__, self.in_channels, inputs.shape)
        if self.deploy:
            return self.rbr_reparam(inputs)
        out = self.rbr_dense(inputs) + self.rbr_1x1(inputs)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(inputs)
        return out

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        """Sum the branches (or run the fused conv), then SE and ReLU.

        Args:
            inputs: The input, ``[B, in_channels, H, W]``.

        Returns:
            The output, ``[B, out_channels, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        return self.nonlinearity(self.se(self._branches(inputs)))

    def get_equivalent_kernel_bias(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Compute the 3x3 kernel and bias of the fused conv (differentiable, as upstream).

        Returns:
            ``(kernel, bias)``, shaped ``[out, in/groups, 3, 3]`` and ``[out]``.
        """
        size = self.rbr_dense.conv.weight.shape[2:]
        branches = [
            fusion.fuse_bn_branch(self.rbr_dense.conv.weight, self.rbr_dense.bn, self.groups, size),
            fusion.fuse_bn_branch(self.rbr_1x1.conv.weight, self.rbr_1x1.bn, self.groups, size),
        ]
        if self.rbr_identity is not None:
            branches.append(fusion.fuse_bn_branch(None, self.rbr_identity, self.groups, size))
        return fusion.sum_branches(branches)

    def get_custom_L2(self) -> paddle.Tensor:  # noqa: N802 - upstream's name
        """Compute upstream's L2 on the equivalent kernel (``loss += weight_decay * 0.5 * get_custom_L2()``).

        Decays the 3x3 ring directly and the centre tap as the BN-scaled sum of the 3x3 centre
        and the 1x1 kernel; the identity branch is ignored, as upstream.

        Returns:
            The penalty, a scalar tensor.
        """
        def bn_scale(bn: nn.Layer) -> paddle.Tensor:
            return fusion.bn_scale_shift(bn)[0].reshape([-1, 1, 1, 1]).detach()
        k3, k1 = self.rbr_dense.conv.weight, self.rbr_1x1.conv.weight
        t3, t1 = bn_scale(self.rbr_dense.bn), bn_scale(self.rbr_1x1.bn)
        c = k3.shape[2] // 2
        centre = k3[:, :, c:c + 1, c:c + 1]
        l2_ring = (k3 ** 2).sum() - (centre ** 2).sum()
        equivalent = centre * t3 + k1 * t1
        return (equivalent ** 2 / (t3 ** 2 + t1 ** 2)).sum() + l2_ring

    @paddle.no_grad()
    def _fuse_branches(self) -> None:
        """Fuse the branches into ``rbr_reparam`` and delete them; keeps SE (via :meth:`switch_to_deploy`)."""
        kernel, bias = self.get_equivalent_kernel_bias()
        self.rbr_reparam = fusion.make_fused_conv(self.rbr_dense.conv, kernel, bias)
        for name in ("rbr_dense", "rbr_1x1", "rbr_identity"):
            delattr(self, name)


class RepVGGplusBlock(RepVGGBlock):
    """RepVGGplus's block (upstream ``repvggplus.py``): RepVGGBlock's branches, then ReLU, then SE.

    The SE (``post_se``, width out/4) sits after the ReLU instead of before it; branch names,
    fusion and ``get_custom_L2`` are RepVGGBlock's, so state-dict keys are upstream's.

    Args:
        in_channels: Input channels.
        out_channels: Output channels; equal to ``in_channels`` at stride 1 adds the identity branch.
        kernel_size: Must be 3.
        stride: 1 or 2.
        padding: Must be 1.
        dilation: Must be 1.
        groups: As ``paddle.nn.Conv2D``.
        padding_mode: Padding of the 3x3 branch, kept by the fused conv.
        deploy: Build the fused form (``rbr_reparam``) directly.
        use_post_se: Squeeze-and-excitation of width out/4 after the ReLU (needs ``out_channels >= 4``).

    Raises:
        ValueError: A bad argument, named in the message.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, padding_mode: str = "zeros",
                 deploy: bool = False, use_post_se: bool = False) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, padding_mode=padding_mode, deploy=deploy, use_se=use_post_se)

    def _add_attention(self, out_channels: int, enabled: bool) -> None:
        if enabled:
            check_se_width("use_post_se", out_channels, 4)
        self.post_se = SEBlock(out_channels, internal_neurons=out_channels // 4) if enabled else nn.Identity()

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        """Sum the branches (or run the fused conv), then ReLU and the post-SE.

        Args:
            inputs: The input, ``[B, in_channels, H, W]``.

        Returns:
            The output, ``[B, out_channels, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        return self.post_se(self.nonlinearity(self._branches(inputs)))
