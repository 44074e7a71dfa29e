"""The package layout's import rules, read from the source (AST of every module, no import run).

- ``paddle_rep/core`` imports neither framework, only the standard library, numpy and itself;
- ``torch_ref`` imports no Paddle, and of ``paddle_rep`` only ``paddle_rep.core``;
- the rest of ``paddle_rep`` imports torch (or ``torch_ref``) only in the modules listed in
  :data:`TORCH_ALLOWED`, each for a reason given there.
"""

import ast
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Modules of paddle_rep (outside core) that may import torch or torch_ref, all inside a function.
TORCH_ALLOWED = {
    "paddle_rep.convert.arch": {"torch_ref"},  # builds the torch reference model for the strict check
    "paddle_rep.convert.load": {"torch"},  # reads .pth files (restricted unpickler)
    "paddle_rep.convert.verify": {"torch", "torch_ref"},  # runs the torch reference to verify a conversion
    "paddle_rep.convert.write": {"torch"},  # writes .pth files
    "paddle_rep.demo": {"torch", "torch_ref"},  # the demo trains the torch reference first
}
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


def test_torch_outside_core_only_where_needed() -> None:
    found = {}
    for path in _files("paddle_rep"):
        if _is_under(_module_name(path), "paddle_rep.core"):
            continue
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
    demo = ROOT / "paddle_rep" / "probe.py"
    assert paddle_rep_torch_imports(demo, "from . import cli\ndef f():\n    import torch_ref.models\n") == {"torch_ref"}


# ---------------------------------------------------------------- the lazy-export lists, written once

def _lazy_export_tables(init: Path) -> tuple[dict[str, str], frozenset[str], dict[str, str]]:
    """``_EXPORTS``, ``_DEPRECATED`` and the TYPE_CHECKING imports (name -> module) of a package __init__."""
    tree = ast.parse(init.read_text(encoding="utf-8"))
    exports: dict[str, str] = {}
    deprecated: frozenset[str] = frozenset()
    typed: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id == "_EXPORTS":
                exports = ast.literal_eval(node.value)
            elif node.targets[0].id == "_DEPRECATED":
                deprecated = frozenset(ast.literal_eval(node.value.args[0]))
        elif isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for item in node.body:
                assert isinstance(item, ast.ImportFrom) and item.level == 1, ast.dump(item)
                for alias in item.names:
                    assert alias.asname == alias.name, f"{alias.name} is not re-exported as itself"
                    typed[alias.name] = item.module
    return exports, deprecated, typed


@pytest.mark.parametrize("package", ["paddle_rep", "paddle_rep/models"])
def test_type_checking_block_lists_the_lazy_exports(package: str) -> None:
    """The TYPE_CHECKING imports name each lazy export once, from the module _EXPORTS gives."""
    exports, deprecated, typed = _lazy_export_tables(ROOT / package / "__init__.py")
    assert exports and typed
    assert deprecated <= set(exports)
    current = {name: module for name, module in exports.items() if name not in deprecated}
    assert typed == current


def test_lazy_export_check_sees_a_missing_name(tmp_path: Path) -> None:
    """Negative control: a name left out of the TYPE_CHECKING block, or from the wrong module, is seen."""
    source = (ROOT / "paddle_rep" / "__init__.py").read_text(encoding="utf-8")
    for broken in (source.replace("    from .exporter import export as export\n", ""),
                   source.replace("from .exporter import export as export", "from .odconv import export as export")):
        assert broken != source
        (tmp_path / "__init__.py").write_text(broken, encoding="utf-8")
        exports, deprecated, typed = _lazy_export_tables(tmp_path / "__init__.py")
        assert typed != {name: module for name, module in exports.items() if name not in deprecated}


@pytest.mark.parametrize("old, new", [
    ("ReparamError", "PaddleRepError"), ("ConversionError", "SurgeryError"),
    ("set_bn_running_var_mode", "set_default_running_var_mode"),
    ("set_running_var_mode", "set_model_running_var_mode"),
])
def test_old_names_still_work_with_a_deprecation_warning(old: str, new: str) -> None:
    import paddle_rep

    paddle_rep.__dict__.pop(old, None)  # the lazy hook caches; make this access reach the module
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(paddle_rep, old)
    assert value is getattr(paddle_rep, new)
    assert old not in paddle_rep.__all__ and new in paddle_rep.__all__


def test_old_module_paths_still_import() -> None:
    """The modules that moved into paddle_rep.core stay importable at their old paths, as the same objects."""
    import importlib

    from paddle_rep.core import checks, errors, interop, schedules, surgery_plan

    pairs = [("paddle_rep.errors", errors), ("paddle_rep.interop", interop), ("paddle_rep.schedules", schedules),
             ("paddle_rep._validate", checks), ("paddle_rep._surgery_common", surgery_plan)]
    for old, new in pairs:
        module = importlib.import_module(old)
        defined = [name for name, value in vars(new).items() if not name.startswith("_")
                   and not isinstance(value, types.ModuleType)
                   and getattr(value, "__module__", new.__name__) == new.__name__]
        assert defined, old
        for name in defined:
            assert getattr(module, name) is getattr(new, name), f"{old}.{name}"
    with pytest.warns(DeprecationWarning, match="SurgeryReport"):
        from paddle_rep._surgery_common import ConversionReport
    assert ConversionReport is surgery_plan.SurgeryReport


# ---------------------------------------------------------------- the deploy protocol, written once

def test_every_reparameterizable_block_uses_the_deploy_protocol() -> None:
    import inspect

    import paddle_rep.acblock
    import paddle_rep.repvgg
    import torch_ref.acblock
    import torch_ref.repvgg
    from paddle_rep.core.deploy import DeployProtocol

    blocks = [cls for module in (paddle_rep.acblock, paddle_rep.repvgg, torch_ref.acblock, torch_ref.repvgg)
              for _, cls in inspect.getmembers(module, inspect.isclass)
              if cls.__module__ == module.__name__ and hasattr(cls, "switch_to_deploy")]
    assert len(blocks) >= 4
    for cls in blocks:
        assert issubclass(cls, DeployProtocol), cls
        # the protocol's methods are the mixin's, not written out again in the block
        for method in ("switch_to_deploy", "reparameterize", "re_parameterize", "is_repped"):
            assert method not in vars(cls), f"{cls.__qualname__}.{method}"


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
