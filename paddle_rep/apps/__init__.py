"""The applications built on the :mod:`paddle_rep` library.

- :mod:`.convert` checkpoint files between torch (official, timm, mmpretrain), Paddle and HDF5;
- :mod:`.exporter` export to Paddle Inference and ONNX (with a :mod:`.manifest`), and :mod:`.predictor`
  with the thread-safe :class:`~.predictor.Predictor` that runs them;
- :mod:`.cli` the ``paddle-rep`` command line (``python -m paddle_rep.apps``); :mod:`.train`,
  :mod:`.demo`, :mod:`.data` and :mod:`.bench` behind its subcommands.

These modules may import the library; the library never imports them (``parity_tests/test_layout.py``).
"""

from paddle_rep.core.lazy import lazy_exports

_EXPORTS = {
    "convert_checkpoint": "convert",
    "ConversionReport": "convert",
    "load_checkpoint": "convert",
    "export": "exporter",
    "ExportedModel": "exporter",
    "Predictor": "predictor",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
