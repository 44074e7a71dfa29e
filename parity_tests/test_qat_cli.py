"""``paddle-rep qat``: quantization-aware training of a trained checkpoint on an image folder, the int8 export
reloaded in a fresh process, and bad input refused with its typed error and exit code before anything is written.

The model is ``rep_tiny`` (an ACBlock stem, two RepVGG blocks, an ODConv), trained for a few epochs with
``paddle-rep train`` on 8x8 digit images; the QAT run is short. Its int8 files must agree with the QAT
model's own fake-quant forward (captured from the run) at two batch sizes on two different inputs.
The bad-input tests need no ONNX packages (they fail before the export), so they also run under Paddle 2.6.
"""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_rep.apps import cli
from paddle_rep.apps.train import TrainConfig, resolve_recipe, train
from paddle_rep.apps.training.data import Transform, find_splits, import_pil
from paddle_rep.core.errors import QuantizationError
from paddle_rep.models import create_model
from parity_tests.train_data import write_image_folder

from .tolerances import tolerance

ROOT = Path(__file__).resolve().parent.parent
BACKENDS = ("onnxruntime", "openvino")

pytest.importorskip("PIL", reason="image folders need Pillow (train extra)")
pytest.importorskip("sklearn", reason="the test images come from the digits (test extra)")


def _exports() -> bool:
    """paddle2onnx imports (not under Paddle 2.6, where paddle2onnx 2.x raises ValueError) and the int8 packages."""
    try:
        import nncf  # noqa: F401
        import onnxruntime.quantization  # noqa: F401
        import paddle2onnx  # noqa: F401
    except (ImportError, ValueError):
        return False
    return True


def _tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (hidden staging folders included) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _val_arrays(root: Path, size: int) -> np.ndarray:
    """The validation images with the evaluation transform ``paddle-rep qat --image-size size`` applies."""
    image_module = import_pil()
    _, val = find_splits(root)
    recipe = resolve_recipe(TrainConfig(arch="rep_tiny", data=str(root), image_size=size))
    transform = Transform(False, recipe.eval_size, recipe.eval_resize)
    arrays = []
    for path in val.paths:
        with image_module.open(path) as image:
            arrays.append(transform(image.convert("RGB"), np.random.default_rng(0)))
    return np.stack(arrays)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """An image folder (4 digits, 40 training and 30 validation images each) and rep_tiny trained on it."""
    folder = tmp_path_factory.mktemp("qat_cli")
    root = write_image_folder(folder / "data", classes=4, per_class=40, val_per_class=30)
    train(TrainConfig(data=str(root), recipe="digits", epochs=12, batch_size=16, image_size=8, export=False,
                      progress=False), folder / "train")
    return {"root": root, "checkpoint": folder / "train" / "model.pdparams", "folder": folder}


def _qat_args(root: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return ["qat", "--arch", "rep_tiny", "--checkpoint", str(checkpoint), "--data", str(root), "--out", str(out),
            "--steps", "20", "--batch-size", "16", "--image-size", "8", "--calibration-size", "64", "-q", *extra]


RELOAD = textwrap.dedent("""
    import sys
    import numpy as np
    from paddle_rep.apps import Predictor

    prefix, folder = sys.argv[1], sys.argv[2]
    for backend in ("onnxruntime", "openvino"):
        with Predictor.load(prefix, backend=backend, precision="int8") as predictor:
            for name in ("one", "many"):
                np.save(f"{folder}/{backend}_{name}.npy", predictor(np.load(f"{folder}/{name}.npy")))
""")


@pytest.mark.skipif(not _exports(), reason="needs paddle2onnx (it does not import under Paddle 2.6), onnxruntime, "
                                           "nncf")
def test_qat_run_exports_int8_that_agrees_with_fake_quant(trained: dict, tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    from paddle_rep.apps.quantize import qat as qat_module

    captured = {}
    original = qat_module.quantization_aware_training

    def spy(*args, **kwargs):
        captured["qat"] = original(*args, **kwargs)
        return captured["qat"]

    monkeypatch.setattr(qat_module, "quantization_aware_training", spy)
    out = tmp_path / "qat"
    args = [a for a in _qat_args(trained["root"], trained["checkpoint"], out) if a != "-q"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "QAT of rep_tiny: 20 steps (the last 5 frozen), batch 16, lr 0.001; top-1 on 120 validation " in printed
    assert all(f"int8 {b}" in printed for b in BACKENDS) and f"wrote {out / 'model'}" in printed

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20 and metrics["freeze_steps"] == 5 and metrics["samples"] == 120
    assert len(metrics["losses"]) == 20 and all(np.isfinite(metrics["losses"]))
    manifest = json.loads((out / "model-manifest.json").read_text())
    assert {"int8"} <= set(manifest["precisions"]["onnxruntime"]) & set(manifest["precisions"]["openvino"])
    assert [c["name"] for c in manifest["checks"][-2:]] == [f"{b} int8 vs QAT fake-quant" for b in BACKENDS]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "staging folder left behind"

    # Two inputs of two batch sizes: one validation image, then the other 119.
    x = _val_arrays(trained["root"], 8)
    inputs = {"one": x[:1], "many": x[1:]}
    qat = captured["qat"]
    qat.eval()
    with paddle.no_grad():
        fake = {name: qat(paddle.to_tensor(value)).numpy() for name, value in inputs.items()}
    for name, value in inputs.items():
        np.save(tmp_path / f"{name}.npy", value)
    done = subprocess.run([sys.executable, "-c", RELOAD, str(out / "model"), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    output_bound = tolerance("qat_export_output", "int8").rel
    for backend in BACKENDS:
        int8 = {name: np.load(tmp_path / f"{backend}_{name}.npy") for name in inputs}
        for name in inputs:
            error = float(np.abs(int8[name] - fake[name]).max() / np.abs(fake[name]).max())
            assert 0 < error <= output_bound, (backend, name, error)  # lossy, and not the float model run by mistake
        changed = float(np.mean(np.concatenate([int8[n].argmax(1) != fake[n].argmax(1) for n in inputs])))
        assert changed <= tolerance("qat_export_disagreement", "int8").rel, (backend, changed)
        # the CLI's own figure is the same comparison over the whole split
        assert metrics["agreement_with_qat"][f"int8_{backend}"] == pytest.approx(1 - changed, abs=1.5 / len(x))

    # A run that fails after training (here: the export) leaves the earlier OUT byte for byte, and no staging.
    before = _tree(tmp_path)

    def broken_export(*args, **kwargs):
        raise QuantizationError("planted export failure")

    monkeypatch.setattr(qat_module, "export_qat", broken_export)
    assert cli.main(_qat_args(trained["root"], trained["checkpoint"], out, "--steps", "2")) == cli.EXIT_ERROR
    assert "planted export failure" in capsys.readouterr().err
    assert _tree(tmp_path) == before


def test_qat_defaults_agree_with_qat_config() -> None:
    from paddle_rep.apps.quantize.qat import QATConfig

    assert cli.QAT_DEFAULTS["lr"] == QATConfig().lr
    args = cli.build_parser().parse_args(["qat", "--arch", "repvgg_a0", "--checkpoint", "c", "--data", "d",
                                          "--out", "o"])
    for key, value in cli.QAT_DEFAULTS.items():
        assert getattr(args, key) == (None if key == "epochs" else value), key


# ---------------------------------------------------------------- bad input: typed error, exit code, no OUT


def test_unsupported_arch_names_it_and_the_supported_ones(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    code = cli.main(["qat", "--arch", "acnet_resnet18", "--checkpoint", str(tmp_path / "none.pdparams"), "--data",
                     str(tmp_path / "no_data"), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE, err
    assert err.startswith("paddle-rep qat: error: --arch acnet_resnet18:") and "Traceback" not in err
    assert all(name in err for name in ("repvgg_a0", "repvggplus_l2pse", "qarepvgg_a0", "rep_tiny"))
    assert not out.exists()


def test_missing_data_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    missing = tmp_path / "no_data"
    code = cli.main(["qat", "--arch", "rep_tiny", "--checkpoint", str(tmp_path / "none.pdparams"), "--data",
                     str(missing), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_CHECKPOINT, err
    assert f"--data {missing}: no such data folder" in err
    assert not out.exists()


def test_checkpoint_of_another_arch(tmp_path: Path, capsys) -> None:
    root = write_image_folder(tmp_path / "data", per_class=4, val_per_class=1)
    other = tmp_path / "acnet.pdparams"
    paddle.save(create_model("acnet_cifar_quick", num_classes=4).state_dict(), str(other))
    out = tmp_path / "out"
    code = cli.main(_qat_args(root, other, out))
    err = capsys.readouterr().err
    assert code == cli.EXIT_ARCH, err
    assert f"{other} does not fit rep_tiny (train form) with the data's 4 classes" in err
    assert "stem.square_conv.weight" in err  # the keys are listed
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- QARepVGG blocks get their BN too


def test_insert_bn_on_qarepvgg_blocks_keeps_the_output_and_folds_back() -> None:
    """insert_bn (and fuse_inserted_bn) take QARepVGGBlockV2 as RepVGGBlock: ``paddle-rep qat --arch qarepvgg_*``."""
    from paddle_rep.apps.parity import randomize_paddle_bn
    from paddle_rep.qarepvgg import QARepVGGBlockV2
    from paddle_rep.quant import fuse_inserted_bn, insert_bn
    from paddle_rep.reparam import reparameterize_model

    paddle.seed(5)
    model = paddle.nn.Sequential(("stage0", QARepVGGBlockV2(3, 16, 3, stride=2, padding=1)),
                                 ("stage1", QARepVGGBlockV2(16, 16, 3, padding=1)),
                                 ("stage2", QARepVGGBlockV2(16, 16, 3, padding=1, use_se=True)))
    randomize_paddle_bn(model, np.random.default_rng(6))
    model.eval()
    x = np.random.default_rng(7).standard_normal((4, 3, 12, 12)).astype(np.float32)
    fused = reparameterize_model(model)
    with_bn = insert_bn(model, [x])
    assert all(isinstance(getattr(with_bn, f"stage{i}").rbr_reparam, paddle.nn.Sequential) for i in range(3))
    bound = tolerance("output", "float32").rel
    with paddle.no_grad():
        expected = fused(paddle.to_tensor(x)).numpy()
        inserted = with_bn(paddle.to_tensor(x)).numpy()
        folded = fuse_inserted_bn(with_bn)(paddle.to_tensor(x)).numpy()
    for actual in (inserted, folded):
        assert np.abs(actual - expected).max() <= bound * np.abs(expected).max()
