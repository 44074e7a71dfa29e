"""int8 deployment: calibration data (:mod:`.calibration`), post-training quantization for ONNX Runtime and
OpenVINO with the int8 runners (:mod:`.ptq`), the int8-vs-float32 check with its per-layer table
(:mod:`.report`), RepVGG's quantization-aware training (:mod:`.qat`) and Paddle Inference int8
(:mod:`.paddle_int8`)."""

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
    "quantize_paddle": "paddle_int8",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS)
