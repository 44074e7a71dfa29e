"""The package layout's import rules, read from the source (AST of every module, no import run).

- the library (``paddle_rep`` outside ``paddle_rep/apps``) never imports the applications
  (``paddle_rep.apps``), torch, ``torch_ref`` or tqdm; the applications may import the library;
- ``paddle_rep/core`` imports neither framework, only the standard library, numpy and itself;
- ``torch_ref`` imports no Paddle, and of ``paddle_rep`` only ``paddle_rep.core``;
- the applications import torch (or ``torch_ref``) only in the modules listed in
  :data:`TORCH_ALLOWED`, each for a reason given there;
- no module (other than a package's ``__init__``) exists only to re-export another.
"""

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Modules of paddle_rep.apps that may import torch or torch_ref, each for a reason.
TORCH_ALLOWED = {
    "paddle_rep.apps.bench": {"torch", "torch_ref"},  # times torch_ref next to paddle_rep
    "paddle_rep.apps.bench_convert": {"torch", "torch_ref"},  # writes the checkpoint it times the converter on
    "paddle_rep.apps.convert.arch": {"torch_ref"},  # builds the torch reference model for the strict check
    "paddle_rep.apps.convert.load": {"torch"},  # reads .pth files (restricted unpickler)
    "paddle_rep.apps.convert.verify": {"torch", "torch_ref"},  # runs the torch reference to verify a conversion
    "paddle_rep.apps.convert.write": {"torch"},  # writes .pth files
    "paddle_rep.apps.demo": {"torch", "torch_ref"},  # the demo trains the torch reference first
    "paddle_rep.apps.parity": {"torch"},  # seeded BN state and train steps of both frameworks (suite and bench)
}
# What the library never imports, at any depth (inside functions too).
LIBRARY_FORBIDDEN = ("paddle_rep.apps", "torch", "torch_ref", "tqdm")
FRAMEWORKS = ("paddle", "torch", "torch_ref")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, source: str | None = None) -> set[str]:
    """Absolute names of every module the file imports, at any depth (relative imports resolved).

    ``source`` stands in for the file's text (the negative controls use it).
    """
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names.add(prefix)
            # ``from . import x`` / ``from pkg import sub`` may import a submodule: count pkg.x too
            names.update(f"{prefix}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def _is_under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _files(folder: str) -> list[Path]:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files, f"no Python files under {folder}"
    return files


def core_violations(path: Path, source: str | None = None) -> list[str]:
    """Imports of a paddle_rep/core module that break the core's rule."""
    bad = []
    for name in _imports(path, source):
        top = _top(name)
        if top in FRAMEWORKS:
            bad.append(f"{name} (a framework)")
        elif top == "paddle_rep" and not _is_under(name, "paddle_rep.core"):
            # ``from . import x`` inside core resolves to paddle_rep.core.x, so this is outside core
            bad.append(f"{name} (paddle_rep outside core)")
        elif top not in ("paddle_rep", "numpy") and top not in sys.stdlib_module_names:
            bad.append(f"{name} (not stdlib or numpy)")
    return bad


def torch_ref_violations(path: Path, source: str | None = None) -> list[str]:
    """Imports of a torch_ref module that break its rule."""
    bad = []
    for name in _imports(path, source):
        if _top(name) == "paddle":
            bad.append(f"{name} (Paddle)")
        elif _top(name) == "paddle_rep" and name != "paddle_rep" and not _is_under(name, "paddle_rep.core"):
            bad.append(f"{name} (paddle_rep outside core)")
        elif name == "paddle_rep":
            bad.append("paddle_rep (its __init__ is the Paddle package; import paddle_rep.core.*)")
    return bad


def paddle_rep_torch_imports(path: Path, source: str | None = None) -> set[str]:
    """``torch`` / ``torch_ref`` if the module imports them anywhere."""
    return {_top(name) for name in _imports(path, source) if _top(name) in ("torch", "torch_ref")}


@pytest.mark.parametrize("path", _files("paddle_rep/core"), ids=lambda p: p.name)
def test_core_imports_no_framework(path: Path) -> None:
    assert core_violations(path) == []


@pytest.mark.parametrize("path", _files("torch_ref"), ids=lambda p: str(p.relative_to(ROOT)))
def test_torch_ref_imports_only_the_core(path: Path) -> None:
    assert torch_ref_violations(path) == []


def library_violations(path: Path, source: str | None = None) -> list[str]:
    """Imports of a library module (paddle_rep outside apps) that break the library/applications rule."""
    return sorted(name for name in _imports(path, source) if any(_is_under(name, bad) for bad in LIBRARY_FORBIDDEN))


def _is_library(path: Path) -> bool:
    return not _is_under(_module_name(path), "paddle_rep.apps")


@pytest.mark.parametrize("path", [p for p in _files("paddle_rep") if _is_library(p)],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_library_never_imports_the_applications(path: Path) -> None:
    assert library_violations(path) == []


def test_torch_in_the_applications_only_where_needed() -> None:
    found = {}
    for path in _files("paddle_rep/apps"):
        tops = paddle_rep_torch_imports(path)
        if tops:
            found[_module_name(path)] = tops
    assert found == TORCH_ALLOWED


def test_the_walker_sees_what_it_must_refuse() -> None:
    """Negative control: each rule fires on source that breaks it (the walk is not vacuous)."""
    core = ROOT / "paddle_rep" / "core" / "probe.py"
    core_source = ("import numpy\nimport paddle.nn\nfrom .. import fusion\nfrom .errors import ReparamError\n"
                   "def f():\n    import torch\n    import scipy\n")
    assert sorted(core_violations(core, core_source)) == [
        "paddle.nn (a framework)", "paddle_rep (paddle_rep outside core)",
        "paddle_rep.fusion (paddle_rep outside core)",
        "scipy (not stdlib or numpy)", "torch (a framework)",
    ]
    ref = ROOT / "torch_ref" / "models" / "probe.py"
    ref_source = ("import torch\nfrom paddle_rep.models import _specs\nfrom paddle_rep.core import checks\n"
                  "import paddle_rep\ndef f():\n    from paddle import nn\n")
    assert sorted(torch_ref_violations(ref, ref_source)) == [
        "paddle (Paddle)", "paddle.nn (Paddle)",
        "paddle_rep (its __init__ is the Paddle package; import paddle_rep.core.*)",
        "paddle_rep.models (paddle_rep outside core)", "paddle_rep.models._specs (paddle_rep outside core)",
    ]
    demo = ROOT / "paddle_rep" / "apps" / "probe.py"
    assert paddle_rep_torch_imports(demo, "from . import cli\ndef f():\n    import torch_ref.models\n") == {"torch_ref"}
    library = ROOT / "paddle_rep" / "probe.py"
    library_source = ("from .apps import exporter\nfrom .core import errors\nimport numpy\ndef f():\n"
                      "    from paddle_rep.apps.convert import load\n    import torch\n    from tqdm import tqdm\n")
    assert library_violations(library, library_source) == [
        "paddle_rep.apps", "paddle_rep.apps.convert", "paddle_rep.apps.convert.load", "paddle_rep.apps.exporter",
        "torch", "tqdm", "tqdm.tqdm",
    ]
    assert library_violations(library, "from . import fusion\nfrom .core.errors import MappingError\n") == []


# ---------------------------------------------------------------- no re-export shims


def is_reexport_shim(source: str) -> bool:
    """A module whose body is nothing but imports (after its docstring and an optional ``__all__``)."""
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    rest = [node for node in body if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                                          and getattr(node.targets[0], "id", None) == "__all__")]
    return bool(rest) and all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in rest)


@pytest.mark.parametrize("package", ["paddle_rep", "torch_ref"])
def test_no_module_only_re_exports(package: str) -> None:
    shims = [str(p.relative_to(ROOT)) for p in _files(package)
             if p.name not in ("__init__.py", "__main__.py") and is_reexport_shim(p.read_text(encoding="utf-8"))]
    assert shims == []


def test_the_shim_check_sees_a_shim() -> None:
    """Negative control: the old ``paddle_rep/errors.py`` shape is a shim, a real module is not."""
    assert is_reexport_shim('"""Old home."""\n\nfrom .core.errors import CheckpointError as CheckpointError\n')
    assert is_reexport_shim("from .core import interop as _core\nfrom .core.interop import to_numpy\n__all__ = []\n")
    assert not is_reexport_shim('"""Real."""\nimport numpy\n\ndef f():\n    return numpy.zeros(1)\n')


# ---------------------------------------------------------------- the public API, written once


def _export_table(init: Path) -> dict[str, str]:
    """``_EXPORTS`` (name -> submodule) of a package ``__init__``."""
    for node in ast.parse(init.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name) and node.targets[0].id == "_EXPORTS":
            return ast.literal_eval(node.value)
    raise AssertionError(f"{init} has no _EXPORTS")


def export_table_errors(package: str, table: dict[str, str]) -> list[str]:
    """Entries of ``table`` whose submodule has no such name."""
    return [f"{name}: {package}.{module} has no such name" for name, module in table.items()
            if not hasattr(importlib.import_module(f"{package}.{module}"), name)]


@pytest.mark.parametrize("package", ["paddle_rep", "paddle_rep.apps", "paddle_rep.models", "torch_ref"])
def test_public_api_is_one_table(package: str) -> None:
    """``__all__`` is the table's keys, each name resolves from the module that defines it."""
    table = _export_table(ROOT / package.replace(".", "/") / "__init__.py")
    module = importlib.import_module(package)
    assert module.__all__ == sorted(table)
    assert export_table_errors(package, table) == []
    for name, defined_in in table.items():
        assert getattr(module, name) is getattr(importlib.import_module(f"{package}.{defined_in}"), name)


def test_the_api_check_sees_a_wrong_entry() -> None:
    """Negative control: a name pointed at a module that lacks it is reported."""
    assert export_table_errors("paddle_rep", {"ODConv2D": "acblock", "ACBlock": "acblock"}) == [
        "ODConv2D: paddle_rep.acblock has no such name",
    ]


@pytest.mark.parametrize("old", ["ReparamError", "ConversionError", "set_bn_running_var_mode", "set_running_var_mode",
                                 "convert_model", "revert_model", "export", "convert_checkpoint"])
def test_old_names_are_gone(old: str) -> None:
    import paddle_rep

    assert old not in paddle_rep.__all__
    with pytest.raises(AttributeError):
        getattr(paddle_rep, old)


@pytest.mark.parametrize("old", ["paddle_rep.errors", "paddle_rep.interop", "paddle_rep.schedules",
                                 "paddle_rep._validate", "paddle_rep._surgery_common", "paddle_rep._lazy",
                                 "paddle_rep._logging", "paddle_rep.exporter", "paddle_rep.convert", "paddle_rep.cli",
                                 "paddle_rep.core.deprecation"])
def test_old_module_paths_are_gone(old: str) -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(old)


# ---------------------------------------------------------------- the deploy protocol, written once

# Networks with their own whole-model switch_to_deploy (upstream's API), not blocks: each with its reason.
WHOLE_MODEL_SWITCH = {"RepVGGplus": "upstream's switch_repvggplus_to_deploy: fuses every block, drops the aux heads"}


def _library_classes() -> list[type]:
    """Every class defined in a library module of either package (paddle_rep outside apps, torch_ref)."""
    import inspect
    import pkgutil

    import paddle_rep
    import torch_ref

    classes = []
    for package in (paddle_rep, torch_ref):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.startswith("paddle_rep.apps"):
                continue
            module = importlib.import_module(info.name)
            classes += [cls for _, cls in inspect.getmembers(module, inspect.isclass) if cls.__module__ == info.name]
    return classes


def test_every_reparameterizable_block_uses_the_deploy_protocol() -> None:
    from paddle_rep.core.deploy import DeployProtocol

    found = [cls for cls in _library_classes() if cls is not DeployProtocol
             and (hasattr(cls, "_fuse_branches") or hasattr(cls, "switch_to_deploy"))]
    blocks = [cls for cls in found if cls.__name__ not in WHOLE_MODEL_SWITCH]
    names = {f"{cls.__module__.split('.')[0]}.{cls.__name__}" for cls in blocks}
    for family in ("ACBlock", "RepVGGBlock", "DiverseBranchBlock", "QARepVGGBlockV2"):  # control: discovery works
        assert {f"paddle_rep.{family}", f"torch_ref.{family}"} <= names, family
    for cls in blocks:
        assert issubclass(cls, DeployProtocol), cls
        # the protocol's methods are the mixin's, not written out again in the block
        for method in ("switch_to_deploy", "reparameterize", "re_parameterize", "is_repped"):
            assert method not in vars(cls), f"{cls.__qualname__}.{method}"
    assert {cls.__name__ for cls in found} >= set(WHOLE_MODEL_SWITCH)  # each exception still exists


def test_deploy_protocol_fuses_once() -> None:
    from paddle_rep.core.deploy import DeployProtocol

    class Block(DeployProtocol):
        def __init__(self, deploy: bool) -> None:
            self.deploy, self.fused = deploy, 0

        def _fuse_branches(self) -> None:
            self.fused += 1

    block = Block(deploy=False)
    assert not block.is_repped
    block.reparameterize()
    block.switch_to_deploy()
    block.re_parameterize()
    assert block.is_repped and block.fused == 1
    built_fused = Block(deploy=True)
    built_fused.switch_to_deploy()
    assert built_fused.is_repped and built_fused.fused == 0
    with pytest.raises(NotImplementedError, match="_fuse_branches"):
        DeployProtocol.__new__(type("Bare", (DeployProtocol,), {"deploy": False})).switch_to_deploy()
