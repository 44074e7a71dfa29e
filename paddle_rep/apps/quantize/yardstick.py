"""The int8 accuracy yardstick on the shipped digits: float32 against int8 PTQ (per-tensor and per-channel
weights) and QAT, for a model of each zoo family, on both int8 runtimes.

``python -m paddle_rep.apps.quantize.yardstick [--epochs N]`` trains each family (:data:`FAMILIES`) on the
digits' training split, exports it with int8 files, and prints a markdown table (``docs/int8.md`` holds
the measured one): top-1 on the 356 held-out digits, top-1 agreement with float32, and the logits'
relative error (max over samples of ``max|int8 - f32| / max|f32|``, and its median). QAT (upstream's
Solution C, :mod:`.qat`) applies to the families whose deploy form is RepVGG's (one conv per block,
``rbr_reparam``): RepVGG, RepVGGplus and QARepVGG.

``--compare repvgg-qarepvgg`` (:func:`compare`) trains RepVGG and QARepVGG of the same width the same
way (per seed) and prints, besides the accuracy rows, each net's per-layer output SQNR under per-tensor
and per-channel PTQ (ONNX Runtime) side by side, and the fused kernels' weight ranges
(:func:`kernel_ranges`): what decides how much per-tensor int8 weights lose.
"""

import argparse
import logging
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..console import progress, quiet_paddle_notices

quiet_paddle_notices()  # a command-line entry point: before Paddle loads

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_rep.apps.data import Split, batches, load_digits  # noqa: E402
from paddle_rep.quant import insert_bn  # noqa: E402

from .ptq import BACKENDS, Int8Options  # noqa: E402

logger = logging.getLogger(__name__)


def _repvgg(depth: tuple[int, ...] = (1, 1, 1, 1)) -> paddle.nn.Layer:
    from paddle_rep.models.repvgg import RepVGG

    return RepVGG(list(depth), 10, width_multiplier=[0.5, 0.5, 0.5, 1])


def _qarepvgg(depth: tuple[int, ...] = (1, 1, 1, 1)) -> paddle.nn.Layer:
    # RepVGG's net class, width and depth exactly as _repvgg(), with QARepVGG's block (upstream's block_cls)
    from paddle_rep.models.repvgg import RepVGG
    from paddle_rep.qarepvgg import QARepVGGBlockV2

    return RepVGG(list(depth), 10, width_multiplier=[0.5, 0.5, 0.5, 1], block_cls=QARepVGGBlockV2)


def _mobileone() -> paddle.nn.Layer:
    # one depthwise/pointwise pair per stage at RepVGG's widths (32, 64, 128, 512); S0's 4 conv branches
    from paddle_rep.models.mobileone import MobileOne

    return MobileOne((1, 1, 1, 1), 10, width_multipliers=(0.5, 0.5, 0.5, 1), num_conv_branches=4)


def _dbb() -> paddle.nn.Layer:
    # DBB ResNet-10 (one BasicBlock per stage) at a quarter width: 16 to 128 channels, 0.7M parameters
    from paddle_rep.models.dbb import BasicBlock, DBBResNet

    return DBBResNet(BasicBlock, (1, 1, 1, 1), 10, width_multiplier=0.25)


def _repvggplus() -> paddle.nn.Layer:
    from paddle_rep.models.repvggplus import RepVGGplus

    return RepVGGplus([1, 1, 2, 1], 10, width_multiplier=[0.5, 0.5, 0.5, 0.5])


def _acnet() -> paddle.nn.Layer:
    from paddle_rep.models.acnet import ACNetCifarResNet

    return ACNetCifarResNet(1, num_classes=10)


def _odconv() -> paddle.nn.Layer:
    from paddle_rep.models.tiny import rep_tiny

    return rep_tiny(num_classes=10, in_channels=3, width=8)


# family -> (builder, QAT applies)
FAMILIES: dict[str, tuple[Callable[[], paddle.nn.Layer], bool]] = {
    "RepVGG": (_repvgg, True),
    "RepVGGplus": (_repvggplus, True),
    "ACNet (CIFAR ResNet-8)": (_acnet, False),
    "ODConv (rep_tiny, kernel_num 4)": (_odconv, False),
    "QARepVGG": (_qarepvgg, True),
    "MobileOne (4 conv branches)": (_mobileone, False),
    "DBB (ResNet-10, width 0.25)": (_dbb, False),
}

# A0's stage pattern (2, 4, 14, 1) shortened: with one block per stage (the families above) every block has
# stride 2 and no identity branch; here 7 blocks have one, the branch whose folding QARepVGG is about.
DEEPER = (2, 4, 4, 1)
# Families only --compare trains (not in the yardstick's table).
COMPARE_FAMILIES: dict[str, tuple[Callable[[], paddle.nn.Layer], bool]] = {
    "RepVGG (2, 4, 4, 1)": (lambda: _repvgg(DEEPER), True),
    "QARepVGG (2, 4, 4, 1)": (lambda: _qarepvgg(DEEPER), True),
}

# --compare NAME -> the families it trains side by side
COMPARISONS = {"repvgg-qarepvgg": ("RepVGG", "QARepVGG"),
               "repvgg-qarepvgg-deeper": ("RepVGG (2, 4, 4, 1)", "QARepVGG (2, 4, 4, 1)")}
# The stem conv and the classifier float, as upstream's example; "all-int8" quantizes them too. The default
# keep_float="auto" measures both per export (it kept all-int8 for the digits models of the tests).
_FLOAT_STEM = "first_and_linear"
PTQ_METHODS = {"PTQ per-tensor": Int8Options(per_channel=False, keep_float=_FLOAT_STEM),
               "PTQ per-channel": Int8Options(keep_float=_FLOAT_STEM),
               "PTQ per-tensor all-int8": Int8Options(per_channel=False, keep_float="none"),
               "PTQ per-channel all-int8": Int8Options(keep_float="none")}
COMPARE_METHODS = ("PTQ per-tensor", "PTQ per-channel", "PTQ per-tensor all-int8", "PTQ per-channel all-int8")


# "all int8": Int8Options(keep_float="none"), the stem conv and the classifier quantized too
METHODS = ("PTQ per-tensor", "PTQ per-channel", "PTQ per-channel all-int8", "QAT")


@dataclass(frozen=True)
class Result:
    """One family, method and backend: top-1, agreement with float32 and the logits' relative error."""

    family: str
    method: str
    backend: str
    top1: float
    agreement: float
    max_error: float
    median_error: float


def digits3() -> Split:
    """The digits as three equal channels (the zoo families take RGB).

    Returns:
        The split.
    """
    d = load_digits()
    return Split(np.repeat(d.x_train, 3, 1), d.y_train, np.repeat(d.x_test, 3, 1), d.y_test)


def train(model: paddle.nn.Layer, data: Split, epochs: int, lr: float = 0.05, seed: int = 0) -> paddle.nn.Layer:
    """SGD with momentum and a cosine schedule on the digits' training split; returns the model in eval mode.

    Args:
        model: the model (trained in place).
        data: the digits.
        epochs: passes over the training split.
        lr: the peak learning rate.
        seed: shuffling seed (the batch order depends on it and the epoch only).

    Returns:
        ``model``, in eval mode.
    """
    steps = epochs * -(-len(data.x_train) // 64)
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, steps)
    optimizer = paddle.optimizer.Momentum(learning_rate=schedule, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=1e-4)
    for epoch in range(epochs):
        model.train()
        for xb, yb in batches(data.x_train, data.y_train, 64, epoch, seed):
            out = model(paddle.to_tensor(xb))
            if isinstance(out, dict):  # RepVGGplus: main + 0.1 x aux heads
                loss = sum((1.0 if k == "main" else 0.1) * paddle.nn.functional.cross_entropy(v, paddle.to_tensor(yb))
                           for k, v in out.items())
            else:
                loss = paddle.nn.functional.cross_entropy(out, paddle.to_tensor(yb))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            schedule.step()
    model.eval()
    return model


def measure(family: str, method: str, backend: str, logits: np.ndarray, reference: np.ndarray,
            labels: np.ndarray) -> Result:
    """The figures of ``logits`` against the float32 ``reference`` and the ``labels``.

    Args:
        family: the family's name.
        method: ``"float32"``, ``"PTQ per-tensor"``, ``"PTQ per-channel"`` or ``"QAT"``.
        backend: the int8 runtime (``"-"`` for float32).
        logits: the method's logits on the held-out digits.
        reference: float32 logits on the same images.
        labels: the images' labels.

    Returns:
        The :class:`Result`.
    """
    errors = np.abs(logits - reference).max(1) / np.abs(reference).max(1)
    return Result(family, method, backend, float(np.mean(logits.argmax(1) == labels)),
                  float(np.mean(logits.argmax(1) == reference.argmax(1))), float(errors.max()),
                  float(np.median(errors)))


@dataclass
class TrainedFamily:
    """One family trained and exported: the model, the data, float32 logits and the exports per method."""

    family: str
    seed: int
    model: paddle.nn.Layer
    data: Split
    reference: np.ndarray
    float_onnx: str
    exports: dict = field(default_factory=dict)  # method -> ExportedModel with its int8 files


def train_and_export(family: str, epochs: int, folder: Path, qat_steps: int = 100, backends: tuple[str, ...] = BACKENDS,
                     methods: tuple[str, ...] = METHODS, seed: int = 0) -> TrainedFamily:
    """Train one family on the digits and export it in float32 and with the int8 files of each method.

    Args:
        family: a key of :data:`FAMILIES` or :data:`COMPARE_FAMILIES`.
        epochs: training epochs.
        folder: where the exports go.
        qat_steps: QAT steps (the last quarter with BN and observers frozen).
        backends: int8 runtimes.
        methods: which int8 methods to run (:data:`METHODS`, :data:`PTQ_METHODS`; QAT only where it applies).
        seed: ``paddle.seed`` before the model is built, and the shuffling seed.

    Returns:
        The :class:`TrainedFamily`.
    """
    from paddle_rep.apps import Predictor, export

    from .qat import QATConfig, export_qat, quantization_aware_training

    builder, qat_applies = {**FAMILIES, **COMPARE_FAMILIES}[family]
    data = digits3()
    paddle.seed(seed)
    model = train(builder(), data, epochs, seed=seed)
    shape = data.x_train.shape[1:]
    calibration = data.x_train[:128]
    exported = export(model, folder / "f32", shape, onnx=True)
    with Predictor(exported, "onnxruntime") as predictor:
        reference = predictor(data.x_test)
    trained = TrainedFamily(family, seed, model, data, reference, exported.onnx_file)
    for method, options in PTQ_METHODS.items():
        if method in methods:
            trained.exports[method] = export(model, folder / method.replace(" ", "_"), shape, onnx=True,
                                             calibration=calibration, int8_options=options, int8_backends=backends)
    if qat_applies and "QAT" in methods:
        qat = quantization_aware_training(model, lambda: batches(data.x_train, data.y_train, 64, 0),
                                          QATConfig(steps=qat_steps, freeze_steps=qat_steps // 4))
        trained.exports["QAT"] = export_qat(qat, insert_bn(model, calibration[:32]), folder / "qat", shape,
                                            calibration, int8_backends=backends)
    return trained


def measure_exports(trained: TrainedFamily, backends: tuple[str, ...] = BACKENDS) -> list[Result]:
    """Float32 and every int8 export of ``trained`` on the held-out digits, on each runtime.

    Args:
        trained: from :func:`train_and_export`.
        backends: int8 runtimes (those the exports were made for).

    Returns:
        One float32 result and one per method and backend.
    """
    from paddle_rep.apps import Predictor

    data, reference = trained.data, trained.reference
    results = [measure(trained.family, "float32", "-", reference, reference, data.y_test)]
    for method, exported in trained.exports.items():
        for backend in backends:
            with Predictor(exported, backend, precision="int8") as predictor:
                results.append(measure(trained.family, method, backend, predictor(data.x_test), reference,
                                       data.y_test))
    return results


def run_family(family: str, epochs: int, folder: Path, qat_steps: int = 100, backends: tuple[str, ...] = BACKENDS,
               methods: tuple[str, ...] = METHODS, seed: int = 0) -> list[Result]:
    """Train one family, then measure float32, PTQ per-tensor, PTQ per-channel and (where it applies) QAT.

    Args:
        family: a key of :data:`FAMILIES`.
        epochs: training epochs.
        folder: where the exports go.
        qat_steps: QAT steps (the last quarter with BN and observers frozen).
        backends: int8 runtimes.
        methods: which of the int8 methods to run.
        seed: ``paddle.seed`` before the model is built, and the shuffling seed.

    Returns:
        One float32 result and one per method and backend.
    """
    trained = train_and_export(family, epochs, folder, qat_steps, backends, methods, seed)
    return measure_exports(trained, backends)


@dataclass(frozen=True)
class KernelRange:
    """A fused layer's weight range per output channel: ``max|w_c|`` over the channels ``c``.

    ``spread`` is ``max_abs / median_channel``: a per-tensor int8 scale is set by the widest channel, so the
    median channel is left about ``127 / spread`` levels; per-channel scales give every channel all 127.
    """

    layer: str
    channels: int
    max_abs: float
    median_channel: float
    min_channel: float

    @property
    def spread(self) -> float:
        """How much wider the widest channel is than the median one.

        Returns:
            ``max_abs / median_channel`` (inf for an all-zero median channel).
        """
        return self.max_abs / self.median_channel if self.median_channel > 0 else math.inf


def kernel_ranges(model: paddle.nn.Layer) -> list[KernelRange]:
    """The weight ranges of ``model``'s deploy form: each Conv2D and Linear, in the order they were built.

    Args:
        model: a model (fused on a copy; it is not modified).

    Returns:
        One :class:`KernelRange` per conv and linear layer (a Linear's output channels are its columns).
    """
    from paddle_rep.reparam import reparameterize_model

    fused = reparameterize_model(model, inplace=False)
    ranges = []
    for name, layer in fused.named_sublayers():
        if isinstance(layer, paddle.nn.Conv2D):
            weight = np.abs(layer.weight.numpy()).reshape(layer.weight.shape[0], -1)
        elif isinstance(layer, paddle.nn.Linear):
            weight = np.abs(layer.weight.numpy()).T  # Paddle stores [in, out]
        else:
            continue
        per_channel = weight.max(axis=1)
        ranges.append(KernelRange(name, len(per_channel), float(per_channel.max()), float(np.median(per_channel)),
                                  float(per_channel.min())))
    return ranges


@dataclass(frozen=True)
class ActivationRange:
    """A fused layer's output on held-out data: its peak ``max|y|`` against its RMS.

    A per-tensor int8 activation grid spans the peak, so its noise relative to the signal grows with
    ``peak / rms`` (every 2x costs about 6 dB of SQNR); ``channel_spread`` is the largest channel RMS over
    the median channel RMS (per-tensor activation scales leave the quiet channels few levels).
    """

    layer: str
    peak: float
    rms: float
    channel_spread: float

    @property
    def crest(self) -> float:
        """How heavy the output's tail is.

        Returns:
            ``peak / rms`` (inf for an all-zero output).
        """
        return self.peak / self.rms if self.rms > 0 else math.inf


def activation_ranges(model: paddle.nn.Layer, x: np.ndarray) -> list[ActivationRange]:
    """The output ranges of ``model``'s deploy-form Conv2D and Linear layers on ``x``, in the order they were built.

    Args:
        model: a model (fused on a copy; it is not modified).
        x: inputs ``[N, C, H, W]`` float32.

    Returns:
        One :class:`ActivationRange` per conv and linear layer.
    """
    from paddle_rep.reparam import reparameterize_model

    fused = reparameterize_model(model, inplace=False)
    layers = [(name, layer) for name, layer in fused.named_sublayers()
              if isinstance(layer, (paddle.nn.Conv2D, paddle.nn.Linear))]
    outputs: dict[str, np.ndarray] = {}

    def hook(name):
        def record(layer, inputs, output):
            outputs[name] = output.numpy().astype(np.float64)
        return record

    handles = [layer.register_forward_post_hook(hook(name)) for name, layer in layers]
    try:
        with paddle.no_grad():
            fused(paddle.to_tensor(np.ascontiguousarray(x, dtype=np.float32)))
    finally:
        for handle in handles:
            handle.remove()
    ranges = []
    for name, _ in layers:
        y = outputs[name]
        channels = np.moveaxis(y, 1, 0).reshape(y.shape[1], -1)
        channel_rms = np.sqrt((channels ** 2).mean(axis=1))
        median = float(np.median(channel_rms))
        ranges.append(ActivationRange(name, float(np.abs(y).max()), float(np.sqrt((y ** 2).mean())),
                                      float(channel_rms.max() / median) if median > 0 else math.inf))
    return ranges


@dataclass
class FamilyInt8:
    """One family and seed in a comparison: its results, kernel ranges and per-layer SQNR per PTQ method.

    ``sqnr`` maps a method to ``(layer, dB)`` in graph order (ONNX Runtime; inf for a layer kept float),
    where ``layer`` is the fused model's layer name when the graph's weighted ops match them one to one.
    """

    family: str
    seed: int
    results: list[Result]
    kernels: list[KernelRange]
    activations: list[ActivationRange]
    sqnr: dict[str, list[tuple[str, float]]]


def _graph_order_sqnr(trained: TrainedFamily, method: str, kernels: list[KernelRange]) -> list[tuple[str, float]]:
    """Per-layer output SQNR of ``method``'s ONNX Runtime file on the held-out digits, in graph order, labelled
    with the fused model's layer names where the weighted ops match ``kernels`` one to one in output channels
    (else with the ONNX node names)."""
    from .ptq import load_for_quantization, weighted_nodes
    from .report import check_int8

    exported = trained.exports[method]
    report = check_int8(exported.onnx_file, exported.int8.onnx_file["onnxruntime"], "onnxruntime",
                        trained.data.x_test)
    by_name = {layer.name: layer.sqnr_db for layer in report.layers}
    model = load_for_quantization(exported.onnx_file)
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    nodes = weighted_nodes(model)

    def channels(node) -> int | None:
        dims = weights.get(node.input[1]) if len(node.input) > 1 else None
        if not dims:
            return None
        transposed = any(a.name == "transB" and a.i for a in node.attribute)  # Gemm with B as [out, in]
        return dims[0] if node.op_type == "Conv" or transposed else dims[-1]  # MatMul: [in, out]

    matched = len(kernels) == len(nodes) and all(channels(n) == k.channels for n, k in zip(nodes, kernels,
                                                                                            strict=False))
    labels = [k.layer for k in kernels] if matched else [node.name for node in nodes]
    return [(label, by_name[node.name]) for label, node in zip(labels, nodes, strict=True)]


def compare(families: Sequence[str], epochs: int, folder: Path, seeds: Sequence[int] = (0,),
            methods: tuple[str, ...] = COMPARE_METHODS, backends: tuple[str, ...] = BACKENDS) -> list[FamilyInt8]:
    """Train ``families`` the same way (same epochs, lr and seeds) and measure their PTQ int8 side by side.

    Args:
        families: keys of :data:`FAMILIES` or :data:`COMPARE_FAMILIES` (e.g. ``COMPARISONS["repvgg-qarepvgg"]``).
        epochs: training epochs.
        folder: where the exports go.
        seeds: one training per family and seed.
        methods: PTQ methods (keys of :data:`PTQ_METHODS`).
        backends: int8 runtimes (the per-layer SQNR needs ``"onnxruntime"``).

    Returns:
        One :class:`FamilyInt8` per seed and family, seed-major.

    Raises:
        ValueError: a method is not a PTQ method.
    """
    unknown = [m for m in methods if m not in PTQ_METHODS]
    if unknown:
        raise ValueError(f"compare runs PTQ methods only ({sorted(PTQ_METHODS)}), got {unknown}")
    out = []
    for seed in seeds:
        for family in families:
            started = time.perf_counter()
            trained = train_and_export(family, epochs, folder / f"{len(out)}", methods=methods,
                                       backends=backends, seed=seed)
            kernels = kernel_ranges(trained.model)
            sqnr = {m: _graph_order_sqnr(trained, m, kernels) for m in methods} if "onnxruntime" in backends else {}
            activations = activation_ranges(trained.model, trained.data.x_test)
            out.append(FamilyInt8(family, seed, measure_exports(trained, backends), kernels, activations, sqnr))
            logger.info("compare: %s seed %d took %.0f s", family, seed, time.perf_counter() - started)
    return out


def _db(value: float) -> str:
    return "float" if math.isinf(value) else f"{value:.1f}"


def render_comparison(compared: list[FamilyInt8]) -> str:
    """Markdown tables of :func:`compare`'s result: accuracy per seed, then per-layer SQNR and kernel ranges.

    Args:
        compared: from :func:`compare` (the layer tables use each family's first seed).

    Returns:
        The tables.
    """
    families = list(dict.fromkeys(c.family for c in compared))
    methods = list(dict.fromkeys(m for c in compared for m in c.sqnr))
    lines = ["| seed | family | method | backend | top-1 | agreement with f32 | logits rel. error (max / median) |",
             "|---:|---|---|---|---:|---:|---:|"]
    for c in compared:
        for r in c.results:
            error = "" if r.method == "float32" else f"{r.max_error:.3f} / {r.median_error:.3f}"
            agreement = "" if r.method == "float32" else f"{100 * r.agreement:.1f} %"
            lines.append(f"| {c.seed} | {r.family} | {r.method} | {r.backend} | {100 * r.top1:.1f} % | {agreement} "
                         f"| {error} |")
    first = {family: next(c for c in compared if c.family == family) for family in families}
    if methods:
        lines += ["", f"Per-layer output SQNR in dB, ONNX Runtime, graph order (seed {compared[0].seed}; "
                      "'float': layer kept float32):", ""]
        header = [f"{family} {method.removeprefix('PTQ ')}" for method in methods for family in families]
        lines += ["| layer | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
        rows = [layer for layer, _ in first[families[0]].sqnr[methods[0]]]
        for index, layer in enumerate(rows):
            cells = []
            for method in methods:
                for family in families:
                    table = first[family].sqnr.get(method, [])
                    cells.append(_db(table[index][1]) if index < len(table) else "")
            lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    lines += ["", "Fused kernels, per output channel c: max|w_c|; spread = max over c / median over c "
                  "(the median channel's share of a per-tensor int8 grid is about 127 / spread levels):", ""]
    header = [f"{family} {what}" for family in families for what in ("max abs", "median c", "spread")]
    lines += ["| layer | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for index, kernel in enumerate(first[families[0]].kernels):
        cells = []
        for family in families:
            kernels = first[family].kernels
            if index < len(kernels):
                k = kernels[index]
                cells += [f"{k.max_abs:.3g}", f"{k.median_channel:.3g}", f"{k.spread:.1f}"]
            else:
                cells += ["", "", ""]
        lines.append(f"| {kernel.layer} | " + " | ".join(cells) + " |")
    lines += ["", "Layer outputs on the held-out digits (float32): peak / RMS (each 2x costs a per-tensor int8 "
                  "grid about 6 dB) and the largest channel RMS over the median one:", ""]
    header = [f"{family} {what}" for family in families for what in ("peak / RMS", "channel RMS spread")]
    lines += ["| layer | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for index, activation in enumerate(first[families[0]].activations):
        cells = []
        for family in families:
            ranges = first[family].activations
            cells += [f"{ranges[index].crest:.1f}", f"{ranges[index].channel_spread:.1f}"] if index < len(ranges) \
                else ["", ""]
        lines.append(f"| {activation.layer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(results: list[Result]) -> str:
    """The markdown table of ``results``.

    Args:
        results: from :func:`run_family`.

    Returns:
        The table.
    """
    lines = ["| family | method | backend | top-1 | agreement with f32 | logits rel. error (max / median) |",
             "|---|---|---|---:|---:|---:|"]
    for r in results:
        error = "" if r.method == "float32" else f"{r.max_error:.3f} / {r.median_error:.3f}"
        agreement = "" if r.method == "float32" else f"{100 * r.agreement:.1f} %"
        lines.append(f"| {r.family} | {r.method} | {r.backend} | {100 * r.top1:.1f} % | {agreement} | {error} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the yardstick (or, with ``--compare``, a side-by-side comparison) and print its tables.

    Args:
        argv: command-line arguments (default: ``sys.argv``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per family (default 30)")
    parser.add_argument("--qat-steps", type=int, default=100, help="QAT steps (default 100)")
    parser.add_argument("--only", action="append", default=[], help="families whose name contains this")
    parser.add_argument("--methods", default=None,
                        help=f"comma-separated, of {METHODS} (default: all); with --compare, of {COMPARE_METHODS}")
    parser.add_argument("--compare", choices=sorted(COMPARISONS),
                        help="train these families side by side (PTQ only); adds per-layer SQNR and kernel ranges")
    parser.add_argument("--seeds", default="0", help="with --compare: comma-separated training seeds (default 0)")
    args = parser.parse_args(argv)
    default = COMPARE_METHODS if args.compare else METHODS
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip()) if args.methods else default
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.compare:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
            print(render_comparison(compare(COMPARISONS[args.compare], args.epochs, Path(tmp), seeds, methods)))
        else:
            results = []
            families = [f for f in FAMILIES if not args.only or any(o in f for o in args.only)]
            with progress(families, desc="families", unit="family") as chosen:
                for family in chosen:
                    results += run_family(family, args.epochs, Path(tmp) / family.split()[0], args.qat_steps,
                                          methods=methods)
            print(render(results), flush=True)  # one table, once every family is measured
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
