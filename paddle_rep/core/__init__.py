"""The framework-free core of paddle-rep: what the Paddle package and the torch reference share.

Every module here imports neither Paddle nor torch (numpy at most), and this package is the
only part of ``paddle_rep`` that ``torch_ref`` may import; ``parity_tests/test_layout.py``
walks the imports and fails on anything else. It holds plumbing, never an architecture table:
each framework states its networks itself, so the structure test compares two statements.

- :mod:`.errors` the typed exceptions; :mod:`.logs` the package loggers' defaults;
  :mod:`.lazy` lazy package attributes; :mod:`.checks` argument checks;
- :mod:`.registry` the name -> builder registry mechanics; :mod:`.surgery_plan` which convs
  ``insert_blocks`` converts and the reports; :mod:`.schedules` ODConv's temperature schedule;
- :mod:`.interop` the torch <-> Paddle state-dict mapping (numpy); :mod:`.numeric` the relative
  error every comparison uses, and a 0-d-safe contiguous copy;
- :mod:`.deploy` the blocks' deploy protocol (a mixin); :mod:`.walk` walking a model of either
  framework.
"""
