"""Old home of the package-logger defaults; they live in :mod:`paddle_rep.core.logs`."""

from .core.logs import quiet_package_logger as quiet_package_logger
