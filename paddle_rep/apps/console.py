"""What the applications show on the console: a progress bar for long loops, and none of the
third-party chatter (Paddle's notices and pass logs, paddle2onnx, NNCF), which goes to the debug log.

:func:`progress` is tqdm when it is installed, nothing otherwise.

tqdm is optional (the ``progress`` extra); without it the loops run the same, silently. The bar
hides itself when standard error is not a terminal (``disable=None``) and keeps log lines
readable while it is drawn.
"""

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def progress(items: Iterable[Any], *, total: int | None = None, desc: str = "", unit: str = "it",
             enabled: bool | None = None) -> Iterator[Iterable[Any]]:
    """Yield ``items`` wrapped in a tqdm bar; ``enabled=None`` shows it only on a terminal.

    Args:
        items: What the loop iterates over.
        total: The item count, when ``items`` has no length.
        desc: The bar's label.
        unit: The unit shown after the rate.
        enabled: True always draws the bar, False never, None only when standard error is a terminal.

    Yields:
        ``items``, wrapped in the bar where tqdm is installed and the bar is enabled.
    """
    if enabled is False:
        yield items
        return
    try:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:
        yield items
        return
    with logging_redirect_tqdm(), tqdm(items, total=total, desc=desc, unit=unit, disable=None if enabled is None
                                       else not enabled, leave=False) as bar:
        yield bar


def quiet_paddle_notices() -> None:
    """Keep Paddle's notices that say nothing to a command-line user off the console.

    Hidden: the "No ccache found" warning of the first import of Paddle's extension builder (paddle2onnx
    and ``paddle.jit`` pull it in), BN's "we now always track" warning (once per layer) and, when
    called before Paddle loads its C++ core, glog's INFO lines. Call it first in an entry point.
    """
    warnings.filterwarnings("ignore", message="No ccache found")
    warnings.filterwarnings("ignore", message="When training, we now always track")
    os.environ.setdefault("GLOG_minloglevel", "2")


@contextlib.contextmanager
def quiet_warnings() -> Iterator[None]:
    """Record the warnings raised inside (Paddle's PIR/jit notes, paddle2onnx's) and log them at debug."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for item in caught:
        logger.debug("suppressed warning: %s", item.message)


@contextlib.contextmanager
def captured_output(what: str) -> Iterator[None]:
    """Route whatever is written to the process's stdout and stderr inside to the debug log.

    Paddle's C++ side (glog, the inference passes' reports), paddle2onnx and NNCF write straight to
    the file descriptors, past Python's logging; this swaps descriptors 1 and 2 for a temporary file
    for the duration, so it also holds back other threads' output meanwhile: keep the block short.

    Args:
        what: Names the source in the debug log line.

    Yields:
        Nothing; the output is logged when the block ends.
    """
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            for fd, copy_of in zip((1, 2), saved, strict=True):
                os.dup2(copy_of, fd)
                os.close(copy_of)
            sink.seek(0)
            text = sink.read().decode(errors="replace").strip()
            if text:
                logger.debug("%s printed: %s", what, text)
