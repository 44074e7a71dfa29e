"""``paddle-rep train`` on image folders and label lists: recipes, fine-tuning, ODConv at batch 1, bad input."""

import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest

import paddle_rep
from paddle_rep.apps import cli
from paddle_rep.apps.convert.load import read_checkpoint
from paddle_rep.apps.train import TrainConfig, train
from paddle_rep.apps.training import checkpoint, recipes
from paddle_rep.apps.training.data import ShardedBatchSampler
from paddle_rep.core.errors import ArchMismatchError, DataError
from parity_tests.train_data import write_image_folder, write_label_lists

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("PIL", reason="image folders need Pillow (train extra)")
pytest.importorskip("sklearn", reason="the test images come from the digits (test extra)")

QUICK = {"epochs": 1, "batch_size": 8, "image_size": 8}


# ---------------------------------------------------------------- recipe curves against the official formulas


def _timm_cosine(t, base, total, warmup, warmup_lr=0.0, lr_min=0.0):
    """timm CosineLRScheduler._get_lr (cycle_limit 1, warmup_prefix False), written out again."""
    if t < warmup:
        return warmup_lr + t * (base - warmup_lr) / warmup
    if t >= total:
        return lr_min
    return lr_min + 0.5 * (base - lr_min) * (1 + math.cos(math.pi * t / total))


@pytest.mark.parametrize("step", [0, 1, 2, 250, 499, 500, 501, 15000, 29999])
def test_repvgg_lr_follows_timm_stepped_after_each_iteration(step: int) -> None:
    """RepVGG main.py: step_update(epoch * n + idx) after the step, so step g uses the value at g - 1."""
    recipe = recipes.resolve("repvgg")
    iters = 100
    for batch in (256, 512):  # main.py: BASE_LR * batch * world / 256
        base = 0.1 * batch / 256
        expected = _timm_cosine(max(step - 1, 0), base, 300 * iters, 5 * iters)
        assert recipes.learning_rate(recipe, step, iters, batch) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # control: the unshifted curve (a planted off-by-one) differs during warm-up
    assert recipes.learning_rate(recipe, 2, iters, 256) != pytest.approx(_timm_cosine(2, 0.1, 30000, 500))


@pytest.mark.parametrize(("epoch", "factor"), [(0, 1.0), (29, 1.0), (30, 0.1), (59, 0.1), (60, 0.01), (90, 0.001)])
def test_odconv_resnet_step_schedule(epoch: int, factor: float) -> None:
    recipe = recipes.resolve("odconv_resnet")
    for index in (0, 37):  # ODConv main.py sets the lr once per epoch
        assert recipes.learning_rate(recipe, epoch * 50 + index, 50, 256) == pytest.approx(0.1 * factor)


@pytest.mark.parametrize("epoch", [0, 1, 75, 149])
def test_odconv_mobilenetv2_cosine_per_epoch(epoch: int) -> None:
    recipe = recipes.resolve("odconv_mobilenetv2")
    expected = 0.05 * (1 + math.cos(math.pi * epoch * 50 / (150 * 50))) / 2  # adjust_learning_rate(epoch, 0)
    assert recipes.learning_rate(recipe, epoch * 50 + 49, 50, 256) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("step", [0, 1, 4999, 10000, 19999])
def test_acnet_cosine_per_iteration(step: int) -> None:
    recipe = recipes.resolve("acnet_imagenet")
    total = 100 * 200
    expected = 0.1 * (1 + math.cos(math.pi * step / total)) / 2  # CosineAnnealingLR(T_max=total, eta_min=0)
    assert recipes.learning_rate(recipe, step, 200, 256) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(("step", "expected"), [(0, 1 + 29 * 9999 / 10000), (999, 27.1), (5000, 1 + 29 * 4999 / 10000),
                                                (9999, 1.0), (10000, 1.0), (123456, 1.0)])
def test_odconv_temperature_per_step(step: int, expected: float) -> None:
    """ODConv main.py: get_temperature(batch_idx + 1, epoch) before each batch of the first 10 epochs."""
    recipe = recipes.resolve("odconv_resnet")
    assert recipes.temperature(recipe, step, 1000) == pytest.approx(expected, abs=1e-12)


def test_recipe_overrides_are_checked() -> None:
    recipe = recipes.resolve("repvgg", {"weight_decay": 5e-5, "milestones": [3, 6], "epochs": 7})
    assert (recipe.weight_decay, recipe.milestones, recipe.epochs) == (5e-5, (3, 6), 7)
    with pytest.raises(ValueError, match="unknown recipe field 'wd'"):
        recipes.resolve("repvgg", {"wd": 1e-4})
    with pytest.raises(ValueError, match="needs a int"):
        recipes.resolve("repvgg", {"epochs": "many"})
    with pytest.raises(ValueError, match="unknown recipe 'nope'"):
        recipes.resolve("nope")


def test_sharded_sampler_splits_each_global_batch() -> None:
    one = list(ShardedBatchSampler(50, 8, seed=3))
    ranks = [list(ShardedBatchSampler(50, 8, rank=r, world_size=2, seed=3)) for r in (0, 1)]
    assert len(one) == 6
    assert all(a + b == whole for a, b, whole in zip(*ranks, one, strict=True))
    late = ShardedBatchSampler(50, 8, seed=3)
    late.set_position(0, 4)
    assert list(late) == one[4:]


# ---------------------------------------------------------------- training on both layouts, fine-tuning


@pytest.mark.parametrize("layout", ["folder", "list"])
def test_train_on_generated_images(tmp_path: Path, layout: str) -> None:
    root = (write_image_folder if layout == "folder" else write_label_lists)(tmp_path / "data")
    out = tmp_path / "run"
    export = layout == "folder"
    args = ["train", "--arch", "rep_tiny", "--data", str(root), "--out", str(out), "--recipe", "digits",
            "--epochs", "2", "--batch-size", "8", "--image-size", "8", "--ema", "--ema-decay", "0.5", "-q"]
    if export:
        assert cli.main(args) == 0
    else:
        # Loader worker processes are forked: in a fresh interpreter, not in this test worker, whose
        # earlier tests left runtime threads (OpenVINO, oneDNN) that a fork must not inherit.
        args += ["--workers", "2", "--no-export"]
        result = subprocess.run([sys.executable, "-m", "paddle_rep.apps", *args], capture_output=True, text=True,
                                timeout=300, cwd=ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [0, 1] and lines[-1]["step"] == 12
    assert all(0 <= line["top1"] <= line["top5"] <= 1 and "ema_top1" in line for line in lines)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == metrics["deploy_accuracy"] and metrics["steps"] == 12
    for name in ("model.pdparams", "model_deploy.pdparams", "ema.pdparams", "ema_deploy.pdparams",
                 "checkpoints/best.pdtrain", "checkpoints/step-000000012.pdtrain"):
        assert (out / name).is_file(), name
    assert (out / "inference" / "model.pdiparams").is_file() == export
    saved = checkpoint.load(out / "checkpoints" / "step-000000012.pdtrain")
    assert saved["meta"]["step"] == 12 and saved["meta"]["model_args"]["num_classes"] == 4
    assert set(saved["ema"]) == set(saved["model"]) and saved["optimizer"]


def test_finetune_from_converted_checkpoint_with_new_head(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data")
    source = tmp_path / "src"
    train(TrainConfig(data=str(root), recipe="digits", steps=1, export=False, **QUICK), source)
    converted = tmp_path / "four.pth"  # a torch-layout file written by paddle-rep convert
    assert cli.main(["convert", str(source / "model.pdparams"), str(converted), "--to", "torch", "-q"]) == 0
    out = tmp_path / "tuned"
    metrics = train(TrainConfig(data=str(root), recipe="digits", pretrained=str(converted), num_classes=6, steps=1,
                                export=False, **QUICK), out)
    assert metrics["steps"] == 1
    start = read_checkpoint(out / "init.pdparams").state
    original = read_checkpoint(source / "model.pdparams").state
    assert start["linear.weight"].shape == (64, 6) and original["linear.weight"].shape == (64, 4)
    for key, value in original.items():
        if not key.startswith("linear."):
            np.testing.assert_array_equal(start[key], value, err_msg=key)


def test_pretrained_for_another_architecture_lists_the_keys(tmp_path: Path, capsys) -> None:
    model = paddle_rep.create_model("rep_tiny", num_classes=4, width=8)
    ckpt = tmp_path / "narrow.pdparams"
    paddle.save(model.state_dict(), str(ckpt))
    root = write_image_folder(tmp_path / "data")
    with pytest.raises(ArchMismatchError, match="mismatched") as caught:
        train(TrainConfig(data=str(root), recipe="digits", pretrained=str(ckpt), steps=1, export=False, **QUICK),
              tmp_path / "run")
    assert "stem.square_conv.weight" in " ".join(caught.value.mismatched)
    code = cli.main(["train", "--data", str(root), "--recipe", "digits", "--pretrained", str(ckpt), "--out",
                     str(tmp_path / "cli"), "--image-size", "8", "-q"])
    assert code == cli.EXIT_ARCH and "does not fit rep_tiny" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists(), "nothing trained before the error"


# ---------------------------------------------------------------- ODConv at batch 1


def test_odconv_batch_one_trains_with_running_attention_bn(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        train(TrainConfig(batch_size=1, steps=1, export=False), tmp_path / "upstream")
    metrics = train(TrainConfig(batch_size=1, steps=3, export=False, attention_bn="running"), tmp_path / "opt_in")
    assert metrics["steps"] == 3 and all(np.isfinite(metrics["losses"]))
    # official weights still load: same keys and shapes, strict
    default = paddle_rep.create_model("od_resnet18", num_classes=5)
    opted = paddle_rep.create_model("od_resnet18", num_classes=5)
    assert paddle_rep.odconv.set_attention_bn(opted, "running") == 16
    missing, unexpected = opted.set_state_dict(default.state_dict())
    assert not missing and not unexpected


# ---------------------------------------------------------------- bad input: typed errors before the first step


def _run(tmp_path: Path, root: Path, *extra: str) -> int:
    return cli.main(["train", "--data", str(root), "--out", str(tmp_path / "run"), "--recipe", "digits",
                     "--image-size", "8", "--batch-size", "8", "--epochs", "1", "--no-export", "-q", *extra])


def test_empty_class_folder(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "data")
    (root / "train" / "digit9").mkdir()
    assert _run(tmp_path, root) == cli.EXIT_CHECKPOINT
    assert "digit9: empty class folder" in capsys.readouterr().err


def test_label_list_line_that_does_not_parse(tmp_path: Path, capsys) -> None:
    root = write_label_lists(tmp_path / "data")
    lines = (root / "train_list.txt").read_text().splitlines()
    lines[2] = "images/0000.png three"
    (root / "train_list.txt").write_text("\n".join(lines))
    assert _run(tmp_path, root) == cli.EXIT_CHECKPOINT
    assert "train_list.txt:3: expected 'relative/path label'" in capsys.readouterr().err


def test_labels_outside_num_classes(tmp_path: Path) -> None:
    root = write_label_lists(tmp_path / "data")
    with pytest.raises(DataError, match=r"outside \[0, 3\) \(--num-classes\)"):
        train(TrainConfig(data=str(root), recipe="digits", num_classes=3, **QUICK), tmp_path / "run")


def test_corrupt_image_is_named_or_skipped(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "data")
    bad = root / "train" / "digit1" / "005.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    assert _run(tmp_path, root) == cli.EXIT_CHECKPOINT
    assert "005.png" in capsys.readouterr().err
    metrics = train(TrainConfig(data=str(root), recipe="digits", skip_bad_images=True, export=False, **QUICK),
                    tmp_path / "skip")
    assert metrics["skipped_images"] == 1 and metrics["steps"] == 6


def test_fp16_on_a_cpu_is_a_usage_error(tmp_path: Path, capsys) -> None:
    if paddle.device.get_device().startswith("gpu"):
        pytest.skip("fp16 is valid on a GPU")
    assert cli.main(["train", "--steps", "1", "--amp", "fp16", "--out", str(tmp_path), "-q"]) == cli.EXIT_USAGE
    assert "--amp fp16 needs a GPU" in capsys.readouterr().err


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path: Path, monkeypatch) -> None:
    first = checkpoint.save(tmp_path, 1, {"meta": {"step": 1}}, keep_last=3)
    before = first.read_bytes()

    def disk_full(obj, f, protocol):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pickle, "dump", disk_full)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(tmp_path, 2, {"meta": {"step": 2}}, keep_last=1)
    assert checkpoint.latest(tmp_path) == first and first.read_bytes() == before
    assert [p.name for p in checkpoint.checkpoint_dir(tmp_path).iterdir()] == [first.name], "temporary left over"


def test_kill_between_epoch_line_and_checkpoint_logs_each_epoch_once(tmp_path: Path, monkeypatch) -> None:
    # The end of an epoch writes its metrics line, its step checkpoint, then best.pdtrain; a crash anywhere in
    # there, or a line torn mid-write, must leave a run whose resume logs every epoch exactly once.
    root = write_image_folder(tmp_path / "data", per_class=4)  # 16 images: 2 steps of 8 per epoch
    out = tmp_path / "run"
    args = ["train", "--arch", "rep_tiny", "--data", str(root), "--out", str(out), "--recipe", "digits",
            "--epochs", "2", "--batch-size", "8", "--image-size", "8", "--no-export", "-q"]

    def crash(out_dir, source):
        raise KeyboardInterrupt  # not an error the CLI maps to an exit code: it ends the run as a kill would

    monkeypatch.setattr(checkpoint, "save_best", crash)
    with pytest.raises(KeyboardInterrupt):
        cli.main(args)
    monkeypatch.undo()
    assert checkpoint.latest(out).name == "step-000000002.pdtrain"
    with (out / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 1, "st')  # torn by a kill mid-write
    assert cli.main([*args, "--resume"]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(line["epoch"], line["step"]) for line in lines] == [(0, 2), (1, 4)]
