"""What the applications show on the console: a progress bar for long loops, and not Paddle's notices.

:func:`progress` is tqdm when it is installed, nothing otherwise.

tqdm is optional (the ``progress`` extra); without it the loops run the same, silently. The bar
hides itself when standard error is not a terminal (``disable=None``) and keeps log lines
readable while it is drawn.
"""

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any


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
