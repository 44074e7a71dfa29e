"""ODConv, PyTorch reference (twin of ``paddle_rep/odconv.py``).

Li, Zhou and Yao, ICLR 2022, arXiv:2209.07947; upstream https://github.com/OSVAI/ODConv
``modules/odconv.py`` (MIT). Same arguments, attribute names and state-dict keys, so
upstream state dicts load with ``strict=True``. Keeps the batch fold (one grouped conv with
``groups * B``); aggregates the per-sample kernels with a matmul over ``kernel_num``, which
avoids upstream's ``[B, kernel_num, out, in, k, k]`` temporary. Skipped heads return None.
"""

import torch
import torch.nn.functional as F
from torch import nn

from paddle_rep.core.checks import check_conv_args, check_input_channels, check_int


class Attention(nn.Module):
    """The four attention heads (channel, filter, spatial, kernel) of one ODConv.

    Args:
        in_planes: The conv's input channels.
        out_planes: The conv's output channels.
        kernel_size: The conv's kernel size (1 skips the spatial head).
        groups: The conv's groups (depthwise skips the filter head).
        reduction: Attention width = ``max(int(in_planes * reduction), min_channel)``.
        kernel_num: Number of kernels (1 skips the kernel head).
        min_channel: The smallest attention width.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, groups: int = 1,
                 reduction: float = 0.0625, kernel_num: int = 4, min_channel: int = 16) -> None:
        super().__init__()
        attention_channel = max(int(in_planes * reduction), min_channel)
        self.in_planes, self.out_planes = in_planes, out_planes
        self.kernel_size, self.kernel_num = kernel_size, kernel_num
        self.temperature = 1.0
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(in_planes, attention_channel, 1, bias=False)
        self.bn = nn.BatchNorm2d(attention_channel)
        self.relu = nn.ReLU(inplace=True)
        self.channel_fc = nn.Conv2d(attention_channel, in_planes, 1, bias=True)
        is_depthwise = in_planes == groups and in_planes == out_planes
        self.filter_fc = None if is_depthwise else nn.Conv2d(attention_channel, out_planes, 1, bias=True)
        self.spatial_fc = None if kernel_size == 1 else nn.Conv2d(attention_channel, kernel_size ** 2, 1, bias=True)
        self.kernel_fc = None if kernel_num == 1 else nn.Conv2d(attention_channel, kernel_num, 1, bias=True)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            if isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def update_temperature(self, temperature: float) -> None:
        """Set the softmax/sigmoid temperature (annealed 30 -> 1 in upstream training).

        Args:
            temperature: The new temperature.
        """
        self.temperature = float(temperature)

    def forward(self, x: torch.Tensor) -> tuple:
        """Compute the four attentions of a batch.

        Args:
            x: The conv's input, ``[B, in_planes, H, W]``.

        Returns:
            ``(channel [B,in,1,1], filter [B,out,1,1], spatial [B,1,1,k,k], kernel [B,kn])``; skipped heads
            are None.
        """
        x = self.relu(self.bn(self.fc(self.avgpool(x))))
        t = self.temperature
        channel = torch.sigmoid(self.channel_fc(x) / t).view(-1, self.in_planes, 1, 1)
        filter_ = None if self.filter_fc is None else torch.sigmoid(self.filter_fc(x) / t).view(
            -1, self.out_planes, 1, 1)
        k = self.kernel_size
        spatial = None if self.spatial_fc is None else torch.sigmoid(self.spatial_fc(x) / t).view(-1, 1, 1, k, k)
        kernel = None if self.kernel_fc is None else F.softmax(self.kernel_fc(x).view(-1, self.kernel_num) / t, dim=1)
        return channel, filter_, spatial, kernel


class ODConv2d(nn.Module):
    """Dynamic conv: ``kernel_num`` kernels mixed per sample by four attentions; no bias.

    Args:
        in_planes: Input channels (upstream's name).
        out_planes: Output channels.
        kernel_size: Square kernel size.
        stride: As ``torch.nn.Conv2d``.
        padding: As ``torch.nn.Conv2d``.
        dilation: As ``torch.nn.Conv2d``.
        groups: As ``torch.nn.Conv2d`` (depthwise skips the filter attention, as upstream).
        reduction: Attention width = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Number of kernels mixed per sample.

    Raises:
        ValueError: A bad argument, named in the message.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, reduction: float = 0.0625, kernel_num: int = 4) -> None:
        super().__init__()
        check_conv_args(in_planes, out_planes, kernel_size, stride, padding, dilation, groups)
        check_int("kernel_num", kernel_num, 1)
        if not reduction > 0:
            raise ValueError(f"reduction must be > 0, got {reduction!r}")
        self.in_planes, self.out_planes = in_planes, out_planes
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.groups, self.kernel_num = dilation, groups, kernel_num
        self.attention = Attention(in_planes, out_planes, kernel_size, groups=groups, reduction=reduction,
                                   kernel_num=kernel_num)
        self.weight = nn.Parameter(torch.randn(kernel_num, out_planes, in_planes // groups, kernel_size, kernel_size),
                                   requires_grad=True)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        for i in range(self.kernel_num):
            nn.init.kaiming_normal_(self.weight[i], mode="fan_out", nonlinearity="relu")

    def update_temperature(self, temperature: float) -> None:
        """Set the attention's softmax/sigmoid temperature.

        Args:
            temperature: The new temperature.
        """
        self.attention.update_temperature(temperature)

    def aggregate_weight(self, spatial: torch.Tensor | None, kernel: torch.Tensor | None,
                         batch: int) -> torch.Tensor:
        """Build the per-sample kernels from the spatial and kernel attentions.

        Args:
            spatial: The spatial attention ``[B, 1, 1, k, k]``, or None when skipped.
            kernel: The kernel attention ``[B, kernel_num]``, or None when skipped.
            batch: The batch size.

        Returns:
            The kernels, ``[batch, out, in/groups, k, k]``.
        """
        kn, out, cin, k = self.kernel_num, self.out_planes, self.in_planes // self.groups, self.kernel_size
        if kernel is None:
            weight = self.weight.reshape(1, out, cin, k, k)
        else:
            weight = torch.matmul(kernel, self.weight.reshape(kn, -1)).reshape(-1, out, cin, k, k)
        if spatial is not None:
            weight = weight * spatial
        if weight.shape[0] != batch:
            weight = weight.expand(batch, out, cin, k, k)
        return weight

    def _forward_impl_common(self, x: torch.Tensor) -> torch.Tensor:
        channel, filter_, spatial, kernel = self.attention(x)
        batch, _, height, width = x.size()
        x = (x * channel).reshape(1, -1, height, width)
        weight = self.aggregate_weight(spatial, kernel, batch)
        weight = weight.reshape(-1, self.in_planes // self.groups, self.kernel_size, self.kernel_size)
        out = F.conv2d(x, weight, None, stride=self.stride, padding=self.padding, dilation=self.dilation,
                       groups=self.groups * batch)
        out = out.view(batch, self.out_planes, out.size(-2), out.size(-1))
        return out if filter_ is None else out * filter_

    def _forward_impl_pw1x(self, x: torch.Tensor) -> torch.Tensor:
        channel, filter_, _, _ = self.attention(x)
        out = F.conv2d(x * channel, self.weight.squeeze(dim=0), None, stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups)
        return out if filter_ is None else out * filter_

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve each sample with its own attention-weighted kernel.

        Args:
            x: The input, ``[B, in_planes, H, W]``.

        Returns:
            The output, ``[B, out_planes, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        check_input_channels("ODConv2d", self.in_planes, list(x.shape))
        if self.kernel_size == 1 and self.kernel_num == 1:
            return self._forward_impl_pw1x(x)
        return self._forward_impl_common(x)
