"""int8: calibration input checks, post-training int8 on ONNX Runtime and OpenVINO, the per-layer report,
RepVGG's insert-BN step and Paddle QAT, on two small models trained on the shipped digits.

The models: a small RepVGG (re-parameterized convs only) and ``rep_tiny`` (ACBlock, RepVGG and an
ODConv with 4 kernels, exported with fold graphs for batches 1 and 4). Each int8 runner is run on two
different inputs and two batch sizes; the planted faults (a runner that silently runs float32, a
wrong weight scale) must fail the same checks.
"""

import copy
import warnings
from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_rep.apps import export
from paddle_rep.apps.data import batches, load_digits
from paddle_rep.apps.parity import randomize_paddle_bn
from paddle_rep.apps.quantize.calibration import CalibrationWarning, load_calibration
from paddle_rep.apps.quantize.ptq import (
    Int8Options,
    dynamic_weight_nodes,
    float_nodes,
    int8_runner,
    load_for_quantization,
    quantize_exported,
    quantize_onnx,
)
from paddle_rep.apps.quantize.report import check_int8
from paddle_rep.core.errors import CalibrationError, QuantizationError
from paddle_rep.models.repvgg import RepVGG
from paddle_rep.models.tiny import rep_tiny
from paddle_rep.qarepvgg import QARepVGGBlockV2
from paddle_rep.quant import fuse_inserted_bn, insert_bn
from paddle_rep.reparam import reparameterize_model
from paddle_rep.repvgg import RepVGGBlock

from .tolerances import tolerance

pytest.importorskip("onnxruntime.quantization")
pytest.importorskip("nncf")
pytest.importorskip("sklearn")

BACKENDS = ("onnxruntime", "openvino")
_CACHE: dict = {}


def _train(model: paddle.nn.Layer, x: np.ndarray, y: np.ndarray, epochs: int) -> paddle.nn.Layer:
    optimizer = paddle.optimizer.Momentum(learning_rate=0.05, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=1e-4)
    for epoch in range(epochs):
        model.train()
        for xb, yb in batches(x, y, 64, epoch):
            loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(xb)), paddle.to_tensor(yb))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
    model.eval()
    return model


def _trained(kind: str, tmp_path_factory) -> dict:
    """A trained model, its export (ONNX, fold graphs for ODConv) and both int8 exports, built once."""
    if kind in _CACHE:
        return _CACHE[kind]
    digits = load_digits()
    paddle.seed(0)
    if kind == "repvgg":
        x_train, x_test = np.repeat(digits.x_train, 3, 1), np.repeat(digits.x_test, 3, 1)
        model = RepVGG([1, 1, 1, 1], 10, width_multiplier=[0.5, 0.5, 0.5, 1])
    else:
        x_train, x_test = digits.x_train, digits.x_test
        model = rep_tiny(num_classes=10, in_channels=1, width=8)
    model = _train(model, x_train, digits.y_train, epochs=3)
    path = tmp_path_factory.mktemp(f"int8_{kind}") / "model"
    exported = export(model, path, x_train.shape[1:], onnx=True, fold_batch_sizes=(1, 4))
    calibration = load_calibration(x_train[:64], x_train.shape[1:])
    files = quantize_exported(exported, calibration)
    _CACHE[kind] = {"model": model, "exported": exported, "files": files, "x_train": x_train, "x_test": x_test,
                    "y_test": digits.y_test}
    return _CACHE[kind]


def _float_logits(case: dict, x: np.ndarray) -> np.ndarray:
    fused = reparameterize_model(case["model"])
    fused.eval()
    with paddle.no_grad():
        return fused(paddle.to_tensor(x)).numpy()


def _int8_logits(case: dict, backend: str, x: np.ndarray) -> np.ndarray:
    """The int8 output of the batch-independent graph, or of the fold graph for that batch size."""
    folds = case["files"].fold_files[backend]
    file = folds.get(len(x), case["files"].onnx_file[backend]) if folds else case["files"].onnx_file[backend]
    return int8_runner(file, backend, threads=1)(x)


def _int8_figures(expected: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    """(relative output error, top-1 disagreement) of int8 against float32."""
    error = float(np.abs(actual - expected).max() / np.abs(expected).max())
    return error, float(np.mean(expected.argmax(1) != actual.argmax(1)))


@pytest.mark.parametrize("kind", ["repvgg", "odconv"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_runners_two_inputs_two_batches(kind: str, backend: str, tmp_path_factory) -> None:
    """Each int8 file runs at two batch sizes on two different inputs, close to float32 but not equal to it."""
    case = _trained(kind, tmp_path_factory)
    bound = tolerance("int8_output", "int8").rel
    x = case["x_test"]
    for batch, start in ((4, 0), (1, 7), (4, 40), (1, 90)):  # fold batches 4 and 1; two inputs each
        chunk = x[start:start + batch]
        expected = _float_logits(case, chunk)
        error, _ = _int8_figures(expected, _int8_logits(case, backend, chunk))
        assert 1e-5 < error, (kind, backend, batch, start, error)
        assert error <= bound, (kind, backend, batch, start, error)
    if not case["files"].fold_files[backend]:  # the dynamic-batch graph: a third batch size
        chunk = x[3:10]
        error, _ = _int8_figures(_float_logits(case, chunk), _int8_logits(case, backend, chunk))
        assert 1e-5 < error <= bound


def test_openvino_odconv_fold_batch1(tmp_path_factory) -> None:
    """The batch-1 fold graph is as close as the batch-4 one: NNCF calibrates with the global min/max, not
    its default mean over calibration batches (which shrank every range at batch 1; docs/int8.md)."""
    case = _trained("odconv", tmp_path_factory)
    x = case["x_test"][:64]
    expected = _float_logits(case, x)
    one = np.concatenate([_int8_logits(case, "openvino", x[i:i + 1]) for i in range(len(x))])
    four = np.concatenate([_int8_logits(case, "openvino", x[i:i + 4]) for i in range(0, len(x), 4)])
    error_one, _ = _int8_figures(expected, one)
    error_four, _ = _int8_figures(expected, four)
    assert error_one <= tolerance("int8_output", "int8").rel, error_one
    assert error_one <= 1.5 * error_four, (error_one, error_four)  # no batch-1 penalty left


@pytest.mark.parametrize("kind", ["repvgg", "odconv"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_int8_accuracy_on_digits(kind: str, backend: str, tmp_path_factory) -> None:
    """PTQ per-channel int8 keeps top-1 agreement and accuracy on the held-out digits."""
    case = _trained(kind, tmp_path_factory)
    x, y = case["x_test"][:356], case["y_test"][:356]  # whole batches of 4 for the fold graphs
    expected = _float_logits(case, x)
    runs = [_int8_logits(case, backend, x[i:i + 4]) for i in range(0, len(x), 4)]
    actual = np.concatenate(runs)
    _, disagreement = _int8_figures(expected, actual)
    drop = float(np.mean(expected.argmax(1) == y) - np.mean(actual.argmax(1) == y))
    assert disagreement <= tolerance("int8_disagreement", "int8").rel, (kind, backend, disagreement)
    assert drop <= tolerance("int8_accuracy_drop", "int8").rel, (kind, backend, drop)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_float_auto_keeps_all_int8_on_the_digits(backend: str, tmp_path_factory) -> None:
    """The default (keep_float="auto") measured both candidates and kept the faster all-int8 file for the digits
    models (the yardstick: all-int8 keeps their accuracy), and the ODConv fold graphs followed that choice."""
    for kind in ("repvgg", "odconv"):
        case = _trained(kind, tmp_path_factory)
        choice = case["files"].keep_float[backend]
        assert choice["chosen"] == "none", (kind, choice)
        assert choice["samples"] == 64 and set(choice["mean_rel_error"]) == {"none", "first_and_linear"}
    model = load_for_quantization(case["files"].fold_files[backend][4] if backend == "onnxruntime" else
                                  case["exported"].fold_onnx_files[4])
    assert float_nodes(model, Int8Options(keep_float="none")) == [n.name for n in dynamic_weight_nodes(model)]


def _swap_top2(y: np.ndarray) -> np.ndarray:
    """Each row with its two largest values swapped: every top-1 flips, the values stay."""
    y = y.copy()
    order = np.argsort(y, axis=1)
    rows = np.arange(len(y))
    y[rows, order[:, -1]], y[rows, order[:, -2]] = y[rows, order[:, -2]], y[rows, order[:, -1]]
    return y


@pytest.mark.parametrize("plant", ["error", "flips"])
def test_keep_float_auto_falls_back_where_all_int8_costs(plant: str, tmp_path_factory, tmp_path, monkeypatch) -> None:
    """Planted: the all-int8 candidate's outputs are made worse than the float-stem one's (a larger error, or
    flipped top-1s); "auto" must choose the float stem, record why, leave no candidate file behind, and
    quantize the fold graphs the same way."""
    import dataclasses
    import shutil

    from paddle_rep.apps.quantize import ptq

    case = _trained("odconv", tmp_path_factory)
    copy = dataclasses.replace(case["exported"], onnx_file=str(shutil.copy(case["exported"].onnx_file, tmp_path)),
                               fold_onnx_files={4: str(shutil.copy(case["exported"].fold_onnx_files[4], tmp_path))})
    real_runner, seen = ptq._runner, []

    def runner(path, backend, threads=None):
        run = real_runner(path, backend, threads)
        noisy = Path(path).stem == "none"
        if not noisy:
            return run
        return (lambda x: run(x) + 0.5 * np.abs(run(x)).max()) if plant == "error" else (lambda x: _swap_top2(run(x)))

    def recording(float_onnx, backend, calibration, options=None, out_file=None):
        seen.append((Path(float_onnx).name, options.keep_float))
        return real_quantize(float_onnx, backend, calibration, options, out_file)

    real_quantize = ptq.quantize_onnx
    monkeypatch.setattr(ptq, "_runner", runner)
    monkeypatch.setattr(ptq, "quantize_onnx", recording)
    files = ptq.quantize_exported(copy, case["x_train"][:32], ("onnxruntime",))
    choice = files.keep_float["onnxruntime"]
    assert choice["chosen"] == "first_and_linear", choice
    if plant == "error":
        assert choice["mean_rel_error"]["none"] > ptq.AUTO_ERROR_FLOOR
    else:
        assert choice["net_flips"] > ptq.AUTO_NET_FLIPS and choice["top1_agreement"]["none"] < 0.1  # ties stay
    assert (Path(copy.fold_onnx_files[4]).name, "first_and_linear") in seen
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [Path(copy.onnx_file).name, Path(copy.fold_onnx_files[4]).name, Path(files.onnx_file["onnxruntime"]).name,
         Path(files.fold_files["onnxruntime"][4]).name]), "a candidate file was left behind"


def test_planted_faults_fail_the_int8_checks(tmp_path_factory, tmp_path) -> None:
    """Negative controls: a runner that runs float32, and a weight scale 8x too large, fail the checks."""
    onnx = pytest.importorskip("onnx")
    case = _trained("repvgg", tmp_path_factory)
    x = case["x_test"][:64]
    expected = _float_logits(case, x)
    float_runner = int8_runner(case["exported"].onnx_file, "onnxruntime")  # "int8" silently running float32
    error, _ = _int8_figures(expected, float_runner(x))
    assert not 1e-5 < error, error  # the lower bound of the runner test catches it
    model = onnx.load(case["files"].onnx_file["onnxruntime"])
    scales = [init for init in model.graph.initializer if init.name.endswith("_scale") and init.dims]
    assert scales, "no per-channel weight scale in the QDQ file"
    for init in scales:  # every per-channel weight scale 8x too large
        values = onnx.numpy_helper.to_array(init) * 8
        init.CopyFrom(onnx.numpy_helper.from_array(values.astype(np.float32), init.name))
    wrong = tmp_path / "wrong.onnx"
    onnx.save(model, str(wrong))
    error, disagreement = _int8_figures(expected, int8_runner(wrong, "onnxruntime")(x))
    assert error > tolerance("int8_output", "int8").rel or disagreement > tolerance("int8_disagreement", "int8").rel


def test_per_layer_report(tmp_path_factory) -> None:
    case = _trained("odconv", tmp_path_factory)
    held_out = case["x_test"][:16]
    report = check_int8(case["exported"].onnx_file, case["files"].onnx_file["onnxruntime"], "onnxruntime", held_out)
    assert report.samples == 16 and report.layers
    assert [layer.sqnr_db for layer in report.layers] == sorted(layer.sqnr_db for layer in report.layers)
    quantized = [layer for layer in report.layers if np.isfinite(layer.sqnr_db)]
    assert quantized and all(layer.sqnr_db > 10 for layer in quantized)
    text = report.render()
    assert "top-1 agreement" in text and report.layers[0].name in text
    fold = case["exported"].fold_onnx_files[4]
    report = check_int8(fold, case["files"].fold_files["openvino"][4], "openvino", held_out)
    assert report.samples == 16 and report.top1_agreement >= 0.9 and not report.layers


def test_options_and_atomic_writes(tmp_path_factory, tmp_path) -> None:
    """Per-tensor weights and no float layers also run; a failed run keeps the earlier good file."""
    case = _trained("repvgg", tmp_path_factory)
    odconv = _trained("odconv", tmp_path_factory)
    calibration = case["x_train"][:16]
    good = quantize_onnx(case["exported"].onnx_file, "onnxruntime", calibration, out_file=tmp_path / "m.int8.onnx")
    before = (tmp_path / "m.int8.onnx").read_bytes()
    per_tensor = quantize_onnx(case["exported"].onnx_file, "onnxruntime", calibration,
                               Int8Options(per_channel=False, keep_float="none"), out_file=tmp_path / "t.int8.onnx")
    assert int8_runner(per_tensor, "onnxruntime")(case["x_test"][:2]).shape == (2, 10)
    with pytest.raises(QuantizationError):
        quantize_onnx(tmp_path / "missing.onnx", "onnxruntime", calibration, out_file=good)
    with pytest.raises(QuantizationError, match="takes batches of 4"):  # too few samples for a fold graph
        quantize_onnx(odconv["exported"].fold_onnx_files[4], "openvino", odconv["x_train"][:3],
                      out_file=tmp_path / "f.int8.xml")
    assert (tmp_path / "m.int8.onnx").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "t.int8.onnx"]  # no partial files
    with pytest.raises(QuantizationError, match="calibration"):
        int8_runner(tmp_path / "absent.int8.onnx", "onnxruntime")


# --- calibration input ------------------------------------------------------------------------------------

def test_calibration_sources(tmp_path) -> None:
    pil = pytest.importorskip("PIL.Image")
    x = np.random.default_rng(0).standard_normal((6, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "cal.npy", x)
    assert np.array_equal(load_calibration(tmp_path / "cal.npy", (3, 8, 8)), x)
    assert load_calibration([x[:2], x[2:]], (3, None, None), size=5).shape == (5, 3, 8, 8)
    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        pil.fromarray(np.full((20, 30, 3), 40 * index, np.uint8)).save(folder / f"{index}.png")
    images = load_calibration(folder, (3, 16, 16))
    assert images.shape == (3, 3, 16, 16) and images.dtype == np.float32
    assert np.allclose(images[0, 0], (0 - 0.485) / 0.229)  # ImageNet mean/std on [0, 1] pixels
    assert load_calibration(folder, (1, 16, 16)).shape == (3, 1, 16, 16)


@pytest.mark.parametrize("data, message, source", [
    (np.zeros((2, 1, 8, 8), np.float32), "axis 1 is 1, not 3", None),
    (np.zeros((2, 3, 8), np.float32), r"must be \[N, C, H, W\]", None),
    (np.zeros((2, 3, 9, 8), np.float32), "axis 2 is 9", None),
    (np.zeros((2, 3, 8, 8), np.int64), "dtype int64", None),
    (np.zeros((0, 3, 8, 8), np.float32), "no samples", None),
])
def test_calibration_bad_arrays(data, message, source) -> None:
    with pytest.raises(CalibrationError, match=message) as caught:
        load_calibration(data, (3, 8, 8))
    assert caught.value.source == source


def test_calibration_nan_names_the_sample() -> None:
    x = np.zeros((5, 3, 8, 8), np.float32)
    x[3, 1, 2, 2] = np.inf
    with pytest.raises(CalibrationError, match="sample 3") as caught:
        load_calibration(x, (3, 8, 8))
    assert caught.value.source == 3
    with pytest.raises(CalibrationError, match="sample 5 .batch 1.") as caught:  # indices count across batches
        load_calibration([np.zeros((2, 3, 8, 8), np.float32), x], (3, 8, 8))


def test_calibration_bad_files(tmp_path) -> None:
    pil = pytest.importorskip("PIL.Image")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no files"):
        load_calibration(empty, (3, 8, 8))
    folder = tmp_path / "images"
    folder.mkdir()
    pil.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(CalibrationError, match="notes.txt") as caught:
        load_calibration(folder, (3, 8, 8))
    assert caught.value.source.endswith("notes.txt")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(CalibrationError, match="bad.npy"):
        load_calibration(tmp_path / "bad.npy", (3, 8, 8))
    with pytest.raises(CalibrationError, match="does not exist"):
        load_calibration(tmp_path / "nowhere.npy", (3, 8, 8))
    with pytest.raises(CalibrationError, match="fixed input shape"):
        load_calibration(folder, (3, None, None))


def test_calibration_too_few_samples_warns() -> None:
    x = np.zeros((3, 3, 8, 8), np.float32)
    with pytest.warns(CalibrationWarning, match="only 3 available"):
        assert len(load_calibration(x, (3, 8, 8), size=10)) == 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_calibration(x, (3, 8, 8), size=2)) == 2


# --- RepVGG Solution C in Paddle ---------------------------------------------------------------------------

@pytest.mark.parametrize("block_cls", [RepVGGBlock, QARepVGGBlockV2], ids=["repvgg", "qarepvgg"])
def test_insert_bn_keeps_the_fused_output(block_cls) -> None:
    """The inserted BNs (statistics from data) leave the fused model's output unchanged, for RepVGG's block and
    QARepVGG's (whose deploy form is the same conv + ReLU); folding them back (the QAT export's step) does too."""
    paddle.seed(1)
    model = RepVGG([1, 2, 1, 1], 10, width_multiplier=[0.5, 0.5, 0.5, 1], block_cls=block_cls)
    for layer in model.sublayers():  # non-trivial BN statistics
        if isinstance(layer, paddle.nn.BatchNorm2D):
            rng = np.random.default_rng(len(layer._mean.shape) + layer._mean.shape[0])
            layer._mean.set_value(rng.uniform(-0.5, 0.5, layer._mean.shape).astype(np.float32))
            layer._variance.set_value(rng.uniform(0.5, 1.5, layer._variance.shape).astype(np.float32))
    model.eval()
    x = np.random.default_rng(0).standard_normal((6, 3, 16, 16)).astype(np.float32)
    fused = reparameterize_model(model)
    fused.eval()
    with_bn = insert_bn(model, [x[:3], x[3:]])
    assert "stage0.rbr_reparam.bn._mean" in with_bn.state_dict()
    bound = tolerance("output", "float32").rel
    with paddle.no_grad():
        expected, actual = fused(paddle.to_tensor(x)).numpy(), with_bn(paddle.to_tensor(x)).numpy()
        folded = fuse_inserted_bn(copy.deepcopy(with_bn))(paddle.to_tensor(x)).numpy()
    assert np.abs(actual - expected).max() <= bound * np.abs(expected).max()
    assert np.abs(folded - expected).max() <= bound * np.abs(expected).max()
    bn = with_bn.stage0.rbr_reparam.bn
    bn._mean.set_value(bn._mean.numpy() + 1.0)  # negative control: a wrong statistic shows
    with paddle.no_grad():
        moved = with_bn(paddle.to_tensor(x)).numpy()
    assert np.abs(moved - expected).max() > bound * np.abs(expected).max()


def test_insert_bn_keeps_the_padding_mode() -> None:
    """A fused conv with reflect padding keeps it once its BN is inserted (the rebuilt conv copies the mode)."""
    paddle.seed(2)
    model = paddle.nn.Sequential(("stage0", RepVGGBlock(3, 8, 3, padding=1, padding_mode="reflect")))
    randomize_paddle_bn(model, np.random.default_rng(3))
    model.eval()
    x = np.random.default_rng(4).standard_normal((4, 3, 8, 8)).astype(np.float32)
    fused = reparameterize_model(model)
    with_bn = insert_bn(model, [x])
    assert with_bn.stage0.rbr_reparam.conv._padding_mode == "reflect"
    with paddle.no_grad():
        expected, actual = fused(paddle.to_tensor(x)).numpy(), with_bn(paddle.to_tensor(x)).numpy()
    assert np.abs(actual - expected).max() <= tolerance("output", "float32").rel * np.abs(expected).max()


def test_paddle_qat_trains_exports_and_runs_int8(tmp_path_factory, tmp_path) -> None:
    """Paddle QAT with per-channel weights keeps accuracy; paddle2onnx 2.1.0 cannot convert Paddle 3's QAT
    program (it aborts: a QuantizationError, not a dead process), so export_qat folds the learned weights into
    a float graph and quantizes it on the trained grid; both int8 predictors run that and agree with QAT."""
    from paddle_rep.apps import Predictor
    from paddle_rep.apps.quantize.qat import QATConfig, export_qat, export_qat_onnx, quantization_aware_training

    case = _trained("repvgg", tmp_path_factory)
    digits = load_digits()
    qat = quantization_aware_training(case["model"], lambda: batches(case["x_train"], digits.y_train, 64, 0),
                                      QATConfig(steps=12, freeze_steps=4))
    with paddle.no_grad():
        fake = qat(paddle.to_tensor(case["x_test"])).numpy()
    expected = _float_logits(case, case["x_test"])
    _, disagreement = _int8_figures(expected, fake)
    accuracy = float(np.mean(fake.argmax(1) == case["y_test"]))
    assert np.mean(expected.argmax(1) == case["y_test"]) - accuracy <= tolerance("int8_accuracy_drop", "int8").rel
    assert disagreement > 0  # it did train (and fake-quantize): not the float model
    try:
        export_qat_onnx(qat, tmp_path / "qat.onnx", (3, 8, 8), batch_size=4)
    except QuantizationError as error:
        assert "paddle2onnx" in str(error)
        assert not (tmp_path / "qat.onnx").exists()
    template = insert_bn(case["model"], case["x_train"][:8])
    exported = export_qat(qat, template, tmp_path / "qat", (3, 8, 8), case["x_train"][:64])
    for backend in BACKENDS:
        with Predictor(exported, backend, threads=1, precision="int8") as predictor:
            out = predictor(case["x_test"])
        _, changed = _int8_figures(fake, out)
        assert changed <= tolerance("qat_export_disagreement", "int8").rel, (backend, changed)
        assert accuracy - float(np.mean(out.argmax(1) == case["y_test"])) <= tolerance("int8_accuracy_drop", "int8").rel


# --- Paddle Inference int8 (paddle.quantization PTQ, oneDNN int8 kernels; docs/int8.md) ------------------------

def _paddle_int8(tmp_path_factory) -> tuple[dict, object]:
    """The trained RepVGG exported with Paddle Inference int8 files only (no ONNX), built once."""
    case = _trained("repvgg", tmp_path_factory)
    if "paddle_int8" not in case:
        path = tmp_path_factory.mktemp("paddle_int8") / "model"
        case["paddle_int8"] = export(case["model"], path, case["x_train"].shape[1:],
                                     calibration=case["x_train"][:64], int8_backends=("paddle",))
    return case, case["paddle_int8"]


def test_paddle_int8_two_inputs_two_batches(tmp_path_factory, tmp_path) -> None:
    """Paddle Inference int8 at batches 4, 1 and 7, two inputs each: close to float32, never equal to it;
    the manifest records the files and Predictor.load runs them."""
    import json
    import shutil
    from pathlib import Path

    from paddle_rep.apps import Predictor
    from paddle_rep.apps.quantize.paddle_int8 import fuse_conv_bias_adds

    case, exported = _paddle_int8(tmp_path_factory)
    manifest = json.loads(Path(exported.manifest_file).read_text())
    assert {"int8.paddle", "int8.paddle.params"} <= set(manifest["files"])
    assert manifest["precisions"]["paddle"] == ["f32", "int8"] and manifest["precisions"]["onnxruntime"] == []
    bound = tolerance("int8_output", "int8").rel
    x = case["x_test"]
    with Predictor(exported, "paddle", threads=1, precision="int8") as predictor:
        assert repr(predictor).startswith("Predictor(backend='paddle', precision='int8'")
        for batch, start in ((4, 0), (1, 7), (4, 40), (1, 90), (7, 3)):
            chunk = x[start:start + batch]
            error, _ = _int8_figures(_float_logits(case, chunk), predictor(chunk))
            assert 1e-5 < error <= bound, (batch, start, error)
        with Predictor.load(exported.manifest_file, "paddle", precision="int8", threads=1) as loaded:
            np.testing.assert_allclose(loaded(x[:4]), predictor(x[:4]), rtol=1e-5, atol=1e-6)
    copy = tmp_path / "copy"  # every conv bias add is already in the form oneDNN fuses: nothing left to rewire
    for suffix in (".pdmodel", ".pdiparams"):
        shutil.copy(Path(exported.int8.onnx_file["paddle"]).with_suffix(suffix), copy.with_suffix(suffix))
    assert fuse_conv_bias_adds(str(copy)) == 0


def test_paddle_int8_accuracy_on_digits(tmp_path_factory) -> None:
    """Paddle int8 keeps top-1 agreement and accuracy on the held-out digits (the ONNX backends' bounds)."""
    from paddle_rep.apps import Predictor

    case, exported = _paddle_int8(tmp_path_factory)
    x, y = case["x_test"], case["y_test"]
    expected = _float_logits(case, x)
    with Predictor(exported, "paddle", threads=1, precision="int8") as predictor:
        actual = predictor(x)
    _, disagreement = _int8_figures(expected, actual)
    drop = float(np.mean(expected.argmax(1) == y) - np.mean(actual.argmax(1) == y))
    assert disagreement <= tolerance("int8_disagreement", "int8").rel, disagreement
    assert drop <= tolerance("int8_accuracy_drop", "int8").rel, drop


def test_paddle_int8_planted_faults(tmp_path_factory, tmp_path, monkeypatch) -> None:
    """Negative controls: "int8" files that are the float model fail the lower bound; the float32 weights
    PTQ.convert leaves (no int8 parameters) are read as garbage by oneDNN's int8 pass and fail the upper one."""
    import dataclasses
    import shutil
    from pathlib import Path

    from paddle_rep.apps import Predictor
    from paddle_rep.apps.quantize import paddle_int8
    from paddle_rep.apps.quantize.ptq import Int8Files

    case, exported = _paddle_int8(tmp_path_factory)
    x = case["x_test"][:64]
    expected = _float_logits(case, x)
    bound = tolerance("int8_output", "int8").rel
    int8_model = Path(exported.int8.onnx_file["paddle"])
    disguised = tmp_path / int8_model.name  # the float model, in the same program format, under the int8 name
    fused = reparameterize_model(case["model"])
    fused.eval()
    spec = paddle.static.InputSpec([None, *case["x_train"].shape[1:]], "float32", "x")
    with paddle_int8._legacy_program_guard():
        paddle.jit.save(paddle.jit.to_static(fused, input_spec=[spec], full_graph=True), str(tmp_path / "float"))
    shutil.copy(tmp_path / "float.pdmodel", disguised)
    shutil.copy(tmp_path / "float.pdiparams", disguised.with_suffix(".pdiparams"))
    fake = dataclasses.replace(exported, int8=Int8Files({"paddle": str(disguised)}, {"paddle": {}}))
    with Predictor(fake, "paddle", threads=1, precision="int8") as predictor:
        error, _ = _int8_figures(expected, predictor(x))
    assert not 1e-5 < error, error
    monkeypatch.setattr(paddle_int8, "_int8_weights", lambda model: 0)  # keep PTQ.convert's float32 weights
    wrong = export(case["model"], tmp_path / "wrong", case["x_train"].shape[1:], calibration=case["x_train"][:64],
                   int8_backends=("paddle",))
    with Predictor(wrong, "paddle", threads=1, precision="int8") as predictor:
        error, disagreement = _int8_figures(expected, predictor(x))
    assert error > bound or disagreement > tolerance("int8_disagreement", "int8").rel, (error, disagreement)


def test_paddle_int8_refuses_odconv_and_says_how(tmp_path) -> None:
    """ODConv models get no Paddle int8 files (QuantizationError, earlier export kept); a Paddle int8
    predictor without them, or with oneDNN off, says what to do."""
    from paddle_rep.apps import Predictor

    model = rep_tiny(num_classes=10, width=8)
    model.eval()
    calibration = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    with pytest.raises(QuantizationError, match="does not take ODConv models.*onnxruntime"):
        export(model, tmp_path / "od", (3, 8, 8), calibration=calibration, int8_backends=("paddle",))
    assert not list(tmp_path.glob("od*"))
    plain = export(RepVGG([1, 1, 1, 1], 10, width_multiplier=[0.5, 0.5, 0.5, 1]), tmp_path / "m", (3, 8, 8))
    with pytest.raises(QuantizationError, match=r"no paddle int8 files.*int8_backends=\('paddle'"):
        Predictor(plain, "paddle", precision="int8")
    with pytest.raises(ValueError, match="use_onednn on"):
        Predictor(plain, "paddle", precision="int8", use_onednn=False)
    with pytest.raises(ValueError, match="onnx=True"):
        export(model, tmp_path / "n", (3, 8, 8), calibration=calibration, int8_backends=("paddle", "openvino"))


def _reproduction(number: int) -> str:
    """The code block of docs/int8.md whose first line names "Paddle Inference int8, reproduction N"."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "int8.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", text, re.DOTALL):
        if block.startswith(f"# Paddle Inference int8, reproduction {number}:"):
            return block
    raise AssertionError(f"docs/int8.md has no reproduction {number}")


@pytest.mark.skipif(not paddle.__version__.startswith("3."), reason="the reproductions are Paddle 3's PIR/legacy split")
def test_paddle_pir_int8_failure_is_pinned(tmp_path) -> None:
    """The two Paddle failures docs/int8.md reproduces still happen; when this fails, a Paddle release fixed one:
    revisit "Paddle Inference int8" there (and the legacy-format/int8-parameter workaround in paddle_int8)."""
    import subprocess
    import sys

    first = subprocess.run([sys.executable, "-c", _reproduction(1)], cwd=tmp_path, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode != 0 and "Tensor holds no memory" in first.stderr, (
        "reproduction 1 no longer fails as documented (Paddle fixed PIR int8?)", first.returncode, first.stderr[-2000:])
    second = subprocess.run([sys.executable, "-c", _reproduction(2)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    error = float(second.stdout.strip().rsplit(":", 1)[1])
    assert error > 0.5, f"reproduction 2 is now right ({error}): Paddle reads float32 int8 weights correctly"
