"""paddle_rep.SyncBatchNorm: conversion, fusion, the interop mapping, and torch's update over the global count.

Paddle has no CPU ``sync_batch_norm`` kernel, so the several-rank case runs against a fake
two-rank world: the count reduction adds the other rank's count, and the sync kernel normalises
this rank's shard with the statistics of both shards and updates the running statistics with
their biased variance, as Paddle's GPU sync kernel does (written out, so the same on any
device). torch's reference is one BatchNorm2d over the concatenated batch: torch's
SyncBatchNorm computes exactly that across ranks.
"""

import copy

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep import bn as pbn
from paddle_rep.core import interop
from paddle_rep.fusion import is_batch_norm
from parity_tests import helpers

STEPS = 3


@pytest.fixture(autouse=True)
def _fresh_probe_cache():
    pbn.clear_kernel_cache()
    yield
    pbn.clear_kernel_cache()


def _syncs(model: paddle.nn.Layer) -> list[pbn.SyncBatchNorm]:
    return [layer for layer in model.sublayers(include_self=True) if isinstance(layer, pbn.SyncBatchNorm)]


def test_convert_replaces_every_bn_and_shares_its_tensors() -> None:
    model = paddle.nn.Sequential(paddle_rep.RepVGGBlock(4, 4, 3, padding=1), paddle_rep.ACBlock(4, 4, 3, padding=1,
                                 use_affine=False), paddle.nn.BatchNorm2D(4), paddle.nn.BatchNorm(4))
    model.eval()
    before = {name: p for name, p in model.state_dict().items()}
    bns = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.layer.norm._BatchNormBase)]
    converted = paddle_rep.convert_sync_batchnorm(model)
    syncs = _syncs(converted)
    assert len(syncs) == len(bns) == 3 + 3 + 1
    assert isinstance(converted[3], paddle.nn.BatchNorm)  # legacy BN untouched, as Paddle's converter does
    after = converted.state_dict()
    assert list(after) == list(before)  # no key added (affine-free BNs keep no weight), none lost
    assert all(after[k] is before[k] for k in before)  # shared, not copied
    assert [s.running_var_mode for s in syncs] == ["torch"] * 6 + ["paddle"]  # native BN keeps native updates
    assert all(not s.training for s in syncs) and all(is_batch_norm(s) for s in syncs)
    assert isinstance(pbn.SyncBatchNorm.convert_sync_batchnorm(pbn.BatchNorm2D(3)), pbn.SyncBatchNorm)


def test_converted_state_dict_maps_to_torchs_converted_model() -> None:
    torch_model, paddle_model = helpers.make_pair(lambda: torch_ref.create_model("rep_tiny", num_classes=5),
                                                  lambda: paddle_rep.create_model("rep_tiny", num_classes=5),
                                                  "float32", seed=1)
    torch_sync = torch.nn.SyncBatchNorm.convert_sync_batchnorm(torch_model)
    paddle_sync = paddle_rep.convert_sync_batchnorm(paddle_model)
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in torch_sync.modules()) == len(_syncs(paddle_sync)) > 0
    state = interop.to_torch(paddle_sync.state_dict())
    torch_sync.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    missing, unexpected = paddle_sync.set_state_dict(interop.from_torch(torch_sync.state_dict()))
    assert not missing and not unexpected


def test_fusion_treats_syncbatchnorm_like_the_other_bns() -> None:
    torch_model, paddle_model = helpers.make_pair(lambda: torch_ref.create_model("rep_tiny", num_classes=5),
                                                  lambda: paddle_rep.create_model("rep_tiny", num_classes=5),
                                                  "float64", seed=2)
    x = helpers.seeded_input((2, 3, 16, 16), "float64", seed=0)
    torch_model.eval()
    with torch.no_grad():
        expected = torch_model(torch.from_numpy(x)).numpy()
    converted = paddle_rep.convert_sync_batchnorm(copy.deepcopy(paddle_model))
    converted.eval()
    unfused = converted(paddle.to_tensor(x))  # eval: plain batch norm, so it runs on a CPU
    fused = paddle_rep.reparameterize_model(converted)
    assert not _syncs(fused.stage1) and not _syncs(fused.stem)  # the block BNs were folded away
    with paddle.no_grad():
        fused_out = fused(paddle.to_tensor(x))
    helpers.assert_all_close([helpers.measure("converted eval", unfused, expected, "output", "float64"),
                              helpers.measure("fused", fused_out, expected, "fused_vs_eval", "float64")])


def test_one_rank_matches_torch_syncbatchnorm() -> None:
    """Outside paddle.distributed both act as plain BN; ours keeps torch's running variance."""
    torch_bn = torch.nn.SyncBatchNorm(4).double()
    helpers.randomize_bn(torch_bn, np.random.default_rng(0))
    helpers.align_bn_constants_to_paddle(torch_bn)
    paddle_bn = pbn.SyncBatchNorm(4)
    paddle_bn.to(dtype="float64")
    helpers.transfer_to_paddle(torch_bn, paddle_bn, "float64")
    torch_bn.train()
    paddle_bn.train()
    results = []
    for step in range(STEPS):
        x = helpers.seeded_input((3, 4, 2, 3), "float64", seed=step)
        results.append(helpers.measure(f"step {step} out", paddle_bn(paddle.to_tensor(x)),
                                       torch_bn(torch.from_numpy(x)).detach(), "output", "float64"))
    actual, expected = helpers.paddle_running_stats(paddle_bn), helpers.running_stats(torch_bn.state_dict())
    helpers.assert_all_close(results + [helpers.measure(k, actual[k], expected[k], "running_stats", "float64")
                                        for k in expected])


class _FakeTwoRanks:
    """Rank 0 of a two-rank world whose rank 1 holds ``peer`` (this step's shard, set by the test)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, global_count: bool = True) -> None:
        self.peer: np.ndarray | None = None
        self.counts: list[int] = []
        monkeypatch.setattr(pbn, "world_size", lambda: 2)
        monkeypatch.setattr(pbn, "sum_over_ranks", self.sum_over_ranks if global_count else lambda count: count)
        monkeypatch.setattr(pbn, "sync_kernel", self.sync_kernel)

    def _peer_of(self, x: paddle.Tensor) -> paddle.Tensor:
        if x.shape[1] == 1:  # the probe: every rank sends the same values
            return x
        return paddle.to_tensor(self.peer, place=x.place)

    def sum_over_ranks(self, count: int) -> int:
        peer_count = 8 if len(self.counts) == 0 else int(np.prod(self.peer.shape)) // self.peer.shape[1]
        self.counts.append(count + peer_count)
        return count + peer_count

    def sync_kernel(self, x, mean, variance, weight, bias, momentum, epsilon, data_format):
        """What Paddle's GPU sync kernel computes, written out so that it does the same on any device."""
        assert data_format == "NCHW"
        both = paddle.concat([x, self._peer_of(x)], axis=0)
        batch_mean = both.mean(axis=[0, 2, 3], keepdim=True)
        batch_var = ((both - batch_mean) ** 2).mean(axis=[0, 2, 3], keepdim=True)  # biased, global count
        momentum, epsilon = float(np.float32(momentum)), float(np.float32(epsilon))  # as the kernel receives them
        with paddle.no_grad():
            mean.set_value(momentum * mean + (1 - momentum) * batch_mean.flatten())
            variance.set_value(momentum * variance + (1 - momentum) * batch_var.flatten())
        out = (x - batch_mean) / paddle.sqrt(batch_var + epsilon)
        return out * weight.reshape([1, -1, 1, 1]) + bias.reshape([1, -1, 1, 1])


def _two_rank_steps(monkeypatch: pytest.MonkeyPatch, global_count: bool, affine: bool = True):
    world = _FakeTwoRanks(monkeypatch, global_count)
    torch_bn = torch.nn.BatchNorm2d(4, affine=affine).double()  # over both shards at once
    helpers.randomize_bn(torch_bn, np.random.default_rng(0))
    helpers.align_bn_constants_to_paddle(torch_bn)
    paddle_bn = pbn.SyncBatchNorm(4, weight_attr=None if affine else False, bias_attr=None if affine else False)
    paddle_bn.to(dtype="float64")
    helpers.transfer_to_paddle(torch_bn, paddle_bn, "float64")
    torch_bn.train()
    paddle_bn.train()
    results = []
    for step, (mine, theirs) in enumerate([(2, 3), (3, 3), (1, 4)]):  # shards of unequal size
        x = helpers.seeded_input((mine + theirs, 4, 2, 3), "float64", seed=step)
        world.peer = x[mine:]
        out = paddle_bn(paddle.to_tensor(x[:mine]))
        expected = torch_bn(torch.from_numpy(x)).detach()[:mine]
        results.append(helpers.measure(f"step {step} out", out, expected, "output", "float64"))
    actual, expected = helpers.paddle_running_stats(paddle_bn), helpers.running_stats(torch_bn.state_dict())
    results += [helpers.measure(k, actual[k], expected[k], "running_stats", "float64") for k in expected]
    return results, world


@pytest.mark.parametrize("affine", [True, False])
def test_two_ranks_follow_torch_over_the_global_count(monkeypatch: pytest.MonkeyPatch, affine: bool) -> None:
    results, world = _two_rank_steps(monkeypatch, global_count=True, affine=affine)
    helpers.assert_all_close(results)
    assert world.counts == [16, 5 * 6, 6 * 6, 5 * 6]  # the probe's 8 + 8, then N*H*W of both shards
    assert list(pbn.kernel_updates().values()) == [pbn.BIASED]
    assert list(pbn.kernel_updates())[0].kernel == "sync_batch_norm"


def test_two_ranks_with_the_local_count_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: n/(n-1) of this rank's shard alone (what a per-rank BN would use) is caught."""
    results, _ = _two_rank_steps(monkeypatch, global_count=False)
    failed = {r.what for r in results if not r.ok}
    assert failed == {"running_var"}, [str(r) for r in results]


def test_training_with_sync_bn_converts_the_model(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    from paddle_rep.apps.train import TrainConfig, train

    with caplog.at_level("INFO", logger="paddle_rep"):
        metrics = train(TrainConfig(arch="rep_tiny", epochs=1, steps=2, batch_size=16, sync_bn=True), tmp_path)
    assert metrics["steps"] == 2
    assert any("SyncBatchNorm" in record.getMessage() and "converted" in record.getMessage()
               for record in caplog.records), [r.getMessage() for r in caplog.records]


def test_surgery_round_trip_through_syncbatchnorm() -> None:
    """insert_blocks -> convert_sync_batchnorm -> fuse_back: the blocks' SyncBNs fuse, the model's
    own SyncBN takes the folded conv bias, and the eval output is kept."""
    paddle.seed(5)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3, padding=1, bias_attr=False), paddle.nn.BatchNorm2D(4),
                                 paddle.nn.ReLU(), paddle.nn.Conv2D(4, 4, 3, padding=1))
    model.to(dtype="float64")
    x = paddle.to_tensor(helpers.seeded_input((2, 3, 6, 6), "float64", seed=1))
    blocks, _ = paddle_rep.insert_blocks(model, "acb")
    synced = paddle_rep.convert_sync_batchnorm(blocks)
    syncs = _syncs(synced)
    assert len(syncs) == 2 * 3 + 1
    rng = np.random.default_rng(0)
    for bn in syncs:  # as if trained: the fused conv bias is then non-zero
        bn._mean.set_value(rng.normal(size=4))
        bn._variance.set_value(rng.uniform(0.5, 2.0, size=4))
    synced.eval()
    with paddle.no_grad():
        expected = synced(x)
    reverted, report = paddle_rep.fuse_back(synced, example_input=x)
    assert [type(layer).__name__ for layer in reverted.children()] == ["Conv2D", "SyncBatchNorm", "ReLU", "Conv2D"]
    assert report.bias_folded == {"0": "1"}, str(report)
    with paddle.no_grad():
        helpers.assert_close("reverted", reverted(x), expected, "fused_vs_eval", "float64")
