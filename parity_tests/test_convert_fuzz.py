"""Seeded mutation fuzz of every checkpoint reader (zip and legacy .pth, .pdparams, .safetensors, HDF5,
bfloat16 variants, and pickles carrying a code payload).

Each case damages a valid file (flipped bytes, truncation, an overwritten or deleted span) and reads it:
the only allowed outcomes are a clean read or a :class:`CheckpointError` naming the file. Any other
exception fails the case, and so does a payload that ran. The CLI is checked on one damaged file per
format: one line on stderr, exit 3, nothing written.
"""

import pickle
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from paddle_rep.apps.cli import EXIT_CHECKPOINT
from paddle_rep.apps.convert import read_checkpoint
from paddle_rep.apps.convert.bf16 import float32_to_bfloat16_bits
from paddle_rep.apps.convert.write import write_state
from paddle_rep.core.errors import CheckpointError

DEFAULT_PER_FORMAT = 30  # x 13 formats: 390 cases in the default run
SLOW_PER_FORMAT = 300  # 3,900 in the slow run
MARKER = "PAYLOAD_RAN"


class _Payload:
    """Unpickling this object touches a marker file: proof that code from the file ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _state() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"conv.weight": rng.normal(size=(8, 3, 3, 3)).astype(np.float32),
            "bn.weight": rng.normal(size=8).astype(np.float32),
            "bn.running_mean": rng.normal(size=8).astype(np.float32),
            "bn.running_var": rng.uniform(0.5, 2.0, size=8).astype(np.float32),
            "bn.num_batches_tracked": np.array(7, np.int64),
            "linear.weight": rng.normal(size=(10, 8)).astype(np.float32)}


def _paddle_state() -> dict[str, np.ndarray]:
    state = {k.replace("running_mean", "_mean").replace("running_var", "_variance"): v
             for k, v in _state().items() if "num_batches" not in k}
    state["linear.weight"] = np.ascontiguousarray(state["linear.weight"].T)
    return state


def _torch(state: dict[str, np.ndarray], bf16: bool = False) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(torch.bfloat16) if bf16 and v.dtype == np.float32 else torch.from_numpy(v)
            for k, v in state.items()}


def _bf16(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: float32_to_bfloat16_bits(v) if v.dtype == np.float32 else v for k, v in state.items()}


def _write(path: Path, container: str, state: dict[str, np.ndarray]) -> None:
    with path.open("wb") as f:
        write_state(state, f, container, "torch")


def _make_bases(folder: Path) -> dict[str, Path]:
    marker = folder / MARKER
    bases = {
        "zip.pth": lambda p: torch.save(_torch(_state()), p),
        "legacy.pth": lambda p: torch.save(_torch(_state()), p, _use_new_zipfile_serialization=False),
        "bf16.pth": lambda p: torch.save(_torch(_state(), bf16=True), p),
        "paddle4.pdparams": lambda p: p.write_bytes(pickle.dumps(
            {**_paddle_state(), "StructuredToParameterName@@": {"conv.weight": "conv2d_0.w_0"}}, protocol=4)),
        "paddle5.pdparams": lambda p: _write(p, "paddle", _paddle_state()),
        "bf16.pdparams": lambda p: _write(p, "paddle", _bf16(_paddle_state())),
        "f32.safetensors": lambda p: _write(p, "safetensors", _state()),
        "lib.safetensors": lambda p: save_file(_state(), str(p)),  # the safetensors library's own writer
        "bf16.safetensors": lambda p: _write(p, "safetensors", _bf16(_state())),
        "train.hdf5": lambda p: _write(p, "hdf5", {**_state(), "deps": np.arange(4)}),
        "payload.pdparams": lambda p: p.write_bytes(pickle.dumps({**_paddle_state(), "x": _Payload(marker)},
                                                                 protocol=4)),
        "payload.pth": lambda p: torch.save({**_torch(_state()), "x": _Payload(marker)}, p),
        "payload_legacy.pth": lambda p: torch.save({**_torch(_state()), "x": _Payload(marker)}, p,
                                                   _use_new_zipfile_serialization=False),
    }
    paths = {}
    for name, make in bases.items():
        path = folder / f"base_{name}"
        make(path)
        paths[name] = path
    return paths


FORMATS = ("zip.pth", "legacy.pth", "bf16.pth", "paddle4.pdparams", "paddle5.pdparams", "bf16.pdparams",
           "f32.safetensors", "lib.safetensors", "bf16.safetensors", "train.hdf5", "payload.pdparams",
           "payload.pth", "payload_legacy.pth")


@pytest.fixture(scope="module")
def bases(tmp_path_factory) -> dict[str, Path]:
    return _make_bases(tmp_path_factory.mktemp("bases"))


def mutate(data: bytes, seed: int) -> bytes:
    """One seeded damage: 1-8 random bytes, a truncation, an overwritten span or a deleted span."""
    rng = np.random.default_rng(seed)
    out = bytearray(data)
    kind = int(rng.integers(4))
    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            out[int(rng.integers(len(out)))] = int(rng.integers(256))
    elif kind == 1:
        out = out[: int(rng.integers(len(out)))]
    else:
        start = int(rng.integers(len(out)))
        end = min(len(out), start + int(rng.integers(1, 65)))
        if kind == 2:
            out[start:end] = rng.integers(0, 256, end - start, dtype=np.uint8).tobytes()
        else:
            del out[start:end]
    return bytes(out)


def _fuzz(base: Path, name: str, seeds: range, folder: Path) -> Counter:
    data = base.read_bytes()
    marker = base.parent / MARKER
    outcomes: Counter = Counter()
    for seed in seeds:
        path = folder / f"damaged_{seed}_{name}"
        path.write_bytes(mutate(data, seed))
        try:
            loaded = read_checkpoint(path)
        except CheckpointError as err:
            assert str(path) in str(err) and err.path == str(path), (seed, err)
            assert "\n" not in str(err), (seed, err)  # the CLI prints it as one line
            outcomes["typed error"] += 1
        except Exception as err:  # noqa: BLE001 - the point of the test: anything else is a failure
            pytest.fail(f"{name} seed {seed}: {type(err).__name__}: {err}")
        else:
            assert loaded.state and all(isinstance(v, np.ndarray) for v in loaded.state.values())
            outcomes["clean read"] += 1
        assert not marker.exists(), f"{name} seed {seed}: code from the file ran"
        path.unlink()
    return outcomes


@pytest.mark.parametrize("name", FORMATS)
def test_fuzz_reader(name, bases, tmp_path):
    outcomes = _fuzz(bases[name], name, range(DEFAULT_PER_FORMAT), tmp_path)
    assert outcomes["typed error"] > 0, outcomes  # the damage reached the parser
    print(name, dict(outcomes))


@pytest.mark.slow
@pytest.mark.parametrize("name", FORMATS)
def test_fuzz_reader_slow(name, bases, tmp_path):
    outcomes = _fuzz(bases[name], name, range(DEFAULT_PER_FORMAT, DEFAULT_PER_FORMAT + SLOW_PER_FORMAT), tmp_path)
    assert outcomes["typed error"] > 0, outcomes
    print(name, dict(outcomes))


@pytest.mark.parametrize("name", FORMATS)
def test_undamaged_bases_read(name, bases):
    """Control: the bases themselves read cleanly (payload ones: refused), so the damage is what fails."""
    if name.startswith("payload"):
        with pytest.raises(CheckpointError, match="refused"):
            read_checkpoint(bases[name])
    else:
        assert set(read_checkpoint(bases[name]).state) >= {"conv.weight", "bn.weight"}


def test_payload_is_live(bases, tmp_path):
    """Control: the payload runs under an ordinary unpickler, so 'no marker' means the readers refused it."""
    marker = bases["payload.pdparams"].parent / MARKER
    pickle.loads(bases["payload.pdparams"].read_bytes())
    assert marker.exists()
    marker.unlink()
    torch.load(bases["payload.pth"], weights_only=False)
    assert marker.exists()
    marker.unlink()


def _first_typed_failure(base: Path, name: str, folder: Path) -> Path:
    for seed in range(1000):
        path = folder / f"damaged_{name}"
        path.write_bytes(mutate(base.read_bytes(), seed))
        try:
            read_checkpoint(path)
        except CheckpointError:
            return path
    raise AssertionError(f"no damaged {name} failed")


@pytest.mark.parametrize("name", ["zip.pth", "legacy.pth", "paddle4.pdparams", "bf16.safetensors", "train.hdf5"])
def test_cli_on_damaged_file_one_line_exit_3(name, bases, tmp_path):
    src = _first_typed_failure(bases[name], name, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "paddle_rep.apps", "convert", str(src), str(out / "x.pdparams")],
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == EXIT_CHECKPOINT, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("paddle-rep convert: error: ") and str(src) in lines[0], lines
    assert list(out.iterdir()) == []
