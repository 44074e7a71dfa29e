"""The int8 accuracy yardstick on the shipped digits: float32 against int8 PTQ (per-tensor and per-channel
weights) and QAT, for a model of each zoo family, on both int8 runtimes.

``python -m paddle_rep.apps.quantize.yardstick [--epochs N]`` trains each family (:data:`FAMILIES`) on the
digits' training split, exports it with int8 files, and prints a markdown table (``docs/int8.md`` holds
the measured one): top-1 on the 356 held-out digits, top-1 agreement with float32, and the logits'
relative error (max over samples of ``max|int8 - f32| / max|f32|``, and its median). QAT (upstream's
Solution C, :mod:`.qat`) applies to the RepVGG-block families only.
"""

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..console import quiet_paddle_notices

quiet_paddle_notices()  # a command-line entry point: before Paddle loads

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from paddle_rep.apps.data import Split, batches, load_digits  # noqa: E402
from paddle_rep.quant import insert_bn  # noqa: E402

from .ptq import BACKENDS, Int8Options  # noqa: E402


def _repvgg() -> paddle.nn.Layer:
    from paddle_rep.models.repvgg import RepVGG

    return RepVGG([1, 1, 1, 1], 10, width_multiplier=[0.5, 0.5, 0.5, 1])


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
}


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
        seed: shuffling seed.

    Returns:
        ``model``, in eval mode.
    """
    steps = epochs * -(-len(data.x_train) // 64)
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, steps)
    optimizer = paddle.optimizer.Momentum(learning_rate=schedule, momentum=0.9, parameters=model.parameters(),
                                          weight_decay=1e-4)
    for epoch in range(epochs):
        model.train()
        for xb, yb in batches(data.x_train, data.y_train, 64, seed + epoch):
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


def run_family(family: str, epochs: int, folder: Path, qat_steps: int = 100, backends=BACKENDS,
               methods: tuple[str, ...] = METHODS) -> list[Result]:
    """Train one family, then measure float32, PTQ per-tensor, PTQ per-channel and (where it applies) QAT.

    Args:
        family: a key of :data:`FAMILIES`.
        epochs: training epochs.
        folder: where the exports go.
        qat_steps: QAT steps (the last quarter with BN and observers frozen).
        backends: int8 runtimes.
        methods: which of the int8 methods to run.

    Returns:
        One float32 result and one per method and backend.
    """
    from paddle_rep.apps import Predictor, export

    from .qat import QATConfig, export_qat, quantization_aware_training

    builder, qat_applies = FAMILIES[family]
    data = digits3()
    paddle.seed(0)
    model = train(builder(), data, epochs)
    shape = data.x_train.shape[1:]
    calibration = data.x_train[:128]
    with Predictor(export(model, folder / "f32", shape, onnx=True), "onnxruntime") as predictor:
        reference = predictor(data.x_test)
    results = [measure(family, "float32", "-", reference, reference, data.y_test)]
    exports = {}
    for method, options in (("PTQ per-tensor", Int8Options(per_channel=False)), ("PTQ per-channel", Int8Options()),
                            ("PTQ per-channel all-int8", Int8Options(keep_float="none"))):
        if method not in methods:
            continue
        exports[method] = export(model, folder / method.replace(" ", "_"), shape, onnx=True, calibration=calibration,
                                 int8_options=options, int8_backends=backends)
    if qat_applies and "QAT" in methods:
        qat = quantization_aware_training(model, lambda: batches(data.x_train, data.y_train, 64, 0),
                                          QATConfig(steps=qat_steps, freeze_steps=qat_steps // 4))
        exports["QAT"] = export_qat(qat, insert_bn(model, calibration[:32]), folder / "qat", shape, calibration,
                                    int8_backends=backends)
    for method, exported in exports.items():
        for backend in backends:
            with Predictor(exported, backend, precision="int8") as predictor:
                results.append(measure(family, method, backend, predictor(data.x_test), reference, data.y_test))
    return results


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
    """Run the yardstick and print its table.

    Args:
        argv: command-line arguments (default: ``sys.argv``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="training epochs per family (default 30)")
    parser.add_argument("--qat-steps", type=int, default=100, help="QAT steps (default 100)")
    parser.add_argument("--only", action="append", default=[], help="families whose name contains this")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {METHODS}")
    args = parser.parse_args(argv)
    methods = tuple(m.strip() for m in args.methods.split(",") if m.strip())
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            if args.only and not any(o in family for o in args.only):
                continue
            results += run_family(family, args.epochs, Path(tmp) / family.split()[0], args.qat_steps,
                                  methods=methods)
            print(render(results), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
