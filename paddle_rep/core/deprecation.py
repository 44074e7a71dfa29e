"""Old names kept for one release: a module ``__getattr__`` that serves them with a DeprecationWarning."""

import warnings
from collections.abc import Callable, Mapping
from typing import Any


def deprecated_aliases(module: str, namespace: dict, aliases: Mapping[str, str]) -> Callable[[str], Any]:
    """``__getattr__`` for ``module``: each old name in ``aliases`` (old -> new) returns ``namespace[new]``.

    Module attributes found normally never reach the hook, so only the old names cost a lookup.
    """

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook's name
        new = aliases.get(name)
        if new is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(f"{module}.{name} is deprecated and will be removed in the next release; use {new}",
                      DeprecationWarning, stacklevel=2)
        return namespace[new]

    return __getattr__
