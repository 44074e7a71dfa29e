"""int8 wired into export, Predictor, the manifest and the CLI: ``export(..., calibration=DATA)`` writes and
records the int8 files, ``Predictor(..., precision="int8")`` and ``Predictor.load`` run them, bad calibration
data fails before anything is written and leaves an earlier export intact.

The model: ``rep_tiny`` at 16x16 (ACBlock, RepVGG and an ODConv with 4 kernels), fold graphs for batches 1
and 2, so a batch of 3 runs both fold graphs. Random weights with randomised BN: the check here is that the
int8 files are what runs (close to float32, never equal to it), not accuracy (test_int8.py measures that).
The newer families (QARepVGG, MobileOne, DBB) go through the same export and both int8 predictors with one
deploy-form model each at 32x32, and the zoo sweep's entry point runs once on a small net.
"""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_rep.apps import Predictor, cli, export
from paddle_rep.apps.convert.write import sha256_file as sha256
from paddle_rep.apps.quantize.calibration import CalibrationWarning
from paddle_rep.apps.quantize.ptq import Int8Options
from paddle_rep.core.errors import CalibrationError, ManifestError, QuantizationError
from paddle_rep.models import create_model
from parity_tests import helpers
from parity_tests.tolerances import tolerance

pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("nncf")
pytest.importorskip("paddle2onnx")

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
BACKENDS = ("onnxruntime", "openvino")


def _model():
    paddle.seed(0)
    model = create_model("rep_tiny", num_classes=10)
    helpers.randomize_paddle_bn(model, np.random.default_rng(0))
    model.eval()
    return model


def _calibration(count: int = 16) -> np.ndarray:
    return helpers.seeded_input((count, 3, SIZE, SIZE), "float32", seed=11)


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("int8_export") / "model"
    return export(_model(), path, (3, SIZE, SIZE), onnx=True, fold_batch_sizes=(1, 2), calibration=_calibration())


def _snapshot(folder: Path) -> dict[str, str]:
    return {file.name: sha256(file) for file in sorted(folder.iterdir())}


def test_export_records_the_int8_files(int8_export) -> None:
    manifest = json.loads(Path(int8_export.manifest_file).read_text())
    roles = set(manifest["files"])
    want = {"int8.onnxruntime", "int8.openvino", "int8.openvino.bin", "fold_b1.int8.onnxruntime",
            "fold_b2.int8.openvino", "fold_b2.int8.openvino.bin"}
    assert want <= roles, roles - want
    folder = Path(int8_export.manifest_file).parent
    for role in want:
        entry = manifest["files"][role]
        assert sha256(folder / entry["name"]) == entry["sha256"], role
    assert manifest["precisions"] == {"paddle": ["f32"], "onnxruntime": ["f32", "int8"],
                                      "openvino": ["f32", "bf16", "int8"]}
    assert manifest["int8"]["calibration_samples"] == 16 and manifest["int8"]["options"]["per_channel"] is True
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no staging folder left


@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_predictor_two_inputs_two_batches(int8_export, backend: str) -> None:
    """Batches of 1 and 3 (3 = fold graphs 2 + 1), two inputs each: close to f32, never equal to it."""
    bound = tolerance("int8_output", "int8").rel
    with Predictor(int8_export, backend, threads=1, precision="int8") as int8, \
            Predictor(int8_export, backend, threads=1) as f32:
        assert int8.precision == "int8" and repr(int8).startswith(f"Predictor(backend={backend!r}, precision='int8'")
        for seed, batch in ((1, 1), (2, 3), (3, 1), (4, 3)):
            x = helpers.seeded_input((batch, 3, SIZE, SIZE), "float32", seed=seed)
            expected, actual = f32(x), int8(x)
            error = float(np.abs(actual - expected).max() / np.abs(expected).max())
            assert 1e-5 < error <= bound, (backend, batch, seed, error)  # lower bound: f32 in disguise fails
        with Predictor(int8_export, backend, threads=1, precision="int8", fold=False) as unfold:
            x = helpers.seeded_input((3, 3, SIZE, SIZE), "float32", seed=5)
            error = float(np.abs(unfold(x) - f32(x)).max() / np.abs(f32(x)).max())
            assert 1e-5 < error <= bound, (backend, "unfold", error)


def test_int8_precision_without_calibration_says_how(tmp_path: Path) -> None:
    plain = export(_model(), tmp_path / "m", (3, SIZE, SIZE), onnx=True)
    for backend in BACKENDS:
        with pytest.raises(QuantizationError, match=r"no .* int8 files.*calibration=DATA.*--calibration PATH"):
            Predictor(plain, backend, precision="int8")
    with pytest.raises(QuantizationError, match=r"no paddle int8 files.*int8_backends=\('paddle'"):
        Predictor(plain, "paddle", precision="int8")
    with pytest.raises(ManifestError, match="backend 'onnxruntime' offers precisions .*not 'int8'"):
        Predictor.load(plain.manifest_file, "onnxruntime", precision="int8")
    with pytest.raises(ValueError, match="onnx=True"):
        export(_model(), tmp_path / "n", (3, SIZE, SIZE), calibration=_calibration())


def test_int8_load_in_a_fresh_process(int8_export, tmp_path: Path) -> None:
    x = helpers.seeded_input((3, 3, SIZE, SIZE), "float32", seed=9)
    np.save(tmp_path / "x.npy", x)
    prefix = int8_export.manifest_file.removesuffix("-manifest.json")
    script = ("import sys, numpy as np\nfrom paddle_rep.apps import Predictor\nx = np.load(sys.argv[1])\n"
              "for backend in ('onnxruntime', 'openvino'):\n"
              "    with Predictor.load(sys.argv[2], backend=backend, precision='int8', threads=1) as p:\n"
              "        np.save(f'{sys.argv[3]}/{backend}.npy', p(x))\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), prefix, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    for backend in BACKENDS:
        with Predictor(int8_export, backend, threads=1, precision="int8") as here:
            np.testing.assert_array_equal(np.load(tmp_path / f"{backend}.npy"), here(x), err_msg=backend)


def _bad_calibrations(tmp_path: Path) -> dict:
    pil = pytest.importorskip("PIL.Image")
    empty = tmp_path / "empty"
    empty.mkdir()
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pil.fromarray(np.zeros((20, 20, 3), np.uint8)).save(mixed / "a.png")
    (mixed / "notes.txt").write_text("not an image")
    nan = _calibration(4)
    nan[2, 0, 1, 1] = np.nan
    return {  # what -> (data, message)
        "channels": (np.zeros((4, 1, SIZE, SIZE), np.float32), "axis 1 is 1, not 3"),
        "rank": (np.zeros((4, 3, SIZE), np.float32), r"must be \[N, C, H, W\]"),
        "size": (np.zeros((4, 3, SIZE + 2, SIZE), np.float32), "axis 2 is 18"),
        "nan": (nan, "sample 2 holds NaN or Inf"),
        "empty folder": (empty, "holds no files"),
        "non-image": (mixed, "notes.txt"),
        "missing": (tmp_path / "nowhere.npy", "does not exist"),
    }


def test_bad_calibration_leaves_the_earlier_export(int8_export, tmp_path: Path, monkeypatch) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(Path(int8_export.manifest_file).parent, folder)
    before = _snapshot(folder)
    for what, (data, message) in _bad_calibrations(tmp_path).items():
        with pytest.raises(CalibrationError, match=message):
            export(_model(), folder / "model", (3, SIZE, SIZE), onnx=True, fold_batch_sizes=(1, 2), calibration=data)
        assert _snapshot(folder) == before, what
    # a quantizer that fails half-way: the float files were already written (in the staging folder)
    from paddle_rep.apps.quantize import ptq

    def failing(*args, **kwargs):
        raise QuantizationError("planted quantizer failure")

    monkeypatch.setattr(ptq, "quantize_exported", failing)
    with pytest.raises(QuantizationError, match="planted"):
        export(_model(), folder / "model", (3, SIZE, SIZE), onnx=True, fold_batch_sizes=(1, 2),
               calibration=_calibration())
    assert _snapshot(folder) == before
    with Predictor.load(folder / "model", "openvino", precision="int8", threads=1) as predictor:
        assert predictor(_calibration(2)).shape == (2, 10)


def test_too_few_calibration_samples_warn(tmp_path: Path) -> None:
    with pytest.warns(CalibrationWarning, match="8 samples asked for, only 4 available"):
        result = export(_model(), tmp_path / "m", (3, SIZE, SIZE), onnx=True, calibration=_calibration(4),
                        calibration_size=8, int8_backends=("onnxruntime",))
    assert sorted(result.int8.onnx_file) == ["onnxruntime"]
    assert json.loads(Path(result.manifest_file).read_text())["precisions"]["openvino"] == ["f32", "bf16"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Predictor(result, "onnxruntime", precision="int8") as predictor:
            assert predictor(_calibration(3)).shape == (3, 10)


def test_cli_int8_export_prints_and_records_the_check(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "cal.npy", _calibration(24))
    out = tmp_path / "m"
    code = cli.main(["export", str(out), "--arch", "rep_tiny", "--input-shape", f"3,{SIZE},{SIZE}", "--backend",
                     "onnxruntime", "--precision", "int8", "--calibration", str(tmp_path / "cal.npy"),
                     "--calibration-size", "24", "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "int8 check (onnxruntime, 3 held-out samples): top-1 agreement" in printed
    assert "worst layers (output SQNR int8 vs float32" in printed and str(out) + ".int8.onnx" in printed
    manifest = json.loads((tmp_path / "m-manifest.json").read_text())
    checks = {check["name"]: check for check in manifest["checks"]}
    int8 = checks["onnxruntime int8 vs f32"]
    assert int8["held_out_samples"] == 3 and int8["calibration_samples"] == 21 and int8["layers"]
    assert checks["onnxruntime f32 vs the model"]["passed"]
    assert manifest["precisions"]["onnxruntime"] == ["f32", "int8"]
    code = cli.main(["export", str(tmp_path / "n"), "--arch", "rep_tiny", "--backend", "openvino", "--precision",
                     "int8"])
    assert code != 0 and "--precision int8 needs --calibration PATH" in capsys.readouterr().err
    assert not list(tmp_path.glob("n*"))


def test_cli_paddle_int8_export_checks_the_predictor(tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "cal.npy", _calibration(24))
    args = ["--input-shape", f"3,{SIZE},{SIZE}", "--backend", "paddle", "--precision", "int8", "--calibration",
            str(tmp_path / "cal.npy"), "--threads", "1", "-q"]
    assert cli.main(["export", str(tmp_path / "m"), "--arch", "repvgg_a0", *args]) == 0
    printed = capsys.readouterr().out
    assert "int8 check (paddle, 3 held-out samples): top-1 agreement" in printed and "worst layers" not in printed
    assert str(tmp_path / "m") + ".int8.pdmodel" in printed
    manifest = json.loads((tmp_path / "m-manifest.json").read_text())
    check = {check["name"]: check for check in manifest["checks"]}["paddle int8 vs f32"]
    assert check["held_out_samples"] == 3 and check["calibration_samples"] == 21
    error = float(check["figure"].split("max ")[1].split()[0])
    assert 1e-5 < error <= tolerance("int8_output", "int8").rel, check["figure"]  # int8, and close to float32
    assert manifest["precisions"]["paddle"] == ["f32", "int8"]
    # an ODConv model: refused before anything is written, saying which runtimes take it
    assert cli.main(["export", str(tmp_path / "od"), "--arch", "rep_tiny", *args]) != 0
    assert "onnxruntime" in capsys.readouterr().err and not list(tmp_path.glob("od*"))


# One deploy-form model per newer family (QARepVGG, MobileOne, DBB: fused, each a plain conv stack with biases;
# MobileOne-S0 has no SE) through the same int8 export and both int8 predictors. Built with deploy=True (DBB's
# fusion of a training-form net takes seconds) with random conv biases, as a fused model has. The sweep over the
# whole zoo, with top-1 agreement, is `python -m paddle_rep.apps.quantize.sweep` (docs/int8.md).
FAMILY_SIZE = 32
FAMILIES = ("qarepvgg_a0", "mobileone_s0", "dbb_resnet18")


def _deploy_model(arch: str):
    paddle.seed(0)
    model = create_model(arch, num_classes=10, deploy=True)
    rng = np.random.default_rng(0)
    for layer in model.sublayers():
        if isinstance(layer, paddle.nn.Conv2D) and layer.bias is not None:
            layer.bias.set_value(rng.normal(0.0, 0.1, layer.bias.shape).astype("float32"))
    model.eval()
    return model


@pytest.fixture(scope="module", params=FAMILIES)
def family_export(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(f"int8_{request.param}") / "model"
    calibration = helpers.seeded_input((16, 3, FAMILY_SIZE, FAMILY_SIZE), "float32", seed=11)
    # all int8 (keep_float="auto" is tested on trained models in test_int8.py; here it would quantize twice)
    return export(_deploy_model(request.param), path, (3, FAMILY_SIZE, FAMILY_SIZE), onnx=True,
                  calibration=calibration, int8_options=Int8Options(keep_float="none"))


def test_int8_new_families_two_inputs_two_batches(family_export) -> None:
    bound = tolerance("int8_output", "int8").rel
    for backend in BACKENDS:  # one test per export: under xdist a module fixture is built once per worker
        with Predictor(family_export, backend, threads=1, precision="int8") as int8, \
                Predictor(family_export, backend, threads=1) as f32:
            for seed, batch in ((1, 1), (2, 3), (3, 1), (4, 3)):
                x = helpers.seeded_input((batch, 3, FAMILY_SIZE, FAMILY_SIZE), "float32", seed=seed)
                expected, actual = f32(x), int8(x)
                assert actual.shape == (batch, 10)
                error = float(np.abs(actual - expected).max() / np.abs(expected).max())
                assert 1e-5 < error <= bound, (family_export.onnx_file, backend, batch, seed, error)


def test_int8_zoo_sweep_entry_point(tmp_path: Path, capsys) -> None:
    """`python -m paddle_rep.apps.quantize.sweep`: a row per runtime, int8 near float32 (never equal to it)."""
    from paddle_rep.apps.quantize import sweep

    out = tmp_path / "sweep.md"
    assert sweep.main(["--models", "acnet_cifar_quick", "--size", "32", "--num-classes", "10", "--calibration", "8",
                       "--samples", "8", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    printed = capsys.readouterr().out.splitlines()
    assert lines[0] == sweep.HEADER.splitlines()[0] and all(line in printed for line in lines)
    rows = [line.split(" | ") for line in lines[2:]]
    assert [(row[0], row[1]) for row in rows] == [("| acnet_cifar_quick", backend) for backend in BACKENDS]
    for row in rows:
        worst, mean = (float(value) for value in row[4].split(" / "))
        assert 1e-5 < mean <= worst <= tolerance("int8_output", "int8").rel, row
        assert 0.0 < float(row[3]) <= 1.0 and row[3] == rows[0][3], row  # float32's margin: one per model
    assert rows[0][5].endswith(" dB") and rows[1][5] == ""  # per-layer SQNR: ONNX Runtime's QDQ file only
    with pytest.raises(SystemExit, match="'nothing_\\*' matches no model"):
        sweep.main(["--models", "nothing_*"])
