"""DBB specifics: the transforms against the layers they replace, upstream's key names, the crash
fixed here, ``single_init``, bad arguments, and negative controls (a zero-padded BNAndPadLayer and
Paddle's default exclusive average pool each break the fold)."""

import numpy as np
import paddle
import pytest
import torch
import torch.nn.functional as F

import paddle_rep
import torch_ref
from paddle_rep import fusion as pfusion
from paddle_rep.pooling import AvgPool2D
from parity_tests import helpers
from torch_ref import fusion as tfusion

_RNG_SEED = 11


def _randn(*shape: int) -> np.ndarray:
    return np.random.default_rng(_RNG_SEED + sum(shape)).normal(0.0, 1.0, shape)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_merge_1x1_kxk_equals_the_two_convs_with_bias_padding(groups: int) -> None:
    """Transform III: a 1x1 conv (bias padded around its output) then a kxk conv is one kxk conv."""
    cin, mid, cout, k = 8, 12, 16, 3
    k1, b1, k2, b2 = _randn(mid, cin // groups, 1, 1), _randn(mid), _randn(cout, mid // groups, k, k), _randn(cout)
    x = torch.from_numpy(_randn(2, cin, 7, 9))
    t = [torch.from_numpy(a) for a in (k1, b1, k2, b2)]
    mid_out = F.conv2d(x, t[0], t[1], groups=groups)
    padded = F.pad(mid_out - t[1].reshape(1, -1, 1, 1), [1, 1, 1, 1]) + t[1].reshape(1, -1, 1, 1)
    expected = F.conv2d(padded, t[2], t[3], groups=groups).numpy()
    kernel, bias = tfusion.merge_1x1_kxk(*t, groups=groups)
    np.testing.assert_allclose(F.conv2d(x, kernel, bias, padding=1, groups=groups).numpy(), expected, atol=1e-12)
    p_kernel, p_bias = pfusion.merge_1x1_kxk(*(paddle.to_tensor(a) for a in (k1, b1, k2, b2)), groups=groups)
    np.testing.assert_allclose(p_kernel.numpy(), kernel.numpy(), atol=1e-13)
    np.testing.assert_allclose(p_bias.numpy(), bias.numpy(), atol=1e-13)


@pytest.mark.parametrize(("k", "groups"), [(3, 1), (5, 2), (3, 8)])
def test_avg_pool_kernel_equals_the_padded_average_pool(k: int, groups: int) -> None:
    """Transform V: the kernel averages each channel's own input, zero padding counted (torch's default)."""
    x = torch.from_numpy(_randn(2, 8, 9, 11))
    expected = F.avg_pool2d(x, k, stride=2, padding=k // 2).numpy()
    kernel = tfusion.avg_pool_kernel(8, k, groups, torch.float64)
    np.testing.assert_allclose(F.conv2d(x, kernel, stride=2, padding=k // 2, groups=groups).numpy(), expected,
                               atol=1e-14)
    np.testing.assert_array_equal(pfusion.avg_pool_kernel(8, k, groups, "float64").numpy(), kernel.numpy())


def test_multiscale_pads_non_square_kernels_in_paddle_order() -> None:
    """Transform VI for a 1x3 kernel into 5x5: Paddle's 4-value pad is [left, right, top, bottom].

    PaddleClas's transVI_multiscale passes [H, H, W, W] and would put this kernel on its side.
    """
    kernel = _randn(4, 2, 1, 3)
    padded = pfusion.pad_kernel_to(paddle.to_tensor(kernel), (5, 5)).numpy()
    np.testing.assert_array_equal(padded, tfusion.pad_kernel_to(torch.from_numpy(kernel), (5, 5)).numpy())
    np.testing.assert_array_equal(padded[:, :, 2, 1:4], kernel[:, :, 0])
    assert not padded[:, :, [0, 1, 3, 4]].any()


@pytest.mark.parametrize("dtype", helpers.DTYPES)
def test_paddle_avg_pool_matches_torch_forward_and_backward(dtype: str) -> None:
    """pooling.AvgPool2D counts the padding as torch does; in float64 its backward is exact too."""
    x = _randn(2, 4, 9, 11).astype(dtype)
    grad = _randn(2, 4, 5, 6).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, 3, stride=2, padding=1)
    ty.backward(torch.from_numpy(grad))
    px = paddle.to_tensor(x, stop_gradient=False)
    py = AvgPool2D(3, stride=2, padding=1)(px)
    py.backward(paddle.to_tensor(grad))
    helpers.assert_all_close([helpers.measure("avg pool", py, ty.detach(), "output", dtype),
                              helpers.measure("avg pool input grad", px.grad, tx.grad, "input_grad", dtype)])


def test_grouped_block_with_more_inputs_than_outputs_works_where_upstream_crashes() -> None:
    """groups >= out_channels with in != out: upstream's pool-only branch keeps in_channels channels and
    crashes in avgbn; here it takes the 1x1 path and fuses exactly."""
    torch_block, paddle_block = helpers.make_pair(lambda: torch_ref.DiverseBranchBlock(16, 8, 3, padding=1, groups=8),
                                                  lambda: paddle_rep.DiverseBranchBlock(16, 8, 3, padding=1, groups=8),
                                                  "float64", seed=5)
    assert hasattr(torch_block, "dbb_1x1") and hasattr(torch_block.dbb_avg, "conv")
    x = helpers.seeded_input((2, 16, 7, 9), "float64", seed=5)
    before, _ = helpers.eval_outputs(torch_block, paddle_block, x)
    paddle_block.switch_to_deploy()
    torch_block.switch_to_deploy()
    after, _ = helpers.eval_outputs(torch_block, paddle_block, x)
    helpers.assert_close("grouped in > out, fused vs branches", after, before, "fused_vs_eval", "float64")


def _fused_vs_eval(paddle_block: paddle.nn.Layer, x: np.ndarray) -> helpers.Comparison:
    paddle_block.eval()
    with paddle.no_grad():
        before = paddle_block(paddle.to_tensor(x))
        paddle_block.switch_to_deploy()
        after = paddle_block(paddle.to_tensor(x))
    return helpers.measure("fused vs eval", after, before, "fused_vs_eval", "float64")


def test_planted_zero_padding_breaks_the_fold() -> None:
    """Negative control: BNAndPadLayer padding with 0 instead of the BN's shift makes the fold inexact."""
    _, paddle_block = helpers.make_pair(lambda: torch_ref.DiverseBranchBlock(8, 8, 3, padding=1),
                                        lambda: paddle_rep.DiverseBranchBlock(8, 8, 3, padding=1), "float64", seed=2)
    x = helpers.seeded_input((2, 8, 7, 9), "float64", seed=2)
    assert _fused_vs_eval(paddle_block, x).ok
    _, planted = helpers.make_pair(lambda: torch_ref.DiverseBranchBlock(8, 8, 3, padding=1),
                                   lambda: paddle_rep.DiverseBranchBlock(8, 8, 3, padding=1), "float64", seed=2)
    for layer in (planted.dbb_avg.bn, planted.dbb_1x1_kxk.bn1):
        layer._zero_input_value = lambda layer=layer: paddle.zeros_like(layer.bn._mean)
    assert not _fused_vs_eval(planted, x).ok


def test_planted_exclusive_average_pool_breaks_the_fold() -> None:
    """Negative control: Paddle's default AvgPool2D (exclusive=True, as PaddleClas's DBB builds it) leaves the
    padding out of the border averages, so the depthwise block no longer equals its fused conv."""
    _, planted = helpers.make_pair(lambda: torch_ref.DiverseBranchBlock(8, 8, 3, padding=1, groups=8),
                                   lambda: paddle_rep.DiverseBranchBlock(8, 8, 3, padding=1, groups=8), "float64", 4)
    planted.dbb_avg.avg = paddle.nn.AvgPool2D(3, stride=1, padding=1)
    assert not _fused_vs_eval(planted, helpers.seeded_input((2, 8, 7, 9), "float64", seed=4)).ok


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_single_init_starts_as_the_kxk_branch_alone(framework: str) -> None:
    lib = torch_ref if framework == "torch" else paddle_rep
    block = lib.DiverseBranchBlock(8, 16, 3, padding=1, single_init=True)
    block.eval()
    x = helpers.seeded_input((2, 8, 6, 6), "float32", seed=1)
    if framework == "torch":
        with torch.no_grad():
            out, origin = (m(torch.from_numpy(x)).numpy() for m in (block, block.dbb_origin))
    else:
        with paddle.no_grad():
            out, origin = (m(paddle.to_tensor(x)).numpy() for m in (block, block.dbb_origin))
    np.testing.assert_allclose(out, origin, atol=1e-6)


# Upstream's key names, read from DingXiaoH/DiverseBranchBlock's resnet.py / mobilenet.py / convnet_utils.py
# built with switch_conv_bn_impl('DBB'): a sample of each kind of layer.
OFFICIAL_KEYS = {
    "dbb_resnet18": ["stage0.conv1.conv.weight", "stage0.conv1.bn.running_var", "stage1.0.conv1.dbb_origin.conv.weight",
                     "stage1.0.conv1.dbb_avg.conv.weight", "stage1.0.conv1.dbb_avg.bn.bn.running_mean",
                     "stage1.0.conv1.dbb_avg.avgbn.weight", "stage1.0.conv1.dbb_1x1.conv.weight",
                     "stage1.0.conv1.dbb_1x1_kxk.idconv1.weight", "stage1.0.conv1.dbb_1x1_kxk.bn1.bn.bias",
                     "stage1.0.conv2.dbb_1x1_kxk.conv2.weight", "stage1.0.conv2.dbb_1x1_kxk.bn2.num_batches_tracked",
                     "stage2.0.shortcut.conv.weight", "stage2.0.shortcut.bn.weight", "linear.weight"],
    "dbb_mobilenet": ["conv1.dbb_origin.conv.weight", "stem.0.depthwise.dbb_avg.avgbn.running_mean",
                      "stem.0.depthwise.dbb_1x1_kxk.conv1.weight", "stem.0.pointwise.conv.weight",
                      "stem.12.pointwise.bn.running_var", "linear.bias"],
}


# Per model: keys that must not exist (where upstream keeps a plain ConvBN, or a branch is left out), the
# deploy state's first key and a BN key the fusion removes.
ABSENT_KEYS = {
    "dbb_resnet18": ["stage0.conv1.dbb_origin.conv.weight",  # the 7x7 stem stays a ConvBN
                     "stage2.0.shortcut.dbb_origin.conv.weight"],  # so do the 1x1 projection shortcuts
    "dbb_mobilenet": ["stem.0.depthwise.dbb_1x1.conv.weight",  # the depthwise form has no 1x1 branch
                      "stem.0.pointwise.dbb_origin.conv.weight"],  # the pointwise 1x1 stays a ConvBN
}
DEPLOY_KEYS = {
    "dbb_resnet18": ("stage0.conv1.conv.weight", "stage0.conv1.bn.weight"),
    "dbb_mobilenet": ("conv1.dbb_reparam.weight", "stem.0.pointwise.bn.weight"),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_KEYS))
def test_official_key_names(name: str) -> None:
    keys = set(helpers.torch_meta(name).state_dict())
    assert set(OFFICIAL_KEYS[name]) <= keys
    assert not any("id_tensor" in k for k in keys), "the identity of IdentityBasedConv1x1 is not state"
    assert not set(ABSENT_KEYS[name]) & keys
    deploy = list(helpers.torch_meta(name, deploy=True).state_dict())
    first, fused_bn = DEPLOY_KEYS[name]
    assert deploy[0] == first
    assert fused_bn in keys and fused_bn not in deploy
    assert not any("dbb_origin" in k for k in deploy)


BAD_ARGUMENTS = [
    pytest.param((8, 8, 3), {"padding": 0}, "padding=kernel_size // 2=1, got 0", id="padding"),
    pytest.param((8, 8, 4), {"padding": 2}, "kernel_size must be odd", id="even-kernel"),
    pytest.param((8, 8, 3), {"padding": 1, "dilation": 2}, "dilation=1 only", id="dilation"),
    pytest.param((8, 8, 3), {"padding": 1, "groups": 2, "internal_channels_1x1_3x3": 5},
                 "internal_channels_1x1_3x3=5 is not divisible by groups=2", id="internal"),
    pytest.param((6, 8, 3), {"padding": 1, "groups": 4}, "in_channels=6 is not divisible", id="groups"),
]


@pytest.mark.parametrize("framework", ["torch", "paddle"])
@pytest.mark.parametrize(("args", "kwargs", "message"), BAD_ARGUMENTS)
def test_invalid_arguments_name_the_argument(framework: str, args: tuple, kwargs: dict, message: str) -> None:
    cls = (torch_ref if framework == "torch" else paddle_rep).DiverseBranchBlock
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cls(*args, **kwargs)
