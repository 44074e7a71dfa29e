"""The documentation covers the public API: every exported name has an entry in docs/api/.

The site itself is built (and its links checked) by ``mkdocs build --strict`` in CI; this test
is the fast part that needs no MkDocs: a name added to a package's ``_EXPORTS`` table without an
API entry fails here, and so does an entry pointing at a module that does not define the name.
"""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
# Packages whose every public name the API reference documents.
PACKAGES = ("paddle_rep", "paddle_rep.apps", "paddle_rep.models", "torch_ref")
_ENTRY = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def _entries() -> set[str]:
    return {m.group(1) for page in API.glob("*.md") for m in _ENTRY.finditer(page.read_text())}


def _missing(public: list[str], entries: set[str]) -> list[str]:
    """The public names that no entry documents (an entry documents the last part of its dotted path)."""
    return sorted(set(public) - {entry.rsplit(".", 1)[-1] for entry in entries})


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_an_api_entry(package: str) -> None:
    missing = _missing(importlib.import_module(package).__all__, _entries())
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
    # Negative control: a planted public name without an entry is reported, a documented one is not.
    assert _missing(["ACBlock", "PlantedName"], _entries()) == ["PlantedName"]
