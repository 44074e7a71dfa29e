"""Old home of the framework-free surgery half; it lives in :mod:`paddle_rep.core.surgery_plan`."""

from .core import surgery_plan as _core
from .core.surgery_plan import BIAS_NEEDS_EXAMPLE as BIAS_NEEDS_EXAMPLE
from .core.surgery_plan import BLOCK_KINDS as BLOCK_KINDS
from .core.surgery_plan import CONVERTED_FROM as CONVERTED_FROM
from .core.surgery_plan import GEOMETRY_ARGS as GEOMETRY_ARGS
from .core.surgery_plan import ODCONV_NOT_REVERTED as ODCONV_NOT_REVERTED
from .core.surgery_plan import REJECTED_ARGS as REJECTED_ARGS
from .core.surgery_plan import ConvSpec as ConvSpec
from .core.surgery_plan import RevertReport as RevertReport
from .core.surgery_plan import SurgeryReport as SurgeryReport
from .core.surgery_plan import check_block_kwargs as check_block_kwargs
from .core.surgery_plan import check_to as check_to
from .core.surgery_plan import ineligible_reason as ineligible_reason
from .core.surgery_plan import make_spec as make_spec
from .core.surgery_plan import nested_outputs as nested_outputs
from .core.surgery_plan import odconv_weight_scale as odconv_weight_scale
from .core.surgery_plan import pick_following_bn as pick_following_bn
from .core.surgery_plan import plan_conversion as plan_conversion
from .core.surgery_plan import split_name as split_name
from .core.surgery_plan import symmetric_padding as symmetric_padding

__getattr__ = _core.__getattr__  # the deprecated old names, with their warning
