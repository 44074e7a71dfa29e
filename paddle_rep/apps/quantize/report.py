"""The int8 check: how far an int8 model is from its float32 graph, and at which layer it goes wrong.

:func:`check_int8` runs the float32 ONNX graph and its int8 file on held-out data and returns an
:class:`Int8Report`: top-1 agreement, the output's relative error and, for ONNX Runtime's QDQ file,
a per-layer table: each Conv / MatMul / Gemm output's signal-to-quantization-noise ratio
``10 log10(sum f^2 / sum (q - f)^2)`` in dB, worst first. The layer outputs are read by making them
extra graph outputs in copies of both graphs (the QDQ file keeps the float graph's tensor names).
Rule of thumb: above ~30 dB a layer is harmless; a layer far below its neighbours is where accuracy is lost.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..optional import require
from .ptq import _chunks, _input_batch, load_for_quantization, weighted_nodes


@dataclass(frozen=True)
class LayerSQNR:
    """One layer's output fidelity: ``sqnr_db`` of int8 against float32 (higher is better)."""

    name: str
    op: str
    output: str
    sqnr_db: float


@dataclass(frozen=True)
class Int8Report:
    """int8 against float32 on ``samples`` held-out inputs; ``layers`` worst first (ONNX Runtime's QDQ file only)."""

    backend: str
    samples: int
    top1_agreement: float
    max_rel_error: float
    mean_rel_error: float
    layers: tuple[LayerSQNR, ...] = ()

    def render(self, limit: int = 10) -> str:
        """The report as text for the command line.

        Args:
            limit: How many of the worst layers to list.

        Returns:
            The summary line, then the ``limit`` worst layers.
        """
        lines = [f"int8 check ({self.backend}, {self.samples} held-out samples): top-1 agreement "
                 f"{100 * self.top1_agreement:.2f} %, output rel. error max {self.max_rel_error:.2e} "
                 f"mean {self.mean_rel_error:.2e}"]
        if self.layers:
            shown = self.layers[:limit]
            width = max(len(layer.name) for layer in shown)
            lines.append(f"  worst layers (output SQNR int8 vs float32, {len(shown)} of {len(self.layers)}):")
            lines += [f"    {layer.name:<{width}}  {layer.op:<6}  {layer.sqnr_db:7.1f} dB" for layer in shown]
        return "\n".join(lines)


def _db(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)``; inf for no noise."""
    return float("inf") if noise == 0 else 10.0 * float(np.log10(max(signal, 1e-30) / noise))


def _session_with_outputs(model, names: list[str]):
    """An ONNX Runtime session on a copy of ``model`` whose graph also returns the tensors ``names``."""
    onnx = require("onnx", "the int8 check")
    ort = require("onnxruntime", "the int8 check")
    model = onnx.ModelProto.FromString(model.SerializeToString())
    present = {value.name for value in model.graph.output}
    for name in names:
        if name not in present:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Layer outputs are compared as written: no fusion may move them.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _comparable_outputs(model, int8_model, nodes: list) -> list[tuple]:
    """The layers whose output both graphs hold: ``(node, float tensor, int8 tensor, relu)`` for each.

    ONNX Runtime's quantizer drops a ReLU after a quantized conv (the quantize op's uint8 range, starting at
    0, does its work) and the conv then writes the ReLU's tensor name, before the ReLU: such a layer is
    compared after its activation, with ``relu`` set to apply it to the int8 tensor.
    """
    produced = {name for node in int8_model.graph.node for name in node.output}
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found = []
    for node in nodes:
        output, after = node.output[0], consumers.get(node.output[0], [])
        if output in produced:
            found.append((node, output, output, False))
        elif len(after) == 1 and after[0].op_type == "Relu" and after[0].output[0] in produced:
            found.append((node, after[0].output[0], after[0].output[0], True))
    return found


def check_int8(float_onnx: str | Path, int8_file: str | Path, backend: str, data: np.ndarray,
               threads: int | None = None, per_layer: bool = True) -> Int8Report:
    """Compare ``int8_file`` with the float32 graph it came from on ``data`` (held out from calibration).

    Args:
        float_onnx: the float32 ONNX graph that was quantized.
        int8_file: its int8 file (``.int8.onnx`` or ``.int8.xml``).
        backend: ``"onnxruntime"`` or ``"openvino"``.
        data: ``[N, C, H, W]`` float32 samples; a fixed-batch (fold) graph uses whole batches only.
        threads: runtime threads (None: its default).
        per_layer: build the per-layer SQNR table (ONNX Runtime's QDQ file only).

    Returns:
        The report.
    """
    from .ptq import int8_runner  # the runner is the contract under test: use it, not a private session

    model = load_for_quantization(float_onnx)
    batch = _input_batch(model)
    chunks = list(_chunks(data, batch or 8, bool(batch)))
    layers, int8_model = [], None
    if per_layer and backend == "onnxruntime":
        int8_model = require("onnx", "the int8 check").load(str(int8_file))
        layers = _comparable_outputs(model, int8_model, weighted_nodes(model))
    float_session = _session_with_outputs(model, [layer[1] for layer in layers])
    int8_session = _session_with_outputs(int8_model, [layer[2] for layer in layers]) if layers else None
    run_int8 = int8_runner(int8_file, backend, threads)
    name = model.graph.input[0].name
    expected, actual = [], []
    sums = np.zeros((len(layers), 2))  # per layer: signal, noise
    for chunk in chunks:
        reference = float_session.run(None, {name: chunk})
        expected.append(reference[0])
        actual.append(run_int8(chunk))
        if int8_session is not None:
            floats = dict(zip([o.name for o in float_session.get_outputs()], reference, strict=True))
            quantized = dict(zip([o.name for o in int8_session.get_outputs()],
                                 int8_session.run(None, {name: chunk}), strict=True))
            for index, (_, float_name, int8_name, relu) in enumerate(layers):
                f = floats[float_name].astype(np.float64)
                q = np.maximum(quantized[int8_name], 0) if relu else quantized[int8_name]
                sums[index] += (np.sum(f ** 2), np.sum((q - f) ** 2))
    table = [LayerSQNR(node.name, node.op_type, float_name, _db(signal, noise))
             for (node, float_name, _, _), (signal, noise) in zip(layers, sums, strict=True)]
    return compare_outputs(backend, np.concatenate(expected), np.concatenate(actual), table)


def compare_outputs(backend: str, expected: np.ndarray, actual: np.ndarray,
                    layers: list[LayerSQNR] | tuple[LayerSQNR, ...] = ()) -> Int8Report:
    """Summarise int8 outputs against float32 ones on the same samples.

    Args:
        backend: The int8 runtime, named in the report.
        expected: Float32 outputs ``[N, ...]``.
        actual: int8 outputs of the same samples.
        layers: Per-layer figures, in any order (sorted worst first here).

    Returns:
        The report: top-1 agreement, and per sample ``max |int8 - f32| / max |f32|``, its max and mean.
    """
    expected, actual = expected.reshape(len(expected), -1), actual.reshape(len(actual), -1)
    errors = np.abs(actual - expected).max(axis=1) / np.maximum(np.abs(expected).max(axis=1), 1e-12)
    agreement = float(np.mean(expected.argmax(1) == actual.argmax(1)))
    return Int8Report(backend, len(expected), agreement, float(errors.max()), float(errors.mean()),
                      tuple(sorted(layers, key=lambda layer: layer.sqnr_db)))
