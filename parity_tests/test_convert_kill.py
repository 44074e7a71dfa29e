"""A conversion killed with SIGKILL leaves nothing behind and never damages the destination.

A driver process runs ``paddle-rep convert`` with one step instrumented to announce itself and stop
(reading done; data half written; data complete; both files linked under temporary names; data
renamed, sidecar not yet). The test kills it there, then checks the destination, the sidecar and the
folder, and that the next run into the folder leaves exactly the new pair (``check-sidecar`` passes).
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paddle_rep.apps.cli import EXIT_CHECKPOINT, EXIT_OK, main
from paddle_rep.apps.convert.write import remove_stale_temporaries, write_state

# Runs in the child: argv = point, announce-file, then the convert arguments.
DRIVER = r"""
import os, sys, time, pathlib
from paddle_rep.apps.convert import api, write
point, announce, args = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]

def stop():
    announce.write_text(str(os.getpid()))
    time.sleep(600)

if point == "read":
    real_read = api.read_checkpoint
    api.read_checkpoint = lambda path: (real_read(path), stop())[0]
elif point in ("writing", "writing_named"):
    if point == "writing_named":
        write._supports_unnamed = lambda: False
    real_write, calls = write._HashingWriter.write, []
    def partial(self, data):
        calls.append(1)
        if len(calls) == 6:
            stop()
        return real_write(self, data)
    write._HashingWriter.write = partial
elif point == "complete":
    real_finish = write._PendingFile.finish
    def finish(self):
        real_finish(self)
        if not self.dst.name.endswith(".json"):
            stop()
    write._PendingFile.finish = finish
elif point == "linked":
    real_link = write._PendingFile.link_name
    def link(self):
        name = real_link(self)
        if self.dst.name.endswith(".json"):
            stop()
        return name
    write._PendingFile.link_name = link
elif point == "renamed":
    real_replace = pathlib.Path.replace
    def replace(self, target):
        result = real_replace(self, target)
        if not str(target).endswith(".json"):
            stop()
        return result
    pathlib.Path.replace = replace
from paddle_rep.apps.cli import main
sys.exit(main(["convert", *args, "-q"]))
"""

POINTS = ("read", "writing", "writing_named", "complete", "linked", "renamed")
TEMP_LEFT = {"read": False, "writing": False, "writing_named": True, "complete": False, "linked": True,
             "renamed": True}  # named temporaries a kill there leaves (for the next run to remove)


def _state(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"layer{i}.conv.weight": rng.normal(size=(64, 64, 3, 3)).astype(np.float32) for i in range(12)}


def _safetensors(path: Path, seed: int) -> Path:
    with path.open("wb") as f:
        write_state(_state(seed), f, "safetensors", "torch")
    return path


@pytest.fixture()
def setting(tmp_path):
    """A folder with a good converted pair (from source A), a new source B, and foreign files that must stay."""
    old_src, new_src = _safetensors(tmp_path / "a.safetensors", 1), _safetensors(tmp_path / "b.safetensors", 2)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "model.pdparams"
    assert main(["convert", str(old_src), str(dst), "-q"]) == EXIT_OK
    foreign = {".model.pdparams.editor.tmp": b"x", "model.pdparams.paddle-rep-99999999-ab.tmp": b"y",
               f".model.pdparams.paddle-rep-{os.getpid()}-live.tmp": b"z"}  # no dot / no dead owner: not ours
    for name, data in foreign.items():
        (out / name).write_bytes(data)
    return {"new_src": new_src, "dst": dst, "out": out, "foreign": foreign,
            "old": {p.name: p.read_bytes() for p in (dst, Path(str(dst) + ".json"))}}


def _kill_at(point: str, src: Path, dst: Path, announce: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, point, str(announce), str(src), str(dst)],
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})
    deadline = time.monotonic() + 120
    while not announce.exists():
        assert proc.poll() is None, f"driver exited with {proc.returncode} before reaching {point!r}"
        assert time.monotonic() < deadline, f"driver never reached {point!r}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


def _ours(out: Path, foreign: dict) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name not in foreign)


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_leaves_destination_sidecar_and_folder_sound(point, setting, tmp_path, capsys):
    out, dst, foreign, old = setting["out"], setting["dst"], setting["foreign"], setting["old"]
    _kill_at(point, setting["new_src"], dst, tmp_path / "reached")

    left = [n for n in _ours(out, foreign) if n not in old]
    assert all(n.startswith(".model.pdparams") and ".paddle-rep-" in n and n.endswith(".tmp") for n in left), left
    assert bool(left) == TEMP_LEFT[point], left  # O_TMPFILE: a kill before the links leaves nothing at all
    sidecar = Path(str(dst) + ".json")
    if point == "renamed":  # the new file is in place, the old sidecar does not describe it: check-sidecar says so
        assert dst.read_bytes() != old[dst.name] and sidecar.read_bytes() == old[sidecar.name]
        assert main(["check-sidecar", str(dst)]) == EXIT_CHECKPOINT
        assert "does not match" in capsys.readouterr().err
    else:
        assert {n: (out / n).read_bytes() for n in old} == old  # the previous pair, byte for byte
        assert main(["check-sidecar", str(dst), "-q"]) == EXIT_OK

    # the next run into the folder removes the killed run's temporaries, and only those
    assert main(["convert", str(setting["new_src"]), str(dst), "-q"]) == EXIT_OK
    assert _ours(out, foreign) == sorted(old)
    assert all((out / n).read_bytes() == data for n, data in foreign.items())
    assert main(["check-sidecar", str(dst), "-q"]) == EXIT_OK


def test_check_sidecar_detects_a_changed_file(setting, capsys):
    dst = setting["dst"]
    assert main(["check-sidecar", str(dst)]) == EXIT_OK
    assert "ok, sha256" in capsys.readouterr().out
    data = bytearray(dst.read_bytes())
    data[-10] ^= 1
    dst.write_bytes(bytes(data))
    assert main(["check-sidecar", str(dst)]) == EXIT_CHECKPOINT
    assert "does not match" in capsys.readouterr().err
    Path(str(dst) + ".json").unlink()
    assert main(["check-sidecar", str(dst)]) == EXIT_CHECKPOINT
    assert "no sidecar" in capsys.readouterr().err


def test_stale_cleanup_spares_live_and_foreign_files(tmp_path):
    live = tmp_path / f".x.pdparams.paddle-rep-{os.getppid()}-abc.tmp"
    dead = tmp_path / ".x.pdparams.paddle-rep-99999999-abc.tmp"
    other = tmp_path / ".x.pdparams.abc.tmp"
    for path in (live, dead, other):
        path.write_bytes(b"")
    assert remove_stale_temporaries(tmp_path) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name])
