"""Checkpoint conversion: torch (official, timm, mmpretrain layouts) and Paddle files, both ways.

Importing this package imports neither framework; each is imported when a step needs it.
"""

from .api import ConversionReport as ConversionReport
from .api import convert_checkpoint as convert_checkpoint
from .layouts import LAYOUTS as LAYOUTS
from .layouts import KeyRule as KeyRule
from .layouts import Layout as Layout
from .layouts import detect_layout as detect_layout
from .load import LoadedCheckpoint as LoadedCheckpoint
from .load import load_checkpoint as load_checkpoint
from .load import read_checkpoint as read_checkpoint

__all__ = ["LAYOUTS", "ConversionReport", "KeyRule", "Layout", "LoadedCheckpoint", "convert_checkpoint",
           "detect_layout", "load_checkpoint", "read_checkpoint"]
