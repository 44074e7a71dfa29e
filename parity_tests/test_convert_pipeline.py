"""The converter's pipeline shape: one canonical form between reading and writing, the Paddle-name
mapping in one module, typed missing-package errors, ``load_checkpoint``'s home, the fused names.
"""

import ast
import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import torch

import torch_ref
from paddle_rep.acblock import ACBlock
from paddle_rep.apps import exporter
from paddle_rep.apps.convert import api, canonical, convert_checkpoint, load_checkpoint
from paddle_rep.apps.convert import arch as arch_mod
from paddle_rep.core import interop
from paddle_rep.core.deploy import ACBLOCK_FUSED_ATTR, REPVGG_FUSED_ATTR
from paddle_rep.core.errors import ArchMismatchError, MappingError
from paddle_rep.models import create_model
from paddle_rep.repvgg import RepVGGBlock

from . import helpers

ROOT = Path(__file__).resolve().parent.parent
CONVERT = ROOT / "paddle_rep" / "apps" / "convert"
MAPPING_FUNCTIONS = ("from_torch", "to_torch", "torch_key_to_paddle", "paddle_key_to_torch")
ARCH = "repvgg_a0"
CLASSES = 10
SIZE = 32


@pytest.fixture(scope="module")
def a0_torch() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch_ref.create_model(ARCH, num_classes=CLASSES)
    helpers.randomize_bn(model, np.random.default_rng(0))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.num_batches_tracked.fill_(5)
    return model.eval()


@pytest.fixture(scope="module")
def a0_canonical(a0_torch) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in a0_torch.state_dict().items()}


# ---------------------------------------------------------------- the mapping lives in canonical.py


def mapping_calls(source: str) -> list[str]:
    """Names of the torch <-> Paddle mapping functions that ``source`` uses (``interop.x`` or imported ``x``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in MAPPING_FUNCTIONS:
            found.append(node.attr)
        elif isinstance(node, ast.ImportFrom):
            found += [a.name for a in node.names if a.name in MAPPING_FUNCTIONS]
    return found


@pytest.mark.parametrize("path", sorted(CONVERT.glob("*.py")), ids=lambda p: p.name)
def test_only_canonical_maps_names(path: Path) -> None:
    calls = mapping_calls(path.read_text())
    if path.name == "canonical.py":
        assert set(calls) >= {"from_torch", "to_torch", "paddle_key_to_torch"}, calls
    else:
        assert calls == [], f"{path.name} maps torch <-> Paddle names itself: {calls}"


def test_mapping_scan_sees_a_mapping_call() -> None:
    """Negative control: both spellings of a mapping call are found."""
    assert mapping_calls("from .. import interop\nx = interop.from_torch(s)\n") == ["from_torch"]
    assert mapping_calls("from ..interop import to_torch as t\n") == ["to_torch"]


def test_official_shapes_turn_paddle_shapes_canonical() -> None:
    paddle_shapes = {"bn._mean": (4,), "bn._variance": (4,), "linear.weight": (1280, 10), "conv.weight": (4, 3, 3, 3)}
    assert canonical.official_shapes(paddle_shapes) == {
        "bn.running_mean": (4,), "bn.running_var": (4,), "linear.weight": (10, 1280), "conv.weight": (4, 3, 3, 3)}


def test_strict_check_compares_canonical_shapes(a0_canonical) -> None:
    """A Linear weight in Paddle's ``[in, out]`` layout is a shape mismatch under canonical names."""
    args = {"num_classes": CLASSES}
    assert api._model_args(a0_canonical, args, "a0") == {**args, "deploy": False}
    shapes = arch_mod.expected_shapes(ARCH, args)
    api._check(a0_canonical, canonical.to_paddle(a0_canonical), shapes, ARCH, "a0")  # control: the file fits
    expected = canonical.official_shapes(shapes)
    state = canonical.weights_only(a0_canonical)
    state["linear.weight"] = np.ascontiguousarray(state["linear.weight"].T)
    pattern = r"official names.*linear\.weight: checkpoint \(1280, 10\) vs model \(10, 1280\)"
    with pytest.raises(ArchMismatchError, match=re.compile(pattern, re.S)):
        arch_mod.check_state(state, expected, ARCH, "a0")
    with pytest.raises(ArchMismatchError, match=re.compile(pattern, re.S)):  # the converter's check words it so too
        api._check(state, canonical.to_paddle(state), shapes, ARCH, "a0")


def test_strict_check_refuses_paddle_bn_names_in_a_torch_file(a0_canonical, tmp_path) -> None:
    state = {k.replace("stage0.rbr_dense.bn.running_mean", "stage0.rbr_dense.bn._mean"): torch.from_numpy(v)
             for k, v in a0_canonical.items()}
    torch.save(state, tmp_path / "mixed.pth")
    pattern = r"missing 1: stage0\.rbr_dense\.bn\.running_mean.*unexpected 1: stage0\.rbr_dense\.bn\._mean"
    with pytest.raises(ArchMismatchError, match=re.compile(pattern, re.S)):
        convert_checkpoint(tmp_path / "mixed.pth", tmp_path / "out.pdparams", arch=ARCH, progress=False)
    assert not (tmp_path / "out.pdparams").exists()


def test_fused_torch_file_is_torchs_deployed_state_dict(a0_torch, tmp_path) -> None:
    """Fused to torch names: torch's deployed state dict (same keys in order, shapes; values at the fused tolerance)."""
    torch.save(a0_torch.state_dict(), tmp_path / "a0.pth")
    convert_checkpoint(tmp_path / "a0.pth", tmp_path / "a0_deploy.pth", arch=ARCH, deploy=True, to="torch",
                       progress=False)
    fused = torch.load(tmp_path / "a0_deploy.pth", map_location="cpu", weights_only=True)
    expected = torch_ref.reparameterize_model(copy.deepcopy(a0_torch), inplace=True).state_dict()
    assert list(fused) == list(expected)
    assert not any(k.endswith(("._mean", "._variance")) for k in fused)
    helpers.assert_all_close([helpers.measure(k, fused[k].numpy(), expected[k], "fused_kernel", "float32")
                              for k in expected if expected[k].is_floating_point()])
    # negative control: the unfused state is not the deployed one
    assert not any(k.startswith("stage0.rbr_reparam") for k in a0_torch.state_dict())


class MappingSpy:
    """Counts the runs of the torch <-> Paddle mapping: top-level calls of :data:`MAPPING_FUNCTIONS`.

    A call made from inside another (``from_torch`` mapping each key) belongs to that run; a loop
    mapping key by key outside interop counts once per key.
    """

    def __init__(self, monkeypatch) -> None:
        self.calls: dict[str, int] = {}
        self._depth = 0
        for name in MAPPING_FUNCTIONS:
            monkeypatch.setattr(interop, name, self._counting(name, getattr(interop, name)))

    def _counting(self, name: str, real):
        def wrapped(*args, **kwargs):
            if self._depth == 0:
                self.calls[name] = self.calls.get(name, 0) + 1
            self._depth += 1
            try:
                return real(*args, **kwargs)
            finally:
                self._depth -= 1
        return wrapped

    @property
    def runs(self) -> int:
        return sum(self.calls.values())


def test_mapping_spy_counts_runs_not_nested_calls(monkeypatch) -> None:
    """Negative control: the spy sees a whole-state mapping once and a key-by-key loop once per key."""
    spy = MappingSpy(monkeypatch)
    interop.from_torch({"bn.running_mean": np.zeros(2), "bn.running_var": np.ones(2), "fc.weight": np.zeros((2, 3))})
    assert spy.calls == {"from_torch": 1}
    canonical.official_shapes({"bn._mean": (2,), "bn._variance": (2,), "fc.weight": (3, 2)})
    assert spy.calls == {"from_torch": 1, "paddle_key_to_torch": 3} and spy.runs == 4


# (source names, deploy + verify, destination) -> the mapping runs of that conversion
MAPPING_RUNS = {
    ("torch", True, "paddle"): {"from_torch": 1},  # canonical -> Paddle; the fused model's state is the target
    ("torch", False, "paddle"): {"from_torch": 1},
    ("torch", True, "torch"): {"from_torch": 1, "to_torch": 1},  # into the Paddle model, the fused one back
    ("paddle", True, "paddle"): {"to_torch": 1},  # read -> canonical; the source's Paddle form is loaded as it is
    ("paddle", True, "torch"): {"to_torch": 2},
}


@pytest.mark.parametrize("case", list(MAPPING_RUNS), ids=lambda c: f"{c[0]}-{'deploy-verify' if c[1] else 'plain'}-"
                         f"to-{c[2]}")
def test_convert_maps_names_at_most_twice(case, a0_torch, tmp_path, monkeypatch) -> None:
    source, deploy_verify, to = case
    src = tmp_path / "a0.pth"
    torch.save(a0_torch.state_dict(), src)
    if source == "paddle":
        convert_checkpoint(src, tmp_path / "a0.pdparams", progress=False)
        src = tmp_path / "a0.pdparams"
    spy = MappingSpy(monkeypatch)
    dst = tmp_path / ("out.pdparams" if to == "paddle" else "out.pth")
    options = {"arch": ARCH, "deploy": True, "verify": True, "input_size": SIZE} if deploy_verify else {}
    report = convert_checkpoint(src, dst, to=to, progress=False, **options)
    assert spy.calls == MAPPING_RUNS[case] and spy.runs <= 2, spy.calls
    assert dst.exists() and (not deploy_verify or len(report.verify) >= 2)


def test_one_paddle_model_is_checked_verified_fused_and_written(a0_torch, tmp_path, monkeypatch) -> None:
    """``--deploy --verify``: one Paddle model, fused once; it gives both Paddle outputs and the written state."""
    built, fused, outputs = [], [], []
    real_build, real_outputs = arch_mod.build_paddle_model, api.verify_mod.paddle_outputs
    monkeypatch.setattr(arch_mod, "build_paddle_model", lambda *a, **k: built.append(real_build(*a, **k)) or built[-1])
    monkeypatch.setattr(api.verify_mod, "paddle_outputs",
                        lambda model, x: outputs.append(model) or real_outputs(model, x))
    real_fuse = canonical.fused_form
    monkeypatch.setattr(canonical, "fused_form", lambda model, form: fused.append(model) or real_fuse(model, form))
    torch.save(a0_torch.state_dict(), tmp_path / "a0.pth")
    report = convert_checkpoint(tmp_path / "a0.pth", tmp_path / "a0.pdparams", arch=ARCH, deploy=True, verify=True,
                                input_size=SIZE, progress=False)
    assert len(built) == 1 and fused == built and outputs == built * 2
    assert [r["what"] for r in report.verify] == ["paddle vs torch (eval)", "paddle fused vs torch (eval)"]
    written = paddle.load(str(tmp_path / "a0.pdparams"), return_numpy=True)
    state = built[0].state_dict()
    assert list(written) == list(state)
    for key, value in written.items():
        np.testing.assert_array_equal(value, state[key].numpy(), err_msg=key)
    assert any(k.startswith("stage0.rbr_reparam") for k in written)  # control: the fused model was written


# ---------------------------------------------------------------- missing optional packages


MISSING = r"""
import sys
sys.modules["{blocked}"] = None  # importing it raises ImportError
from pathlib import Path
from paddle_rep.core.errors import MissingPackageError, PaddleRepError
{body}
try:
    run()
except MissingPackageError as err:
    assert isinstance(err, ImportError) and isinstance(err, PaddleRepError)
    print(err.package, err.extra, str(err), sep="|")
else:
    raise SystemExit("no MissingPackageError")
"""


def run_missing(blocked: str, body: str) -> list[str]:
    code = MISSING.format(blocked=blocked, body=body)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1].split("|")


def test_missing_torch_reading_a_pth(a0_torch, tmp_path) -> None:
    src = tmp_path / "a0.pth"
    torch.save(a0_torch.state_dict(), src)
    body = f"from paddle_rep.apps.convert import read_checkpoint\ndef run():\n    read_checkpoint({str(src)!r})\n"
    assert run_missing("torch", body) == [
        "torch", "torch", f"{src} is a torch checkpoint; reading it needs torch (pip install 'paddle-rep[torch]')"]


def test_missing_torch_for_verify_and_for_writing() -> None:
    body = ("from paddle_rep.apps.convert.arch import build_torch_model\n"
            "def run():\n    build_torch_model('repvgg_a0', {})\n")
    assert run_missing("torch", body) == [
        "torch", "torch", "--verify builds the torch reference model and needs torch (pip install 'paddle-rep[torch]')"]
    body = ("import io, numpy as np\nfrom paddle_rep.apps.convert.write import write_state\n"
            "def run():\n    write_state({'w': np.ones(2, np.float32)}, io.BytesIO(), 'torch', 'torch')\n")
    assert run_missing("torch", body)[:2] == ["torch", "torch"]


def test_missing_h5py_writing_hdf5(a0_torch, tmp_path) -> None:
    src = tmp_path / "a0.pth"
    torch.save(a0_torch.state_dict(), src)
    body = (f"from paddle_rep.apps.convert import convert_checkpoint\ndef run():\n"
            f"    convert_checkpoint({str(src)!r}, {str(tmp_path / 'a0.hdf5')!r}, progress=False)\n")
    assert run_missing("h5py", body) == ["h5py", "hdf5", "writing HDF5 needs h5py (pip install 'paddle-rep[hdf5]')"]
    assert not (tmp_path / "a0.hdf5").exists()


def test_missing_package_harness_fails_without_the_error() -> None:
    """Negative control: the subprocess harness fails when nothing raises."""
    with pytest.raises(AssertionError, match="no MissingPackageError"):
        run_missing("h5py", "def run():\n    pass\n")


# ---------------------------------------------------------------- load_checkpoint


def test_load_checkpoint_lives_in_convert() -> None:
    assert not hasattr(exporter, "load_checkpoint")  # one import path per name
    assert load_checkpoint.__module__ == "paddle_rep.apps.convert.load"


@pytest.mark.filterwarnings("ignore:Skip loading for:UserWarning")  # Paddle warns, then load_checkpoint raises
def test_load_checkpoint_reads_an_official_torch_file(a0_torch, tmp_path) -> None:
    torch.save(a0_torch.state_dict(), tmp_path / "a0.pth")
    model = create_model(ARCH, num_classes=CLASSES)
    before = model.state_dict()["linear.weight"].numpy().copy()
    load_checkpoint(model, tmp_path / "a0.pth")
    expected = interop.from_torch(a0_torch.state_dict(), dtype=None)
    got = {k: v.numpy() for k, v in model.state_dict().items()}
    assert set(got) == set(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(got[key], value, err_msg=key)
    assert not np.array_equal(before, got["linear.weight"])  # control: the load changed the model

    state = dict(a0_torch.state_dict())
    del state["linear.bias"]
    torch.save(state, tmp_path / "short.pth")
    fresh = create_model(ARCH, num_classes=CLASSES)
    untouched = {k: v.numpy().copy() for k, v in fresh.state_dict().items()}
    with pytest.raises(MappingError, match=r"short\.pth does not fit the model: missing \['linear\.bias'\]"):
        load_checkpoint(fresh, tmp_path / "short.pth")
    for key, value in fresh.state_dict().items():  # checked before loading: nothing half-written
        np.testing.assert_array_equal(value.numpy(), untouched[key], err_msg=key)


# ---------------------------------------------------------------- fused attribute names, spelled once


@pytest.mark.parametrize("family", ["acb", "repvgg"])
def test_fused_attribute_names_match_both_frameworks(family: str) -> None:
    name = {"acb": ACBLOCK_FUSED_ATTR, "repvgg": REPVGG_FUSED_ATTR}[family]
    blocks = {"acb": (ACBlock, torch_ref.ACBlock), "repvgg": (RepVGGBlock, torch_ref.RepVGGBlock)}[family]
    for block_type in blocks:
        block = block_type(4, 4, 3, padding=1)
        assert not any(k.startswith(name + ".") for k in block.state_dict())  # control: training form
        block.switch_to_deploy()
        keys = list(block.state_dict())
        assert keys and all(k.startswith(name + ".") for k in keys), (block_type, keys)
