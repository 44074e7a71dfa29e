"""Lazy package attributes (PEP 562), so importing a package imports neither framework until used."""

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, namespace: dict, exports: Mapping[str, str]) -> tuple[Callable, Callable]:
    """Build a package's PEP 562 ``__getattr__`` and ``__dir__`` from its export table.

    Args:
        package: The package's dotted name.
        namespace: The package's ``globals()``; a name is cached there on first use.
        exports: Maps each public name to the submodule (relative to ``package``) defining it.

    Returns:
        ``(__getattr__, __dir__)``; the ``__getattr__`` raises AttributeError for a name not in
        ``exports``.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook's name
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value  # cached: the hook runs once per name
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
