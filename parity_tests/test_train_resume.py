"""A run killed with SIGKILL at a random step and resumed ends with the uninterrupted run's weights, bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paddle_rep.apps.convert.load import read_checkpoint
from paddle_rep.apps.training import checkpoint
from parity_tests.train_data import write_image_folder

pytest.importorskip("PIL", reason="image folders need Pillow (train extra)")
pytest.importorskip("sklearn", reason="the test images come from the digits (test extra)")

REPO = Path(__file__).resolve().parents[1]
STEPS = 10  # 2 epochs of 5 global batches of 8


def _command(root: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "paddle_rep.apps", "train", "--arch", "rep_tiny", "--data", str(root), "--out",
            str(out), "--recipe", "digits", "--override", "temp_epochs=2", "--epochs", "2", "--batch-size", "8",
            "--image-size", "8", "--ema", "--ema-decay", "0.9", "--save-every-steps", "1", "--keep-last", "2",
            "--no-export", "-q", *extra]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def _finished(out: Path) -> dict[str, dict[str, np.ndarray]]:
    return {name: read_checkpoint(out / name).state for name in ("model.pdparams", "ema.pdparams")}


def test_kill_nine_at_a_random_step_then_resume_is_bit_exact(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "data", per_class=10)  # 40 images
    reference = tmp_path / "reference"
    done = subprocess.run(_command(root, reference), env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    kill_after = int(np.random.default_rng().integers(2, STEPS - 1))  # a random step, reported on failure
    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(root, killed, "--workers", "2"), env=_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        files = checkpoint.step_files(killed)
        if files and int(files[-1].name[5:14]) >= kill_after:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before step {kill_after}: {process.stderr.read()[-2000:]}"
    os.killpg(process.pid, signal.SIGKILL)  # the trainer and its loader workers
    process.wait()
    stopped_at = int(checkpoint.step_files(killed)[-1].name[5:14])
    assert stopped_at < STEPS and not (killed / "model.pdparams").exists()

    resumed = subprocess.run(_command(root, killed, "--resume"), env=_env(), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, actual = _finished(reference), _finished(killed)
    for name in expected:
        assert set(expected[name]) == set(actual[name])
        for key in expected[name]:
            np.testing.assert_array_equal(actual[name][key], expected[name][key],
                                          err_msg=f"{name} {key} (killed after step {stopped_at})")
    lines = (killed / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2, lines  # one line per epoch, none repeated by the resume
    # the resumed process ran the remaining steps only (the equality is not that of a rerun from scratch)
    metrics = json.loads((killed / "metrics.json").read_text())
    assert len(metrics["losses"]) == STEPS - stopped_at and metrics["steps"] == STEPS
