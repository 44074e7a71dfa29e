"""The shared fusion math of both frameworks against a numpy oracle and against real convolutions."""

import numpy as np
import paddle
import pytest
import torch
import torch.nn.functional as F

from paddle_rep import fusion as pf
from paddle_rep.core import interop
from parity_tests import helpers
from torch_ref import fusion as tf

GEOMETRIES = [  # (channels, groups, kernel size)
    pytest.param(6, 1, (3, 3), id="c6-g1-3x3"),
    pytest.param(6, 2, (3, 3), id="c6-g2-3x3"),
    pytest.param(6, 6, (3, 3), id="c6-depthwise-3x3"),
    pytest.param(4, 2, (5, 5), id="c4-g2-5x5"),
    pytest.param(4, 1, (3, 5), id="c4-g1-3x5"),
    pytest.param(4, 4, (1, 1), id="c4-depthwise-1x1"),
]


@pytest.mark.parametrize(("channels", "groups", "size"), GEOMETRIES)
def test_identity_kernel_returns_the_input(channels: int, groups: int, size: tuple) -> None:
    x = helpers.seeded_input((2, channels, 7, 9), "float64", seed=1)
    padding = (size[0] // 2, size[1] // 2)
    torch_kernel = tf.identity_kernel(channels, groups, size, torch.float64)
    paddle_kernel = pf.identity_kernel(channels, groups, size, "float64")
    np.testing.assert_array_equal(paddle_kernel.numpy(), torch_kernel.numpy())
    y_torch = F.conv2d(torch.from_numpy(x), torch_kernel, padding=padding, groups=groups).numpy()
    y_paddle = paddle.nn.functional.conv2d(paddle.to_tensor(x), paddle_kernel, padding=list(padding),
                                           groups=groups).numpy()
    np.testing.assert_array_equal(y_torch, x)
    np.testing.assert_array_equal(y_paddle, x)


@pytest.mark.parametrize(("small", "size", "small_padding", "padding"), [
    pytest.param((1, 1), (3, 3), (0, 0), (1, 1), id="1x1-in-3x3"),
    pytest.param((3, 1), (3, 3), (1, 0), (1, 1), id="3x1-in-3x3"),
    pytest.param((1, 3), (3, 3), (0, 1), (1, 1), id="1x3-in-3x3"),
    pytest.param((5, 1), (5, 5), (2, 0), (2, 2), id="5x1-in-5x5"),
    pytest.param((1, 3), (5, 5), (0, 1), (2, 2), id="1x3-in-5x5"),
])
def test_pad_kernel_to_keeps_the_convolution(small: tuple, size: tuple, small_padding: tuple, padding: tuple) -> None:
    rng = np.random.default_rng(2)
    kernel = rng.normal(size=(4, 3, *small))
    x = helpers.seeded_input((2, 3, 8, 10), "float64", seed=2)
    expected = F.conv2d(torch.from_numpy(x), torch.from_numpy(kernel), padding=small_padding).numpy()
    torch_big = tf.pad_kernel_to(torch.from_numpy(kernel), size)
    paddle_big = pf.pad_kernel_to(paddle.to_tensor(kernel), size)
    assert tuple(torch_big.shape[2:]) == size and tuple(paddle_big.shape[2:]) == size
    np.testing.assert_array_equal(paddle_big.numpy(), torch_big.numpy())
    actual = F.conv2d(torch.from_numpy(x), torch_big, padding=padding).numpy()
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("pad", [tf.pad_kernel_to, pf.pad_kernel_to], ids=["torch", "paddle"])
def test_pad_kernel_to_rejects_uncentrable_sizes(pad) -> None:
    kernel = np.ones((1, 1, 1, 2))
    tensor = torch.from_numpy(kernel) if pad is tf.pad_kernel_to else paddle.to_tensor(kernel)
    with pytest.raises(ValueError, match="cannot centre a 1x2 kernel in 3x3"):
        pad(tensor, (3, 3))


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "no-affine"])
def test_fuse_conv_bn_matches_numpy(affine: bool) -> None:
    rng = np.random.default_rng(3)
    kernel = rng.normal(size=(5, 2, 3, 3))
    mean, var = rng.normal(size=5), rng.uniform(0.5, 2, size=5)
    gamma, beta = (rng.uniform(0.5, 1.5, size=5), rng.normal(size=5)) if affine else (np.ones(5), np.zeros(5))
    std = np.sqrt(var + 1e-5)
    expected_kernel = kernel * (gamma / std)[:, None, None, None]
    expected_bias = beta - mean * gamma / std

    torch_bn = torch.nn.BatchNorm2d(5, affine=affine).double()
    paddle_bn = paddle.nn.BatchNorm2D(5, weight_attr=None if affine else False, bias_attr=None if affine else False)
    paddle_bn.to(dtype="float64")
    with torch.no_grad():
        torch_bn.running_mean.copy_(torch.from_numpy(mean))
        torch_bn.running_var.copy_(torch.from_numpy(var))
        if affine:
            torch_bn.weight.copy_(torch.from_numpy(gamma))
            torch_bn.bias.copy_(torch.from_numpy(beta))
    missing, unexpected = paddle_bn.set_state_dict(
        interop.from_torch(torch_bn.state_dict(), dtype="float64"))
    assert not missing and not unexpected
    frameworks = [(tf.fuse_conv_bn, torch_bn, torch.from_numpy), (pf.fuse_conv_bn, paddle_bn, paddle.to_tensor)]
    for fuse, bn, wrap in frameworks:
        fused_kernel, fused_bias = fuse(wrap(kernel), bn)
        np.testing.assert_allclose(helpers.as_numpy(fused_kernel), expected_kernel, rtol=1e-14, atol=0)
        np.testing.assert_allclose(helpers.as_numpy(fused_bias), expected_bias, rtol=1e-14, atol=1e-15)


def test_make_fused_conv_keeps_dtype_and_geometry() -> None:
    reference = paddle.nn.Conv2D(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias_attr=False)
    kernel = paddle.to_tensor(np.random.default_rng(4).normal(size=(6, 2, 3, 3)))
    conv = pf.make_fused_conv(reference, kernel, paddle.zeros([6], dtype="float64"))
    assert conv.weight.dtype == paddle.float64 and conv.bias.dtype == paddle.float64
    assert (conv._stride, conv._padding, conv._dilation, conv._groups) == (
        reference._stride, reference._padding, reference._dilation, reference._groups)
    torch_ref_conv = torch.nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False)
    torch_kernel = torch.from_numpy(kernel.numpy())
    torch_conv = tf.make_fused_conv(torch_ref_conv, torch_kernel, torch.zeros(6, dtype=torch.float64))
    assert torch_conv.weight.dtype == torch.float64
    assert (torch_conv.stride, torch_conv.padding, torch_conv.dilation, torch_conv.groups) == (
        (2, 2), (2, 2), (2, 2), 2)
