"""The documentation covers the public API: every exported name has an entry in docs/api/.

The site itself is built (and its links checked) by ``mkdocs build --strict`` in CI; this test
is the fast part that needs no MkDocs: a name added to a package's ``_EXPORTS`` table without an
API entry at its defining module fails here, and so does an entry pointing at a module that does not
define the name.
"""

import ast
import importlib
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
# Packages whose every public name the API reference documents.
PACKAGES = ("paddle_rep", "paddle_rep.apps", "paddle_rep.apps.quantize", "paddle_rep.models", "torch_ref")
_ENTRY = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def _entries() -> set[str]:
    return {m.group(1) for page in API.glob("*.md") for m in _ENTRY.finditer(page.read_text())}


def _public_paths(package: str) -> dict[str, str]:
    """Each public name of ``package`` with the full path of its definition (``module.name``).

    A class or function gives its ``__module__``; anything else (a constant, or a name bound to an
    object of another name, such as a bound method) is looked up in the module its ``_EXPORTS`` names.
    """
    module = importlib.import_module(package)
    paths = {}
    for name in module.__all__:
        obj = getattr(module, name)
        defined_in = getattr(obj, "__module__", None)
        if defined_in is None or getattr(obj, "__name__", None) != name:
            defined_in = f"{package}.{module._EXPORTS[name]}"
        paths[name] = f"{defined_in}.{name}"
    return paths


def _missing(paths: dict[str, str], entries: set[str]) -> list[str]:
    """The public names whose defining path (see :func:`_public_paths`) no entry documents."""
    return sorted(name for name, path in paths.items() if path not in entries)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_an_api_entry(package: str) -> None:
    paths = _public_paths(package)
    missing = [paths[name] for name in _missing(paths, _entries())]
    assert not missing, f"{package}: public names without a '::: module.name' entry in docs/api/: {missing}"


def test_api_entries_name_the_defining_module() -> None:
    # A '::: mod.Name' entry must name the module that defines Name (mkdocstrings reads the source
    # statically, and the packages export lazily), or a module itself.
    for entry in sorted(_entries()):
        module, _, name = entry.rpartition(".")
        try:
            importlib.import_module(entry)
            continue  # a module entry
        except ImportError:
            pass
        source = (ROOT / Path(*module.split("."))).with_suffix(".py")
        if not source.exists():
            source = ROOT / Path(*module.split(".")) / "__init__.py"
        assert re.search(rf"^(class {name}\b|def {name}\b|{name} = )", source.read_text(), re.MULTILINE), \
            f"docs/api entry {entry}: {name} is not defined in {source.relative_to(ROOT)}"


def test_planted_missing_entry_is_caught() -> None:
    # Negative controls: a planted public name without an entry is reported, a documented one is not;
    # an entry for the same name in another module does not count (the last name alone would match it).
    entries = _entries()
    acblock = _public_paths("paddle_rep")["ACBlock"]
    assert _missing({"ACBlock": acblock, "PlantedName": "paddle_rep.acblock.PlantedName"}, entries) == ["PlantedName"]
    assert _public_paths("paddle_rep.apps")["Predictor"] in entries
    assert _missing({"Predictor": "paddle_rep.apps.exporter.Predictor"}, entries) == ["Predictor"]


# --- docstrings: Google style (Args / Returns / Raises) and type hints on the public library ----------

LIBRARY = ("paddle_rep", "torch_ref")  # paddle_rep.apps is the applications, not the library

# Application modules held to the same rules (the others are documented by their owners, then added here).
APPS_CHECKED = ("paddle_rep/apps/cli.py", "paddle_rep/apps/data.py", "paddle_rep/apps/demo.py",
                "paddle_rep/apps/console.py", "paddle_rep/apps/optional.py", "paddle_rep/apps/bench_convert.py",
                "paddle_rep/apps/train.py", "paddle_rep/apps/training/", "paddle_rep/apps/qat_train.py",
                "paddle_rep/apps/quantize/calibration.py", "paddle_rep/apps/quantize/paddle_int8.py",
                "paddle_rep/apps/quantize/report.py", "paddle_rep/apps/quantize/yardstick.py",
                "paddle_rep/apps/quantize/sweep.py",
                "paddle_rep/apps/manifest.py", "paddle_rep/apps/predictor.py", "paddle_rep/apps/exporter.py",
                "paddle_rep/apps/quantize/ptq.py", "paddle_rep/apps/quantize/qat.py")


def _library_files() -> list[Path]:
    files = [path for package in LIBRARY for path in sorted((ROOT / package).rglob("*.py"))]
    return [path for path in files if "apps" not in path.relative_to(ROOT).parts]


def _apps_files() -> list[Path]:
    files = sorted((ROOT / "paddle_rep" / "apps").rglob("*.py"))
    return [path for path in files if path.relative_to(ROOT).as_posix().startswith(APPS_CHECKED)]


def _own_nodes(fn: ast.FunctionDef) -> list[ast.AST]:
    """The nodes of ``fn``'s body, not those of functions or classes defined inside it."""
    found, todo = [], list(fn.body)
    while todo:
        node = todo.pop()
        found.append(node)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            todo.extend(ast.iter_child_nodes(node))
    return found


def _function_problems(fn: ast.FunctionDef, is_method: bool, args_doc: str | None = None) -> list[str]:
    """What ``fn`` lacks: a docstring, an Args/Returns/Raises section that applies, a type hint."""
    params = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    if is_method and params and params[0].arg in ("self", "cls"):
        params = params[1:]
    params += [p for p in (fn.args.vararg, fn.args.kwarg) if p is not None]
    doc = ast.get_docstring(fn) or ""
    problems = [] if doc or fn.name == "__init__" else ["no docstring"]
    if params and "Args:" not in doc + (args_doc or ""):
        problems.append("no Args section")
    nodes = _own_nodes(fn)
    if fn.name != "__init__" and "Returns:" not in doc and any(
            isinstance(n, ast.Return) and n.value is not None
            and not (isinstance(n.value, ast.Constant) and n.value.value is None) for n in nodes):
        problems.append("no Returns section")
    if "Raises:" not in doc + (args_doc or "") and any(isinstance(n, ast.Raise) and n.exc for n in nodes):
        problems.append("no Raises section")
    problems += [f"no type hint on {p.arg}" for p in params if p.annotation is None]
    if fn.returns is None and fn.name != "__init__":
        problems.append("no return type hint")
    return problems


def _docstring_problems(source: str) -> list[str]:
    """Each public function, class and method of a module that breaks the docstring rules, with why."""
    problems = []
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            problems += [f"{node.name}: {p}" for p in _function_problems(node, is_method=False)]
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            class_doc = ast.get_docstring(node)
            if not class_doc:
                problems.append(f"class {node.name}: no docstring")
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
                        not item.name.startswith("_") or item.name == "__init__"):
                    # Args of __init__ belong in the class docstring (mkdocs merges the two).
                    problems += [f"{node.name}.{item.name}: {p}"
                                 for p in _function_problems(item, is_method=True, args_doc=class_doc)]
    return problems


@pytest.mark.parametrize("files", [_library_files, _apps_files], ids=["library", "apps"])
def test_public_docstrings_follow_google_style(files: Callable[[], list[Path]]) -> None:
    failures = [f"{path.relative_to(ROOT)}: {problem}"
                for path in files() for problem in _docstring_problems(path.read_text())]
    assert not failures, "public definitions without a Google-style docstring or type hints:\n" + "\n".join(failures)


def test_planted_docstring_faults_are_caught() -> None:
    # Negative control: each planted fault is reported; the documented function is not.
    source = '''
def good(x: int) -> int:
    """Double x.

    Args:
        x: A number.

    Returns:
        2x.

    Raises:
        ValueError: x is negative.
    """
    if x < 0:
        raise ValueError(x)
    return 2 * x


def no_args(x: int) -> int:
    """Double x.

    Returns:
        2x.
    """
    return 2 * x


def no_hint(x) -> None:
    """Nothing.

    Args:
        x: Anything.
    """


class Layer:
    """A layer without Args for its constructor."""

    def __init__(self, width: int) -> None:
        self.width = width

    def forward(self, x: int) -> int:
        return x
'''
    assert sorted(_docstring_problems(source)) == [
        "Layer.__init__: no Args section", "Layer.forward: no Args section", "Layer.forward: no Returns section",
        "Layer.forward: no docstring", "no_args: no Args section", "no_hint: no type hint on x"]
    assert _library_files(), "no library files found"
    # Every listed application module exists (a renamed one would drop out of the check silently).
    checked = [path.relative_to(ROOT).as_posix() for path in _apps_files()]
    assert all(any(path.startswith(entry) for path in checked) for entry in APPS_CHECKED), checked
