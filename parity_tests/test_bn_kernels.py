"""The running-variance probe of paddle_rep.bn, and torch parity on every kind of Paddle BN kernel.

Only the CPU kernels run here, so the others are emulated: ``paddle.nn.functional.batch_norm``
(the call our BNs make, looked up at call time) is wrapped so that it overwrites the running
variance with the update the emulated kernel would write. ``cudnn`` is a CUDA build of Paddle:
unbiased (÷(n-1)) on 4-D inputs and on 2-D inputs below batch 10240, biased (÷n) from there on,
where Paddle runs its own kernels. ``biased`` is every CPU kernel. The emulation replaces whatever
the real kernel wrote, so these tests mean the same on a GPU (``PARITY_DEVICE=gpu:0``).
"""

import inspect

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep import bn as pbn
from paddle_rep.core import interop
from paddle_rep.core.errors import BatchNormKernelError
from parity_tests import helpers
from parity_tests import test_training_parity as training

STEPS = 3
CUDNN_PER_ACTIVATION_MIN_BATCH = 10240  # from Paddle's CUDA batch_norm kernel (written out, not imported)


def _cudnn_update(shape: list[int]) -> str:
    return pbn.BIASED if len(shape) == 2 and shape[0] >= CUDNN_PER_ACTIVATION_MIN_BATCH else pbn.UNBIASED


def _biased_update(shape: list[int]) -> str:
    return pbn.BIASED


EMULATIONS = {"cudnn": _cudnn_update, "biased": _biased_update}


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    pbn.clear_kernel_cache()
    yield
    pbn.clear_kernel_cache()  # no emulated answer may outlive its test


def _emulate(monkeypatch: pytest.MonkeyPatch, update_for, scale: float = 1.0) -> list[list[int]]:
    """Wrap F.batch_norm so the running variance gets ``update_for(shape)``'s update; returns the shapes seen.

    ``scale`` multiplies the batch term, for a kernel that does neither update.
    """
    original = paddle.nn.functional.batch_norm
    signature = inspect.signature(original)
    seen = []

    def batch_norm(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        x, running_var, momentum = a["x"], a["running_var"], a["momentum"]
        updates = a["training"] and not a["use_global_stats"]
        before = running_var.numpy().astype(np.float64)
        out = original(*args, **kwargs)
        if updates:
            shape = list(x.shape)
            seen.append(shape)
            values = x.numpy().astype(np.float64)
            channel_axis = len(shape) - 1 if a["data_format"] in ("NLC", "NHWC", "NDHWC") else 1
            values = np.moveaxis(values, channel_axis, 0).reshape(shape[channel_axis], -1)
            n = values.shape[1]
            batch_var = values.var(axis=1) * (n / (n - 1) if update_for(shape) == pbn.UNBIASED else 1.0) * scale
            momentum = float(np.float32(momentum))  # what Paddle's kernel receives
            new = momentum * before + (1.0 - momentum) * batch_var
            with paddle.no_grad():
                running_var.set_value(paddle.to_tensor(new.astype(before.dtype), place=running_var.place)
                                      .astype(running_var.dtype))
        return out

    monkeypatch.setattr(paddle.nn.functional, "batch_norm", batch_norm)
    return seen


def _key(rank: int, large: bool = False, dtype: str = "float32", data_format: str = "NCHW") -> pbn.KernelKey:
    return pbn.KernelKey("batch_norm", str(paddle.CPUPlace()), dtype, dtype, data_format, rank, large)


# --- the probe ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize(("rank", "data_format", "large"), [
    (4, "NCHW", False), (4, "NHWC", False), (2, "NC", False), (2, "NC", True), (3, "NCL", False), (5, "NCDHW", False)])
def test_cpu_kernel_probes_biased(rank: int, data_format: str, large: bool, dtype: str) -> None:
    """Paddle's CPU kernels update with the biased variance; a Paddle release that changes this fails here."""
    key = _key(rank, large, dtype, data_format)
    assert pbn.kernel_update(key, place=paddle.CPUPlace()) == pbn.BIASED
    assert pbn.kernel_updates() == {key: pbn.BIASED}


def test_probe_reads_each_emulated_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    _emulate(monkeypatch, _cudnn_update)
    cpu = paddle.CPUPlace()
    assert pbn.kernel_update(_key(4), place=cpu) == pbn.UNBIASED
    assert pbn.kernel_update(_key(2), place=cpu) == pbn.UNBIASED
    assert pbn.kernel_update(_key(2, large=True), place=cpu) == pbn.BIASED


def test_probe_runs_once_per_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _emulate(monkeypatch, _biased_update)
    layer = paddle_rep.BatchNorm2D(3)
    layer.train()
    for batch in (4, 5, 4):
        layer(paddle.to_tensor(helpers.seeded_input((batch, 3, 2, 2), "float32", batch)))
    # one probe (one channel, 8 values), then the three real calls
    assert seen == [[2, 1, 2, 2], [4, 3, 2, 2], [5, 3, 2, 2], [4, 3, 2, 2]]


@pytest.mark.parametrize("scale", [0.5, 1.1, 2.0])
def test_unexpected_update_raises_naming_the_kernel(monkeypatch: pytest.MonkeyPatch, scale: float) -> None:
    _emulate(monkeypatch, _biased_update, scale=scale)
    layer = paddle_rep.BatchNorm2D(3)
    layer.train()
    with pytest.raises(BatchNormKernelError, match=r"rank=4.*expected 5.25 \(biased\) or 6.0") as info:
        layer(paddle.to_tensor(helpers.seeded_input((4, 3, 2, 2), "float32", 0)))
    assert info.value.read == pytest.approx(5.25 * scale)
    assert pbn.kernel_updates() == {}  # nothing cached on failure
    np.testing.assert_array_equal(layer._variance.numpy(), np.ones(3, np.float32))


# --- parity on emulated kernels --------------------------------------------------------------------

def _bn_pair(torch_cls, paddle_cls, channels: int, dtype: str):
    torch_bn = torch_cls(channels).to(helpers.TORCH_DTYPES[dtype])
    helpers.randomize_bn(torch_bn, np.random.default_rng(0))
    helpers.align_bn_constants_to_paddle(torch_bn)
    paddle_bn = paddle_cls(channels)
    paddle_bn.to(dtype=dtype)
    helpers.transfer_to_paddle(torch_bn, paddle_bn, dtype)
    torch_bn.train()
    paddle_bn.train()
    return torch_bn, paddle_bn


def _train_bn(torch_cls, paddle_cls, shape: tuple[int, ...], dtype: str) -> list[helpers.Comparison]:
    torch_bn, paddle_bn = _bn_pair(torch_cls, paddle_cls, shape[1], dtype)
    for step in range(STEPS):
        x = helpers.seeded_input(shape, dtype, seed=step)
        torch_bn(torch.from_numpy(x))
        paddle_bn(paddle.to_tensor(x))
    actual, expected = helpers.paddle_running_stats(paddle_bn), helpers.running_stats(torch_bn.state_dict())
    return [helpers.measure(k, actual[k], expected[k], "running_stats", dtype) for k in expected]


@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("emulation", list(EMULATIONS))
def test_batchnorm2d_matches_torch_on_emulated_kernel(monkeypatch: pytest.MonkeyPatch, emulation: str,
                                                      dtype: str) -> None:
    _emulate(monkeypatch, EMULATIONS[emulation])
    helpers.assert_all_close(_train_bn(torch.nn.BatchNorm2d, paddle_rep.BatchNorm2D, (3, 6, 4, 5), dtype))


@pytest.mark.parametrize("emulation", list(EMULATIONS))
def test_native_mode_keeps_the_kernels_update(monkeypatch: pytest.MonkeyPatch, emulation: str) -> None:
    """running_var_mode="paddle": torch's statistics on cuDNN, 1/(n-1) off on a biased kernel; never probes."""
    _emulate(monkeypatch, EMULATIONS[emulation])
    results = _train_bn(torch.nn.BatchNorm2d, lambda c: paddle_rep.BatchNorm2D(c, running_var_mode="paddle"),
                        (3, 6, 4, 5), "float64")
    assert {r.what: r.ok for r in results} == {"running_mean": True, "running_var": emulation == "cudnn"}, \
        [str(r) for r in results]
    assert pbn.kernel_updates() == {}


def test_assuming_a_biased_kernel_fails_on_cudnn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: the old fixed n/(n-1) rescale over-corrects on cuDNN, and the comparison sees it."""
    _emulate(monkeypatch, _cudnn_update)
    monkeypatch.setattr(pbn, "kernel_update", lambda *args, **kwargs: pbn.BIASED)
    results = _train_bn(torch.nn.BatchNorm2d, paddle_rep.BatchNorm2D, (3, 6, 4, 5), "float64")
    assert {r.what: r.ok for r in results} == {"running_mean": True, "running_var": False}, [str(r) for r in results]


@pytest.mark.parametrize(("batch", "expect"), [(16, pbn.UNBIASED), (CUDNN_PER_ACTIVATION_MIN_BATCH, pbn.BIASED)])
def test_batchnorm1d_matches_torch_on_both_cudnn_size_classes(monkeypatch: pytest.MonkeyPatch, batch: int,
                                                              expect: str) -> None:
    """2-D inputs: cuDNN below batch 10240 (unbiased), Paddle's own kernel from there on (biased)."""
    _emulate(monkeypatch, _cudnn_update)
    helpers.assert_all_close(_train_bn(torch.nn.BatchNorm1d, paddle_rep.BatchNorm1D, (batch, 4), "float64"))
    assert set(pbn.kernel_updates().values()) == {expect}


def test_size_class_is_part_of_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the large-N case: a probe keyed without the size class answers "unbiased" there and fails."""
    _emulate(monkeypatch, _cudnn_update)
    monkeypatch.setattr(pbn, "is_large", lambda rank, batch: False)
    results = _train_bn(torch.nn.BatchNorm1d, paddle_rep.BatchNorm1D, (CUDNN_PER_ACTIVATION_MIN_BATCH, 4), "float64")
    assert not all(r.ok for r in results), [str(r) for r in results]


def _train_nets(torch_model, paddle_model, batches) -> list[helpers.Comparison]:
    """STEPS SGD steps in float64 on both; compare every running statistic after the last."""
    runs = [training._Run(torch_model, training._torch_optimizer("sgd", torch_model.parameters(), "float64"),
                          "float64"),
            training._Run(paddle_model, training._paddle_optimizer("sgd", paddle_model.parameters()), "float64")]
    for run in runs:
        run.model.train()
    for x, y in batches:
        for run in runs:
            run.step(x, y)
    expected, actual = (helpers.running_stats(run.state()) for run in runs)
    assert expected, "the net has no BN"
    return [helpers.measure(k, actual[k], expected[k], "train_state", "float64") for k in expected]


def _batches(shape: tuple[int, ...], classes: int, seed: int = 12):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=shape), rng.integers(0, classes, size=shape[0])) for _ in range(STEPS)]


@pytest.mark.parametrize("emulation", list(EMULATIONS))
@pytest.mark.parametrize("family", ["repvgg", "acnet", "odconv"])
def test_every_block_matches_torch_on_emulated_kernel(monkeypatch: pytest.MonkeyPatch, family: str,
                                                      emulation: str) -> None:
    seen = _emulate(monkeypatch, EMULATIONS[emulation])
    torch_net, paddle_net = helpers.make_pair(lambda: training._net(family, torch_ref),
                                              lambda: training._net(family, paddle_rep), "float64", seed=11)
    results = _train_nets(torch_net, paddle_net, _batches((training.BATCH, 3, training.HW, training.HW),
                                                          training.CLASSES))
    helpers.assert_all_close(results)
    assert seen, "the emulation was never called"


@pytest.mark.parametrize("emulation", list(EMULATIONS))
def test_zoo_model_matches_torch_on_emulated_kernel(monkeypatch: pytest.MonkeyPatch, emulation: str) -> None:
    """rep_tiny: ACBlock, RepVGGBlock (with SE), ODConv2D (attention BN over n = batch) and a plain BN."""
    _emulate(monkeypatch, EMULATIONS[emulation])
    torch_net, paddle_net = helpers.make_pair(lambda: torch_ref.create_model("rep_tiny", num_classes=5),
                                              lambda: paddle_rep.create_model("rep_tiny", num_classes=5),
                                              "float64", seed=3)
    helpers.assert_all_close(_train_nets(torch_net, paddle_net, _batches((4, 3, 16, 16), 5)))


# --- to_static -------------------------------------------------------------------------------------

@pytest.mark.parametrize("open_batch", [False, True], ids=["fixed-batch", "open-batch"])
def test_to_static_training_matches_torch(open_batch: bool) -> None:
    """The probe runs eagerly while to_static traces (its answer is cached as for eager mode), and a
    traced training forward updates the running variance as torch does, also with two batch sizes."""
    torch_bn, paddle_bn = _bn_pair(torch.nn.BatchNorm2d, paddle_rep.BatchNorm2D, 6, "float32")
    spec = [paddle.static.InputSpec([None, 6, 4, 5], "float32", "x")] if open_batch else None
    static_bn = paddle.jit.to_static(paddle_bn, input_spec=spec, full_graph=True)
    for step, batch in enumerate((3, 5, 3)):
        x = helpers.seeded_input((batch, 6, 4, 5), "float32", seed=step)
        torch_bn(torch.from_numpy(x))
        static_bn(paddle.to_tensor(x))
    actual, expected = helpers.paddle_running_stats(paddle_bn), helpers.running_stats(torch_bn.state_dict())
    helpers.assert_all_close([helpers.measure(k, actual[k], expected[k], "running_stats", "float32")
                              for k in expected])
    place = f"Place({paddle.get_device()})"
    keys = list(pbn.kernel_updates())
    assert len(keys) == 1 and keys[0].place == place and keys[0].rank == 4, keys


def test_state_dict_keys_and_interop_unchanged() -> None:
    layer = paddle_rep.BatchNorm1D(3)
    assert list(layer.state_dict()) == list(paddle.nn.BatchNorm1D(3).state_dict())
    assert list(interop.to_torch(layer.state_dict())) == list(torch.nn.BatchNorm1d(3).state_dict())
