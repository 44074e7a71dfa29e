"""ODConv's temperature schedule and RepVGG's custom L2, in both frameworks."""

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.core import interop
from paddle_rep.core.schedules import EVAL_TEMPERATURE, get_temperature, set_temperature
from parity_tests import helpers


@pytest.mark.parametrize(("iteration", "epoch", "expected"), [
    pytest.param(0, 0, 30.0, id="fresh-start"),
    pytest.param(1, 0, 29.9971, id="after-first-step"),
    pytest.param(500, 0, 28.55, id="mid-epoch-0"),
    pytest.param(1000, 0, 27.1, id="end-epoch-0"),
    pytest.param(0, 5, 15.5, id="start-epoch-5"),
    pytest.param(1000, 9, 1.0, id="end-epoch-9"),
    pytest.param(0, 10, 1.0, id="resume-after-annealing"),
    pytest.param(700, 42, 1.0, id="late"),
])
def test_temperature_schedule_matches_upstream_values(iteration: int, epoch: int, expected: float) -> None:
    """Values measured by running upstream's get_temperature at 1000 iterations per epoch."""
    assert get_temperature(iteration, epoch, iter_per_epoch=1000) == pytest.approx(expected, abs=1e-12)


def test_temperature_schedule_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="iter_per_epoch and temp_epoch must be >= 1"):
        get_temperature(0, 0, iter_per_epoch=0)


@pytest.mark.parametrize("framework", ["torch", "paddle"])
def test_set_temperature_reaches_every_odconv(framework: str) -> None:
    if framework == "torch":
        model = torch.nn.Sequential(torch_ref.ODConv2d(4, 4, 3), torch.nn.ReLU(), torch_ref.ODConv2d(4, 4, 1))
        convs = [model[0], model[2]]
    else:
        model = paddle.nn.Sequential(paddle_rep.ODConv2D(4, 4, 3), paddle.nn.ReLU(), paddle_rep.ODConv2D(4, 4, 1))
        convs = [model[0], model[2]]
    assert set_temperature(model, 17.5) > 0
    assert [c.attention.temperature for c in convs] == [17.5, 17.5]
    set_temperature(model, EVAL_TEMPERATURE)
    assert [c.attention.temperature for c in convs] == [1.0, 1.0]


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("groups", [1, 2], ids=["g1", "g2"])
def test_custom_l2_agrees_and_matches_its_formula(dtype: str, groups: int) -> None:
    torch_block, paddle_block = helpers.make_pair(
        lambda: torch_ref.RepVGGBlock(8, 8, 3, padding=1, groups=groups),
        lambda: paddle_rep.RepVGGBlock(8, 8, 3, padding=1, groups=groups), dtype, seed=21)
    torch_l2 = torch_block.get_custom_L2()
    paddle_l2 = paddle_block.get_custom_L2()
    torch_l2.backward()
    paddle_l2.backward()

    state = {k: v.detach().numpy().astype(np.float64) for k, v in torch_block.state_dict().items()}
    k3, k1 = state["rbr_dense.conv.weight"], state["rbr_1x1.conv.weight"]

    def scale(prefix: str) -> np.ndarray:
        bn = getattr(torch_block, prefix).bn
        return (state[f"{prefix}.bn.weight"] / np.sqrt(state[f"{prefix}.bn.running_var"] + bn.eps))[:, None, None, None]

    t3, t1 = scale("rbr_dense"), scale("rbr_1x1")
    centre = k3[:, :, 1:2, 1:2]
    expected = ((centre * t3 + k1 * t1) ** 2 / (t3 ** 2 + t1 ** 2)).sum() + (k3 ** 2).sum() - (centre ** 2).sum()
    grads = {k: p.grad for k, p in paddle_block.named_parameters() if p.grad is not None}
    paddle_grads = interop.to_torch(grads, dtype=None, num_batches_tracked=None)
    assert set(paddle_grads) == {"rbr_dense.conv.weight", "rbr_1x1.conv.weight"}, "the BN scales are detached"
    helpers.assert_all_close([
        helpers.measure("custom L2 vs formula", torch_l2.detach(), np.asarray(expected), "output", dtype),
        helpers.measure("custom L2 paddle vs torch", paddle_l2, torch_l2.detach(), "output", dtype),
    ] + [helpers.measure(f"grad {k}", paddle_grads[k], torch_block.get_parameter(k).grad, "param_grad", dtype)
         for k in paddle_grads])
