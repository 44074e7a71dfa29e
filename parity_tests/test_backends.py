"""Inference backends of exported models (paddle_rep.apps.predictor.Predictor): Paddle Inference with and
without oneDNN, ONNX Runtime and OpenVINO, the latter two on the batch-independent ONNX graph and on
ODConv's batch-fold graphs, and OpenVINO's opt-in bf16 predictor; ONNX metadata; missing optional
packages; the export CLI's --backend check.

Every predictor is fed two different inputs per shape and two batch sizes (3 is served by the
batch-2 and batch-1 fold graphs together, in the slow sweep by the batch-1 graph three times), in
that order, so a runtime that keeps something of its first call shows. Zoo nets have randomised
BN statistics and affine parameters (the deep SE nets: calibrated on the data, see DEEP_SE).
"""

import gc
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle import nn

import paddle_rep
import paddle_rep.apps
from paddle_rep import reparameterize_model
from paddle_rep.apps import cli
from paddle_rep.apps.convert.verify import default_input_size
from paddle_rep.apps.exporter import ExportedModel
from paddle_rep.apps.predictor import Predictor
from paddle_rep.core.errors import ExportError, MissingPackageError
from paddle_rep.models import create_model
from parity_tests import helpers

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("paddle2onnx")

ROOT = Path(__file__).resolve().parents[1]
FOLD_SIZES = (1, 2)
BATCHES = (3, 1)
# backend id -> (Predictor arguments, tolerance kind). "paddle" is Predictor's default: ODConv models
# run their fold programs (oneDNN off there), the rest the batch-independent program with oneDNN;
# "paddle-exact" turns oneDNN off everywhere (the dygraph model's kernels).
BACKENDS = {
    "paddle": (dict(backend="paddle"), "static_graph_onednn"),
    "paddle-exact": (dict(backend="paddle", use_onednn=False), "static_graph"),
    "paddle-onednn-unfold": (dict(backend="paddle", use_onednn=True, fold=False), "static_graph_onednn"),
    "onnxruntime": (dict(backend="onnxruntime"), "onnxruntime"),
    "onnxruntime-unfold": (dict(backend="onnxruntime", fold=False), "onnxruntime"),
    "openvino": (dict(backend="openvino"), "openvino"),
    "openvino-unfold": (dict(backend="openvino", fold=False), "openvino"),
    # The opt-in bf16 predictor (f32, with a warning, on a CPU without bf16; see test_openvino_bf16).
    "openvino-bf16": (dict(backend="openvino", precision="bf16"), "openvino_bf16"),
}
# Without ODConv a model has no fold graphs, so "-unfold" would run the same graph again.
UNFOLD_ONLY = ("paddle", "paddle-exact", "paddle-onednn-unfold", "onnxruntime", "openvino", "openvino-bf16")

# Small inputs in the default suite: all three block families (rep_tiny: ODConv kernel_num 4;
# acnet_cifar_quick: no ODConv, so no fold graphs). In `slow`, every other zoo model, and kernel_num
# 4 on the smallest net of each ODConv family (a deeper net runs the same kernel_num 4 code), each
# exported once into its own tmp_path (removed when it passes: the whole zoo's files would not fit a
# CI disk) and run on every backend in one test. The slow sweep exports one fold graph (batch 1,
# served per sample): each graph costs a trace of the whole net (od_resnet101: ~25 s), the
# default suite's rep_tiny has two, so splitting a batch over several fold sizes is tested there.
_ZOO_DEFAULT = [("rep_tiny", {}), ("acnet_cifar_quick", {})]
_ZOO_SLOW = [(arch, {}) for arch in paddle_rep.list_models() if (arch, {}) not in _ZOO_DEFAULT]
_ZOO_SLOW += [("od_resnet18", {"kernel_num": 4}), ("od_mobilenetv2_050", {"kernel_num": 4})]
SLOW_FOLD_SIZES = (1,)
# Deep SE nets: with BN statistics unrelated to the data they amplify rounding chaotically (D2se at
# 64x64: fused vs unfused 0.75 rel in float32, 1.2 in float64), and even with statistics calibrated on
# the data (helpers.calibrate_paddle_bn) RepVGG-D2se's 47 blocks grow a perturbation ~1.3x per block
# (fused vs unfused 7e-2 rel in float32, 1e-6 in float64). For these the runtime is held to the table
# bound plus ROUNDING_FACTOR x the dygraph model's own float32 error (its float64 twin as the yardstick).
DEEP_SE = ("repvgg_d2se", "repvggplus_l2pse")
# MobileOne-S4 (SE in 12 block pairs) keeps randomised BN (calibrating it grows its logits to ~5e5) but takes the
# same float64 yardstick: its float32 dygraph output is ~1e-5 rel from its float64 twin at 32x32.
DEEP_SE_YARDSTICK = (*DEEP_SE, "mobileone_s4")


def _case_id(arch: str, kwargs: dict) -> str:
    return f"{arch}-kn{kwargs['kernel_num']}" if kwargs else arch


ZOO = [pytest.param(arch, kwargs, id=_case_id(arch, kwargs)) for arch, kwargs in _ZOO_DEFAULT]
# Own xdist groups: the sweep spreads over the workers instead of following its file to one.
ZOO += [pytest.param(arch, kwargs, id=_case_id(arch, kwargs),
                     marks=[pytest.mark.slow, pytest.mark.xdist_group(f"zoo-{_case_id(arch, kwargs)}")])
        for arch, kwargs in _ZOO_SLOW]


def test_sweep_covers_the_whole_zoo() -> None:
    assert {arch for arch, _ in _ZOO_DEFAULT + _ZOO_SLOW} == set(paddle_rep.list_models())
    assert len(_ZOO_SLOW) >= 30  # not an empty comparison
    assert {kwargs.get("kernel_num", 1) for arch, kwargs in _ZOO_SLOW if arch.startswith("od_")} == {1, 4}
    assert set(DEEP_SE) <= set(paddle_rep.list_models())


def input_size(arch: str) -> int:
    return 32 if default_input_size(arch) == 32 else 64 if arch.startswith(("repvgg_b", *DEEP_SE)) else 32


def build(arch: str, kwargs: dict, seed: int = 0) -> nn.Layer:
    paddle.seed(seed)
    model = create_model(arch, num_classes=10, **kwargs)
    rng = np.random.default_rng(seed)
    if arch in DEEP_SE:
        size = input_size(arch)
        helpers.calibrate_paddle_bn(model, helpers.seeded_input((4, 3, size, size), "float32", seed=seed), rng)
    else:
        helpers.randomize_paddle_bn(model, rng)
    model.eval()
    return model


def dygraph(model: nn.Layer, x: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


def export_for_backends(arch: str, kwargs: dict, folder: Path,
                        fold_sizes: tuple[int, ...] = FOLD_SIZES) -> tuple[nn.Layer, ExportedModel, int]:
    """The model exported with ONNX and fold graphs: (its fused dygraph model, the files, input size)."""
    model, size = build(arch, kwargs), input_size(arch)
    files = paddle_rep.apps.export(model, folder / "model", (3, size, size), onnx=True, fold_batch_sizes=fold_sizes)
    return reparameterize_model(model), files, size


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The default-suite models exported once for this file's tests (lazily): key -> export_for_backends."""
    root = tmp_path_factory.mktemp("backends")
    cache = {}

    def get(arch: str, kwargs: dict) -> tuple[nn.Layer, ExportedModel, int]:
        key = (arch, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = export_for_backends(arch, kwargs, root / f"{arch}{len(cache)}")
        return cache[key]

    return get


@pytest.mark.parametrize(("arch", "kwargs"), ZOO)
def test_backend_round_trip(exported, tmp_path: Path, arch: str, kwargs: dict) -> None:
    """Every backend, two batch sizes and two different inputs per size, against the fused dygraph model."""
    if (arch, kwargs) in _ZOO_DEFAULT:
        fused, files, size = exported(arch, kwargs)
    else:
        fused, files, size = export_for_backends(arch, kwargs, tmp_path, SLOW_FOLD_SIZES)
    has_odconv = any(isinstance(layer, paddle_rep.ODConv2D) for layer in fused.sublayers())
    assert bool(files.fold_onnx_files) == bool(files.fold_paddle_files) == has_odconv
    # Inputs and the dygraph answers first, then one runtime at a time: the big nets (RepVGG-B3, D2se,
    # L2pse: ~0.5 GB of weights per copy) must not hold every runtime's copy at once.
    inputs = [helpers.seeded_input((batch, 3, size, size), "float32", seed=10 * batch + seed)
              for batch in BATCHES for seed in (1, 2)]  # a second, different input per shape
    expected = [dygraph(fused, x) for x in inputs]
    exact = [None] * len(inputs)
    if arch in DEEP_SE_YARDSTICK:
        fused.to(dtype="float64")
        exact = [dygraph(fused, x.astype(np.float64)) for x in inputs]
    del fused
    results = []
    for backend in BACKENDS if has_odconv else UNFOLD_ONLY:
        if backend == "openvino-bf16" and arch in DEEP_SE_YARDSTICK:
            continue  # bf16 rounding grown through 47 SE blocks: no bound would mean anything (see DEEP_SE)
        options, kind = BACKENDS[backend]
        predictor = Predictor(files, threads=1, **options)
        for index, (x, want, want_exact) in enumerate(zip(inputs, expected, exact, strict=True)):
            what = f"{_case_id(arch, kwargs)} on {backend} batch {len(x)} input {index % 2 + 1}"
            results.append(helpers.measure_against_rounding(what, predictor(x), want, kind, "float32",
                                                            expected_exact=want_exact))
        del predictor
        gc.collect()
    helpers.assert_all_close(results)


@pytest.mark.parametrize("arch", ["rep_tiny", "acnet_cifar_quick"])
def test_openvino_bf16(exported, arch: str, caplog) -> None:
    """The opt-in bf16 predictor: within the bf16 bound, and really bf16 (further from the model than f32
    rounding); where the CPU has no bf16 kernels it says so and runs f32."""
    fused, files, size = exported(arch, {})
    f32 = Predictor(files, "openvino", threads=1)
    with caplog.at_level("WARNING", logger="paddle_rep"):
        bf16 = Predictor(files, "openvino", threads=1, precision="bf16")
    results = []
    for batch in BATCHES:
        for seed in (1, 2):
            x = helpers.seeded_input((batch, 3, size, size), "float32", seed=10 * batch + seed)
            want, got, got_f32 = dygraph(fused, x), bf16(x), f32(x)
            what = f"{arch} openvino {bf16.precision} batch {batch} input {seed}"
            if bf16.precision == "bf16":
                results.append(helpers.measure(what, got, want, "openvino_bf16", "float32"))
                assert not helpers.measure(what + " vs f32", got, got_f32, "openvino", "float32").ok, \
                    "bf16 output within f32 rounding of the f32 one: bf16 not in effect"
            else:
                results.append(helpers.measure(what, got, got_f32, "openvino", "float32"))
    if bf16.precision != "bf16":
        assert "has no bf16 kernels in OpenVINO; running f32" in caplog.text
    helpers.assert_all_close(results)


def test_openvino_bf16_falls_back_where_the_cpu_has_none(exported, monkeypatch, caplog) -> None:
    """A CPU whose OpenVINO lists no BF16 capability (simulated here) gets the f32 predictor and a warning."""
    import openvino

    real_core = openvino.Core

    class CoreWithoutBf16:
        def __init__(self) -> None:
            self._core = real_core()

        def get_property(self, device: str, name: str):
            value = self._core.get_property(device, name)
            return [c for c in value if c != "BF16"] if name == "OPTIMIZATION_CAPABILITIES" else value

        def __getattr__(self, name: str):
            return getattr(self._core, name)

    _, files, size = exported("acnet_cifar_quick", {})
    f32 = Predictor(files, "openvino", threads=1)
    monkeypatch.setattr(openvino, "Core", CoreWithoutBf16)
    with caplog.at_level("WARNING", logger="paddle_rep"):
        fallback = Predictor(files, "openvino", threads=1, precision="bf16")
    assert fallback.precision == "f32"
    assert "this CPU has no bf16 kernels in OpenVINO; running f32" in caplog.text
    x = helpers.seeded_input((2, 3, size, size), "float32", seed=3)
    np.testing.assert_array_equal(fallback(x), f32(x))


def test_backend_differs_from_another_weight_set(exported) -> None:
    """Negative control: the same comparison against a differently initialised model fails."""
    _, files, size = exported("rep_tiny", {})
    other = reparameterize_model(build("rep_tiny", {}, seed=1))
    x = helpers.seeded_input((2, 3, size, size), "float32", seed=0)
    for backend in ("onnxruntime", "openvino"):
        assert not helpers.measure(backend, Predictor(files, backend)(x), dygraph(other, x), backend,
                                   "float32").ok
    assert not helpers.measure("paddle", Predictor(files)(x), dygraph(other, x), "static_graph", "float32").ok


def test_paddle_fold_program_with_onednn_is_stale(exported) -> None:
    """Why Paddle's fold programs run without oneDNN: with it, the second input gets the first's kernels."""
    fused, files, size = exported("rep_tiny", {})
    model_file, params_file = files.fold_paddle_files[2]
    onednn = Predictor(ExportedModel(model_file, params_file), use_onednn=True)
    first, second = (helpers.seeded_input((2, 3, size, size), "float32", seed=s) for s in (1, 2))
    assert helpers.measure("first", onednn(first), dygraph(fused, first), "static_graph_onednn", "float32").ok
    assert not helpers.measure("second", onednn(second), dygraph(fused, second), "static_graph_onednn",
                               "float32").ok


def test_fold_graphs_hold_the_batch_fold(exported) -> None:
    _, files, _ = exported("rep_tiny", {})
    assert sorted(files.fold_onnx_files) == sorted(files.fold_paddle_files) == list(FOLD_SIZES)
    for size, file in files.fold_onnx_files.items():
        graph = onnx.load(file).graph
        groups = [a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
        assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == size
        if size > 1:  # rep_tiny's ODConv has groups=1: the fold conv runs groups * batch
            assert size in groups, (file, groups)
    unfold = onnx.load(files.onnx_file).graph
    assert unfold.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
    assert not any(a.name == "group" and a.i == 2 for n in unfold.node for a in n.attribute)


def test_model_without_odconv_has_no_fold_graphs(exported) -> None:
    _, files, _ = exported("acnet_cifar_quick", {})
    assert files.fold_onnx_files == {} and files.fold_paddle_files == {}


def test_onnx_output_batch_is_dynamic_and_checked(exported, tmp_path: Path, capfd) -> None:
    import paddle2onnx

    _, files, size = exported("rep_tiny", {})
    model = onnx.load(files.onnx_file)
    onnx.checker.check_model(model, full_check=True)
    batch = model.graph.input[0].type.tensor_type.shape.dim[0].dim_param
    assert batch and model.graph.output[0].type.tensor_type.shape.dim[0].dim_param == batch
    x = helpers.seeded_input((3, 3, size, size), "float32", seed=0)
    capfd.readouterr()
    ort.InferenceSession(files.onnx_file, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert "Expected shape" not in capfd.readouterr().err
    # Negative controls: paddle2onnx's own file gives the output another batch (a second symbol, or 1
    # for od_mobilenetv2), and a batch-1 output makes ONNX Runtime warn on this run.
    raw = tmp_path / "raw.onnx"
    paddle2onnx.export(files.model_file, files.params_file, save_file=str(raw), opset_version=13,
                       optimize_tool="None")
    raw_graph = onnx.load(str(raw)).graph
    assert raw_graph.output[0].type.tensor_type.shape.dim[0].dim_param != \
        raw_graph.input[0].type.tensor_type.shape.dim[0].dim_param
    model.graph.output[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(tmp_path / "batch1.onnx"))
    capfd.readouterr()
    ort.InferenceSession(str(tmp_path / "batch1.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    assert "Expected shape from model of {1,10}" in capfd.readouterr().err


def test_fold_batch_that_cannot_be_split(exported, tmp_path: Path) -> None:
    _, files, size = exported("rep_tiny", {})
    only_two = ExportedModel(files.model_file, files.params_file, files.onnx_file, {2: files.fold_onnx_files[2]})
    predictor = Predictor(only_two, "onnxruntime")
    assert predictor(helpers.seeded_input((4, 3, size, size), "float32", seed=0)).shape == (4, 10)
    with pytest.raises(ValueError, match=r"batch 3 cannot be split .*\[2\]"):
        predictor(helpers.seeded_input((3, 3, size, size), "float32", seed=0))


def test_bad_backend_arguments(exported) -> None:
    _, files, _ = exported("rep_tiny", {})
    with pytest.raises(ValueError, match="backend must be one of"):
        Predictor(files, "tensorrt")
    with pytest.raises(ValueError, match="export with onnx=True"):
        Predictor(ExportedModel(files.model_file, files.params_file), "openvino")
    with pytest.raises(ValueError, match="threads must be a positive int or None, got 0"):
        Predictor(files, "onnxruntime", threads=0)
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(files, "openvino", precision="fp16")
    for backend in ("paddle", "onnxruntime"):
        with pytest.raises(ValueError, match=f"precision='bf16' needs backend='openvino', got backend='{backend}'"):
            Predictor(files, backend, precision="bf16")
    with pytest.raises(ValueError, match="fold_batch_sizes item must be a positive int"):
        paddle_rep.apps.export(build("rep_tiny", {}), Path(files.model_file).parent / "x", (3, 8, 8), onnx=True,
                          fold_batch_sizes=(0,))


@pytest.mark.parametrize(("module", "backend", "extra"), [("onnxruntime", "onnxruntime", "onnx"),
                                                         ("openvino", "openvino", "openvino")])
def test_missing_backend_package(exported, monkeypatch, module: str, backend: str, extra: str) -> None:
    _, files, _ = exported("rep_tiny", {})
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingPackageError, match=rf"pip install 'paddle-rep\[{extra}\]'") as info:
        Predictor(files, backend)
    assert (info.value.package, info.value.extra) == (module, extra)
    assert isinstance(info.value, ImportError)


def test_cli_missing_package_exit_code(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)
    code = cli.main(["export", str(tmp_path / "m"), "--arch", "rep_tiny", "--input-shape", "3,8,8",
                     "--backend", "onnxruntime"])
    assert code == cli.EXIT_MISSING_DEPENDENCY


def test_cli_export_bf16_check_runs_f32_first(tmp_path: Path, capsys) -> None:
    code = cli.main(["export", str(tmp_path / "m"), "--arch", "acnet_cifar_quick", "--input-shape", "3,32,32",
                     "--backend", "openvino", "--precision", "bf16", "--threads", "1"])
    assert code == 0
    checks = [line for line in capsys.readouterr().out.splitlines() if "max rel diff" in line]
    assert [line.split(":")[0] for line in checks] == ["openvino f32", "openvino bf16"], checks
    assert float(checks[0].split("max rel diff ")[1].split()[0]) < 1e-5, checks


def test_failed_onnx_conversion_keeps_the_earlier_file(exported, tmp_path: Path, monkeypatch) -> None:
    import paddle2onnx

    from paddle_rep.apps.exporter import export_onnx

    _, files, _ = exported("rep_tiny", {})
    target = tmp_path / "good.onnx"
    export_onnx(files, target)
    before = target.read_bytes()

    def broken(*args, **kwargs):
        raise RuntimeError("converter failed")

    monkeypatch.setattr(paddle2onnx, "export", broken)
    with pytest.raises(ExportError, match="paddle2onnx could not convert"):
        export_onnx(files, target)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.onnx"]  # no partial or temporary file


def test_cli_export_backend_check_is_quiet(tmp_path: Path) -> None:
    """`paddle-rep export --backend` checks the runtime; Paddle's PIR/glog lines and ONNX Runtime's
    warnings do not reach the user (a subprocess: those come from C++ straight to the descriptors)."""
    result = subprocess.run(
        [sys.executable, "-m", "paddle_rep.apps", "export", str(tmp_path / "m"), "--arch", "rep_tiny",
         "--input-shape", "3,16,16", "--backend", "onnxruntime", "--fold-batch-sizes", "1,2", "--threads", "1"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stderr.strip() == "", result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert str(tmp_path / "m.fold_b2.onnx") in lines and str(tmp_path / "m.onnx") in lines
    error = float(lines[-1].split("max rel diff ")[1].split()[0])
    assert lines[-1].startswith("onnxruntime f32: max rel diff") and error < 1e-5, lines[-1]
