"""ACNet's HDF5 weight files: the train-form ``finish.hdf5`` (``utils.misc.save_hdf5``: one dataset per
state-dict key, ``/`` stored as ``+``, plus ``deps``) and the fused ``finish_deploy.hdf5``
(``acnet_fusion.convert_acnet_weights``), read strictly, verified, written back, and refused when bad.

The official files are produced here the way the official functions write them: ``_official_save_hdf5``
and ``_official_fuse`` follow the layout and the fusion formula (written for this test, numpy only).
"""

import json
import logging
import re
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import torch_ref
from paddle_rep.apps.cli import EXIT_CHECKPOINT, EXIT_MISSING_DEPENDENCY, EXIT_OK, EXIT_USAGE, main
from paddle_rep.apps.convert import convert_checkpoint, read_checkpoint
from paddle_rep.core.errors import CheckpointError, UnsupportedDtypeError
from parity_tests.helpers import assert_all_close, assert_close, measure, randomize_bn

ARCH = "acnet_cifar_quick"
DEPS = np.array([32, 32, 64], dtype=np.int64)
OLD_BYTES = b"previous destination, must survive"
BN_EPS = 1e-5  # what do_acnet.py passes to convert_acnet_weights


def _train_state() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = torch_ref.create_model(ARCH, num_classes=10)
    randomize_bn(model, np.random.default_rng(0))
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _official_save_hdf5(state: dict[str, np.ndarray], path: Path) -> None:
    with h5py.File(path, "w") as f:
        for key, value in state.items():
            f.create_dataset(str(key).replace("/", "+"), data=value)


def _official_fuse(train: dict[str, np.ndarray], eps: float = BN_EPS) -> dict[str, np.ndarray]:
    """The fused dict as convert_acnet_weights builds it: fold each BN, add the 1xk/kx1 kernels at the centre."""
    deploy = {}
    for name in [k for k in train if "square_conv.weight" in k]:
        prefix = name[: -len("square_conv.weight")]
        kernel = np.zeros_like(train[name])
        bias = 0.0
        for branch in ("square", "ver", "hor"):
            k = train[f"{prefix}{branch}_conv.weight"]
            std = np.sqrt(train[f"{prefix}{branch}_bn.running_var"] + eps)
            gamma, beta, mean = (train[f"{prefix}{branch}_bn.{leaf}"] for leaf in ("weight", "bias", "running_mean"))
            folded = k * (gamma / std).reshape(-1, 1, 1, 1)
            top = kernel.shape[2] // 2 - k.shape[2] // 2
            left = kernel.shape[3] // 2 - k.shape[3] // 2
            kernel[:, :, top:top + k.shape[2], left:left + k.shape[3]] += folded
            bias = bias + beta - mean * gamma / std
        deploy[f"{prefix}fused_conv.weight"] = kernel
        deploy[f"{prefix}fused_conv.bias"] = bias
    deploy.update({k: v for k, v in train.items() if not any(s in k for s in ("hor_", "ver_", "square_"))})
    return deploy


@pytest.fixture(scope="module")
def train_state() -> dict[str, np.ndarray]:
    return _train_state()


@pytest.fixture(scope="module")
def finish(tmp_path_factory, train_state) -> Path:
    path = tmp_path_factory.mktemp("acnet") / "finish.hdf5"
    _official_save_hdf5({**train_state, "deps": DEPS}, path)
    return path


@pytest.fixture(scope="module")
def finish_deploy(tmp_path_factory, train_state) -> Path:
    path = tmp_path_factory.mktemp("acnet") / "finish_deploy.hdf5"
    _official_save_hdf5({**_official_fuse(train_state), "deps": DEPS}, path)
    return path


def _hdf5_arrays(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f}


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_read_train_hdf5_reports_deps_and_leaves_it_out(finish, train_state):
    loaded = read_checkpoint(finish)
    assert loaded.container == "hdf5" and loaded.framework == "torch"
    assert set(loaded.state) == set(train_state)  # deps is not a weight
    for key, value in train_state.items():
        np.testing.assert_array_equal(loaded.state[key], value, err_msg=key)
    np.testing.assert_array_equal(loaded.extras["deps"], DEPS)


def test_train_hdf5_strict_deploy_verify(finish, tmp_path, capsys, caplog):
    caplog.set_level(logging.WARNING, logger="paddle_rep")  # an earlier `main(... -q)` may have raised the level
    dst = tmp_path / "acnet.pdparams"
    assert main(["convert", str(finish), str(dst), "--arch", ARCH, "--deploy", "--verify"]) == EXIT_OK
    out = capsys.readouterr()
    assert "paddle fused vs torch (eval)" in out.out
    assert any("left out non-weight entries deps" in r.getMessage() for r in caplog.records)
    sidecar = json.loads(dst.with_name(dst.name + ".json").read_text())
    assert sidecar["source_format"] == "hdf5" and sidecar["deploy"] is True
    assert sidecar["non_weight_entries"]["deps"] == {"shape": [3], "dtype": "int64", "values": DEPS.tolist()}
    assert all(r["ok"] for r in sidecar["verify"]) and len(sidecar["verify"]) == 2
    import paddle

    state = paddle.load(str(dst), return_numpy=True)
    assert "deps" not in state and any(k.endswith("fused_conv.weight") for k in state)


def test_train_hdf5_strict_check_refuses_a_missing_key(train_state, tmp_path):
    state = dict(train_state)
    del state["conv1.acb.hor_conv.weight"]
    src = tmp_path / "finish.hdf5"
    _official_save_hdf5(state, src)
    with pytest.raises(CheckpointError, match=r"missing 1: conv1\.acb\.hor_conv\.weight"):
        convert_checkpoint(src, tmp_path / "x.pdparams", arch=ARCH, progress=False)


def test_official_deploy_hdf5_into_deploy_model(finish_deploy, train_state, tmp_path):
    """finish_deploy.hdf5 loads strictly into deploy=True models; outputs match torch_ref's fused model."""
    report = convert_checkpoint(finish_deploy, tmp_path / "deploy.pdparams", arch=ARCH, verify=True,
                                input_size=32, progress=False)
    assert report.model_args["deploy"] is True and all(r["ok"] for r in report.verify)
    # independent check of the official file: torch_ref's own fusion of the train weights gives the same model
    torch.manual_seed(0)
    model = torch_ref.create_model(ARCH, num_classes=10)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in train_state.items()})
    fused = torch_ref.reparameterize_model(model.eval(), inplace=False)
    deploy = torch_ref.create_model(ARCH, num_classes=10, deploy=True).eval()
    deploy.load_state_dict({k: torch.from_numpy(v) for k, v in read_checkpoint(finish_deploy).state.items()})
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        result = assert_close("official deploy file vs torch_ref fusion", deploy(x), fused(x), "official_fusion",
                              "float32")
    print(result)


def test_deploy_to_hdf5_matches_the_official_fusion(finish, train_state, tmp_path):
    """--deploy --to hdf5 writes what convert_acnet_weights writes: the same keys (deps too), the same numbers."""
    dst = tmp_path / "finish_deploy.hdf5"
    report = convert_checkpoint(finish, dst, arch=ARCH, deploy=True, verify=True, input_size=32, progress=False)
    assert [r["what"] for r in report.verify][-1] == "torch fused (written) vs torch (eval)"
    ours = _hdf5_arrays(dst)
    official = {**_official_fuse(train_state), "deps": DEPS}
    assert set(ours) == set(official)
    results = [measure(key, ours[key], official[key], "fused_kernel", "float32") for key in official
               if key.endswith(("fused_conv.weight", "fused_conv.bias"))]
    assert len(results) == 6  # three ACBlocks
    assert_all_close(results)
    for key in official:
        if "fused_conv" not in key:
            np.testing.assert_array_equal(ours[key], official[key], err_msg=key)
    # negative control: a fusion with another BN eps (1e-3) is caught by the same comparison
    wrong = _official_fuse(train_state, eps=1e-3)
    assert not all(measure(k, ours[k], wrong[k], "fused_kernel", "float32").ok for k in wrong if "fused_conv" in k)


def test_hdf5_round_trip_same_arrays(finish, tmp_path):
    """hdf5 -> hdf5 returns the same datasets (deps included); hdf5 -> .pdparams -> hdf5 the same weights."""
    direct = tmp_path / "direct.hdf5"
    report = convert_checkpoint(finish, direct, dtype="keep", progress=False)
    assert report.to == "hdf5"
    original = _hdf5_arrays(finish)
    again = _hdf5_arrays(direct)
    assert set(again) == set(original)
    for key, value in original.items():
        assert again[key].dtype == value.dtype, key
        np.testing.assert_array_equal(again[key], value, err_msg=key)

    paddle_file = tmp_path / "via.pdparams"
    convert_checkpoint(finish, paddle_file, progress=False)
    back = tmp_path / "back.h5"
    assert main(["convert", str(paddle_file), str(back), "--to", "hdf5", "-q"]) == EXIT_OK
    returned = _hdf5_arrays(back)
    assert set(returned) == set(original) - {"deps"}
    for key in returned:
        np.testing.assert_array_equal(returned[key], original[key], err_msg=key)


def test_plus_maps_to_slash_and_back(tmp_path):
    src = tmp_path / "slash.hdf5"
    _official_save_hdf5({"head/fc.weight": np.ones((2, 3), np.float32), "7": np.arange(2)}, src)
    with h5py.File(src, "r") as f:
        assert list(f) == ["7", "head+fc.weight"]  # what save_hdf5 stores
    loaded = read_checkpoint(src)
    assert list(loaded.state) == ["head/fc.weight"] and list(loaded.extras) == ["7"]  # all-digit: not a weight
    dst = tmp_path / "again.hdf5"
    convert_checkpoint(src, dst, progress=False)
    assert set(_hdf5_arrays(dst)) == {"head+fc.weight", "7"}


def _bad_string(f):
    f.create_dataset("conv.weight", data=np.ones(3, np.float32))
    f.create_dataset("bn.weight", data=np.array([b"abc", b"de"]))


def _bad_vlen_string(f):
    f.create_dataset("conv.weight", data=np.ones(3, np.float32))
    f.create_dataset("bn.weight", data=["text"], dtype=h5py.string_dtype())


def _bad_group(f):
    f.create_dataset("conv.weight", data=np.ones(3, np.float32))
    f.create_group("bn.weight").create_dataset("inner", data=np.ones(2))


def _bad_compound(f):
    f.create_dataset("bn.weight", data=np.zeros(2, dtype=[("a", "f4"), ("b", "i4")]))


def _bad_soft_link(f):
    f.create_dataset("conv.weight", data=np.ones(3, np.float32))
    f["bn.weight"] = h5py.SoftLink("/conv.weight")


def _bad_external_link(f):
    f["bn.weight"] = h5py.ExternalLink("/etc/passwd", "/x")


BAD = {  # name -> (writer, key named in the error, message pattern)
    "string": (_bad_string, "bn.weight", r"non-numeric dtype"),
    "vlen_string": (_bad_vlen_string, "bn.weight", r"non-numeric dtype object"),
    "group": (_bad_group, "bn.weight", r"is an HDF5 group, expected a dataset"),
    "compound": (_bad_compound, "bn.weight", r"non-numeric dtype"),
    "soft_link": (_bad_soft_link, "bn.weight", r"SoftLink, expected a dataset"),
    "external_link": (_bad_external_link, "bn.weight", r"ExternalLink, expected a dataset"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_hdf5_typed_error_names_key_writes_nothing(case, tmp_path):
    writer, key, pattern = BAD[case]
    src = tmp_path / "in" / "bad.hdf5"
    src.parent.mkdir()
    with h5py.File(src, "w") as f:
        writer(f)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(CheckpointError, match=re.escape(str(src)) + f".*'{re.escape(key)}'.*{pattern}") as info:
        convert_checkpoint(src, out / "x.pdparams", progress=False)
    assert info.value.key == key and info.value.path == str(src)
    assert _listing(out) == []
    (out / "x.pdparams").write_bytes(OLD_BYTES)
    assert main(["convert", str(src), str(out / "x.pdparams"), "-q"]) == EXIT_CHECKPOINT
    assert (out / "x.pdparams").read_bytes() == OLD_BYTES and _listing(out) == ["x.pdparams"]


def test_truncated_hdf5(finish, tmp_path):
    src = tmp_path / "truncated.hdf5"
    src.write_bytes(finish.read_bytes()[: finish.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.hdf5: corrupt or truncated HDF5 file"):
        convert_checkpoint(src, tmp_path / "x.pdparams", progress=False)
    assert _listing(tmp_path) == ["truncated.hdf5"]


def test_hdf5_holds_no_bfloat16(finish, tmp_path, capsys):
    with pytest.raises(UnsupportedDtypeError, match="HDF5 has no bfloat16"):
        convert_checkpoint(finish, tmp_path / "x.hdf5", dtype="bfloat16", progress=False)
    assert main(["convert", str(finish), str(tmp_path / "x.hdf5"), "--dtype", "bfloat16"]) == EXIT_USAGE
    assert "HDF5 has no bfloat16" in capsys.readouterr().err
    assert not (tmp_path / "x.hdf5").exists()


def test_missing_h5py_names_the_extra(finish, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(ImportError, match=r"paddle-rep\[hdf5\]"):
        read_checkpoint(finish)
    assert main(["convert", str(finish), str(tmp_path / "x.pdparams")]) == EXIT_MISSING_DEPENDENCY
    assert "pip install 'paddle-rep[hdf5]'" in capsys.readouterr().err
