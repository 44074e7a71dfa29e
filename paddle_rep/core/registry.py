"""Name -> builder registry mechanics shared by both frameworks (pure Python: imports neither).

``paddle_rep.models`` and ``torch_ref.models`` each own one :class:`ModelRegistry`; the
builders register themselves with ``@register_model`` when their module is imported, and
the registry imports its modules on first use, so listing or creating a model is all a
caller needs.
"""

import difflib
import fnmatch
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable
from typing import Any

from .errors import UnknownModelError

logger = logging.getLogger(__name__)

def model_modules(package: str) -> tuple[str, ...]:
    """Find the public modules of a ``models`` package on disk (names without a leading underscore).

    Args:
        package: The package's dotted name, e.g. ``"paddle_rep.models"``.

    Returns:
        The module names, sorted.
    """
    path = importlib.import_module(package).__path__
    return tuple(sorted(info.name for info in pkgutil.iter_modules(path) if not info.name.startswith("_")))


class ModelRegistry:
    """Builders by name for one framework; every public module of ``package`` registers its builders.

    Args:
        package: The dotted name of the ``models`` package whose modules are imported on first use.
    """

    def __init__(self, package: str) -> None:
        self.package = package
        self._builders: dict[str, Callable[..., Any]] = {}
        self._loaded = False

    def register(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Register a builder under its own name (use as a decorator).

        Args:
            fn: The builder function.

        Returns:
            ``fn`` unchanged.

        Raises:
            ValueError: A different builder is already registered under ``fn``'s name.
        """
        name = fn.__name__
        if name in self._builders and self._builders[name] is not fn:
            raise ValueError(f"model {name!r} is already registered in {self.package}")
        self._builders[name] = fn
        return fn

    def _load(self) -> None:
        if not self._loaded:
            for module in model_modules(self.package):
                importlib.import_module(f"{self.package}.{module}")
            self._loaded = True

    def names(self, pattern: str | None = None) -> list[str]:
        """List the registered model names.

        Args:
            pattern: A shell-style pattern such as ``"repvgg_b*"``; None lists every name.

        Returns:
            The matching names, sorted.
        """
        self._load()
        names = sorted(self._builders)
        return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]

    def builder(self, name: str) -> Callable[..., Any]:
        """Look up the builder of a model name.

        Args:
            name: The model name.

        Returns:
            The builder function.

        Raises:
            UnknownModelError: No builder has that name; the message lists the closest names.
        """
        self._load()
        try:
            return self._builders[name]
        except (KeyError, TypeError):
            close = difflib.get_close_matches(str(name), self._builders, n=5, cutoff=0.5)
            hint = f"did you mean {', '.join(close)}?" if close else "no close match"
            raise UnknownModelError(
                f"unknown model {name!r}: {hint} ({len(self._builders)} models; see list_models())"
            ) from None

    def create(self, name: str, **kwargs: Any) -> Any:
        """Build a model by name.

        Args:
            name: The model name.
            **kwargs: Arguments passed on to the builder.

        Returns:
            The model the builder returns.

        Raises:
            UnknownModelError: No builder has that name.
            ValueError: The builder takes no argument of a name in ``kwargs``; the message names it.
        """
        fn = self.builder(name)
        params = inspect.signature(fn).parameters
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise ValueError(f"{name} got unexpected argument(s) {unknown}; it accepts {sorted(params)}")
        logger.debug("building %s.%s(%s)", self.package, name, kwargs)
        return fn(**kwargs)
