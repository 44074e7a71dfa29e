"""Export: ODConv's batch-independent formulation, and jit.save / paddle.inference / jit.load / ONNX round trips.

Every exported model is run at two batch sizes from ONE saved file (the batch is dynamic),
against the re-parameterized model in dygraph. Nets have randomised BN statistics and affine
parameters so a wrong fold or a frozen constant shows.
"""

import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle import nn

import paddle_rep
import paddle_rep.apps
from paddle_rep import ACBlock, ODConv2D, RepVGGBlock, reparameterize_model
from paddle_rep.apps import cli
from paddle_rep.apps.convert import load_checkpoint
from paddle_rep.apps.convert.verify import default_input_size
from paddle_rep.apps.exporter import ExportedModel, parse_input_shape
from paddle_rep.apps.predictor import Predictor
from paddle_rep.bn import BatchNorm2D
from paddle_rep.core.errors import MappingError
from paddle_rep.odconv import set_formulation
from parity_tests import helpers

BATCHES = (1, 3)
HW = (10, 9)  # odd and unequal, so a swapped H/W or a stride rounding error shows


class RepVGGNet(nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            RepVGGBlock(3, 16, 3, stride=2, padding=1),
            RepVGGBlock(16, 16, 3, padding=1),  # identity branch
            RepVGGBlock(16, 16, 3, padding=1, groups=4),
            RepVGGBlock(16, 32, 3, padding=1, use_se=True),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.blocks(x)


class ACNet(nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(
            ACBlock(3, 16, 3, padding=1),
            ACBlock(16, 16, 3, stride=2, padding=1, groups=4),
            ACBlock(16, 16, 3, padding=1, padding_mode="reflect"),
            ACBlock(16, 8, 5, padding=2),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.blocks(x)


class ODNet(nn.Layer):
    """Plain stem, the ODConv under test, BN, ReLU, then a 1x1 ODConv (kernel_num 4) head."""

    def __init__(self, channels: int, out_channels: int, kernel_size: int, kernel_num: int, stride: int = 1,
                 groups: int = 1, temperature: float = 1.0) -> None:
        super().__init__()
        self.stem = nn.Conv2D(3, channels, 3, padding=1)
        self.od = ODConv2D(channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                           groups=groups, kernel_num=kernel_num)
        self.od.update_temperature(temperature)
        self.bn = BatchNorm2D(out_channels)
        self.relu = nn.ReLU()
        self.head = ODConv2D(out_channels, 8, 1, kernel_num=4)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.relu(self.bn(self.od(self.stem(x)))))


OD_CASES = {  # name -> ODNet arguments
    "k3-kn1": dict(channels=16, out_channels=24, kernel_size=3, kernel_num=1),
    "k3-kn4": dict(channels=16, out_channels=24, kernel_size=3, kernel_num=4),
    "k1-kn1-pw1x": dict(channels=16, out_channels=24, kernel_size=1, kernel_num=1),
    "k1-kn4": dict(channels=16, out_channels=24, kernel_size=1, kernel_num=4),
    "depthwise-k3-kn4": dict(channels=16, out_channels=16, kernel_size=3, kernel_num=4, groups=16),
    "groups4-k3-kn4": dict(channels=16, out_channels=32, kernel_size=3, kernel_num=4, groups=4),
    "stride2-k3-kn4": dict(channels=16, out_channels=24, kernel_size=3, kernel_num=4, stride=2),
    "k3-kn4-temperature30": dict(channels=16, out_channels=24, kernel_size=3, kernel_num=4, temperature=30.0),
}
NETS = {"repvgg-stack": RepVGGNet, "acblock-stack": ACNet}
NETS.update({f"odconv-{name}": (lambda kw=kw: ODNet(**kw)) for name, kw in OD_CASES.items()})


def build(name: str, seed: int = 0, dtype: str = "float32") -> nn.Layer:
    paddle.seed(seed)
    model = NETS[name]()
    model.to(dtype=dtype)
    helpers.randomize_paddle_bn(model, np.random.default_rng(seed))
    model.eval()
    return model


def dygraph(model: nn.Layer, x: np.ndarray) -> np.ndarray:
    with paddle.no_grad():
        return model(paddle.to_tensor(x)).numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Each net exported once (lazily) and shared by the round-trip tests: name -> (fused model, files)."""
    root = tmp_path_factory.mktemp("export")
    cache = {}

    def get(name: str) -> tuple[nn.Layer, ExportedModel]:
        if name not in cache:
            model = build(name)
            files = paddle_rep.apps.export(model, root / name / "model", (3, *HW))
            cache[name] = (reparameterize_model(model), files)
        return cache[name]

    return get


# --- the ODConv export formulation -----------------------------------------------------------

@pytest.mark.parametrize("dtype", helpers.DTYPES)
@pytest.mark.parametrize("case", sorted(OD_CASES))
def test_unfold_formulation_equals_batch_fold(case: str, dtype: str) -> None:
    model = build(f"odconv-{case}", dtype=dtype)
    x = helpers.seeded_input((3, 3, *HW), dtype, seed=1)
    assert set_formulation(model, "fold") == 2
    expected = dygraph(model, x)
    assert set_formulation(model, "unfold") == 2
    actual = dygraph(model, x)
    helpers.assert_close(f"{case} unfold vs fold", actual, expected, "export_formulation", dtype)
    # Each sample alone gives the same result: the formulation does not mix the batch.
    single = np.concatenate([dygraph(model, x[i:i + 1]) for i in range(len(x))])
    helpers.assert_close(f"{case} per sample", single, expected, "export_formulation", dtype)


def test_unfold_formulation_trains_like_the_fold() -> None:
    """The export form is differentiable and gives the fold's gradients (train mode, batch statistics)."""
    results = []
    steps = {}
    for formulation in ("fold", "unfold"):
        model = build("odconv-groups4-k3-kn4")
        set_formulation(model, formulation)
        x = helpers.seeded_input((3, 3, *HW), "float32", seed=2)
        upstream = helpers.seeded_input((3, 8, *HW), "float32", seed=3)
        steps[formulation] = helpers.paddle_train_step(model, x, upstream)
    fold, unfold = steps["fold"], steps["unfold"]
    results.append(helpers.measure("train output", unfold.output, fold.output, "export_formulation", "float32"))
    results.append(helpers.measure("input grad", unfold.input_grad, fold.input_grad, "input_grad", "float32"))
    results += [helpers.measure(f"grad {k}", unfold.param_grads[k], fold.param_grads[k], "param_grad", "float32")
                for k in sorted(fold.param_grads)]
    helpers.assert_all_close(results)


def test_formulation_flag() -> None:
    layer = ODConv2D(8, 8, 3, padding=1)
    assert layer.formulation == "auto"
    with pytest.raises(ValueError, match="formulation must be one of"):
        layer.formulation = "batch"
    with pytest.raises(ValueError, match="formulation must be one of"):
        set_formulation(layer, "Unfold")
    assert set_formulation(nn.Sequential(layer, ODConv2D(8, 4, 1)), "unfold") == 2
    assert layer.formulation == "unfold"


# --- paddle.inference / jit.load round trips ------------------------------------------------

@pytest.mark.parametrize("use_onednn", [False, True], ids=["onednn-off", "onednn-on"])
@pytest.mark.parametrize("name", list(NETS))
def test_inference_round_trip_dynamic_batch(exported, name: str, use_onednn: bool) -> None:
    fused, files = exported(name)
    predictor = Predictor(files, use_onednn=use_onednn)
    kind = "static_graph_onednn" if use_onednn else "static_graph"
    results = []
    for batch in BATCHES:
        # Two inputs of one shape: a kernel that caches a value of its first call shows on the second.
        for seed in (batch, batch + 100):
            x = helpers.seeded_input((batch, 3, *HW), "float32", seed=seed)
            results.append(helpers.measure(f"{name} batch {batch} seed {seed}", predictor(x), dygraph(fused, x), kind,
                                           "float32"))
    helpers.assert_all_close(results)


@pytest.mark.parametrize("name", list(NETS))
def test_jit_load_round_trip(exported, name: str) -> None:
    fused, files = exported(name)
    loaded = paddle.jit.load(files.model_file.rsplit(".", 1)[0])
    results = []
    for batch in BATCHES:
        x = helpers.seeded_input((batch, 3, *HW), "float32", seed=batch + 10)
        results.append(helpers.measure(f"{name} batch {batch}", dygraph(loaded, x), dygraph(fused, x),
                                       "static_graph", "float32"))
    helpers.assert_all_close(results)


def test_export_ignores_a_fold_formulation(tmp_path: Path) -> None:
    """A model left in "fold" mode still exports with a dynamic batch (the copy uses "unfold")."""
    model = build("odconv-k3-kn4")
    set_formulation(model, "fold")
    files = paddle_rep.apps.export(model, tmp_path / "model", (3, *HW))
    assert model.od.formulation == "fold"
    predictor, fused = Predictor(files), reparameterize_model(model)
    for batch in BATCHES:
        x = helpers.seeded_input((batch, 3, *HW), "float32", seed=batch)
        helpers.assert_close(f"batch {batch}", predictor(x), dygraph(fused, x), "static_graph_onednn", "float32")


@pytest.mark.parametrize("use_onednn", [False, True], ids=["onednn-off", "onednn-on"])
@pytest.mark.parametrize("name", ["odconv-k3-kn4", "odconv-depthwise-k3-kn4", "odconv-stride2-k3-kn4"])
def test_fixed_batch_export(tmp_path: Path, name: str, use_onednn: bool) -> None:
    """batch_size fixes the batch; dynamic H/W still work, and so does a second input of one shape.

    The second input is the regression check: a traced batch fold (a conv with per-input
    weights) returned the first input's kernels under oneDNN.
    """
    model = build(name)
    files = paddle_rep.apps.export(model, tmp_path / "model", "3,?,?", batch_size=2)
    predictor, fused = Predictor(files, use_onednn=use_onednn), reparameterize_model(model)
    kind = "static_graph_onednn" if use_onednn else "static_graph"
    results = []
    for shape, seed in [((2, 3, *HW), 0), ((2, 3, *HW), 1), ((2, 3, 13, 16), 2), ((2, 3, 13, 16), 3)]:
        x = helpers.seeded_input(shape, "float32", seed=seed)
        results.append(helpers.measure(f"{name} {shape} seed {seed}", predictor(x), dygraph(fused, x), kind, "float32"))
    helpers.assert_all_close(results)
    with pytest.raises(ValueError, match="batch_size must be a positive int or None, got 0"):
        paddle_rep.apps.export(model, tmp_path / "bad", (3, *HW), batch_size=0)


def test_exported_model_differs_from_another_weight_set(exported) -> None:
    """Negative control: the round-trip comparison fails against a net with other weights."""
    _, files = exported("odconv-k3-kn4")
    other = reparameterize_model(build("odconv-k3-kn4", seed=1))
    x = helpers.seeded_input((3, 3, *HW), "float32", seed=0)
    assert not helpers.measure("other weights", Predictor(files)(x), dygraph(other, x), "static_graph", "float32").ok


@pytest.mark.parametrize("name", ["repvgg-stack", "acblock-stack", "odconv-stride2-k3-kn4", "odconv-depthwise-k3-kn4"])
def test_dynamic_height_and_width(tmp_path: Path, name: str) -> None:
    model = build(name)
    files = paddle_rep.apps.export(model, tmp_path / "model", "3,?,?")
    fused = reparameterize_model(model)
    predictor = Predictor(files)
    results = []
    for shape in [(1, 3, 10, 9), (2, 3, 13, 16)]:
        x = helpers.seeded_input(shape, "float32", seed=shape[2])
        results.append(helpers.measure(f"{name} {shape}", predictor(x), dygraph(fused, x), "static_graph_onednn",
                                       "float32"))
    helpers.assert_all_close(results)


def test_odconv_float64_export(tmp_path: Path) -> None:
    model = build("odconv-groups4-k3-kn4", dtype="float64")
    files = paddle_rep.apps.export(model, tmp_path / "model", (3, *HW), dtype="float64")
    loaded = paddle.jit.load(str(tmp_path / "model"))
    for batch in BATCHES:
        x = helpers.seeded_input((batch, 3, *HW), "float64", seed=batch)
        helpers.assert_close(f"float64 batch {batch}", dygraph(loaded, x), dygraph(model, x), "static_graph", "float64")
    assert Path(files.params_file).is_file()


# --- the export function itself -------------------------------------------------------------

def test_export_writes_files_and_leaves_the_model_alone(tmp_path: Path) -> None:
    model = build("repvgg-stack")
    model.train()
    files = paddle_rep.apps.export(model, tmp_path / "sub" / "net", (3, 16, 16))
    assert Path(files.model_file).suffix in (".json", ".pdmodel") and Path(files.model_file).is_file()
    assert files.params_file == str(tmp_path / "sub" / "net.pdiparams") and Path(files.params_file).is_file()
    assert files.onnx_file is None
    assert model.training, "export switched the caller's model to eval"
    assert not any(block.is_repped for block in model.blocks), "export fused the caller's model"
    assert paddle_rep.apps.export is paddle_rep.apps.exporter.export  # the package attribute stays the function


@pytest.mark.parametrize(("shape", "message"), [
    ((3, 32), "must be \\(C, H, W\\)"),
    ((1, 3, 32, 32), "must be \\(C, H, W\\)"),
    ((None, 32, 32), "C must be a positive int"),
    ((3, 0, 32), "H must be a positive int or None"),
    ((3, 32, 2.5), "W must be a positive int or None"),
    ("3,x,32", "H must be a positive int or None"),
])
def test_bad_input_shape(shape, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_input_shape(shape)


def test_parse_input_shape_forms() -> None:
    assert parse_input_shape("3,224,224") == (3, 224, 224)
    assert parse_input_shape("3, ?, -1") == (3, None, None)
    assert parse_input_shape([16, None, 8]) == (16, None, 8)


@pytest.mark.parametrize("path", ["out/model.json", "out/model.pdiparams", "out/", ""])
def test_bad_path(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="path is a file prefix"):
        paddle_rep.apps.export(build("repvgg-stack"), path, (3, 8, 8))


def test_wrong_channels_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"expects 3 input channels, got shape \[\?, 4, 8, 8\]"):
        paddle_rep.apps.export(build("repvgg-stack"), tmp_path / "m", (4, 8, 8))


def test_onnx_without_paddle2onnx(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)  # makes `import paddle2onnx` fail
    with pytest.raises(ImportError, match=r"pip install 'paddle-rep\[onnx\]'"):
        paddle_rep.apps.export(build("repvgg-stack"), tmp_path / "m", (3, 8, 8), onnx=True)
    assert not list(tmp_path.iterdir()), "failed before writing anything"


def test_cli_onnx_without_paddle2onnx_exits_6(tmp_path: Path, monkeypatch, capsys) -> None:
    """The documented exit code for a missing optional package (a literal: the oracle is the docs)."""
    monkeypatch.setitem(sys.modules, "paddle2onnx", None)
    code = cli.main(["export", str(tmp_path / "m"), "--arch", "repvgg_a0", "--input-shape", "3,32,32", "--onnx"])
    assert code == 6
    assert "paddle-rep[onnx]" in capsys.readouterr().err
    assert not list(tmp_path.iterdir()), "failed before writing anything"


@pytest.mark.filterwarnings("ignore:Skip loading for:UserWarning")  # Paddle warns, then we raise
def test_load_checkpoint_is_strict(tmp_path: Path) -> None:
    source, target = build("odconv-k3-kn4", seed=0), build("odconv-k3-kn4", seed=1)
    paddle.save(source.state_dict(), str(tmp_path / "ok.pdparams"))
    load_checkpoint(target, tmp_path / "ok.pdparams")
    x = helpers.seeded_input((2, 3, *HW), "float32", seed=0)
    np.testing.assert_array_equal(dygraph(target, x), dygraph(source, x))
    state = source.state_dict()
    state.pop("head.weight")
    state["extra.weight"] = paddle.zeros([1])
    paddle.save(state, str(tmp_path / "bad.pdparams"))
    with pytest.raises(MappingError, match="missing \\['head.weight'\\], unexpected \\['extra.weight'\\]"):
        load_checkpoint(target, tmp_path / "bad.pdparams")


def test_cli_has_the_export_subcommand() -> None:
    args = cli.build_parser().parse_args(["export", "out/m", "--arch", "repvgg_a0", "--input-shape", "3,?,?",
                                          "--onnx"])
    assert (args.command, args.out, args.arch, args.input_shape, args.onnx, args.checkpoint) == (
        "export", "out/m", "repvgg_a0", "3,?,?", True, None)


# --- ONNX (paddle2onnx and onnxruntime, from the test extra; Paddle 3 only) ---------------------------------------

@pytest.mark.parametrize("name", ["repvgg-stack", "acblock-stack", "odconv-k3-kn4", "odconv-groups4-k3-kn4",
                                  "odconv-depthwise-k3-kn4"])
def test_onnx_round_trip(tmp_path: Path, name: str) -> None:
    # Plain imports: the test extra installs both, so a broken install fails here instead of skipping.
    # Imported here, not at the top: paddle2onnx 2.x refuses to import under Paddle 2.6 (CI deselects this test there).
    import onnxruntime as ort
    import paddle2onnx  # noqa: F401
    model = build(name)
    files = paddle_rep.apps.export(model, tmp_path / "model", (3, None, None), onnx=True)
    fused = reparameterize_model(model)
    session = ort.InferenceSession(files.onnx_file, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    results = []
    for shape in [(1, 3, *HW), (3, 3, 13, 16)]:
        x = helpers.seeded_input(shape, "float32", seed=shape[0])
        actual = session.run(None, {input_name: x})[0]
        results.append(helpers.measure(f"{name} {shape}", actual, dygraph(fused, x), "onnxruntime", "float32"))
    helpers.assert_all_close(results)


# --- the model zoo --------------------------------------------------------------------------

_ZOO_DEFAULT = [("repvgg_a0", {}), ("qarepvgg_a0", {}), ("acnet_resnet18", {}), ("od_resnet18", {}),
                ("dbb_mobilenet", {}), ("mobileone_s0", {})]
ZOO = [pytest.param(arch, kwargs, id=f"{arch}-kn{kwargs['kernel_num']}" if kwargs else arch)
       for arch, kwargs in _ZOO_DEFAULT]
# The whole zoo is exported in `slow` by test_backends.py::test_backend_round_trip, which runs the
# same Paddle predictor (its "paddle" backend) and the other runtimes on every model.


@pytest.mark.parametrize(("arch", "kwargs"), ZOO)
def test_zoo_model_exports_with_a_dynamic_batch(tmp_path: Path, arch: str, kwargs: dict) -> None:
    from paddle_rep.models import create_model

    paddle.seed(0)
    model = create_model(arch, num_classes=10, **kwargs)
    helpers.randomize_paddle_bn(model, np.random.default_rng(0))
    model.eval()
    size = 32 if default_input_size(arch) == 32 else 64  # the CIFAR nets' heads expect 32x32
    files = paddle_rep.apps.export(model, tmp_path / arch, (3, size, size))
    fused = reparameterize_model(model)
    predictor = Predictor(files)
    results = []
    for batch in (1, 2):
        x = helpers.seeded_input((batch, 3, size, size), "float32", seed=batch)
        results.append(helpers.measure(f"{arch} batch {batch}", predictor(x), dygraph(fused, x),
                                       "static_graph_onednn", "float32"))
    helpers.assert_all_close(results)


def test_cli_export_with_checkpoint(tmp_path: Path, capsys) -> None:
    from paddle_rep.models import create_model

    paddle.seed(3)
    model = create_model("repvgg_a0", num_classes=10)
    helpers.randomize_paddle_bn(model, np.random.default_rng(3))
    paddle.save(model.state_dict(), str(tmp_path / "ckpt.pdparams"))
    assert cli.main(["export", str(tmp_path / "out" / "a0"), "--arch", "repvgg_a0", "--num-classes", "10",
                     "--checkpoint", str(tmp_path / "ckpt.pdparams"), "--input-shape", "3,32,32"]) == 0
    printed = capsys.readouterr().out.split()
    model_file = next(p for p in printed if p.endswith((".json", ".pdmodel")))
    files = ExportedModel(model_file, str(tmp_path / "out" / "a0.pdiparams"))
    assert files.params_file in printed
    x = helpers.seeded_input((2, 3, 32, 32), "float32", seed=0)
    helpers.assert_close("cli export", Predictor(files)(x), dygraph(reparameterize_model(model), x),
                         "static_graph_onednn", "float32")
