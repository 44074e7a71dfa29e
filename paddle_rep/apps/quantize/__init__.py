"""int8 deployment: calibration data (:mod:`.calibration`), post-training quantization for ONNX Runtime and
OpenVINO with the int8 runners (:mod:`.ptq`), the int8-vs-float32 check with its per-layer table
(:mod:`.report`) and RepVGG's quantization-aware training (:mod:`.qat`)."""

from paddle_rep.core.lazy import lazy_exports

_EXPORTS = {
    "load_calibration": "calibration",
    "Preprocess": "calibration",
    "CalibrationWarning": "calibration",
    "quantize_onnx": "ptq",
    "quantize_exported": "ptq",
    "int8_runner": "ptq",
    "Int8Options": "ptq",
    "Int8Files": "ptq",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
