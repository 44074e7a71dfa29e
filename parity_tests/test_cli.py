"""The command line's wiring: every ``--help`` without Paddle or torch, the missing-package exit code,
one handler per subcommand named ``run_cli``, and the train defaults spelled in the CLI."""

import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paddle_rep.apps import cli

ROOT = Path(__file__).resolve().parent.parent
SUBCOMMANDS = ("convert", "list", "export", "train", "qat", "demo")

# A sitecustomize that makes ``import paddle`` / ``import torch`` (and their submodules) fail, as on a
# machine where neither is installed.
BLOCKER = '''
import sys

BLOCKED = ("paddle", "torch")


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
'''


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("no_frameworks")
    (folder / "sitecustomize.py").write_text(BLOCKER, encoding="utf-8")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT)])
    return env


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_the_blocker_blocks(blocked_env: dict[str, str]) -> None:
    """Negative control: under the blocker both frameworks fail to import."""
    for framework in ("paddle", "torch", "paddle.nn", "torch.nn"):
        result = _run(["-c", f"import {framework}"], blocked_env)
        assert result.returncode != 0 and "blocked by the test" in result.stderr, framework


@pytest.mark.parametrize("command", [[], *([name] for name in SUBCOMMANDS)], ids=["paddle-rep", *SUBCOMMANDS])
def test_help_needs_no_framework(blocked_env: dict[str, str], command: list[str]) -> None:
    result = _run(["-m", "paddle_rep.apps", *command, "--help"], blocked_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: paddle-rep"), result.stdout
    if command:
        assert command[0] in result.stdout.splitlines()[0]


def test_missing_framework_exits_with_its_code(blocked_env: dict[str, str], tmp_path: Path) -> None:
    """The handler's import of Paddle fails inside the try: exit 6, naming the pip extra."""
    result = _run(["-m", "paddle_rep.apps", "export", str(tmp_path / "m"), "--arch", "repvgg_a0"], blocked_env)
    assert result.returncode == cli.EXIT_MISSING_DEPENDENCY, result.stderr
    assert result.stderr.startswith("paddle-rep export: error:"), result.stderr
    assert "paddle-rep[cpu]" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "m.pdmodel").exists()


def test_parser_errors_inside_the_try_map_to_exit_codes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subcommand whose argument declaration needs a missing package gives exit 6, not a traceback."""

    def needs_missing_package(parser) -> None:
        raise ModuleNotFoundError("No module named 'no_such_package'", name="no_such_package")

    monkeypatch.setitem(cli.COMMANDS, "probe", cli.Command("probe", needs_missing_package, lambda args: 0))
    assert cli.main(["probe"]) == cli.EXIT_MISSING_DEPENDENCY


@pytest.mark.parametrize("name", ["export", "train", "qat", "demo"])
def test_handlers_are_run_cli_in_their_module(name: str) -> None:
    module = {"export": "exporter", "train": "train", "qat": "qat_train", "demo": "demo"}[name]
    handler = cli.COMMANDS[name].run
    assert handler.__qualname__.startswith("_lazy.")  # imported on use, not at parser build
    assert callable(importlib.import_module(f"paddle_rep.apps.{module}").run_cli)


def test_train_defaults_agree_with_train_config() -> None:
    from paddle_rep.apps.train import TrainConfig

    config = dataclasses.asdict(TrainConfig())
    assert {key: config[key] for key in cli.TRAIN_DEFAULTS} == cli.TRAIN_DEFAULTS
    args = cli.build_parser().parse_args(["train", "--out", "runs/x"])
    for key, value in cli.TRAIN_DEFAULTS.items():
        assert getattr(args, key) == value
