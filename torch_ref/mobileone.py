"""MobileOne's block (``MobileOneBlock``), PyTorch reference (twin of ``paddle_rep/mobileone.py``).

Vasu et al., "MobileOne: An Improved One millisecond Mobile Backbone", CVPR 2023, arXiv:2206.04040;
upstream https://github.com/apple/ml-mobileone ``mobileone.py``. Same arguments, attribute names and
state-dict keys, so upstream state dicts load with ``strict=True``; ``use_act`` and
``use_scale_branch`` are the two arguments FastViT's copy of the block adds (apple/ml-fastvit).

Train form: a BN identity (``rbr_skip``, when in == out and stride 1), ``num_conv_branches`` kxk
conv+BN branches (``rbr_conv``), a 1x1 conv+BN scale branch (``rbr_scale``, when kernel_size > 1),
summed, then SE (optional) and ReLU. Deploy: one biased kxk ``reparam_conv``; SE stays.

Departures from upstream: arguments it accepts but computes wrongly with (padding other than
``kernel_size // 2``, dilation other than 1, SE on fewer than 16 channels, no conv branch) are
refused with a ``ValueError`` naming the argument.
"""

import torch
import torch.nn.functional as F
from torch import nn

from paddle_rep.core.checks import check_conv_args, check_input_channels, check_int
from paddle_rep.core.deploy import DeployProtocol

from . import fusion
from .repvgg import conv_bn

SE_RATIO = 0.0625  # upstream SEBlock's rd_ratio: the squeeze width is int(channels * 0.0625)


class MobileOneSEBlock(nn.Module):
    """Upstream MobileOne's ``SEBlock``: global average pool, 1x1 ``reduce``, ReLU, 1x1 ``expand``, sigmoid gate.

    Args:
        in_channels: Channels in and out.
        rd_ratio: Squeeze width as a fraction of ``in_channels`` (rounded down).

    Raises:
        ValueError: The squeeze width ``int(in_channels * rd_ratio)`` is zero.
    """

    def __init__(self, in_channels: int, rd_ratio: float = SE_RATIO) -> None:
        super().__init__()
        width = int(in_channels * rd_ratio)
        if width < 1:
            raise ValueError(f"SE on in_channels={in_channels} with rd_ratio={rd_ratio} has no squeeze channel")
        self.reduce = nn.Conv2d(in_channels, width, 1, bias=True)
        self.expand = nn.Conv2d(width, in_channels, 1, bias=True)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Scale each channel of ``inputs`` by its gate.

        Args:
            inputs: The input, ``[B, C, H, W]``.

        Returns:
            The gated input, shaped like ``inputs``.
        """
        x = F.adaptive_avg_pool2d(inputs, 1)
        x = torch.sigmoid(self.expand(F.relu(self.reduce(x))))
        return inputs * x


class MobileOneBlock(DeployProtocol, nn.Module):
    """BN identity + k kxk conv-BN branches + 1x1 conv-BN -> (SE) -> ReLU; fuses to one biased kxk conv.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Odd kernel side of the conv branches (upstream uses 3 and 1).
        stride: Stride of every conv branch; the identity exists only at stride 1 and in == out.
        padding: Must be ``kernel_size // 2`` (the scale and identity branches are centred).
        dilation: Must be 1 (upstream gives it to the deploy conv only, so train and deploy differ).
        groups: Groups of every conv branch (upstream's depthwise blocks use ``groups=in_channels``).
        inference_mode: Build the fused form only (upstream's name; same as ``deploy``).
        use_se: SE of width ``int(out_channels * 0.0625)`` on the branch sum, before the ReLU.
        num_conv_branches: Number of over-parameterized kxk conv+BN branches (at least 1).
        use_act: ReLU at the end (FastViT's argument); False: no activation.
        use_scale_branch: Build the 1x1 scale branch when ``kernel_size > 1`` (FastViT's argument).
        deploy: Build the fused form only (this project's name; same as ``inference_mode``).

    Raises:
        ValueError: An argument is out of range; the message names it.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, inference_mode: bool = False, use_se: bool = False,
                 num_conv_branches: int = 1, use_act: bool = True, use_scale_branch: bool = True,
                 deploy: bool = False) -> None:
        super().__init__()
        check_conv_args(in_channels, out_channels, kernel_size, stride, padding, dilation, groups)
        check_int("num_conv_branches", num_conv_branches, 1)
        if kernel_size % 2 == 0:
            raise ValueError(f"MobileOneBlock needs an odd kernel_size, got {kernel_size}")
        if padding != kernel_size // 2:
            raise ValueError(f"MobileOneBlock needs padding=kernel_size // 2={kernel_size // 2}, got {padding}")
        if dilation != 1:
            raise ValueError(f"MobileOneBlock supports dilation=1 only, got {dilation}")
        if use_se and int(out_channels * SE_RATIO) < 1:
            raise ValueError(f"use_se needs out_channels >= 16 (SE width is int(out_channels * 0.0625)), "
                             f"got {out_channels}")
        self.deploy = bool(inference_mode or deploy)
        self.groups, self.stride, self.kernel_size = groups, stride, kernel_size
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_conv_branches = num_conv_branches
        self.use_se, self.use_act, self.use_scale_branch = use_se, use_act, use_scale_branch
        self.se = MobileOneSEBlock(out_channels) if use_se else nn.Identity()
        self.activation = nn.ReLU() if use_act else nn.Identity()
        if self.deploy:
            self.reparam_conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                          dilation=dilation, groups=groups, bias=True)
            return
        self.rbr_skip = nn.BatchNorm2d(in_channels) if out_channels == in_channels and stride == 1 else None
        self.rbr_conv = nn.ModuleList(conv_bn(in_channels, out_channels, kernel_size, stride, padding, groups)
                                      for _ in range(num_conv_branches))
        self.rbr_scale = (conv_bn(in_channels, out_channels, 1, stride, 0, groups)
                          if kernel_size > 1 and use_scale_branch else None)

    @property
    def inference_mode(self) -> bool:
        """Whether the block is in its fused form (upstream's attribute).

        Returns:
            True once the block is fused.
        """
        return self.deploy

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Args:
            x: The input, ``[B, in_channels, H, W]``.

        Returns:
            ``activation(se(sum of branches))``, ``[B, out_channels, H', W']``.

        Raises:
            ValueError: ``x`` does not have ``in_channels`` channels.
        """
        check_input_channels(type(self).__name__, self.in_channels, list(x.shape))
        if self.deploy:
            return self.activation(self.se(self.reparam_conv(x)))
        out = None  # summed as upstream: scale + identity, then each conv branch
        for branch in (self.rbr_scale, self.rbr_skip, *self.rbr_conv):
            if branch is not None:
                out = branch(x) if out is None else out + branch(x)
        return self.activation(self.se(out))

    def get_equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fused kxk kernel and bias of the branch sum (differentiable; upstream's ``_get_kernel_bias``).

        Returns:
            ``(kernel, bias)``, ``[out, in/groups, k, k]`` and ``[out]``.
        """
        conv_bns = [(branch.conv.weight, branch.bn) for branch in self.rbr_conv]
        if self.rbr_scale is not None:
            conv_bns.append((self.rbr_scale.conv.weight, self.rbr_scale.bn))
        size = (self.kernel_size, self.kernel_size)
        return fusion.fuse_branch_sum(conv_bns, self.rbr_skip, self.groups, size)

    @torch.no_grad()
    def _fuse_branches(self) -> None:
        """Fuse into ``reparam_conv`` and delete the branches."""
        kernel, bias = self.get_equivalent_kernel_bias()
        reference = self.rbr_conv[0].conv
        for name in ("rbr_conv", "rbr_scale", "rbr_skip"):
            delattr(self, name)
        self.reparam_conv = fusion.make_fused_conv(reference, kernel, bias)
