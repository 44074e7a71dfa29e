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
    assert api._check(a0_canonical, ARCH, args, "a0") == {**args, "deploy": False}  # control: the file fits
    expected = canonical.official_shapes(arch_mod.expected_shapes(ARCH, args))
    state = canonical.weights_only(a0_canonical)
    state["linear.weight"] = np.ascontiguousarray(state["linear.weight"].T)
    pattern = r"official names.*linear\.weight: checkpoint \(1280, 10\) vs model \(10, 1280\)"
    with pytest.raises(ArchMismatchError, match=re.compile(pattern, re.S)):
        arch_mod.check_state(state, expected, ARCH, "a0")


def test_strict_check_refuses_paddle_bn_names_in_a_torch_file(a0_canonical, tmp_path) -> None:
    state = {k.replace("stage0.rbr_dense.bn.running_mean", "stage0.rbr_dense.bn._mean"): torch.from_numpy(v)
             for k, v in a0_canonical.items()}
    torch.save(state, tmp_path / "mixed.pth")
    pattern = r"missing 1: stage0\.rbr_dense\.bn\.running_mean.*unexpected 1: stage0\.rbr_dense\.bn\._mean"
    with pytest.raises(ArchMismatchError, match=re.compile(pattern, re.S)):
        convert_checkpoint(tmp_path / "mixed.pth", tmp_path / "out.pdparams", arch=ARCH, progress=False)
    assert not (tmp_path / "out.pdparams").exists()


def test_fuse_step_is_canonical_in_and_out(a0_torch, a0_canonical) -> None:
    """``_fuse`` returns torch's deployed state dict: same keys and shapes, values at the fused-kernel tolerance."""
    fused = api._fuse(a0_canonical, ARCH, {"num_classes": CLASSES}, "float32", "a0")
    expected = torch_ref.reparameterize_model(copy.deepcopy(a0_torch), inplace=True).state_dict()
    assert list(fused) == list(expected)
    assert not any(k.endswith(("._mean", "._variance")) for k in fused)
    helpers.assert_all_close([helpers.measure(k, fused[k], expected[k], "fused_kernel", "float32")
                              for k in expected if expected[k].is_floating_point()])
    # negative control: the unfused state is not the deployed one
    assert not any(k.startswith("stage0.rbr_reparam") for k in a0_canonical)


def test_each_step_sees_canonical_names_and_the_target_is_mapped_once(a0_canonical, a0_torch, tmp_path,
                                                                      monkeypatch) -> None:
    seen: dict[str, list[list[str]]] = {"check": [], "fuse": [], "verify": [], "to_target": []}

    def spy(step: str, real, pick):
        def wrapped(*args, **kwargs):
            seen[step].append(list(pick(*args, **kwargs)))
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(api, "_check", spy("check", api._check, lambda state, *a, **k: state))
    monkeypatch.setattr(api, "_fuse", spy("fuse", api._fuse, lambda state, *a, **k: state))
    monkeypatch.setattr(api, "_verify", spy("verify", api._verify, lambda arch, args, official, fused, *a, **k:
                                            [*official, *fused]))
    monkeypatch.setattr(canonical, "to_target", spy("to_target", canonical.to_target, lambda state, *a, **k: state))
    torch.save(a0_torch.state_dict(), tmp_path / "a0.pth")
    convert_checkpoint(tmp_path / "a0.pth", tmp_path / "a0.pdparams", arch=ARCH, deploy=True, verify=True,
                       input_size=SIZE, progress=False)
    assert {step: len(calls) for step, calls in seen.items()} == {"check": 1, "fuse": 1, "verify": 1, "to_target": 1}
    for step, (keys,) in seen.items():
        assert not any(k.endswith(("._mean", "._variance")) for k in keys), step
        assert any(k.endswith(".running_var") for k in keys) or step == "to_target", step
    assert seen["check"][0] == list(a0_canonical)  # the file's own names, counters included
    written = paddle.load(str(tmp_path / "a0.pdparams"), return_numpy=True)
    assert set(written) == set(interop.from_torch({k: np.zeros(1) for k in seen["to_target"][0]}))


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
    with pytest.raises(MappingError, match=r"short\.pth does not fit the model: missing \['linear\.bias'\]"):
        load_checkpoint(create_model(ARCH, num_classes=CLASSES), tmp_path / "short.pth")


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
