"""Old home of the argument checks; they live in :mod:`paddle_rep.core.checks`."""

from .core.checks import PADDING_MODES as PADDING_MODES
from .core.checks import check_choice as check_choice
from .core.checks import check_conv_args as check_conv_args
from .core.checks import check_input_channels as check_input_channels
from .core.checks import check_int as check_int
from .core.checks import check_padding_mode as check_padding_mode
