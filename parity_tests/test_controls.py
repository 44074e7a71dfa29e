"""Near-bound negative controls: small plausible bugs, planted on the Paddle side, must fail each comparison.

A whole new weight set proves a comparison is not empty; these prove it is tight. Two plants:
one BN's epsilon 1e-5 -> 1e-4 (a wrong constant) and one conv kernel x (1 + 1e-4) (a slightly
wrong fold or transfer). Each comparison kind of the suite is run with the same inputs as its
positive test and must report a failure. The float32 yardstick (helpers.measure_against_rounding)
gets its own plants: a float32-only 1e-3 relative error in one layer, and a non-finite twin.
"""

import copy

import numpy as np
import paddle
import pytest
import torch

from paddle_rep.core import interop
from paddle_rep.fusion import is_batch_norm
from parity_tests import helpers, tolerances
from parity_tests.block_cases import ALL_CASES
from parity_tests.test_block_parity import _paddle_per_sample, _pair, _seed, _upstream

CASES = {c.id: c for c in ALL_CASES}
FAMILY_CASES = ["acb-k3p1", "repvgg-identity", "dbb-k5-s2-g2", "odconv-k3-kn4"]
PLANTS = ("bn_eps", "kernel")


def _first_kernel(layer: paddle.nn.Layer, contains: str = "") -> tuple[str, paddle.Tensor]:
    found = [(n, p) for n, p in layer.named_parameters()
             if len(p.shape) >= 4 and not p.stop_gradient and contains in n]
    assert found, "no conv kernel to perturb"
    return found[0]


def _first_bn(layer: paddle.nn.Layer) -> paddle.nn.Layer:
    found = [m for m in layer.sublayers(include_self=True) if is_batch_norm(m)]
    assert found, "no BN to perturb"
    return found[0]


def plant(layer: paddle.nn.Layer, which: str, contains: str = "") -> str:
    """Perturb ``layer`` in place: ``bn_eps`` (first BN's eps 1e-5 -> 1e-4) or ``kernel`` (the first
    kernel whose name has ``contains``, x (1 + 1e-4))."""
    if which == "bn_eps":
        bn = _first_bn(layer)
        assert bn._epsilon == pytest.approx(1e-5)
        bn._epsilon = 1e-4
        return "BN eps 1e-4"
    name, kernel = _first_kernel(layer, contains)
    with paddle.no_grad():
        kernel.set_value(kernel * (1.0 + 1e-4))
    return f"{name} x (1 + 1e-4)"


def _failed(results: list[helpers.Comparison]) -> list[helpers.Comparison]:
    assert results, "nothing was compared"
    return [r for r in results if not r.ok]


# ---------------------------------------------------------------- block level

@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("which", PLANTS)
@pytest.mark.parametrize("case_id", FAMILY_CASES)
def test_planted_fault_fails_eval_output(case_id: str, which: str, dtype: str) -> None:
    case = CASES[case_id]
    torch_block, paddle_block = _pair(case, dtype)
    plant(paddle_block, which)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    actual, expected = helpers.eval_outputs(torch_block, paddle_block, x)
    assert _failed([helpers.measure("eval output", actual, expected, "output", dtype)])


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("which", PLANTS)
@pytest.mark.parametrize("case_id", FAMILY_CASES)
def test_planted_fault_fails_train_gradients(case_id: str, which: str, dtype: str) -> None:
    """Training-mode output, input gradient and weight gradients (as test_train_output_and_gradients)."""
    case = CASES[case_id]
    torch_block, paddle_block = _pair(case, dtype)
    what = plant(paddle_block, which)
    x = helpers.seeded_input(case.input_shape, dtype, _seed(case))
    torch_block.eval()
    with torch.no_grad():
        out_shape = tuple(torch_block(torch.from_numpy(x)).shape)
    upstream = _upstream(out_shape, dtype, _seed(case))
    results = helpers.compare_train_steps(helpers.paddle_train_step(paddle_block, x, upstream),
                                          helpers.torch_train_step(torch_block, x, upstream), dtype)
    failed = _failed(results)
    assert failed, f"{what} passed every train comparison"
    kinds = {r.what.split(" ")[0] for r in failed}
    # A scaled kernel before a train-mode BN leaves the output unchanged (BN renormalises) but not its gradient.
    assert "grad" in kinds or "input" in kinds, [str(r) for r in failed]


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("case_id", FAMILY_CASES)
def test_planted_kernel_fails_running_stats(case_id: str, dtype: str) -> None:
    """Running statistics (as test_running_stats_after_three_train_forwards); eps does not enter them."""
    case = CASES[case_id]
    torch_block, paddle_block = _pair(case, dtype)
    plant(paddle_block, "kernel", contains="attention.fc" if case.family == "odconv" else "")  # a kernel before a BN
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
    assert _failed([helpers.measure(k, actual[k], expected[k], "running_stats", dtype) for k in sorted(expected)])


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("which", PLANTS)
@pytest.mark.parametrize("case_id", ["acb-k3p1", "repvgg-identity", "dbb-k5-s2-g2"])
def test_planted_fault_fails_fused_kernel(case_id: str, which: str, dtype: str) -> None:
    case = CASES[case_id]
    torch_block, paddle_block = _pair(case, dtype)
    plant(paddle_block, which)
    torch_block.eval()
    paddle_block.eval()
    torch_block.switch_to_deploy()
    paddle_block.switch_to_deploy()
    torch_state = torch_block.state_dict()
    paddle_state = interop.to_torch(paddle_block.state_dict(), dtype=None, num_batches_tracked=None)
    assert _failed([helpers.measure(k, paddle_state[k], torch_state[k], "fused_kernel", dtype)
                    for k in torch_state if k.endswith("weight")])


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("case_id", ["acb-k3p1", "repvgg-identity", "dbb-k5-s2-g2"])
def test_planted_eps_fails_fused_vs_eval(case_id: str, dtype: str) -> None:
    """A fold that reads another eps than the forward (eps 1e-4 in the fold only) fails fused vs eval."""
    case = CASES[case_id]
    _, paddle_block = _pair(case, dtype)
    x = paddle.to_tensor(helpers.seeded_input(case.input_shape, dtype, _seed(case)))
    paddle_block.eval()
    with paddle.no_grad():
        before = paddle_block(x)
    plant(paddle_block, "bn_eps")
    paddle_block.switch_to_deploy()
    with paddle.no_grad():
        after = paddle_block(x)
    assert _failed([helpers.measure("paddle fused vs paddle eval", after, before, "fused_vs_eval", dtype)])


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("case_id", ["odconv-k3-kn4", "odconv-k3-kn1"])
def test_planted_kernel_fails_fold_vs_per_sample(case_id: str, dtype: str) -> None:
    """Fold vs per-sample (as test_odconv_batch_fold_equals_per_sample); the per-sample side's kernel x (1 + 1e-4)."""
    case = CASES[case_id]
    _, paddle_block = _pair(case, dtype)
    paddle_block.eval()
    planted = copy.deepcopy(paddle_block)
    plant(planted, "kernel")
    x = paddle.to_tensor(helpers.seeded_input(case.input_shape, dtype, _seed(case)))
    with paddle.no_grad():
        fold, loop = paddle_block(x), _paddle_per_sample(planted, x)
    assert _failed([helpers.measure("paddle fold vs per-sample", fold, loop, "fused_vs_eval", dtype)])


# ---------------------------------------------------------------- the float32 yardstick

def _twin_runs(case_id: str):
    """float32 torch / Paddle and their float64 twins of one block, in train mode, with shared inputs."""
    case = CASES[case_id]
    torch32, paddle32 = _pair(case, "float32")
    torch64 = copy.deepcopy(torch32).double()
    paddle64 = copy.deepcopy(paddle32)
    paddle64.to(dtype="float64")
    x = helpers.seeded_input(case.input_shape, "float32", _seed(case))
    torch32.eval()
    with torch.no_grad():
        out_shape = tuple(torch32(torch.from_numpy(x)).shape)
    upstream = _upstream(out_shape, "float32", _seed(case))
    return case, (torch32, paddle32, torch64, paddle64), x, upstream


def _steps(models, x: np.ndarray, upstream: np.ndarray) -> list[helpers.TrainStep]:
    torch32, paddle32, torch64, paddle64 = models
    x64, up64 = x.astype(np.float64), upstream.astype(np.float64)
    return [helpers.torch_train_step(torch32, x, upstream), helpers.paddle_train_step(paddle32, x, upstream),
            helpers.torch_train_step(torch64, x64, up64), helpers.paddle_train_step(paddle64, x64, up64)]


def _yardstick(steps: list[helpers.TrainStep], prefix: str) -> list[helpers.Comparison]:
    t32, p32, t64, p64 = steps
    results = [helpers.measure_against_rounding(f"{prefix} train output", p32.output, t32.output, "output",
                                                "float32", p64.output, t64.output),
               helpers.measure_against_rounding(f"{prefix} input grad", p32.input_grad, t32.input_grad,
                                                "input_grad", "float32", p64.input_grad, t64.input_grad)]
    results += [helpers.measure_against_rounding(f"{prefix} grad {k}", p32.param_grads[k], t32.param_grads[k],
                                                 "param_grad", "float32", p64.param_grads[k], t64.param_grads[k])
                for k in sorted(t32.param_grads)]
    return results


@pytest.mark.parametrize("case_id", FAMILY_CASES)
def test_yardstick_passes_the_unplanted_block(case_id: str) -> None:
    """The positive twin of the planted tests below: same block, same inputs, nothing planted."""
    _, models, x, upstream = _twin_runs(case_id)
    helpers.assert_all_close(_yardstick(_steps(models, x, upstream), "clean"))


@pytest.mark.parametrize("case_id", FAMILY_CASES)
def test_float32_only_error_in_one_layer_fails_even_when_listed(case_id: str, monkeypatch) -> None:
    """1e-3 relative error in the float32 Paddle block's output only (a float32 fast path gone wrong).

    Every comparison is listed as ill-conditioned here, the most lenient case: the allowance then
    comes from torch's own float32 error, and Paddle's float32 error must stay near torch's, so the
    plant fails. The old yardstick (3x the larger of the two frameworks' float32 errors) passed it.
    """
    monkeypatch.setitem(tolerances.ILL_CONDITIONED, "planted *", "all listed, to test the fallback itself")
    _, models, x, upstream = _twin_runs(case_id)
    paddle32 = models[1]
    paddle32.register_forward_post_hook(lambda layer, inputs, output: output * (1.0 + 1e-3))
    failed = _failed(_yardstick(_steps(models, x, upstream), "planted"))
    assert any("own float32 error" in str(r) for r in failed), [str(r) for r in failed]


def test_non_finite_twin_is_an_error() -> None:
    x = np.ones((2, 3), np.float32)
    exact = np.ones((2, 3), np.float64)
    bad = exact.copy()
    bad[0, 0] = np.inf
    with pytest.raises(AssertionError, match="non-finite values in expected_exact"):
        helpers.measure_against_rounding("inf twin", x, x, "output", "float32", exact, bad)
    with pytest.raises(AssertionError, match="non-finite values in actual_exact"):
        helpers.measure_against_rounding("nan twin", x, x, "output", "float32", bad * np.nan, exact)


def test_fallback_only_for_listed_comparisons(monkeypatch) -> None:
    """Past the table bound, an unlisted comparison fails however large the reference's own error is."""
    expected = np.linspace(1.0, 2.0, 10)
    actual = expected * (1 + 1e-4)  # 10x the float32 output bound
    expected_exact = expected * (1 + 1e-3)  # the reference is itself far off: an ill-conditioned tensor
    unlisted = helpers.measure_against_rounding("unlisted", actual, expected, "output", "float32",
                                                None, expected_exact)
    assert not unlisted.ok, unlisted
    monkeypatch.setitem(tolerances.ILL_CONDITIONED, "listed", "a test entry")
    listed = helpers.measure_against_rounding("listed", actual, expected, "output", "float32", None, expected_exact)
    assert listed.ok, listed
    assert "listed ill-conditioned (a test entry)" in str(listed)


# --- ReLU mask pinning (helpers.ReluMasks), used by the whole-model float32 train steps ------------

def _relu_pair() -> tuple[torch.nn.Module, paddle.nn.Layer]:
    torch.manual_seed(0)
    torch_net = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.ReLU(inplace=True),
                                    torch.nn.Conv2d(3, 3, 1), torch.nn.ReLU6(inplace=True))
    paddle_net = paddle.nn.Sequential(paddle.nn.Conv2D(2, 3, 3, padding=1), paddle.nn.ReLU(),
                                      paddle.nn.Conv2D(3, 3, 1), paddle.nn.ReLU6())
    helpers.transfer_to_paddle(torch_net, paddle_net, "float32")
    return torch_net, paddle_net


def test_relu_masks_replay_the_recorded_branch() -> None:
    """Replay really applies the recorded masks: matching masks change nothing, a flipped entry
    changes that output (and its gradient path), a model with other ReLU calls fails loudly."""
    torch_net, paddle_net = _relu_pair()
    x = helpers.seeded_input((2, 2, 5, 5), "float32", seed=0) * 3
    masks = helpers.ReluMasks()
    with masks.record(torch_net):
        expected = torch_net(torch.from_numpy(x)).detach().numpy()
    assert len(masks.masks) == 2 and masks.masks[1][1] is not None  # ReLU, then ReLU6 with its clip mask
    with masks.replay(paddle_net):
        pinned = paddle_net(paddle.to_tensor(x)).numpy()
    helpers.assert_close("pinned", pinned, expected, "output", "float32")
    active = masks.masks[0][0]
    active[np.unravel_index(np.argmax(~active), active.shape)] = True  # one inactive unit passes its input
    with masks.replay(paddle_net):
        flipped = paddle_net(paddle.to_tensor(x)).numpy()
    assert not helpers.measure("flipped", flipped, expected, "output", "float32").ok
    with pytest.raises(AssertionError, match="fewer ReLU calls"), masks.replay(paddle_net[:2]):
        paddle_net[:2](paddle.to_tensor(x))


def test_pinned_train_steps_still_see_a_planted_error() -> None:
    """Pinning masks must not hide a porting error: a 1e-3 kernel change on the Paddle side fails."""
    torch_net, paddle_net = _relu_pair()
    torch_exact = copy.deepcopy(torch_net).double()
    paddle_exact = copy.deepcopy(paddle_net)
    paddle_exact.to(dtype="float64")
    kernel = paddle_net[0].weight
    kernel.set_value(kernel * (1 + 1e-3))
    x = helpers.seeded_input((2, 2, 5, 5), "float32", seed=1) * 3
    upstream = helpers.seeded_input((2, 3, 5, 5), "float32", seed=2)
    torch32, paddle32, *_ = helpers.pinned_train_steps(torch_net, paddle_net, torch_exact, paddle_exact, x, upstream)
    assert not helpers.measure("planted", paddle32.output, torch32.output, "output", "float32").ok
