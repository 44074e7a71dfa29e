"""Old home of the lazy package attributes; they live in :mod:`paddle_rep.core.lazy`."""

from .core.lazy import lazy_exports as lazy_exports
