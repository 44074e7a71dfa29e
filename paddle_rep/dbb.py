"""DBB's Diverse Branch Block for Paddle (twin of ``torch_ref/dbb.py``).

Ding et al., "Diverse Branch Block: Building a Convolution as an Inception-like Unit", CVPR 2021,
arXiv:2103.13425; upstream https://github.com/DingXiaoH/DiverseBranchBlock ``diversebranchblock.py``
(Apache-2.0). Same arguments, attribute names and state-dict keys as upstream and
``torch_ref.dbb``; PaddleClas's ``ppcls/arch/backbone/base/dbb`` block has the same keys.

Train form, summed: ``dbb_origin`` (kxk conv + BN), ``dbb_1x1`` (1x1 conv + BN), ``dbb_avg`` (1x1
conv -> ``BNAndPadLayer`` -> kxk average pool -> BN) and ``dbb_1x1_kxk`` (1x1 conv, an
``IdentityBasedConv1x1`` when it keeps the width -> ``BNAndPadLayer`` -> kxk conv -> BN); with
``groups >= out_channels`` (depthwise) ``dbb_1x1`` and ``dbb_avg.conv`` do not exist and the pool
pads with zeros itself. Deploy: one biased kxk ``dbb_reparam``, then ``nonlinear``.

Departures from upstream: ``groups >= out_channels`` with ``in_channels != out_channels`` takes the
1x1 path (upstream's pool-only branch keeps ``in_channels`` channels and crashes); ``dilation``
must be 1 (upstream dilates ``dbb_origin`` only, so its fused conv differs); bad arguments raise
``ValueError`` instead of asserting.
"""

import paddle
from paddle import nn
from paddle.nn import functional as F

from . import fusion
from .bn import BatchNorm2D
from .core.checks import check_conv_args, check_input_channels, check_int
from .core.deploy import DeployProtocol
from .pooling import AvgPool2D
from .repvgg import ConvBN


class IdentityBasedConv1x1(nn.Conv2D):
    """A 1x1 conv whose kernel is ``weight + identity`` (``weight`` starts at zero), as upstream.

    Args:
        channels: Channels in and out.
        groups: The conv's groups.
    """

    def __init__(self, channels: int, groups: int = 1) -> None:
        super().__init__(channels, channels, kernel_size=1, stride=1, padding=0, groups=groups, bias_attr=False,
                         weight_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))

    def get_actual_kernel(self) -> paddle.Tensor:
        """The kernel the conv applies.

        Returns:
            ``weight`` plus the identity kernel, ``[channels, channels/groups, 1, 1]``.
        """
        return self.weight + fusion.identity_kernel(self._out_channels, self._groups, (1, 1), self.weight.dtype)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Apply the identity-based 1x1 conv.

        Args:
            x: The input, ``[B, channels, H, W]``.

        Returns:
            The output, same shape.
        """
        return F.conv2d(x, self.get_actual_kernel(), None, stride=1, padding=0, groups=self._groups)


class BNAndPadLayer(nn.Layer):
    """BN, then pad each channel with the value the BN gives a zero input (so a later conv folds exactly).

    Args:
        pad_pixels: Border width on every side.
        num_features: Channels.
        eps: The BN's epsilon.
        momentum: The BN's momentum in torch's convention (upstream's 0.1 is Paddle's 0.9).
        affine: BN with weight and bias.
    """

    def __init__(self, pad_pixels: int, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True) -> None:
        super().__init__()
        flags = {} if affine else {"weight_attr": False, "bias_attr": False}
        self.bn = BatchNorm2D(num_features, momentum=1.0 - momentum, epsilon=eps, **flags)
        self.pad_pixels = pad_pixels

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Normalise, then pad with the BN's shift (running statistics, detached, as upstream).

        Args:
            x: The input, ``[B, C, H, W]``.

        Returns:
            ``[B, C, H + 2p, W + 2p]``.
        """
        output = self.bn(x)
        p = self.pad_pixels
        if p > 0:
            pad_values = self._zero_input_value().detach().reshape([1, -1, 1, 1])
            # 1 on the border, 0 inside; built from the input so a dynamic H/W exports.
            border = F.pad(paddle.zeros_like(output[:, :1]), [p, p, p, p], value=1.0)
            output = F.pad(output, [p, p, p, p]) + border * pad_values
        return output

    def _zero_input_value(self) -> paddle.Tensor:
        # Paddle's BN kernel receives epsilon as float32, so a zero input comes out with that eps.
        return fusion.bn_scale_shift(self.bn, float32_eps=True)[1]


class DiverseBranchBlock(DeployProtocol, nn.Layer):
    """Four branches (kxk, 1x1, 1x1-avg, 1x1-kxk), each ending in BN, fusable into one kxk conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd square kernel size k.
        stride: Stride of every branch.
        padding: Must be ``kernel_size // 2`` (as upstream).
        dilation: Must be 1.
        groups: Groups of every conv (``groups >= out_channels``: the depthwise form).
        internal_channels_1x1_3x3: Width between the 1x1 and the kxk conv of ``dbb_1x1_kxk``; None:
            ``in_channels``, or ``2 * in_channels`` in the depthwise form (upstream's default).
        deploy: Build the fused form (``dbb_reparam``) only.
        nonlinear: A layer applied after the sum (None: identity).
        single_init: Start as ``dbb_origin`` alone: its BN scale 1, the other branches' last BN scale 0.

    Raises:
        ValueError: A bad argument, named in the message.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, internal_channels_1x1_3x3: int | None = None,
                 deploy: bool = False, nonlinear: nn.Layer | None = None, single_init: bool = False) -> None:
        super().__init__()
        check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for DiverseBranchBlock, got {kernel_size}")
        if padding != kernel_size // 2:
            raise ValueError(f"DiverseBranchBlock needs padding=kernel_size // 2={kernel_size // 2}, got {padding}")
        if dilation != 1:
            raise ValueError(f"DiverseBranchBlock supports dilation=1 only, got {dilation}")
        self.deploy = deploy
        self.nonlinear = nn.Identity() if nonlinear is None else nonlinear
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.groups = kernel_size, groups
        if deploy:
            self.dbb_reparam = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                         dilation=dilation, groups=groups, bias_attr=True)
            return
        self.dbb_origin = ConvBN(in_channels, out_channels, kernel_size, stride, padding, groups)
        self.dbb_avg = nn.Sequential()
        if groups < out_channels or in_channels != out_channels:
            self.dbb_avg.add_sublayer("conv", nn.Conv2D(in_channels, out_channels, 1, groups=groups, bias_attr=False))
            self.dbb_avg.add_sublayer("bn", BNAndPadLayer(padding, out_channels))
            self.dbb_avg.add_sublayer("avg", AvgPool2D(kernel_size, stride=stride, padding=0))
            self.dbb_1x1 = ConvBN(in_channels, out_channels, 1, stride, 0, groups)
        else:
            self.dbb_avg.add_sublayer("avg", AvgPool2D(kernel_size, stride=stride, padding=padding))
        self.dbb_avg.add_sublayer("avgbn", BatchNorm2D(out_channels))
        if internal_channels_1x1_3x3 is None:
            internal_channels_1x1_3x3 = in_channels if groups < out_channels else 2 * in_channels
        check_int("internal_channels_1x1_3x3", internal_channels_1x1_3x3, 1)
        if internal_channels_1x1_3x3 % groups:
            raise ValueError(f"internal_channels_1x1_3x3={internal_channels_1x1_3x3} is not divisible by "
                             f"groups={groups}")
        self.dbb_1x1_kxk = nn.Sequential()
        if internal_channels_1x1_3x3 == in_channels:
            self.dbb_1x1_kxk.add_sublayer("idconv1", IdentityBasedConv1x1(in_channels, groups=groups))
        else:
            self.dbb_1x1_kxk.add_sublayer("conv1", nn.Conv2D(in_channels, internal_channels_1x1_3x3, 1, groups=groups,
                                                           bias_attr=False))
        self.dbb_1x1_kxk.add_sublayer("bn1", BNAndPadLayer(padding, internal_channels_1x1_3x3))
        self.dbb_1x1_kxk.add_sublayer("conv2", nn.Conv2D(internal_channels_1x1_3x3, out_channels, kernel_size,
                                                       stride=stride, padding=0, groups=groups, bias_attr=False))
        self.dbb_1x1_kxk.add_sublayer("bn2", BatchNorm2D(out_channels))
        if single_init:
            self.single_init()

    def init_gamma(self, gamma_value: float) -> None:
        """Set the scale of the last BN of every branch (upstream's ``init_gamma``).

        Args:
            gamma_value: The scale to start at.
        """
        if self.deploy:
            return
        bns = [self.dbb_origin.bn, self.dbb_avg.avgbn, self.dbb_1x1_kxk.bn2]
        if hasattr(self, "dbb_1x1"):
            bns.append(self.dbb_1x1.bn)
        for bn in bns:
            nn.initializer.Constant(gamma_value)(bn.weight)

    def single_init(self) -> None:
        """Start as ``dbb_origin`` alone: its BN scale 1, every other branch's last BN scale 0."""
        self.init_gamma(0.0)
        if not self.deploy:
            nn.initializer.Constant(1.0)(self.dbb_origin.bn.weight)

    def forward(self, inputs: paddle.Tensor) -> paddle.Tensor:
        """Sum the branches (or run the fused conv), then ``nonlinear``.

        Args:
            inputs: The input, ``[B, in_channels, H, W]``.

        Returns:
            The output, ``[B, out_channels, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        check_input_channels(type(self).__name__, self.in_channels, inputs.shape)
        if self.deploy:
            return self.nonlinear(self.dbb_reparam(inputs))
        out = self.dbb_origin(inputs)
        if hasattr(self, "dbb_1x1"):
            out = out + self.dbb_1x1(inputs)
        out = out + self.dbb_avg(inputs)
        out = out + self.dbb_1x1_kxk(inputs)
        return self.nonlinear(out)

    def get_equivalent_kernel_bias(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Compute the kxk kernel and bias of the fused conv (differentiable), as upstream.

        Returns:
            ``(kernel, bias)``, shaped ``[out, in/groups, k, k]`` and ``[out]``.
        """
        size = (self.kernel_size, self.kernel_size)
        branches = [fusion.fuse_conv_bn(self.dbb_origin.conv.weight, self.dbb_origin.bn)]
        if hasattr(self, "dbb_1x1"):
            branches.append(fusion.fuse_bn_branch(self.dbb_1x1.conv.weight, self.dbb_1x1.bn, self.groups, size))
        kxk = self.dbb_1x1_kxk
        first = kxk.idconv1.get_actual_kernel() if hasattr(kxk, "idconv1") else kxk.conv1.weight
        branches.append(fusion.merge_1x1_kxk(*fusion.fuse_conv_bn(first, kxk.bn1.bn),
                                             *fusion.fuse_conv_bn(kxk.conv2.weight, kxk.bn2), groups=self.groups))
        avgbn = self.dbb_avg.avgbn
        k_avg = fusion.avg_pool_kernel(self.out_channels, self.kernel_size, self.groups, avgbn._mean.dtype)
        avg_branch = fusion.fuse_conv_bn(k_avg, avgbn)
        if hasattr(self.dbb_avg, "conv"):
            avg_branch = fusion.merge_1x1_kxk(*fusion.fuse_conv_bn(self.dbb_avg.conv.weight, self.dbb_avg.bn.bn),
                                              *avg_branch, groups=self.groups)
        branches.append(avg_branch)
        return fusion.sum_branches(branches)

    @paddle.no_grad()
    def _fuse_branches(self) -> None:
        """Fuse the branches into ``dbb_reparam`` and delete them (via :meth:`switch_to_deploy`)."""
        kernel, bias = self.get_equivalent_kernel_bias()
        reference = self.dbb_origin.conv
        for name in ("dbb_origin", "dbb_avg", "dbb_1x1", "dbb_1x1_kxk"):
            if hasattr(self, name):
                delattr(self, name)
        self.dbb_reparam = fusion.make_fused_conv(reference, kernel, bias)
