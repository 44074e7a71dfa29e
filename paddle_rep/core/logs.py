"""The package loggers' defaults, shared by paddle_rep and torch_ref (pure Python, no framework)."""

import logging


def quiet_package_logger(name: str) -> logging.Logger:
    """Give a package logger a NullHandler and the WARNING level, unless a level was set before import.

    ``import paddle`` sets the root logger to INFO with a console handler, which would print the
    library's routine INFO lines (files saved, conversion summaries) for every Paddle user;
    ``logging.getLogger(name).setLevel(logging.INFO)`` shows them.

    Args:
        name: The logger's name (the package's).

    Returns:
        The logger.
    """
    logger = logging.getLogger(name)
    logger.addHandler(logging.NullHandler())
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)
    return logger
