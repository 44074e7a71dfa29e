"""ODConv's temperature schedule (kept importable here; defined in :mod:`paddle_rep.core.schedules`)."""

from .core.schedules import EVAL_TEMPERATURE as EVAL_TEMPERATURE
from .core.schedules import get_temperature as get_temperature
from .core.schedules import set_temperature as set_temperature
