"""Post-training int8 of an exported float ONNX graph, for ONNX Runtime (QDQ file) and OpenVINO (NNCF).

Contract (what :class:`~paddle_rep.apps.predictor.Predictor` and ``export(..., calibration=...)`` build on):

- :func:`quantize_onnx` ``(float_onnx, backend, calibration) -> path``: writes ``<stem>.int8.onnx``
  (``backend="onnxruntime"``: QDQ ONNX) or ``<stem>.int8.xml`` + ``.bin`` (``"openvino"``) next to
  the float file; :func:`quantize_exported` does that for every graph of an ``ExportedModel``
  (the batch-independent ``onnx_file`` and each ODConv fold graph) and returns :class:`Int8Files`.
- :func:`int8_runner` ``(file, backend, threads) -> Callable[[ndarray], ndarray]``: runs one int8
  file; a fold graph takes only its own batch size (the caller splits batches as for float32).
- Files are written under a temporary name in the destination folder and renamed into place only
  when complete: a failed run leaves no partial file and keeps an earlier good export.

What is quantized (:class:`Int8Options`): every Conv, MatMul and Gemm with a constant weight gets
int8 weights (symmetric; per output channel by default, ``per_channel=False`` for per-tensor) and
int8 activations calibrated by min-max over the calibration data. ``keep_float`` names layers left in
float32: ``"first_and_linear"`` (as RepVGG's official quantization example ``exclud_first_and_linear``:
the stem conv sees raw pixels, the classifier's logits are the output), ``"none"`` (all int8, the
fastest), or ``"auto"`` (default): both are quantized and run on the calibration data, and all-int8
is kept unless it measurably costs accuracy there (the rule is next to :data:`AUTO_SAMPLES`); the
choice and its figures are in :attr:`Int8Files.keep_float` and the export's manifest. ODConv's
weights are computed per input (attention x static kernels): in the fold graph
they reach a Conv as an activation, in the unfold graph a MatMul; per-channel static quantization
does not apply. ``dynamic="float"`` (default) keeps those ops in float32; ``dynamic="int8"``
quantizes both inputs per tensor like any activation. ``docs/int8.md`` has the measurements behind
these defaults.
"""

import contextlib
import dataclasses
import importlib
import importlib.util
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paddle_rep.core.errors import MissingExportPackageError, QuantizationError

from ..console import captured_output
from ..optional import require

logger = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "openvino")
KEEP_FLOAT = ("auto", "first_and_linear", "none")
# keep_float="auto": both candidates are quantized and run on up to AUTO_SAMPLES calibration samples; all-int8
# ("none", faster: ~1.35x on repvgg_a0 with OpenVINO) is kept unless
# - it flips the float32 top-1 of more samples than the float-stem file does, by over AUTO_NET_FLIPS and over
#   AUTO_AGREEMENT_SLACK of the samples (paired: near-ties that both flip, as on random weights, do not decide), or
# - its mean output error (max |int8 - f32| / max |f32| per sample) is over AUTO_ERROR_RATIO times the float-stem
#   file's and over AUTO_ERROR_FLOOR: the digits models that keep their accuracy all-int8 measure 0.013-0.028
#   (docs/int8.md), where the float stem halves an already harmless error.
AUTO_SAMPLES = 64
AUTO_NET_FLIPS = 2
AUTO_AGREEMENT_SLACK = 0.005
AUTO_ERROR_RATIO = 1.5
AUTO_ERROR_FLOOR = 0.05
DYNAMIC = ("float", "int8")
_WEIGHTED_OPS = ("Conv", "MatMul", "Gemm")


@dataclass(frozen=True)
class Int8Options:
    """Choices of :func:`quantize_onnx` (see the module docstring)."""

    per_channel: bool = True
    keep_float: str = "auto"
    dynamic: str = "float"
    batch_size: int = 8  # calibration batch for graphs with a dynamic batch

    def __post_init__(self) -> None:
        if self.keep_float not in KEEP_FLOAT:
            raise ValueError(f"keep_float must be one of {KEEP_FLOAT}, got {self.keep_float!r}")
        if self.dynamic not in DYNAMIC:
            raise ValueError(f"dynamic must be one of {DYNAMIC}, got {self.dynamic!r}")


@dataclass(frozen=True)
class Int8Files:
    """int8 files of one export per backend: the batch-independent graph and the ODConv fold graphs by batch.

    ``onnx_file["paddle"]`` (Paddle Inference int8, :mod:`.paddle_int8`) is a ``.pdmodel`` program with its
    ``.pdiparams`` next to it, and ``fold_files["paddle"]`` is empty (no ODConv there).
    """

    onnx_file: dict[str, str] = field(default_factory=dict)
    fold_files: dict[str, dict[int, str]] = field(default_factory=dict)
    keep_float: dict[str, dict] = field(default_factory=dict)  # per backend: keep_float="auto"'s choice and figures


def int8_path(float_onnx: str | Path, backend: str) -> Path:
    """Where :func:`quantize_onnx` writes the int8 file of ``float_onnx`` for ``backend``.

    Args:
        float_onnx: the float ONNX file.
        backend: ``"onnxruntime"`` or ``"openvino"``.

    Returns:
        ``<stem>.int8.onnx`` (ONNX Runtime) or ``<stem>.int8.xml`` (OpenVINO) next to ``float_onnx``.

    Raises:
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
    """
    _check_backend(backend)
    path = Path(float_onnx)
    return path.with_name(path.stem + (".int8.onnx" if backend == "onnxruntime" else ".int8.xml"))


def _check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"int8 backend must be one of {BACKENDS}, got {backend!r}")


# --- the graph: constants, names, which ops stay float ------------------------------------------------

def load_for_quantization(float_onnx: str | Path) -> Any:
    """The ONNX model as the quantizers and the int8 check read it.

    ``Constant`` nodes are moved to initializers (paddle2onnx writes weights as Constant nodes; the
    quantizers look for weights among initializers), the conv biases folded in (:func:`_fold_conv_biases`)
    and every node named.

    Args:
        float_onnx: the float ONNX file.

    Returns:
        The ``onnx.ModelProto``.

    Raises:
        QuantizationError: the file cannot be read as an ONNX model.
        MissingExportPackageError: onnx is not installed.
    """
    onnx = require("onnx", "int8 quantization")
    try:
        model = onnx.load(str(float_onnx))
    except Exception as error:  # onnx raises DecodeError, OSError, ...
        raise QuantizationError(f"cannot read the float ONNX model {float_onnx}: {error}") from error
    model = _fold_conv_biases(model)
    graph, kept = model.graph, []
    for node in graph.node:
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = onnx.TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:  # constants no node reads (ONNX Runtime warns about each)
        graph.initializer.remove(init)
    names = {node.name for node in graph.node if node.name}
    for index, node in enumerate(graph.node):
        if not node.name:
            node.name = f"{node.op_type.lower()}_{index}"
            while node.name in names:
                node.name += "_"
            names.add(node.name)
    return model


def _fold_conv_biases(model):
    """ONNX Runtime's basic graph optimizations on ``model``, where onnxruntime is installed.

    paddle2onnx writes each conv's bias as a separate ``Reshape`` of a constant and an ``Add`` after a
    bias-free ``Conv`` (and an ``Identity`` per weight). Quantized as written, each conv keeps a float
    bias add between its dequantize and the next quantize, which ONNX Runtime cannot fuse into its int8
    conv: repvgg_a0's int8 file ran 1.5x slower than the same network from ``torch.onnx.export``. The
    basic level (constant folding, identity elimination, Conv + Add fusion; standard ONNX ops only)
    puts the bias back into the ``Conv``. OpenVINO makes the same fusions itself; without onnxruntime
    (the openvino extra alone) the graph is used as written.
    """
    try:
        ort = importlib.import_module("onnxruntime")
    except ImportError:
        return model
    onnx = require("onnx", "int8 quantization")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="paddle-rep-onnx-") as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "basic.onnx")
        # MatMul + Add stays apart: the fused Gemm takes a new name that the float-node lists would miss.
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=["MatMulAddFusion"])
        return onnx.load(options.optimized_model_filepath)


def weighted_nodes(model: Any) -> list:
    """The nodes with a weight input, the ones quantization applies to.

    Args:
        model: an ``onnx.ModelProto`` (from :func:`load_for_quantization`).

    Returns:
        The Conv / MatMul / Gemm nodes in graph order (paddle2onnx writes them topologically sorted).
    """
    return [node for node in model.graph.node if node.op_type in _WEIGHTED_OPS]


def dynamic_weight_nodes(model: Any) -> list:
    """The weighted nodes whose weight is computed from the input: ODConv's.

    Args:
        model: an ``onnx.ModelProto`` (from :func:`load_for_quantization`).

    Returns:
        The nodes of :func:`weighted_nodes` whose second input is not an initializer, in graph order.
    """
    constants = {init.name for init in model.graph.initializer}
    return [node for node in weighted_nodes(model) if len(node.input) > 1 and node.input[1] not in constants]


def float_nodes(model: Any, options: Int8Options) -> list[str]:
    """The nodes :func:`quantize_onnx` leaves in float32.

    Args:
        model: an ``onnx.ModelProto`` (from :func:`load_for_quantization`).
        options: ``keep_float="first_and_linear"`` keeps the first constant-weight node and a last one that is
            not a Conv; ``dynamic="float"`` keeps the nodes of :func:`dynamic_weight_nodes`.

    Returns:
        Their names, in order, without duplicates.
    """
    names = []
    if options.keep_float == "first_and_linear":
        static = [n for n in weighted_nodes(model) if n not in dynamic_weight_nodes(model)]
        if static:
            names += [static[0].name] + ([static[-1].name] if static[-1].op_type != "Conv" else [])
    if options.dynamic == "float":
        names += [node.name for node in dynamic_weight_nodes(model)]
    return list(dict.fromkeys(names))


def _input_batch(model) -> int | None:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else None


def _chunks(x: np.ndarray, batch: int, fixed: bool) -> Iterator[np.ndarray]:
    """Calibration batches; a graph with a fixed batch gets only full batches of it."""
    if fixed and len(x) < batch:
        raise QuantizationError(f"the graph takes batches of {batch}; the calibration data has only {len(x)} samples")
    stop = len(x) - len(x) % batch if fixed else len(x)
    for start in range(0, stop, batch):
        yield x[start:start + batch]


class _ToDebug(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        logger.debug("quantizer: %s", record.getMessage())
        return False


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer warns on the root logger about optional pre-processing and per-channel
    axes of BN vectors, which it rightly skips: route those to this module's debug log."""
    quiet = _ToDebug()
    logging.getLogger().addFilter(quiet)
    ort = importlib.util.find_spec("onnxruntime") and importlib.import_module("onnxruntime")
    if ort:  # its calibration session warns about constants that graph optimisation orphaned
        ort.set_default_logger_severity(3)
    try:
        yield
    finally:
        logging.getLogger().removeFilter(quiet)
        if ort:
            ort.set_default_logger_severity(2)


# --- quantizers ----------------------------------------------------------------------------------------

def quantize_onnx(float_onnx: str | Path, backend: str, calibration: np.ndarray,
                  options: Int8Options | None = None, out_file: str | Path | None = None) -> str:
    """Quantize one float ONNX graph to int8 for ``backend``; returns the int8 file's path.

    Args:
        float_onnx: an ONNX file written by ``paddle_rep.apps.export(..., onnx=True)`` (or a fold graph).
        backend: ``"onnxruntime"`` (a QDQ ONNX file) or ``"openvino"`` (an OpenVINO IR ``.xml``/``.bin``).
        calibration: ``[N, C, H, W]`` float32 from :func:`~.calibration.load_calibration`.
        options: what to quantize (default :class:`Int8Options`).
        out_file: where to write (default :func:`int8_path`).

    Returns:
        The path of the int8 model file.

    Raises:
        QuantizationError: unreadable graph, too little calibration data for a fixed-batch graph, or
            the quantizer failed; nothing is written then.
        MissingExportPackageError: onnxruntime's quantizer, NNCF or OpenVINO is not installed.
    """
    _check_backend(backend)
    options = options or Int8Options()
    target = Path(out_file) if out_file else int8_path(float_onnx, backend)
    if options.keep_float == "auto":
        return _quantize_auto(float_onnx, backend, calibration, options, target)[0]
    model = load_for_quantization(float_onnx)
    batch = _input_batch(model)
    excluded = float_nodes(model, options)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-") as tmp, _quiet_root_logger():
        draft = Path(tmp) / target.name
        try:
            if backend == "onnxruntime":
                _quantize_ort(model, draft, calibration, options, batch, excluded)
            else:
                _quantize_openvino(model, draft, calibration, options, batch, excluded)
        except (QuantizationError, MissingExportPackageError):
            raise
        except Exception as error:
            raise QuantizationError(f"{backend} int8 quantization of {float_onnx} failed: {error}") from error
        if backend == "openvino":  # the weights first: the .xml names a complete .bin once it lands
            draft.with_suffix(".bin").replace(target.with_suffix(".bin"))
        draft.replace(target)
    logger.info("wrote %s int8 model %s (float: %s)", backend, target, ", ".join(excluded) or "nothing")
    return str(target)


def _quantize_ort(model, draft: Path, calibration: np.ndarray, options: Int8Options, batch: int | None,
                  excluded: list[str]) -> None:
    onnx = require("onnx", "int8 quantization")
    quantization = require("onnxruntime.quantization", "ONNX Runtime int8")
    name = model.graph.input[0].name
    source = draft.with_name("float.onnx")
    onnx.save(model, str(source))

    class Reader(quantization.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = ({name: chunk} for chunk in _chunks(calibration, batch or options.batch_size, bool(batch)))

        def get_next(self):
            return next(self._batches, None)

    quantization.quantize_static(
        str(source), str(draft), Reader(), quant_format=quantization.QuantFormat.QDQ, per_channel=options.per_channel,
        activation_type=quantization.QuantType.QUInt8, weight_type=quantization.QuantType.QInt8,
        calibrate_method=quantization.CalibrationMethod.MinMax, nodes_to_exclude=excluded,
        extra_options={"WeightSymmetric": True})
    source.unlink()


def _quantize_openvino(model, draft: Path, calibration: np.ndarray, options: Int8Options, batch: int | None,
                       excluded: list[str]) -> None:
    onnx = require("onnx", "int8 quantization")
    ov = require("openvino", "OpenVINO int8")
    nncf = require("nncf", "OpenVINO int8")
    source = draft.with_name("float.onnx")
    onnx.save(model, str(source))
    float_model = ov.Core().read_model(str(source))
    # OpenVINO's ONNX reader names each op after its ONNX node.
    missing = sorted(set(excluded) - {op.get_friendly_name() for op in float_model.get_ops()})
    if missing:
        raise QuantizationError(f"OpenVINO has no op for the ONNX nodes to keep in float: {missing}")
    items = list(_chunks(calibration, batch or options.batch_size, bool(batch)))
    from nncf.common.logging.logger import set_log_level
    set_log_level(logging.ERROR)  # its progress bars and notes would reach the user's console
    from nncf.quantization.advanced_parameters import QuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    # Activation ranges: the min and max over all calibration data (as ONNX Runtime's MinMax). NNCF's
    # default averages each calibration batch's min and max, so its ranges shrink with the batch size:
    # on a fold graph of batch 1 every "batch" is one sample, the ranges came out ~15 % narrower than at
    # batch 4 and clipped (rep_tiny on the digits: 0.40 rel logits error against 0.17; both 0.09 now).
    advanced = nncf.AdvancedQuantizationParameters(
        activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX,
        weights_quantization_params=None if options.per_channel else QuantizationParameters(per_channel=False))
    with captured_output("nncf"):  # its progress bars print to the console whatever the log level
        quantized = nncf.quantize(float_model, nncf.Dataset(items), preset=nncf.QuantizationPreset.PERFORMANCE,
                                  subset_size=len(items), advanced_parameters=advanced,
                                  ignored_scope=nncf.IgnoredScope(names=excluded) if excluded else None)
    ov.save_model(quantized, str(draft), compress_to_fp16=False)
    source.unlink()


def _quantize_auto(float_onnx: str | Path, backend: str, calibration: np.ndarray, options: Int8Options,
                   target: Path) -> tuple[str, dict]:
    """``keep_float="auto"``: quantize both candidates, keep the faster all-int8 file unless it measurably
    costs accuracy on the calibration data (the rule is at :data:`AUTO_SAMPLES`); returns its path and the
    figures behind the choice."""
    batch = _input_batch(load_for_quantization(float_onnx))
    data = calibration[:max(AUTO_SAMPLES, batch or 0)]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".int8-auto-") as tmp:
        files = {keep: quantize_onnx(float_onnx, backend, calibration, dataclasses.replace(options, keep_float=keep),
                                     Path(tmp) / f"{keep}{target.suffix}") for keep in ("none", "first_and_linear")}
        reference = _run_chunks(_runner(float_onnx, backend), data, batch)
        agrees, error = {}, {}
        for keep, file in files.items():
            output = _run_chunks(_runner(file, backend), data, batch)
            agrees[keep] = output.argmax(1) == reference.argmax(1)
            error[keep] = float(np.mean(np.abs(output - reference).max(1) / np.maximum(np.abs(reference).max(1),
                                                                                      1e-12)))
        net_flips = int(np.sum(agrees["first_and_linear"] & ~agrees["none"])
                        - np.sum(agrees["none"] & ~agrees["first_and_linear"]))
        worse = (net_flips > max(AUTO_NET_FLIPS, AUTO_AGREEMENT_SLACK * len(reference))
                 or error["none"] > max(AUTO_ERROR_RATIO * error["first_and_linear"], AUTO_ERROR_FLOOR))
        chosen = "first_and_linear" if worse else "none"
        agreement = {keep: float(np.mean(agree)) for keep, agree in agrees.items()}
        if backend == "openvino":  # the weights first: the .xml names a complete .bin once it lands
            Path(files[chosen]).with_suffix(".bin").replace(target.with_suffix(".bin"))
        Path(files[chosen]).replace(target)
    logger.info("keep_float='auto' for %s on %s: %s (top-1 agreement %s, mean output error %s on %d samples)",
                float_onnx, backend, chosen, agreement, error, len(reference))
    return str(target), {"chosen": chosen, "samples": len(reference), "top1_agreement": agreement,
                         "mean_rel_error": error, "net_flips": net_flips}


def _run_chunks(run: Callable[[np.ndarray], np.ndarray], data: np.ndarray, batch: int | None) -> np.ndarray:
    """``run`` over ``data`` in chunks (a fixed-batch graph: whole batches of it), outputs flattened per sample."""
    outputs = [run(chunk) for chunk in _chunks(data, batch or 8, bool(batch))]
    return np.concatenate(outputs).reshape(sum(len(o) for o in outputs), -1)


def quantize_exported(exported: Any, calibration: np.ndarray, backends: tuple[str, ...] = BACKENDS,
                      options: Int8Options | None = None) -> Int8Files:
    """Quantize every ONNX graph of an ``ExportedModel`` (``onnx_file`` and ``fold_onnx_files``) for each backend.

    With ``keep_float="auto"`` the choice is made on the batch-independent graph and the fold graphs follow it.

    Args:
        exported: an :class:`~paddle_rep.apps.exporter.ExportedModel` with an ONNX file.
        calibration: ``[N, C, H, W]`` float32 from :func:`~.calibration.load_calibration`.
        backends: which of :data:`BACKENDS` to quantize for.
        options: what to quantize (default :class:`Int8Options`).

    Returns:
        The int8 files per backend, with ``keep_float="auto"``'s choice and figures per backend.

    Raises:
        QuantizationError: the export has no ONNX file (export with ``onnx=True``), or a quantizer failed.
        ValueError: a backend is not one of :data:`BACKENDS`.
        MissingExportPackageError: a backend's quantizer or runtime is not installed.
    """
    if exported.onnx_file is None:
        raise QuantizationError(f"int8 quantizes the ONNX graphs: export with onnx=True; {exported.model_file} "
                                "has none")
    options = options or Int8Options()
    plain, folds, choices = {}, {}, {}
    for backend in backends:
        _check_backend(backend)
        resolved = options
        if options.keep_float == "auto":  # decided on the batch-independent graph; the fold graphs follow it
            plain[backend], choices[backend] = _quantize_auto(exported.onnx_file, backend, calibration, options,
                                                              int8_path(exported.onnx_file, backend))
            resolved = dataclasses.replace(options, keep_float=choices[backend]["chosen"])
        else:
            plain[backend] = quantize_onnx(exported.onnx_file, backend, calibration, options)
        folds[backend] = {size: quantize_onnx(file, backend, calibration, resolved)
                          for size, file in sorted(exported.fold_onnx_files.items())}
    return Int8Files(plain, folds, choices)


# --- runners -----------------------------------------------------------------------------------------

def int8_runner(file: str | Path, backend: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A callable running the int8 model ``file`` on ``backend``.

    Args:
        file: an int8 file from :func:`quantize_onnx` (an OpenVINO ``.xml`` needs its ``.bin`` next to it).
        backend: ``"onnxruntime"`` or ``"openvino"``.
        threads: the runtime's intra-op thread count (None: its default).

    Returns:
        ``runner(x [N, C, H, W] float32) -> output``; a fold graph takes only its own batch size.

    Raises:
        QuantizationError: ``file`` is missing (quantize first: ``export(..., calibration=DATA)``).
        ValueError: ``backend`` is not one of :data:`BACKENDS`.
        MissingExportPackageError: the backend's runtime is not installed.
    """
    _check_backend(backend)
    path = Path(file)
    if not path.is_file() or (backend == "openvino" and not path.with_suffix(".bin").is_file()):
        raise QuantizationError(f"int8 model {path} is missing: export with calibration data "
                                "(export(..., calibration=DATA) or paddle-rep export --calibration PATH)")
    return _runner(path, backend, threads)


def _runner(path: str | Path, backend: str, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Run any model file the runtime reads (ONNX, int8 or not; OpenVINO IR) on one request or session."""
    if backend == "onnxruntime":
        ort = require("onnxruntime", "the onnxruntime int8 backend")
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3
        if threads:
            session_options.intra_op_num_threads = threads
            session_options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), session_options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    ov = require("openvino", "the openvino int8 backend")
    # f32 for what stays float: on CPUs with bf16, OpenVINO would otherwise run those parts in bf16.
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    request = ov.Core().compile_model(str(path), "CPU", config).create_infer_request()

    def run(x: np.ndarray) -> np.ndarray:
        request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return request.get_output_tensor(0).data.copy()

    return run
