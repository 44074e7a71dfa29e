"""bfloat16 checkpoints: read from .safetensors (without torch), .pth and Paddle .pdparams (uint16 arrays);
``--dtype bfloat16`` writes rounded exactly as torch rounds float32; non-finite values are named.
"""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import torch_ref
from paddle_rep.apps.cli import EXIT_OK, EXIT_USAGE, EXIT_VERIFY, main
from paddle_rep.apps.convert import convert_checkpoint, read_checkpoint
from paddle_rep.apps.convert.bf16 import float32_to_bfloat16_bits
from paddle_rep.core.errors import VerificationError
from parity_tests.helpers import randomize_bn

ARCH = "acnet_cifar_quick"


def _torch_bits(values: np.ndarray) -> np.ndarray:
    return torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def _awkward_floats() -> np.ndarray:
    """Random normals and every case rounding can get wrong: ties both ways, subnormals, overflow, NaN."""
    rng = np.random.default_rng(0)
    bits = [rng.integers(0, 2**32, 20000, dtype=np.uint64).astype(np.uint32)]
    halves = rng.integers(0, 2**16, 2000, dtype=np.uint64).astype(np.uint32) << 16
    bits += [halves | 0x8000, halves | 0x7FFF, halves | 0x8001]  # exact ties, just below, just above
    bits += [np.array([0x7F7FFFFF, 0xFF7FFFFF, 0x7F7F8000, 0x00000001, 0x807FFFFF, 0x80000000, 0x7F800000,
                       0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001], dtype=np.uint32)]
    normals = rng.normal(0, 3, 20000).astype(np.float32)
    return np.concatenate([np.concatenate(bits).view(np.float32), normals])


def test_rounding_matches_torch_bit_for_bit():
    values = _awkward_floats()
    ours, theirs = float32_to_bfloat16_bits(values), _torch_bits(values)
    nan = np.isnan(values)
    np.testing.assert_array_equal(ours[~nan], theirs[~nan])
    # NaN stays NaN (torch's canonical quiet NaN, whatever the payload)
    assert (ours[nan] == 0x7FC0).all() and np.isnan((theirs[nan].astype(np.uint32) << 16).view(np.float32)).all()


def test_rounding_control_truncation_differs_from_torch():
    """Negative control: plain truncation (not round-to-nearest-even) fails the comparison above."""
    values = _awkward_floats()
    finite = np.isfinite(values)
    truncated = (values.view(np.uint32) >> 16).astype(np.uint16)
    assert (truncated[finite] != _torch_bits(values)[finite]).sum() > 1000


def _acnet_state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = torch_ref.create_model(ARCH, num_classes=10)
    randomize_bn(model, np.random.default_rng(seed))
    return model.state_dict()


def _bf16_state() -> dict[str, torch.Tensor]:
    return {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in _acnet_state().items()}


@pytest.fixture(scope="module")
def bf16_safetensors(tmp_path_factory) -> Path:
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("bf16") / "acnet_bf16.safetensors"
    save_file(_bf16_state(), str(path))  # the safetensors library's own BF16 writer
    return path


def test_bf16_safetensors_reads_without_torch(bf16_safetensors, tmp_path):
    code = ("import sys, numpy as np; from paddle_rep.apps.convert import read_checkpoint; "
            f"c = read_checkpoint({str(bf16_safetensors)!r}); "
            "assert 'torch' not in sys.modules and 'paddle' not in sys.modules; "
            f"np.savez({str(tmp_path / 'read.npz')!r}, **c.state); print(len(c.bf16_keys))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"}).stdout
    expected = _bf16_state()
    assert int(out) == sum(v.is_floating_point() for v in expected.values())
    read = np.load(tmp_path / "read.npz")
    for key, value in expected.items():
        np.testing.assert_array_equal(read[key], value.float().numpy() if value.is_floating_point() else value.numpy())


def test_bf16_safetensors_converts_with_verify(bf16_safetensors, tmp_path):
    report = convert_checkpoint(bf16_safetensors, tmp_path / "a.pdparams", arch=ARCH, deploy=True, verify=True,
                                input_size=32, progress=False)
    assert all(r["ok"] for r in report.verify) and report.source_bfloat16


def test_bf16_pth_reads_exactly(tmp_path):
    path = tmp_path / "bf16.pth"
    torch.save(_bf16_state(), path)
    loaded = read_checkpoint(path)
    for key, value in _bf16_state().items():
        if value.is_floating_point():
            assert loaded.state[key].dtype == np.float32 and key in loaded.bf16_keys
            np.testing.assert_array_equal(loaded.state[key], value.float().numpy())


def test_paddle_bf16_pdparams(tmp_path):
    """Paddle saves bfloat16 parameters as uint16 arrays; they convert to the same float32 values."""
    import paddle

    linear = paddle.nn.Linear(4, 3)
    linear.to(dtype="bfloat16")
    path = tmp_path / "bf16.pdparams"
    paddle.save(linear.state_dict(), str(path))
    loaded = read_checkpoint(path)
    assert sorted(loaded.bf16_keys) == ["bias", "weight"]
    for key, value in linear.state_dict().items():
        np.testing.assert_array_equal(loaded.state[key], value.astype("float32").numpy())
    # and back: --dtype keep writes uint16 arrays that Paddle loads into a bfloat16 model
    out = tmp_path / "again.pdparams"
    convert_checkpoint(path, tmp_path / "t.pth", to="torch", dtype="keep", progress=False)
    convert_checkpoint(tmp_path / "t.pth", out, dtype="keep", progress=False)
    other = paddle.nn.Linear(4, 3)
    other.to(dtype="bfloat16")
    other.set_state_dict(paddle.load(str(out)))
    for key, value in linear.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[key].astype("float32").numpy(),
                                      value.astype("float32").numpy())


@pytest.fixture(scope="module")
def f32_pth(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("f32") / "acnet.pth"
    torch.save(_acnet_state(), path)
    return path


def _expected_bf16(key: str) -> torch.Tensor:
    return _acnet_state()[key].to(torch.bfloat16)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_dtype_bfloat16_torch_targets(f32_pth, tmp_path, suffix):
    dst = tmp_path / f"out{suffix}"
    assert main(["convert", str(f32_pth), str(dst), "--to", "torch", "--dtype", "bfloat16", "-q"]) == EXIT_OK
    if suffix == ".pth":
        state = torch.load(dst, weights_only=True)
    else:
        from safetensors.torch import load_file

        state = load_file(str(dst))
    for key, value in _acnet_state().items():
        if value.is_floating_point():
            assert state[key].dtype == torch.bfloat16, key
            assert torch.equal(state[key].view(torch.int16), _expected_bf16(key).view(torch.int16)), key
        else:
            assert torch.equal(state[key], value)


def test_dtype_bfloat16_pdparams_loads_into_paddle(f32_pth, tmp_path):
    import paddle

    from paddle_rep import create_model

    dst = tmp_path / "out.pdparams"
    convert_checkpoint(f32_pth, dst, arch=ARCH, dtype="bfloat16", progress=False)
    raw = paddle.load(str(dst), return_numpy=True)
    assert raw["conv1.acb.square_conv.weight"].dtype == np.uint16
    model = create_model(ARCH, num_classes=10)
    model.to(dtype="bfloat16")
    missing, unexpected = model.set_state_dict(paddle.load(str(dst)))
    assert not missing and not unexpected
    got = model.state_dict()["conv1.acb.square_conv.weight"].astype("float32").numpy()
    np.testing.assert_array_equal(got, _expected_bf16("conv1.acb.square_conv.weight").float().numpy())


def test_bfloat16_with_verify_is_a_usage_error(f32_pth, tmp_path):
    assert main(["convert", str(f32_pth), str(tmp_path / "x.pdparams"), "--arch", ARCH, "--verify",
                 "--dtype", "bfloat16", "-q"]) == EXIT_USAGE


@pytest.fixture(scope="module")
def non_finite_pth(tmp_path_factory) -> Path:
    state = _acnet_state()
    state["conv1.acb.square_conv.weight"][0, 0, 0, 0] = float("nan")
    state["fc2.bias"][1] = float("inf")
    path = tmp_path_factory.mktemp("nan") / "nan.pth"
    torch.save(state, path)
    return path


def test_non_finite_keys_named_in_warning_and_sidecar(non_finite_pth, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="paddle_rep")  # an earlier `main(... -q)` may have raised the level
    dst = tmp_path / "x.pdparams"
    report = convert_checkpoint(non_finite_pth, dst, progress=False)
    assert report.non_finite == ["conv1.acb.square_conv.weight", "fc2.bias"]
    assert any("hold NaN or Inf: conv1.acb.square_conv.weight, fc2.bias" in r.getMessage() for r in caplog.records)
    sidecar = json.loads(Path(str(dst) + ".json").read_text())
    assert sidecar["non_finite"] == ["conv1.acb.square_conv.weight", "fc2.bias"]


def test_non_finite_verify_says_the_checkpoint_holds_them(non_finite_pth, tmp_path, capsys):
    dst = tmp_path / "x.pdparams"
    with pytest.raises(VerificationError, match="the checkpoint itself holds non-finite values") as info:
        convert_checkpoint(non_finite_pth, dst, arch=ARCH, verify=True, progress=False)
    assert "rel nan" not in str(info.value) and "conv1.acb.square_conv.weight" in str(info.value)
    assert main(["convert", str(non_finite_pth), str(dst), "--arch", ARCH, "--verify", "-q"]) == EXIT_VERIFY
    err = capsys.readouterr().err
    assert "checkpoint itself holds non-finite values" in err and "rel nan" not in err
    assert not dst.exists()
