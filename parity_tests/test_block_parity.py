"""Block parity: paddle_rep against torch_ref, per configuration and dtype.

Each check is its own test, parametrized by case id and dtype, so one failure never hides
another. Every case uses seeded non-zero inputs and randomised BN statistics and affine
parameters (helpers.make_pair).
"""

import numpy as np
import paddle
import pytest
import torch
import torch.nn.functional as F

from paddle_rep.core import interop
from parity_tests import helpers
from parity_tests.block_cases import ALL_CASES, ODCONV_CASES, BlockCase

DTYPES = helpers.DTYPES


def _params(cases: list[BlockCase], dtypes=DTYPES) -> list:
    return [pytest.param(case, dtype, id=f"{case.id}-{dtype}") for case in cases for dtype in dtypes]


def _seed(case: BlockCase) -> int:
    return sum(map(ord, case.id))  # stable per case, different across cases


def _pair(case: BlockCase, dtype: str, seed_offset: int = 0):
    return helpers.make_pair(case.torch_block, case.paddle_block, dtype, _seed(case) + seed_offset)


def _upstream(shape, dtype: str, seed: int) -> np.ndarray:
    return np.random.default_rng(seed + 7).normal(0.0, 1.0, shape).astype(dtype)


@pytest.mark.parametrize(("case", "dtype"), _params([c for c in ALL_CASES if c.trains]))
def test_train_output_and_gradients(case: BlockCase, dtype: str) -> None:
    torch_block, paddle_block = _pair(case, dtype)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    torch_block.eval()  # eval mode: the shape probe leaves the BN statistics alone
    with torch.no_grad():
        out_shape = tuple(torch_block(torch.from_numpy(x)).shape)
    upstream = _upstream(out_shape, dtype, _seed(case))
    torch_step = helpers.torch_train_step(torch_block, x, upstream)
    paddle_step = helpers.paddle_train_step(paddle_block, x, upstream)
    helpers.assert_all_close(helpers.compare_train_steps(paddle_step, torch_step, dtype, case.zero_grad_suffixes,
                                                          case.step_scaled_suffixes))


@pytest.mark.parametrize(("case", "dtype"), _params([c for c in ALL_CASES if c.trains]))
def test_running_stats_after_three_train_forwards(case: BlockCase, dtype: str) -> None:
    torch_block, paddle_block = _pair(case, dtype)
    torch_block.train()
    paddle_block.train()
    for step in range(3):
        x = helpers.seeded_input(case.input_shape, dtype, _seed(case) + step)
        with torch.no_grad():
            torch_block(torch.from_numpy(x))
        with paddle.no_grad():
            paddle_block(paddle.to_tensor(x))
    expected = helpers.running_stats(torch_block.state_dict())
    actual = helpers.paddle_running_stats(paddle_block)
    assert expected and set(actual) == set(expected)
    helpers.assert_all_close([helpers.measure(k, actual[k], expected[k], "running_stats", dtype)
                              for k in sorted(expected)])


@pytest.mark.parametrize(("case", "dtype"), _params(ALL_CASES))
def test_eval_output(case: BlockCase, dtype: str) -> None:
    torch_block, paddle_block = _pair(case, dtype)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    actual, expected = helpers.eval_outputs(torch_block, paddle_block, x)
    helpers.assert_close("eval output", actual, expected, "output", dtype)


@pytest.mark.parametrize(("case", "dtype"), _params([c for c in ALL_CASES if c.fusable]))
def test_fused(case: BlockCase, dtype: str) -> None:
    torch_block, paddle_block = _pair(case, dtype)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    paddle_eval, torch_eval = helpers.eval_outputs(torch_block, paddle_block, x)
    torch_block.switch_to_deploy()
    paddle_block.switch_to_deploy()
    paddle_fused, torch_fused = helpers.eval_outputs(torch_block, paddle_block, x)

    # A BN that survives fusion (QARepVGG's post-SE BN) keeps a counter Paddle does not have.
    torch_state = {k: v for k, v in torch_block.state_dict().items() if not k.endswith("num_batches_tracked")}
    paddle_state = interop.to_torch(paddle_block.state_dict(), dtype=None, num_batches_tracked=None)
    assert list(paddle_state) == list(torch_state), "fused state dicts differ in keys"
    fused_attrs = ("fused_conv.", "rbr_reparam.", "dbb_reparam.", "reparam_conv.")
    fused_names = [k for k in torch_state if k.startswith(fused_attrs)]
    assert len(fused_names) == 2, f"expected one fused conv with bias, got {list(torch_state)}"
    results = [
        helpers.measure("torch fused vs torch eval", torch_fused, torch_eval, "fused_vs_eval", dtype),
        helpers.measure("paddle fused vs paddle eval", paddle_fused, paddle_eval, "fused_vs_eval", dtype),
        helpers.measure("paddle fused vs torch fused", paddle_fused, torch_fused, "output", dtype),
    ]
    results += [helpers.measure(f"fused {k}", paddle_state[k], torch_state[k], "fused_kernel", dtype)
                for k in torch_state]
    helpers.assert_all_close(results)


def _torch_per_sample(block, x: torch.Tensor) -> torch.Tensor:
    """Upstream's formula one sample at a time: aggregate the kernel by broadcast-and-sum, plain conv."""
    channel, filter_, spatial, kernel = block.attention(x)
    outs = []
    for b in range(x.shape[0]):
        weights = block.weight  # [kn, out, in/g, k, k]
        mix = kernel[b].reshape(-1, 1, 1, 1, 1) if kernel is not None else torch.ones_like(weights[:, :1, :1, :1, :1])
        w = (mix * weights).sum(0)
        if spatial is not None:
            w = w * spatial[b, 0]
        y = F.conv2d(x[b:b + 1] * channel[b:b + 1], w, None, block.stride, block.padding, block.dilation, block.groups)
        outs.append(y if filter_ is None else y * filter_[b:b + 1])
    return torch.cat(outs)


def _paddle_per_sample(block, x: paddle.Tensor) -> paddle.Tensor:
    channel, filter_, spatial, kernel = block.attention(x)
    outs = []
    for b in range(x.shape[0]):
        weights = block.weight
        mix = kernel[b].reshape([-1, 1, 1, 1, 1]) if kernel is not None else paddle.ones_like(
            weights[:, :1, :1, :1, :1])
        w = (mix * weights).sum(0)
        if spatial is not None:
            w = w * spatial[b, 0]
        y = paddle.nn.functional.conv2d(x[b:b + 1] * channel[b:b + 1], w, None, block.stride, block.padding,
                                        block.dilation, block.groups)
        outs.append(y if filter_ is None else y * filter_[b:b + 1])
    return paddle.concat(outs)


@pytest.mark.parametrize(("case", "dtype"), _params(ODCONV_CASES))
def test_odconv_batch_fold_equals_per_sample(case: BlockCase, dtype: str) -> None:
    torch_block, paddle_block = _pair(case, dtype)
    torch_block.eval()
    paddle_block.eval()
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    with torch.no_grad():
        xt = torch.from_numpy(x)
        torch_fold, torch_loop = torch_block(xt), _torch_per_sample(torch_block, xt)
        _, _, t_spatial, t_kernel = torch_block.attention(xt)
        torch_kernels = torch_block.aggregate_weight(t_spatial, t_kernel, case.batch)
    with paddle.no_grad():
        xp = paddle.to_tensor(x)
        paddle_fold, paddle_loop = paddle_block(xp), _paddle_per_sample(paddle_block, xp)
        _, _, p_spatial, p_kernel = paddle_block.attention(xp)
        paddle_kernels = paddle_block.aggregate_weight(p_spatial, p_kernel, case.batch)
    helpers.assert_all_close([
        helpers.measure("torch fold vs per-sample", torch_fold, torch_loop, "fused_vs_eval", dtype),
        helpers.measure("paddle fold vs per-sample", paddle_fold, paddle_loop, "fused_vs_eval", dtype),
        helpers.measure("per-sample kernels paddle vs torch", paddle_kernels, torch_kernels, "output", dtype),
    ])


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ALL_CASES])
def test_negative_control_different_weights_fail(case: BlockCase) -> None:
    """Paddle holding weights A against torch holding weights B must fail every comparison above."""
    dtype = "float32"
    _, paddle_block = _pair(case, dtype)
    other_torch, _ = _pair(case, dtype, seed_offset=1)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    actual, expected = helpers.eval_outputs(other_torch, paddle_block, x)
    result = helpers.measure("eval output", actual, expected, "output", dtype)
    assert not result.ok, f"different weights passed the comparison: {result}"
    if case.fusable:
        other_torch.switch_to_deploy()
        paddle_block.switch_to_deploy()
        fused = interop.from_torch(other_torch.state_dict())
        state = paddle_block.state_dict()
        assert not any(helpers.measure(k, state[k], fused[k], "fused_kernel", dtype).ok for k in fused)
