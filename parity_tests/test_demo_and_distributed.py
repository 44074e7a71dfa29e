"""The end-to-end demo, single-process training, and two-process DataParallel training on CPU (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle

from paddle_rep.apps import cli
from paddle_rep.apps.convert.load import read_checkpoint
from paddle_rep.apps.data import batches, load_digits
from paddle_rep.apps.train import TrainConfig, make_optimizer, resolve_recipe, shard
from paddle_rep.apps.training import checkpoint
from paddle_rep.apps.training.recipes import learning_rate, temperature
from paddle_rep.core import interop
from paddle_rep.core.schedules import set_temperature
from paddle_rep.models import create_model
from parity_tests import helpers
from parity_tests.tolerances import tolerance

REPO = Path(__file__).resolve().parents[1]


def test_digits_split_is_stratified_and_seeded() -> None:
    first, second = load_digits(seed=0), load_digits(seed=0)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    assert first.x_train.shape[1:] == (1, 8, 8) and first.x_train.dtype == np.float32
    assert len(first.y_test) == 359 and set(np.bincount(first.y_test)) <= {35, 36, 37}
    assert abs(float(first.x_train.mean())) < 1e-5 and abs(float(first.x_train.std()) - 1) < 1e-4
    order = [y for _, y in batches(first.x_train, first.y_train, 64, epoch=1)]
    assert [y for _, y in batches(first.x_train, first.y_train, 64, epoch=1)][0].tolist() == order[0].tolist()


def test_demo_runs_end_to_end(tmp_path: Path, capsys) -> None:
    assert cli.main(["demo", "--epochs", "1", "--paddle-steps", "3", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "| paddle inference |" in printed and "verify paddle vs torch (eval)" in printed
    try:  # paddle2onnx 2.x refuses to import under Paddle 2.6 (CI's second run): the demo says it skipped
        import paddle2onnx  # noqa: F401
    except (ImportError, ValueError):
        assert "(int8 and ONNX runtimes skipped:" in printed
    else:
        assert "| fastest int8 |" in printed and "| fastest float32 |" in printed  # next to Paddle Inference
    assert "fused them back to the original layout (same state-dict keys)" in printed
    summary = json.loads((tmp_path / "summary.json").read_text())
    accuracy = summary["accuracy"]
    assert accuracy["torch"] > 0.5, "one epoch on digits should learn something"
    assert len(set(accuracy.values())) == 1, f"fusing, converting or exporting changed predictions: {accuracy}"
    train_params, deploy_params = summary["parameters"]["paddle"]
    assert summary["parameters"]["torch"] == [train_params, deploy_params] and deploy_params < train_params
    assert summary["loss_gap"] <= tolerance("train_loss", "float32").rel
    assert summary["state_gap"] <= tolerance("train_state", "float32").rel
    # The printed logit differences (README: <= 8.6e-7), each within the whole-network bound.
    diffs = summary["max_rel_logit_diff"]
    assert set(diffs) == {"torch", "paddle", "torch fused", "paddle fused", "paddle inference"}, diffs
    assert diffs["torch"] == 0.0
    bound = tolerance("network_output", "float32").rel
    assert all(0.0 < diffs[name] <= bound for name in diffs if name != "torch"), (diffs, bound)
    for file in ("torch_model.pth", "paddle_model.pdparams", "paddle_model.pdparams.json", "inference/model.pdiparams"):
        assert (tmp_path / file).is_file(), file


def test_train_command_single_process(tmp_path: Path) -> None:
    assert cli.main(["train", "--arch", "rep_tiny", "--steps", "4", "--batch-size", "32", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["accuracy"] == metrics["deploy_accuracy"]
    deployed = read_checkpoint(tmp_path / "model_deploy.pdparams").state
    assert "stem.fused_conv.weight" in deployed and not any("rbr_dense" in k for k in deployed)


def _simulate(init: dict, config: TrainConfig, world_size: int, keep_models: bool = False):
    """One process doing what ``world_size`` DataParallel ranks do: each shard normalised on its own.

    Returns the model, or with ``keep_models`` the weights (numpy state dicts) before each step."""
    data = load_digits(seed=config.seed)
    model = create_model(config.arch, num_classes=10, in_channels=1)
    missing, unexpected = model.set_state_dict(init)
    assert not missing and not unexpected
    recipe = resolve_recipe(config)
    optimizer = make_optimizer(model, recipe)
    iters = len(data.y_train) // recipe.batch_size
    model.train()
    before_step = []
    for i, (x, y) in enumerate(batches(data.x_train, data.y_train, recipe.batch_size, 0, config.seed)):
        if i == config.steps:
            break
        before_step.append({k: v.numpy().copy() for k, v in model.state_dict().items()})
        set_temperature(model, temperature(recipe, i, iters))
        optimizer.set_lr(learning_rate(recipe, i, iters, recipe.batch_size))
        losses = [paddle.nn.functional.cross_entropy(model(paddle.to_tensor(shard(x, r, world_size))),
                                                     paddle.to_tensor(shard(y, r, world_size)))
                  for r in range(world_size)]
        (paddle.add_n(losses) / world_size).backward()  # DataParallel averages the ranks' gradients
        optimizer.step()
        optimizer.clear_grad()
    return before_step if keep_models else model


def _shard_replica_stats(init: dict, config: TrainConfig, rank: int, world_size: int) -> dict:
    """BN running statistics of one rank: a replica of the trained weights at each step forwards only
    that rank's shard in train mode, so its statistics follow exactly the shard's batches."""
    data = load_digits(seed=config.seed)
    model = create_model(config.arch, num_classes=10, in_channels=1)
    missing, unexpected = model.set_state_dict(init)
    assert not missing and not unexpected
    trainer = _simulate(init, config, world_size, keep_models=True)
    recipe = resolve_recipe(config)
    iters = len(data.y_train) // recipe.batch_size
    model.train()
    for i, (x, _) in enumerate(batches(data.x_train, data.y_train, recipe.batch_size, 0, config.seed)):
        if i == config.steps:
            break
        current = {k: v.numpy() for k, v in model.state_dict().items()}
        weights = {k: current[k] if k.endswith(("_mean", "_variance")) else v for k, v in trainer[i].items()}
        missing, unexpected = model.set_state_dict(weights)  # this step's weights, the replica's own statistics
        assert not missing and not unexpected
        set_temperature(model, temperature(recipe, i, iters))
        with paddle.no_grad():
            model(paddle.to_tensor(shard(x, rank, world_size)))
    return model.state_dict()


def _launch(out: Path, log: Path, *args: str) -> None:
    """tools/train.py on 2 CPU processes (gloo) under paddle.distributed.launch, without the export."""
    command = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2", "--log_dir",
               str(log / "log"), str(REPO / "tools" / "train.py"), "--out", str(out), "--no-export", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=log, env=env)
    logs = "\n".join(p.read_text()[-2000:] for p in sorted((log / "log").glob("workerlog.*")))
    assert done.returncode == 0, f"launch failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}\n{logs}"


def test_two_process_resume_is_exact(tmp_path: Path) -> None:
    """2 ranks stopped after 2 steps and resumed to 5 end where 2 ranks running 5 steps straight end, bit for bit
    (rank 0's weights, BN statistics, optimizer and checkpoint step)."""
    common = ("--arch", "rep_tiny", "--batch-size", "32", "--save-every-rank")
    _launch(tmp_path / "straight", tmp_path, *common, "--steps", "5")
    _launch(tmp_path / "resumed", tmp_path, *common, "--steps", "2")
    _launch(tmp_path / "resumed", tmp_path, *common, "--steps", "5", "--resume")
    straight, resumed = (read_checkpoint(tmp_path / run / "rank0.pdparams").state for run in ("straight", "resumed"))
    assert set(straight) == set(resumed)
    for key in straight:
        np.testing.assert_array_equal(resumed[key], straight[key], err_msg=key)
    ckpts = [checkpoint.load(checkpoint.latest(tmp_path / run)) for run in ("straight", "resumed")]
    assert ckpts[0]["meta"]["step"] == ckpts[1]["meta"]["step"] == 5
    for key, value in ckpts[0]["optimizer"].items():
        np.testing.assert_array_equal(ckpts[1]["optimizer"][key], value, err_msg=key)
    first = read_checkpoint(tmp_path / "resumed" / "init.pdparams").state
    assert any(not np.array_equal(first[k], resumed[k]) for k in first), "training did not move the weights"


def test_two_process_data_parallel_matches_one_process(tmp_path: Path) -> None:
    """(a) Both ranks end with identical parameters; (b) they equal one process doing the same shards.

    BN statistics are per rank without SyncBatchNorm: each rank normalises with, and keeps
    running statistics of, its own shard. So the single-process reference forwards each shard
    separately (not the concatenated batch, whose BN statistics would differ), and running
    statistics are compared between rank 0 and shard 0's replica (the same process forwarding
    shard 0 alone), not across ranks.
    """
    config = TrainConfig(steps=3, batch_size=32)
    _launch(tmp_path, tmp_path, "--arch", config.arch, "--steps", str(config.steps), "--batch-size",
            str(config.batch_size), "--save-every-rank")
    ranks = [read_checkpoint(tmp_path / f"rank{r}.pdparams").state for r in (0, 1)]
    init = read_checkpoint(tmp_path / "init.pdparams").state
    trainable = [k for k in ranks[0] if not k.endswith(("_mean", "_variance"))]
    for key in trainable:
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=f"ranks differ at {key}")
    assert any(not np.array_equal(ranks[0][k], ranks[1][k]) for k in ranks[0] if k.endswith("_mean")), (
        "per-rank BN statistics should differ (each rank sees its own shard)")
    assert any(not np.array_equal(ranks[0][k], init[k]) for k in trainable), "training did not move the weights"

    reference = _simulate(init, config, world_size=2)
    expected = interop.to_torch(reference.state_dict(), dtype=None, num_batches_tracked=None)
    actual = interop.to_torch(ranks[0], dtype=None, num_batches_tracked=None)
    helpers.assert_all_close([helpers.measure(k, actual[k], expected[k], "train_state", "float32")
                              for k in expected if not k.endswith(("running_mean", "running_var"))])
    rank0_stats = helpers.running_stats(actual)
    replica_stats = helpers.running_stats(interop.to_torch(_shard_replica_stats(init, config, rank=0, world_size=2),
                                                           dtype=None, num_batches_tracked=None))
    assert rank0_stats and set(rank0_stats) == set(replica_stats)
    for key in sorted(rank0_stats):  # the same kernels on the same shard and weights: measured bit-identical
        np.testing.assert_array_equal(rank0_stats[key], replica_stats[key], err_msg=f"rank 0 {key}")
    rank1_stats = helpers.running_stats(interop.to_torch(ranks[1], dtype=None, num_batches_tracked=None))
    assert not all(helpers.measure(k, rank1_stats[k], replica_stats[k], "train_state", "float32").ok
                   for k in rank1_stats), "rank 1's statistics should not match shard 0's replica"
    naive = interop.to_torch(_simulate(init, config, world_size=1).state_dict(), dtype=None,
                             num_batches_tracked=None)
    assert not all(helpers.measure(k, actual[k], naive[k], "train_state", "float32").ok for k in expected), (
        "the concatenated-batch run should differ (BN statistics over 32 vs 16 samples)")


# ---------------------------------------------------------------- python -m, exit codes, logging defaults


def _run_module(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", code] if code else [sys.executable, "-m", "paddle_rep.apps", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)


def test_python_m_paddle_rep_runs_the_cli(tmp_path: Path) -> None:
    """``python -m paddle_rep.apps`` is the command line, with the documented exit codes (literals on purpose)."""
    listed = _run_module("list")
    assert listed.returncode == 0, listed.stderr
    assert "repvgg_a0" in listed.stdout and "od_resnet34" in listed.stdout
    assert _run_module("list", "--no-such-flag").returncode == 2
    missing = _run_module("convert", str(tmp_path / "absent.pth"), str(tmp_path / "out.pdparams"), "-q")
    assert missing.returncode == 3, missing.stderr
    assert "absent.pth" in missing.stderr and not (tmp_path / "out.pdparams").exists()


def test_other_paddle_rep_error_exits_1(monkeypatch, capsys) -> None:
    """A paddle-rep error that is neither usage, checkpoint, architecture nor verification: exit 1."""
    from paddle_rep.core.errors import ExportError

    def fail(args):
        raise ExportError("planted failure")

    monkeypatch.setitem(cli.COMMANDS, "list", cli.Command("list", lambda parser: None, fail))
    assert cli.main(["list"]) == 1
    assert "planted failure" in capsys.readouterr().err


_LOGGING_PROBE = """
import logging, sys
import paddle_rep, torch_ref, paddle
from paddle_rep.models import create_model
from paddle_rep.apps import export
for name in ("paddle_rep", "torch_ref"):
    logger = logging.getLogger(name)
    assert logger.level == logging.WARNING, (name, logger.level)
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers), name
model = create_model("rep_tiny", num_classes=3, in_channels=1)
model.eval()
export(model, sys.argv[1] + "/quiet", (1, 8, 8))
logging.getLogger("paddle_rep").setLevel(logging.INFO)
export(model, sys.argv[1] + "/loud", (1, 8, 8))
"""


def test_logging_defaults(tmp_path: Path) -> None:
    """Library loggers default to WARNING (import paddle sets the root to INFO); setLevel(INFO) shows them."""
    done = subprocess.run([sys.executable, "-c", _LOGGING_PROBE, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "saved inference model" in line]
    assert lines, done.stderr[-2000:]
    assert all("loud" in line for line in lines), lines
    assert done.stdout == "", "library code printed"
