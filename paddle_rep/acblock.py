"""ACNet's Asymmetric Convolution Block for Paddle.

Ding et al., "ACNet: Strengthening the Kernel Skeletons for Powerful CNN via Asymmetric
Convolution Blocks", ICCV 2019, arXiv:1908.03930. Upstream: https://github.com/DingXiaoH/ACNet
(``acnet/acb.py``, MIT licence). Same arguments, attribute names and state-dict keys as
upstream; fixed where upstream breaks: dilation > 1, ``use_affine=False`` fusion and non-zero
padding modes (Paddle rejects list padding with them, so the asymmetric branches pad
explicitly).
"""

import logging

import paddle
from paddle import nn
from paddle.nn import functional as F

from . import fusion
from .bn import BatchNorm2D
from .core.checks import check_conv_args, check_input_channels, check_padding_mode
from .core.deploy import DeployProtocol

logger = logging.getLogger(__name__)

_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def asymmetric_padding(kernel_size: int, padding: int, dilation: int) -> tuple[int, tuple, tuple]:
    """Compute the crop and paddings that line the kx1 and 1xk branches up with the kxk one.

    Upstream uses ``padding - k // 2``; with dilation the square kernel's half-width is
    ``dilation * (k // 2)``, which is what keeps the three outputs the same size.

    Args:
        kernel_size: The square kernel's side k.
        padding: The square conv's padding.
        dilation: The dilation of all three convs.

    Returns:
        ``(crop, hor_padding, ver_padding)``: how much to crop off each side of the input (where
        the padding is smaller than the kernel's half-width), and the (height, width) paddings of
        the 1xk and kx1 branches.
    """
    center = dilation * (kernel_size // 2)
    if padding >= center:
        return 0, (padding - center, padding), (padding, padding - center)
    return center - padding, (0, padding), (padding, 0)


class ACBlock(DeployProtocol, nn.Layer):
    """kxk conv + BN, plus kx1 and 1xk conv + BN branches, fusable into one kxk conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd square kernel size k.
        stride: As ``paddle.nn.Conv2D``.
        padding: As ``paddle.nn.Conv2D``; the asymmetric branches pad or crop to line up.
        dilation: As ``paddle.nn.Conv2D``.
        groups: As ``paddle.nn.Conv2D`` (depthwise works).
        padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``, for all branches.
        deploy: Build the fused form (``fused_conv``) directly.
        use_affine: BNs with scale and shift; without, they fuse as scale 1, shift 0.
        reduce_gamma: Start every BN scale at 1/3 (upstream's option).
        gamma_init: Start every BN scale at this value (exclusive with ``reduce_gamma``).

    Raises:
        ValueError: A bad argument (even kernel, unknown padding mode, ...), named in the message.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, dilation: int = 1, groups: int = 1, padding_mode: str = "zeros",
                 deploy: bool = False, use_affine: bool = True, reduce_gamma: bool = False,
                 gamma_init: float | None = None) -> None:
        super().__init__()
        check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for ACBlock, got {kernel_size}")
        check_padding_mode(padding_mode)
        if reduce_gamma and gamma_init is not None:
            raise ValueError("reduce_gamma and gamma_init are exclusive; pass one of them")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.groups, self.padding_mode = kernel_size, groups, padding_mode
        self.deploy = deploy
        self.crop, self.hor_padding, self.ver_padding = asymmetric_padding(kernel_size, padding, dilation)
        if deploy:
            self.fused_conv = nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                        dilation=dilation, groups=groups, padding_mode=padding_mode)
            return
        conv_kwargs = dict(stride=stride, dilation=dilation, groups=groups, bias_attr=False)
        self.square_conv = nn.Conv2D(in_channels, out_channels, kernel_size, padding=padding,
                                     padding_mode=padding_mode, **conv_kwargs)
        self.square_bn = self._make_bn(out_channels, use_affine)
        # Paddle takes list padding only in zeros mode; other modes pad in forward().
        explicit = padding_mode != "zeros"
        self.ver_conv = nn.Conv2D(in_channels, out_channels, (kernel_size, 1),
                                  padding=0 if explicit else list(self.ver_padding), **conv_kwargs)
        self.hor_conv = nn.Conv2D(in_channels, out_channels, (1, kernel_size),
                                  padding=0 if explicit else list(self.hor_padding), **conv_kwargs)
        self.ver_bn = self._make_bn(out_channels, use_affine)
        self.hor_bn = self._make_bn(out_channels, use_affine)
        if reduce_gamma:
            self.init_gamma(1.0 / 3)
        if gamma_init is not None:
            self.init_gamma(gamma_init)

    @staticmethod
    def _make_bn(channels: int, use_affine: bool) -> BatchNorm2D:
        if use_affine:
            return BatchNorm2D(channels)
        return BatchNorm2D(channels, weight_attr=False, bias_attr=False)

    def init_gamma(self, gamma_value: float) -> None:
        """Set the scale of all three BNs (upstream ``reduce_gamma`` / ``gamma_init``).

        Args:
            gamma_value: The scale every BN starts at.

        Raises:
            ValueError: The BNs have no scale (``use_affine=False``).
        """
        for bn in (self.square_bn, self.ver_bn, self.hor_bn):
            if bn.weight is None:
                raise ValueError("init_gamma needs use_affine=True: the BNs have no weight")
            nn.initializer.Constant(gamma_value)(bn.weight)
        logger.debug("ACBlock: BN gammas set to %s", gamma_value)

    def single_init(self) -> None:
        """Start as the square conv alone: square gamma 1, asymmetric gammas 0."""
        nn.initializer.Constant(1.0)(self.square_bn.weight)
        nn.initializer.Constant(0.0)(self.ver_bn.weight)
        nn.initializer.Constant(0.0)(self.hor_bn.weight)

    def _branch_input(self, x: paddle.Tensor, padding: tuple, crop_width: bool) -> paddle.Tensor:
        if self.crop > 0:
            x = x[:, :, :, self.crop:-self.crop] if crop_width else x[:, :, self.crop:-self.crop, :]
        if self.padding_mode != "zeros":
            pad_h, pad_w = padding
            x = F.pad(x, [pad_w, pad_w, pad_h, pad_h], mode=_PAD_MODE[self.padding_mode])
        return x

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Run the three branches and sum them, or the fused conv once deployed.

        Args:
            x: The input, ``[B, in_channels, H, W]``.

        Returns:
            The output, ``[B, out_channels, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        check_input_channels("ACBlock", self.in_channels, x.shape)
        if self.deploy:
            return self.fused_conv(x)
        square = self.square_bn(self.square_conv(x))
        vertical = self.ver_bn(self.ver_conv(self._branch_input(x, self.ver_padding, crop_width=True)))
        horizontal = self.hor_bn(self.hor_conv(self._branch_input(x, self.hor_padding, crop_width=False)))
        return square + vertical + horizontal

    def get_equivalent_kernel_bias(self) -> tuple[paddle.Tensor, paddle.Tensor]:
        """Compute the kxk kernel and bias of the fused conv (differentiable).

        Returns:
            ``(kernel, bias)``, shaped ``[out, in/groups, k, k]`` and ``[out]``.
        """
        size = (self.kernel_size, self.kernel_size)
        return fusion.sum_branches([
            fusion.fuse_bn_branch(self.square_conv.weight, self.square_bn, self.groups, size),
            fusion.fuse_bn_branch(self.hor_conv.weight, self.hor_bn, self.groups, size),
            fusion.fuse_bn_branch(self.ver_conv.weight, self.ver_bn, self.groups, size),
        ])

    @paddle.no_grad()
    def _fuse_branches(self) -> None:
        """Fuse the three branches into ``fused_conv`` and delete them (via :meth:`switch_to_deploy`)."""
        kernel, bias = self.get_equivalent_kernel_bias()
        self.fused_conv = fusion.make_fused_conv(self.square_conv, kernel, bias)
        for name in ("square_conv", "square_bn", "ver_conv", "hor_conv", "ver_bn", "hor_bn"):
            delattr(self, name)
