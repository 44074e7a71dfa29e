"""ODConv (omni-dimensional dynamic convolution) for Paddle.

Li, Zhou and Yao, "Omni-Dimensional Dynamic Convolution", ICLR 2022, arXiv:2209.07947.
Upstream: https://github.com/OSVAI/ODConv (``modules/odconv.py``, MIT licence). Same
arguments, attribute names and state-dict keys as upstream (``weight`` is
``[kernel_num, out, in/groups, k, k]``). The forward keeps upstream's batch fold: the batch
is folded into the channels and one grouped conv with ``groups * B`` runs all samples. The
per-sample kernels are aggregated with a matmul over ``kernel_num`` instead of upstream's
broadcast-and-sum, which never builds the ``[B, kernel_num, out, in, k, k]`` temporary.
Skipped attention heads return ``None`` (upstream returns the float 1.0).
"""

import paddle
from paddle import nn
from paddle.nn import functional as F

from ._validate import check_conv_args, check_input_channels, check_int
from .bn import BatchNorm2D


def _kaiming_fan_out(out_channels: int, kernel_area: int) -> nn.initializer.Initializer:
    # kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (out * kh * kw)).
    return nn.initializer.KaimingNormal(fan_in=out_channels * kernel_area)


class Attention(nn.Layer):
    """The four attention heads (channel, filter, spatial, kernel) of one ODConv."""

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, groups: int = 1,
                 reduction: float = 0.0625, kernel_num: int = 4, min_channel: int = 16) -> None:
        super().__init__()
        attention_channel = max(int(in_planes * reduction), min_channel)
        self.in_planes, self.out_planes = in_planes, out_planes
        self.kernel_size, self.kernel_num = kernel_size, kernel_num
        self.temperature = 1.0

        def conv1x1(cin: int, cout: int, bias: bool) -> nn.Conv2D:
            init = paddle.ParamAttr(initializer=_kaiming_fan_out(cout, 1))
            bias_attr = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)) if bias else False
            return nn.Conv2D(cin, cout, 1, weight_attr=init, bias_attr=bias_attr)

        self.avgpool = nn.AdaptiveAvgPool2D(1)
        self.fc = conv1x1(in_planes, attention_channel, bias=False)
        self.bn = BatchNorm2D(attention_channel)
        self.relu = nn.ReLU()
        self.channel_fc = conv1x1(attention_channel, in_planes, bias=True)
        is_depthwise = in_planes == groups and in_planes == out_planes
        self.filter_fc = None if is_depthwise else conv1x1(attention_channel, out_planes, bias=True)
        self.spatial_fc = None if kernel_size == 1 else conv1x1(attention_channel, kernel_size ** 2, bias=True)
        self.kernel_fc = None if kernel_num == 1 else conv1x1(attention_channel, kernel_num, bias=True)

    def update_temperature(self, temperature: float) -> None:
        """Set the softmax/sigmoid temperature (annealed 30 -> 1 in upstream training)."""
        self.temperature = float(temperature)

    def forward(self, x: paddle.Tensor) -> tuple:
        """``(channel [B,in,1,1], filter [B,out,1,1], spatial [B,1,1,k,k], kernel [B,kn])``; skipped heads are None."""
        x = self.relu(self.bn(self.fc(self.avgpool(x))))
        t = self.temperature
        channel = F.sigmoid(self.channel_fc(x) / t).reshape([-1, self.in_planes, 1, 1])
        filter_ = None if self.filter_fc is None else F.sigmoid(self.filter_fc(x) / t).reshape(
            [-1, self.out_planes, 1, 1])
        k = self.kernel_size
        spatial = None if self.spatial_fc is None else F.sigmoid(self.spatial_fc(x) / t).reshape([-1, 1, 1, k, k])
        kernel = None if self.kernel_fc is None else F.softmax(
            self.kernel_fc(x).reshape([-1, self.kernel_num]) / t, axis=1)
        return channel, filter_, spatial, kernel


class ODConv2D(nn.Layer):
    """Dynamic conv: ``kernel_num`` kernels mixed per sample by four attentions; no bias."""

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
        # Upstream initialises each weight[i] with kaiming fan_out. A slice of a Paddle
        # parameter is a copy, so the initializer is set on the whole parameter.
        self.weight = self.create_parameter(
            [kernel_num, out_planes, in_planes // groups, kernel_size, kernel_size],
            default_initializer=_kaiming_fan_out(out_planes, kernel_size ** 2),
        )

    def update_temperature(self, temperature: float) -> None:
        self.attention.update_temperature(temperature)

    def aggregate_weight(self, spatial: paddle.Tensor | None, kernel: paddle.Tensor | None,
                         batch: int) -> paddle.Tensor:
        """Per-sample kernels ``[batch, out, in/groups, k, k]`` from the spatial and kernel attentions.

        Contracts ``kernel_num`` with a matmul, which equals upstream's
        ``(spatial * kernel * weight).sum(1)`` up to summation order.
        """
        kn, out, cin, k = self.kernel_num, self.out_planes, self.in_planes // self.groups, self.kernel_size
        if kernel is None:
            weight = self.weight.reshape([1, out, cin, k, k])
        else:
            weight = paddle.matmul(kernel, self.weight.reshape([kn, -1])).reshape([-1, out, cin, k, k])
        if spatial is not None:
            weight = weight * spatial
        if weight.shape[0] != batch:
            weight = weight.expand([batch, out, cin, k, k])
        return weight

    def _forward_impl_common(self, x: paddle.Tensor) -> paddle.Tensor:
        channel, filter_, spatial, kernel = self.attention(x)
        batch, _, height, width = x.shape
        x = (x * channel).reshape([1, -1, height, width])
        weight = self.aggregate_weight(spatial, kernel, batch)
        weight = weight.reshape([-1, self.in_planes // self.groups, self.kernel_size, self.kernel_size])
        out = F.conv2d(x, weight, None, stride=self.stride, padding=self.padding, dilation=self.dilation,
                       groups=self.groups * batch)
        out = out.reshape([batch, self.out_planes, out.shape[-2], out.shape[-1]])
        return out if filter_ is None else out * filter_

    def _forward_impl_pw1x(self, x: paddle.Tensor) -> paddle.Tensor:
        channel, filter_, _, _ = self.attention(x)
        out = F.conv2d(x * channel, self.weight.squeeze(0), None, stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups)
        return out if filter_ is None else out * filter_

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        check_input_channels("ODConv2D", self.in_planes, x.shape)
        if self.kernel_size == 1 and self.kernel_num == 1:
            return self._forward_impl_pw1x(x)
        return self._forward_impl_common(x)
