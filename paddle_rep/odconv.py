"""ODConv (omni-dimensional dynamic convolution) for Paddle.

Li, Zhou and Yao, "Omni-Dimensional Dynamic Convolution", ICLR 2022, arXiv:2209.07947.
Upstream: https://github.com/OSVAI/ODConv (``modules/odconv.py``, MIT licence). Same
arguments, attribute names and state-dict keys as upstream (``weight`` is
``[kernel_num, out, in/groups, k, k]``). The forward keeps upstream's batch fold: the batch
is folded into the channels and one grouped conv with ``groups * B`` runs all samples. The
per-sample kernels come from one matmul against a small block-diagonal mixing matrix
(:meth:`ODConv2D.sample_kernels`) instead of upstream's broadcast-and-sum, which never builds
the ``[B, kernel_num, out, in, k, k]`` temporary.
Skipped attention heads return ``None`` (upstream returns the float 1.0).

A conv with ``groups * B`` cannot be exported with a dynamic batch (the group count would be
a tensor), so static graphs (``paddle.jit.to_static``) use a batch-independent formulation:
the input is unfolded into patch columns and each sample's kernel is applied by a batched
matmul. It is exact up to summation order; :attr:`ODConv2D.formulation` (or
:func:`set_formulation` on a whole model) selects it in dygraph too.
"""

import paddle
from paddle import nn
from paddle.nn import functional as F

from .bn import BatchNorm2D
from .core.checks import check_choice, check_conv_args, check_input_channels, check_int
from .core.walk import set_on_sublayers
from .pooling import global_avg_pool

# "auto": batch fold in dygraph, unfold + batched matmul in a static graph (export).
FORMULATIONS = ("auto", "fold", "unfold")
# How the attention's BatchNorm normalises while training: "batch" statistics (upstream), or its
# "running" statistics (frozen, so a batch of one trains; a departure from upstream, opt-in).
ATTENTION_BN_MODES = ("batch", "running")


def _check_formulation(formulation: str) -> str:
    return check_choice("formulation", formulation, FORMULATIONS)


def _kaiming_fan_out(out_channels: int, kernel_area: int) -> nn.initializer.Initializer:
    # kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (out * kh * kw)).
    return nn.initializer.KaimingNormal(fan_in=out_channels * kernel_area)


class Attention(nn.Layer):
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

        def conv1x1(cin: int, cout: int, bias: bool) -> nn.Conv2D:
            init = paddle.ParamAttr(initializer=_kaiming_fan_out(cout, 1))
            bias_attr = paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)) if bias else False
            return nn.Conv2D(cin, cout, 1, weight_attr=init, bias_attr=bias_attr)

        self.fc = conv1x1(in_planes, attention_channel, bias=False)
        self.bn = BatchNorm2D(attention_channel)
        self.relu = nn.ReLU()
        self.channel_fc = conv1x1(attention_channel, in_planes, bias=True)
        is_depthwise = in_planes == groups and in_planes == out_planes
        self.filter_fc = None if is_depthwise else conv1x1(attention_channel, out_planes, bias=True)
        self.spatial_fc = None if kernel_size == 1 else conv1x1(attention_channel, kernel_size ** 2, bias=True)
        self.kernel_fc = None if kernel_num == 1 else conv1x1(attention_channel, kernel_num, bias=True)

    def update_temperature(self, temperature: float) -> None:
        """Set the softmax/sigmoid temperature (annealed 30 -> 1 in upstream training).

        Args:
            temperature: The new temperature.
        """
        self.temperature = float(temperature)

    def forward(self, x: paddle.Tensor) -> tuple:
        """Compute the four attentions of a batch.

        Args:
            x: The conv's input, ``[B, in_planes, H, W]``.

        Returns:
            ``(channel [B,in,1,1], filter [B,out,1,1], spatial [B,1,1,k,k], kernel [B,kn])``; skipped heads
            are None.
        """
        x = self.relu(self.bn(self.fc(global_avg_pool(x))))  # upstream's AdaptiveAvgPool2d(1)
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
    """Dynamic conv: ``kernel_num`` kernels mixed per sample by four attentions; no bias.

    Args:
        in_planes: Input channels (upstream's name).
        out_planes: Output channels.
        kernel_size: Square kernel size.
        stride: As ``paddle.nn.Conv2D``.
        padding: As ``paddle.nn.Conv2D``.
        dilation: As ``paddle.nn.Conv2D``.
        groups: As ``paddle.nn.Conv2D`` (depthwise skips the filter attention, as upstream).
        reduction: Attention width = ``max(int(in_planes * reduction), 16)``.
        kernel_num: Number of kernels mixed per sample.
        attention_bn: How the attention's BN normalises in training: ``"batch"`` (upstream) or
            ``"running"`` (see :attr:`attention_bn`).

    Raises:
        ValueError: A bad argument, named in the message.
    """

    def __init__(self, in_planes: int, out_planes: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 dilation: int = 1, groups: int = 1, reduction: float = 0.0625, kernel_num: int = 4,
                 attention_bn: str = "batch") -> None:
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
        self._formulation = "auto"
        self.attention_bn = attention_bn

    @property
    def attention_bn(self) -> str:
        """``"batch"`` (upstream: batch statistics while training) or ``"running"``.

        ``"running"`` normalises the attention's pooled features with the BN's running statistics
        in training too and leaves them unchanged (``use_global_stats``), so a batch of one trains
        (upstream raises "Expected more than 1 value per channel"); gamma and beta still learn.
        The state-dict keys are the same, so official weights load either way.

        Returns:
            The current mode.
        """
        return "running" if self.attention.bn._use_global_stats else "batch"

    @attention_bn.setter
    def attention_bn(self, value: str) -> None:
        """Set the attention BN's mode.

        Args:
            value: ``"batch"`` or ``"running"``.

        Raises:
            ValueError: Any other value.
        """
        # None is Paddle's "batch statistics in training, running ones in eval"; False would mean batch
        # statistics in eval too.
        running = check_choice("attention_bn", value, ATTENTION_BN_MODES) == "running"
        self.attention.bn._use_global_stats = True if running else None

    @property
    def formulation(self) -> str:
        """How the per-sample kernels are applied: ``"auto"`` (default), ``"fold"`` or ``"unfold"``.

        ``"fold"`` is upstream's grouped conv over the folded batch; ``"unfold"`` is the
        batch-independent export form; ``"auto"`` uses the fold in dygraph and the unfold form
        in a static graph. The 1x1, ``kernel_num=1`` case is a plain conv in every mode.

        Returns:
            The current formulation.
        """
        return self._formulation

    @formulation.setter
    def formulation(self, value: str) -> None:
        """Set the formulation.

        Args:
            value: ``"auto"``, ``"fold"`` or ``"unfold"``.

        Raises:
            ValueError: Any other value.
        """
        self._formulation = _check_formulation(value)

    def update_temperature(self, temperature: float) -> None:
        """Set the kernel attention's softmax temperature (upstream anneals it 30 -> 1).

        Args:
            temperature: The new temperature.
        """
        self.attention.update_temperature(temperature)

    def sample_kernels(self, spatial: paddle.Tensor | None, kernel: paddle.Tensor | None) -> paddle.Tensor:
        """Per-sample kernels as ``[batch, out * in/groups, k * k]`` (batch 1 when all samples share one).

        The spatial and kernel attentions act through one matmul with a block-diagonal mixing
        matrix, ``mixing[b, (i, q), p] = kernel[b, i] * spatial[b, p] * (q == p)``, so that
        ``out[b, c, p] = sum_i weight[i, c, p] * kernel[b, i] * spatial[b, p]`` (the zeros add
        exactly). Upstream's ``(spatial * kernel * weight).sum(1)`` broadcast is the same up to
        rounding; in the exported predictor the broadcast multiply was the slowest op (oneDNN's
        5-D broadcast) and each extra pass over the per-sample kernels costs a copy.

        Args:
            spatial: The spatial attention ``[B, 1, 1, k, k]``, or None when skipped (1x1 kernels).
            kernel: The kernel attention ``[B, kernel_num]``, or None when skipped (``kernel_num=1``).

        Returns:
            The kernels, ``[B, out * in/groups, k * k]``, or ``[1, ...]`` when both attentions are skipped.
        """
        kn, out, cin, k = self.kernel_num, self.out_planes, self.in_planes // self.groups, self.kernel_size
        if spatial is None:  # 1x1: no spatial attention
            if kernel is None:
                return self.weight.reshape([1, out * cin, 1])
            return paddle.matmul(kernel, self.weight.reshape([kn, -1])).reshape([-1, out * cin, 1])
        taps = k * k
        mixing = spatial.reshape([-1, taps, 1]) * paddle.eye(taps, dtype=spatial.dtype)  # [B, taps, taps]
        if kernel is None:
            weight = self.weight.reshape([1, out * cin, taps])
        else:
            mixing = (kernel.reshape([-1, kn, 1, 1]) * mixing.unsqueeze(1)).reshape([-1, kn * taps, taps])
            weight = self.weight.reshape([kn, out * cin, taps]).transpose([1, 0, 2]).reshape([1, out * cin, kn * taps])
        return paddle.matmul(weight, mixing)

    def aggregate_weight(self, spatial: paddle.Tensor | None, kernel: paddle.Tensor | None,
                         batch: int | None = None) -> paddle.Tensor:
        """Per-sample kernels ``[batch, out, in/groups, k, k]`` (see :meth:`sample_kernels`).

        With ``batch=None`` a kernel shared by all samples keeps its leading 1 (for broadcasting).

        Args:
            spatial: The spatial attention ``[B, 1, 1, k, k]``, or None when skipped.
            kernel: The kernel attention ``[B, kernel_num]``, or None when skipped.
            batch: The batch size to expand a shared kernel to, or None to keep it at 1.

        Returns:
            The kernels, ``[batch, out, in/groups, k, k]``.
        """
        out, cin, k = self.out_planes, self.in_planes // self.groups, self.kernel_size
        weight = self.sample_kernels(spatial, kernel).reshape([-1, out, cin, k, k])
        if batch is not None and weight.shape[0] != batch:
            weight = weight.expand([batch, out, cin, k, k])
        return weight

    def _forward_impl_common(self, x: paddle.Tensor) -> paddle.Tensor:
        channel, filter_, spatial, kernel = self.attention(x)
        batch = x.shape[0]  # an int: a static graph needs a fixed batch here (export uses the unfold form)
        # 0 copies a dimension from the input, so H and W may stay dynamic when exported.
        x = (x * channel).reshape([1, batch * self.in_planes, 0, 0])
        weight = self.sample_kernels(spatial, kernel)
        if weight.shape[0] != batch:
            weight = weight.expand([batch, weight.shape[1], weight.shape[2]])
        weight = weight.reshape([-1, self.in_planes // self.groups, self.kernel_size, self.kernel_size])
        out = F.conv2d(x, weight, None, stride=self.stride, padding=self.padding, dilation=self.dilation,
                       groups=self.groups * batch)
        out = out.reshape([batch, self.out_planes, 0, 0])
        return out if filter_ is None else out * filter_

    def _forward_impl_unfold(self, x: paddle.Tensor) -> paddle.Tensor:
        # Only the batch is unknown in every reshape (0 copies the input's dim), so the graph
        # exports with a dynamic batch; the output height may be a tensor (dynamic H/W).
        channel, filter_, spatial, kernel = self.attention(x)
        groups, k = self.groups, self.kernel_size
        patch = self.in_planes // groups * k * k
        cols = F.unfold(x * channel, [k, k], strides=self.stride, paddings=self.padding, dilations=self.dilation)
        weight = self.sample_kernels(spatial, kernel)
        if groups == 1:  # skip two reshapes: the predictor's oneDNN reshape copies the tensor
            out = paddle.matmul(weight.reshape([-1, self.out_planes, patch]), cols)  # [B, out, H' * W']
        else:
            cols = cols.reshape([0, groups, patch, -1])  # [B, groups, in/groups * k * k, H' * W']
            weight = weight.reshape([-1, groups, self.out_planes // groups, patch])
            out = paddle.matmul(weight, cols)  # [B, groups, out/groups, H' * W']
        out = out.reshape([0, self.out_planes, self._output_height(x), -1])
        return out if filter_ is None else out * filter_

    def _output_height(self, x: paddle.Tensor) -> int | paddle.Tensor:
        height = x.shape[2]
        if height < 0:  # unknown in a static graph: read it at run time
            height = paddle.shape(x)[2]
        span = self.dilation * (self.kernel_size - 1) + 1
        return (height + 2 * self.padding - span) // self.stride + 1

    def _forward_impl_pw1x(self, x: paddle.Tensor) -> paddle.Tensor:
        channel, filter_, _, _ = self.attention(x)
        out = F.conv2d(x * channel, self.weight.squeeze(0), None, stride=self.stride, padding=self.padding,
                       dilation=self.dilation, groups=self.groups)
        return out if filter_ is None else out * filter_

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Convolve each sample with its own attention-weighted kernel.

        Args:
            x: The input, ``[B, in_planes, H, W]``.

        Returns:
            The output, ``[B, out_planes, H', W']``.

        Raises:
            ValueError: The input is not 4-D or has the wrong channel count.
        """
        check_input_channels("ODConv2D", self.in_planes, x.shape)
        if self.kernel_size == 1 and self.kernel_num == 1:
            return self._forward_impl_pw1x(x)
        unfold = self._formulation == "unfold" or (self._formulation == "auto" and not paddle.in_dynamic_mode())
        if unfold:
            return self._forward_impl_unfold(x)
        return self._forward_impl_common(x)


def set_formulation(model: nn.Layer, formulation: str) -> int:
    """Set :attr:`ODConv2D.formulation` on every ODConv2D in ``model``.

    Args:
        model: The model (or a single layer).
        formulation: ``"auto"``, ``"fold"`` or ``"unfold"``.

    Returns:
        How many ODConv2D layers were set.

    Raises:
        ValueError: An unknown formulation.
    """
    return set_on_sublayers(model, ODConv2D, "formulation", _check_formulation(formulation))


def set_attention_bn(model: nn.Layer, mode: str) -> int:
    """Set :attr:`ODConv2D.attention_bn` on every ODConv2D in ``model``.

    Args:
        model: The model (or a single layer).
        mode: ``"batch"`` or ``"running"``.

    Returns:
        How many ODConv2D layers were set.

    Raises:
        ValueError: An unknown mode.
    """
    return set_on_sublayers(model, ODConv2D, "attention_bn", check_choice("attention_bn", mode, ATTENTION_BN_MODES))
