"""Serving a Predictor (paddle_rep.apps.predictor): concurrent calls on every backend and precision, the one
input contract, empty batches, throughput mode, close(), the manifest and Predictor.load in a fresh
process, the per-graph oneDNN default, and resident memory over 10,000 calls.

int8 runs through the same pools and contract (the fixture's exports are calibrated).

Two small models at 16x16: rep_tiny (ODConv kernel_num 4: fold and unfold graphs) and a re-param net
without ODConv (RepVGG + ACB blocks). Every concurrent output is checked against the answer the
same predictor gave single-threaded first; a planted fault (one OpenVINO infer request shared by all
threads) must fail that check.
"""

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddle import nn

import paddle_rep
import paddle_rep.apps
from paddle_rep import ACBlock, RepVGGBlock
from paddle_rep.apps import cli
from paddle_rep.apps import predictor as predictor_module
from paddle_rep.apps.predictor import InputContract, Predictor, default_onednn
from paddle_rep.core.errors import InputContractError, ManifestError, PredictorClosedError
from paddle_rep.models import create_model
from parity_tests import helpers
from parity_tests.tolerances import RSS_GROWTH_BOUND_MB, tolerance

pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("paddle2onnx")

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
THREADS, CALLS = 8, 200
BATCHES = (1, 2, 3, 2, 1, 3, 2, 1)  # 8 different inputs; 3 runs the batch-2 and batch-1 fold graphs
# id -> Predictor arguments: every backend and precision, ODConv's fold and unfold graphs.
CONFIGS = {
    "paddle": dict(backend="paddle"),
    "paddle-unfold": dict(backend="paddle", fold=False),
    "onnxruntime": dict(backend="onnxruntime"),
    "onnxruntime-unfold": dict(backend="onnxruntime", fold=False),
    "openvino": dict(backend="openvino"),
    "openvino-unfold": dict(backend="openvino", fold=False),
    "openvino-bf16": dict(backend="openvino", precision="bf16"),  # f32 with a warning where the CPU has no bf16
    "onnxruntime-int8": dict(backend="onnxruntime", precision="int8"),
    "onnxruntime-int8-unfold": dict(backend="onnxruntime", precision="int8", fold=False),
    "openvino-int8": dict(backend="openvino", precision="int8"),
    "openvino-int8-unfold": dict(backend="openvino", precision="int8", fold=False),
}
PLAIN = ("paddle", "onnxruntime", "openvino", "openvino-bf16", "onnxruntime-int8", "openvino-int8")  # no fold graphs


class RepNet(nn.Layer):
    """RepVGG and ACNet blocks, no ODConv: one graph per backend."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(ACBlock(3, 16, 3, padding=1), nn.ReLU(), RepVGGBlock(16, 16, 3, padding=1),
                                  RepVGGBlock(16, 32, 3, stride=2, padding=1))
        self.head = nn.Linear(32, 10)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.head(self.body(x).mean(axis=[2, 3]))


def _build(name: str) -> nn.Layer:
    paddle.seed(0)
    model = create_model("rep_tiny", num_classes=10) if name == "rep_tiny" else RepNet()
    helpers.randomize_paddle_bn(model, np.random.default_rng(0))
    model.eval()
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    cache = {}

    def get(name: str):
        if name not in cache:
            calibration = helpers.seeded_input((8, 3, SIZE, SIZE), "float32", seed=40)  # int8 files too
            cache[name] = paddle_rep.apps.export(_build(name), root / name / "model", (3, SIZE, SIZE), onnx=True,
                                                 fold_batch_sizes=(1, 2), calibration=calibration)
        return cache[name]

    return get


def _inputs() -> list[np.ndarray]:
    return [helpers.seeded_input((batch, 3, SIZE, SIZE), "float32", seed=50 + i) for i, batch in enumerate(BATCHES)]


def hammer(predictor: Predictor, inputs: list[np.ndarray], expected: list[np.ndarray],
           threads: int = THREADS, calls: int = CALLS) -> list[str]:
    """``threads`` threads x ``calls`` calls, started together; the outputs that differ from ``expected``."""
    start, wrong, lock = threading.Barrier(threads), [], threading.Lock()
    bound = tolerance("concurrent_call", "float32").rel

    def work(thread: int) -> None:
        start.wait()
        for call in range(calls):
            k = (thread * 3 + call) % len(inputs)
            got = predictor(inputs[k])
            diff = float(np.abs(got - expected[k]).max()) if got.shape == expected[k].shape else float("inf")
            if diff > bound * float(np.abs(expected[k]).max()):
                with lock:
                    wrong.append(f"thread {thread} call {call} input {k}: max abs diff {diff:.3g}")

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return wrong


@pytest.mark.parametrize("model", ["rep_tiny", "repnet"])
def test_concurrent_calls_match_single_thread(exported, model: str) -> None:
    files = exported(model)
    inputs = _inputs()
    failures = {}
    for config in CONFIGS if model == "rep_tiny" else PLAIN:
        with Predictor(files, threads=1, **CONFIGS[config]) as predictor:
            expected = [predictor(x) for x in inputs]  # single-threaded answers first
            wrong = hammer(predictor, inputs, expected)
            if wrong:
                failures[config] = f"{len(wrong)} / {THREADS * CALLS} wrong, first: {wrong[0]}"
    assert not failures, failures


def test_shared_openvino_request_is_caught(exported, monkeypatch) -> None:
    """Planted fault: the pool hands every call the same infer request; the concurrency check must fail."""

    class SharedPool(predictor_module._Pool):
        def __init__(self, make, first=None) -> None:
            super().__init__(make, first)
            self._shared = make() if first is None else first

        def checkout(self):
            import contextlib

            return contextlib.nullcontext(self._shared)

    monkeypatch.setattr(predictor_module, "_Pool", SharedPool)
    inputs = _inputs()
    with Predictor(exported("rep_tiny"), "openvino", threads=1) as predictor:
        expected = [predictor(x) for x in inputs]
        assert hammer(predictor, inputs, expected), "one shared infer request gave no wrong output"


# --- the input contract ---------------------------------------------------------------------------

BAD_INPUTS = {  # what -> (input, start of the message)
    "list": ([[1.0]], "input: expected a numpy.ndarray [N, C, H, W], got list"),
    "int32": (np.zeros((1, 3, SIZE, SIZE), np.int32), "input dtype: expected float32 (float16 and float64 are "
              "converted), got int32"),
    "uint8": (np.zeros((1, 3, SIZE, SIZE), np.uint8), "input dtype: expected float32"),
    "bool": (np.zeros((1, 3, SIZE, SIZE), bool), "input dtype: expected float32"),
    "complex": (np.zeros((1, 3, SIZE, SIZE), np.complex64), "input dtype: expected float32"),
    "rank 3": (np.zeros((3, SIZE, SIZE), np.float32), "input rank: expected 4 dims [N, C, H, W], got 3"),
    "rank 5": (np.zeros((1, 1, 3, SIZE, SIZE), np.float32), "input rank: expected 4 dims [N, C, H, W], got 5"),
    "channels": (np.zeros((1, 4, SIZE, SIZE), np.float32), "input channels: expected C=3, got 4"),
    "height": (np.zeros((1, 3, SIZE - 1, SIZE), np.float32), f"input height x width: expected {SIZE}x{SIZE} "
               f"(fixed at export), got {SIZE - 1}x{SIZE}"),
    "width": (np.zeros((2, 3, SIZE, SIZE + 1), np.float32), "input height x width: expected"),
}


@pytest.mark.parametrize("model", ["rep_tiny", "repnet"])
def test_input_contract_is_the_same_on_every_backend(exported, model: str) -> None:
    files = exported(model)
    messages = {what: set() for what in BAD_INPUTS}
    x = helpers.seeded_input((3, 3, SIZE, SIZE), "float32", seed=7)
    for config in CONFIGS if model == "rep_tiny" else PLAIN:
        with Predictor(files, threads=1, **CONFIGS[config]) as predictor:
            for what, (bad, start) in BAD_INPUTS.items():
                with pytest.raises(InputContractError) as info:
                    predictor(bad)
                assert isinstance(info.value, ValueError) and str(info.value).startswith(start), (config, what)
                messages[what].add(str(info.value))
            want = predictor(x)
            # The dtype rule: float64 and float16 converted to float32; a non-contiguous array copied.
            np.testing.assert_array_equal(predictor(x.astype(np.float64)), want)
            np.testing.assert_array_equal(predictor(x.astype(np.float16)), predictor(x.astype(np.float16)
                                                                                     .astype(np.float32)))
            flipped = np.ascontiguousarray(x[:, :, ::-1])
            np.testing.assert_array_equal(predictor(x[:, :, ::-1]), predictor(flipped))
            # An empty batch: an empty float32 result of the output's shape.
            empty = predictor(np.zeros((0, 3, SIZE, SIZE), np.float32))
            assert empty.shape == (0, 10) and empty.dtype == np.float32, (config, empty.shape)
            # NaN and Inf are data: they reach the runtime, no error.
            nan = x.copy()
            nan[0, 0, 0, 0], nan[1, 0, 0, 0] = np.nan, np.inf
            assert predictor(nan).shape == want.shape
    assert all(len(found) == 1 for found in messages.values()), messages  # the same message everywhere


def test_fixed_batch_is_part_of_the_contract(tmp_path: Path) -> None:
    files = paddle_rep.apps.export(_build("repnet"), tmp_path / "m", (3, None, SIZE), batch_size=2)
    assert InputContract.of(files) == InputContract(3, None, SIZE, 2)
    with Predictor(files) as predictor:
        assert predictor(helpers.seeded_input((2, 3, 9, SIZE), "float32", seed=1)).shape == (2, 10)
        assert predictor(np.zeros((0, 3, 9, SIZE), np.float32)).shape == (0, 10)
        with pytest.raises(InputContractError, match=r"input batch: expected N=2 \(fixed at export\) or 0, got 3"):
            predictor(np.zeros((3, 3, 9, SIZE), np.float32))


# --- throughput mode and close --------------------------------------------------------------------

@pytest.mark.parametrize("config", ["paddle", "onnxruntime", "openvino", "openvino-bf16", "openvino-int8"])
def test_predict_many_keeps_the_order(exported, config: str) -> None:
    files = exported("rep_tiny")
    with Predictor(files, threads=1, **CONFIGS[config]) as predictor:
        whole = helpers.seeded_input((11, 3, SIZE, SIZE), "float32", seed=3)
        many = predictor.predict_many(whole, batch_size=2, workers=3)
        # single calls on the latency path; OpenVINO's throughput model is another compilation of the graph
        kind = "openvino_bf16" if predictor.precision == "bf16" else "concurrent_call"
        helpers.assert_close(f"{config} array", many, predictor(whole), kind, "float32")
        batches = _inputs()
        listed = predictor.predict_many(iter(batches))
        assert len(listed) == len(batches)
        for index, (got, x) in enumerate(zip(listed, batches, strict=True)):
            helpers.assert_close(f"{config} batch {index}", got, predictor(x), kind, "float32")
        assert predictor.predict_many(np.zeros((0, 3, SIZE, SIZE), np.float32)).shape == (0, 10)
        with pytest.raises(InputContractError, match="input channels: expected C=3, got 1"):
            predictor.predict_many([batches[0], np.zeros((1, 1, SIZE, SIZE), np.float32)])


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime", "openvino"])
def test_close_frees_and_refuses_later_calls(exported, backend: str) -> None:
    x = helpers.seeded_input((2, 3, SIZE, SIZE), "float32", seed=1)
    with Predictor(exported("rep_tiny"), backend, threads=1) as predictor:
        predictor(x)
    assert predictor._runners == {}
    for call in (lambda: predictor(x), lambda: predictor.predict_many([x])):
        with pytest.raises(PredictorClosedError, match="this Predictor is closed"):
            call()
    predictor.close()  # twice: a no-op


# --- the oneDNN default per graph kind -------------------------------------------------------------

def test_onednn_default_per_graph_kind(exported, monkeypatch) -> None:
    """oneDNN on for every graph it runs correctly, off for ODConv's fold programs (stale kernels there)."""
    assert default_onednn(fold_program=False) is True and default_onednn(fold_program=True) is False
    built = []
    real = predictor_module._PaddleRunner

    def recording(model_file, params_file, threads, use_onednn, use_gpu, **kwargs):
        built.append((".fold_b" in model_file, use_onednn))
        return real(model_file, params_file, threads, use_onednn, use_gpu, **kwargs)

    monkeypatch.setattr(predictor_module, "_PaddleRunner", recording)
    x = helpers.seeded_input((3, 3, SIZE, SIZE), "float32", seed=1)
    cases = [("rep_tiny", {}, {(True, False)}),  # fold programs: off
             ("rep_tiny", {"fold": False}, {(False, True)}),  # ODConv's unfold program: on
             ("repnet", {}, {(False, True)}),  # no ODConv: on
             ("rep_tiny", {"use_onednn": False}, {(True, False)}),  # opting out
             ("repnet", {"use_onednn": False}, {(False, False)}),
             ("rep_tiny", {"use_onednn": True}, {(True, False)})]  # never on a fold program
    for model, kwargs, want in cases:
        built.clear()
        Predictor(exported(model), **kwargs)(x)
        assert set(built) == want, (model, kwargs, built)


# --- manifest and Predictor.load ------------------------------------------------------------------

def test_manifest_lists_the_export(exported) -> None:
    files = exported("rep_tiny")
    manifest = json.loads(Path(files.manifest_file).read_text())
    assert Path(files.manifest_file).name == "model-manifest.json"
    assert manifest["input"]["shape"] == [None, 3, SIZE, SIZE] and manifest["input"]["dtype"] == "float32"
    roles = set(manifest["files"])
    assert {"model", "params", "onnx", "fold_b1.onnx", "fold_b2.onnx", "fold_b2.model", "fold_b2.params"} <= roles
    for entry in manifest["files"].values():
        path = Path(files.manifest_file).parent / entry["name"]
        assert path.stat().st_size == entry["bytes"] and len(entry["sha256"]) == 64
    assert manifest["fold_batch_sizes"] == [1, 2]
    assert manifest["precisions"] == {"paddle": ["f32"], "onnxruntime": ["f32", "int8"],
                                      "openvino": ["f32", "bf16", "int8"]}
    assert manifest["versions"]["paddlepaddle"] == paddle.__version__
    assert {check["name"] for check in manifest["checks"]} == {"onnx.checker model.onnx",
                                                              "onnx.checker model.fold_b1.onnx",
                                                              "onnx.checker model.fold_b2.onnx"}


def test_load_in_a_fresh_process(exported, tmp_path: Path) -> None:
    files = exported("rep_tiny")
    x = helpers.seeded_input((3, 3, SIZE, SIZE), "float32", seed=9)
    np.save(tmp_path / "x.npy", x)
    prefix = files.manifest_file.removesuffix("-manifest.json")
    script = ("import sys, numpy as np\nfrom paddle_rep.apps import Predictor\nx = np.load(sys.argv[1])\n"
              "for backend in ('paddle', 'onnxruntime', 'openvino'):\n"
              "    with Predictor.load(sys.argv[2], backend=backend, threads=1) as p:\n"
              "        np.save(f'{sys.argv[3]}/{backend}.npy', p(x))\n")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), prefix, str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    for backend in ("paddle", "onnxruntime", "openvino"):
        with Predictor(files, backend, threads=1) as here:
            np.testing.assert_array_equal(np.load(tmp_path / f"{backend}.npy"), here(x), err_msg=backend)


def test_load_refuses_missing_and_edited_files(exported, tmp_path: Path) -> None:
    import shutil

    files = exported("repnet")
    folder = tmp_path / "copy"
    shutil.copytree(Path(files.manifest_file).parent, folder)
    manifest = folder / "model-manifest.json"
    assert Predictor.load(folder / "model", "onnxruntime").contract == InputContract(3, SIZE, SIZE)
    with pytest.raises(ManifestError, match="backend 'onnxruntime' offers precisions .*not 'bf16'"):
        Predictor.load(manifest, "onnxruntime", precision="bf16")
    onnx_file = folder / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-1] + b"\0")  # same size, other bytes
    with pytest.raises(ManifestError, match=r"model\.onnx: edited since export") as info:
        Predictor.load(manifest, "onnxruntime")
    assert info.value.path == str(onnx_file) and isinstance(info.value, ValueError)
    onnx_file.unlink()
    with pytest.raises(ManifestError, match=r"model\.onnx: listed in .* as 'onnx' but missing"):
        Predictor.load(manifest, "onnxruntime")
    manifest.unlink()
    with pytest.raises(ManifestError, match="no export manifest there"):
        Predictor.load(folder / "model")


def test_cli_export_records_its_check_and_uses_the_default(tmp_path: Path, capsys) -> None:
    assert cli.EXPORT_BACKENDS == predictor_module.BACKENDS
    code = cli.main(["export", str(tmp_path / "m"), "--arch", "acnet_cifar_quick", "--input-shape", "3,32,32",
                     "--backend", "paddle", "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert str(tmp_path / "m-manifest.json") in printed
    checks = json.loads((tmp_path / "m-manifest.json").read_text())["checks"]
    assert [c["name"] for c in checks] == ["paddle f32 vs the model"] and checks[0]["passed"]


# --- memory ---------------------------------------------------------------------------------------

def _rss_mb() -> float:
    try:
        import psutil
    except ImportError:
        import os

        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return psutil.Process().memory_info().rss / 2**20


@pytest.mark.parametrize("backend", ["paddle", "onnxruntime", "openvino"])
def test_resident_memory_over_10000_calls(exported, backend: str) -> None:
    x = helpers.seeded_input((1, 3, SIZE, SIZE), "float32", seed=4)
    with Predictor(exported("repnet"), backend, threads=1) as predictor:
        for _ in range(300):  # warm-up: pools, caches, allocator arenas
            predictor(x)
        before = _rss_mb()
        for _ in range(10_000):
            predictor(x)
        grown = _rss_mb() - before
    assert grown <= RSS_GROWTH_BOUND_MB, f"{backend}: resident memory grew {grown:.1f} MB over 10,000 calls"
