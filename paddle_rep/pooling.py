"""Global average pooling, written once for the SE blocks, ODConv's attention and the model heads."""

import paddle
from paddle import nn
from paddle.nn import functional as F


def global_avg_pool(x: paddle.Tensor) -> paddle.Tensor:
    """Average ``[B, C, H, W]`` over H and W.

    In dygraph a one-axis mean: neither ``adaptive_avg_pool2d`` (its backward scales by a
    float32 ``1/(H*W)``: about 2e-8 relative off in float64) nor ``x.mean(axis=[2, 3])``
    (Paddle's two-axis mean takes about 6x as long on the CPU, forward plus backward,
    8x64x56x56: 23 ms against 3.8 ms). In a static graph (export) the pool: the predictor runs
    it as one oneDNN op, where a reshape would copy the tensor and ``mean`` prints a debug line.

    Args:
        x: The input, ``[B, C, H, W]``.

    Returns:
        The means, ``[B, C, 1, 1]``.
    """
    if not paddle.in_dynamic_mode():
        return F.adaptive_avg_pool2d(x, 1)
    return x.reshape([0, 0, -1]).mean(axis=2, keepdim=True).unsqueeze(-1)


class GlobalAvgPool2D(nn.Layer):
    """Layer form of :func:`global_avg_pool` (``nn.AdaptiveAvgPool2D(1)`` in the model heads; no parameters)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Average ``x`` over H and W (:func:`global_avg_pool`).

        Args:
            x: The input, ``[B, C, H, W]``.

        Returns:
            The means, ``[B, C, 1, 1]``.
        """
        return global_avg_pool(x)


class AvgPool2D(nn.Layer):
    """A kxk average pool that counts the zero padding (``nn.AvgPool2D(..., exclusive=False)``, torch's default).

    In dygraph float64 it runs as a depthwise conv with a constant ``1/k^2`` kernel: Paddle's
    ``avg_pool2d`` backward scales by a float32 ``1/k^2`` (about 5e-9 relative off in float64).
    No parameters, so the state dict is that of ``nn.AvgPool2D``.

    Args:
        kernel_size: The window side k.
        stride: The stride.
        padding: Zero padding on every side.
    """

    def __init__(self, kernel_size: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        """Average ``x`` over kxk windows.

        Args:
            x: The input, ``[B, C, H, W]``.

        Returns:
            The averages, ``[B, C, H', W']``.
        """
        k = self.kernel_size
        if paddle.in_dynamic_mode() and x.dtype == paddle.float64:
            kernel = paddle.full([x.shape[1], 1, k, k], 1.0 / k ** 2, dtype=x.dtype)
            return F.conv2d(x, kernel, stride=self.stride, padding=self.padding, groups=x.shape[1])
        return F.avg_pool2d(x, k, stride=self.stride, padding=self.padding, exclusive=False)
