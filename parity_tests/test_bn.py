"""The torch-compatible running variance of paddle_rep.bn.BatchNorm2D, and the switch back to native."""

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
from paddle_rep import bn as pbn
from paddle_rep.core import interop
from parity_tests import helpers


def _train(mode: str, dtype: str, steps: int = 5, shape=(3, 6, 4, 5)) -> tuple[dict, dict]:
    torch.manual_seed(0)
    torch_bn = torch.nn.BatchNorm2d(shape[1]).to(helpers.TORCH_DTYPES[dtype])
    helpers.randomize_bn(torch_bn, np.random.default_rng(0))
    if dtype == "float64":
        helpers.align_bn_constants_to_paddle(torch_bn)
    paddle_bn = pbn.BatchNorm2D(shape[1], running_var_mode=mode)
    paddle_bn.to(dtype=dtype)
    helpers.transfer_to_paddle(torch_bn, paddle_bn, dtype)
    torch_bn.train()
    paddle_bn.train()
    for step in range(steps):
        x = helpers.seeded_input(shape, dtype, seed=step)
        torch_bn(torch.from_numpy(x))
        paddle_bn(paddle.to_tensor(x))
    return helpers.paddle_running_stats(paddle_bn), helpers.running_stats(torch_bn.state_dict())


@pytest.mark.parametrize("dtype", helpers.DTYPES)
def test_torch_mode_follows_torch_running_var(dtype: str) -> None:
    actual, expected = _train("torch", dtype)
    helpers.assert_all_close([helpers.measure(k, actual[k], expected[k], "running_stats", dtype) for k in expected])


def test_native_mode_differs_by_the_bias_correction() -> None:
    """The control: native Paddle BN fails the same check where its kernel is biased, by about 1/(n-1).

    Whether it is comes from the probe (biased on a CPU, unbiased on cuDNN); test_bn_kernels.py
    checks native mode on both kinds of kernel by emulation, on any device.
    """
    actual, expected = _train("paddle", "float32")
    kernel = pbn.kernel_update(pbn.KernelKey("batch_norm", f"Place({paddle.get_device()})", "float32", "float32",
                                             "NCHW", 4, False))
    assert kernel in (pbn.BIASED, pbn.UNBIASED)
    var_ok = helpers.measure("running_var", actual["running_var"], expected["running_var"], "running_stats",
                             "float32").ok
    assert var_ok == (kernel == pbn.UNBIASED)
    helpers.assert_close("running_mean", actual["running_mean"], expected["running_mean"], "running_stats", "float32")


def test_mode_switches_for_new_blocks_and_existing_models() -> None:
    previous = paddle_rep.set_default_running_var_mode("paddle")
    try:
        assert previous == "torch"
        block = paddle_rep.RepVGGBlock(4, 4, 3, padding=1)
        assert block.rbr_dense.bn.running_var_mode == "paddle"
    finally:
        paddle_rep.set_default_running_var_mode(previous)
    assert paddle_rep.set_model_running_var_mode(block, "torch") == 3
    assert block.rbr_identity.running_var_mode == "torch"
    with pytest.raises(ValueError, match="running-variance mode must be one of"):
        paddle_rep.set_default_running_var_mode("numpy")


def test_one_value_per_channel_is_refused_like_torch() -> None:
    x = np.ones((1, 4, 1, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        torch.nn.BatchNorm2d(4).train()(torch.from_numpy(x))
    layer = pbn.BatchNorm2D(4)
    layer.train()  # Paddle 2.6's train() returns None, so no chaining
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        layer(paddle.to_tensor(x))


def test_eval_and_global_stats_leave_the_statistics_alone() -> None:
    layer = pbn.BatchNorm2D(3, use_global_stats=True)
    before = {k: v.numpy().copy() for k, v in layer.state_dict().items()}
    layer.train()
    layer(paddle.to_tensor(helpers.seeded_input((4, 3, 2, 2), "float32", 0)))
    after = layer.state_dict()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key].numpy(), value, err_msg=key)


def test_state_dict_is_that_of_native_batchnorm() -> None:
    assert list(pbn.BatchNorm2D(3).state_dict()) == list(paddle.nn.BatchNorm2D(3).state_dict())
    assert list(interop.to_torch(pbn.BatchNorm2D(3).state_dict())) == list(torch.nn.BatchNorm2d(3).state_dict())
