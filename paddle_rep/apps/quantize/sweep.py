"""int8 over the model zoo on random weights: a smoke sweep of export, post-training int8 and both int8 runtimes.

``python -m paddle_rep.apps.quantize.sweep [--models PATTERN ...] [--size 32]`` builds each model (training form,
BatchNorm statistics and affine parameters randomised), exports it with ONNX (timed, fusion included), quantizes
the graph for ONNX Runtime and for OpenVINO with the default :class:`~.ptq.Int8Options` (each timed) and runs
:func:`~.report.check_int8` on random held-out inputs: each int8 runtime against the float32 graph. It prints a
markdown table, one row per model and runtime (``docs/int8.md`` holds a measured one).

Random weights and random inputs say nothing about int8 accuracy: the sweep shows that every model exports,
quantizes and runs, and that its int8 output stays near float32. The accuracy yardstick on trained models is
:mod:`.yardstick`.
"""

import argparse
import dataclasses
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..console import quiet_paddle_notices

quiet_paddle_notices()  # a command-line entry point: before Paddle loads

import numpy as np  # noqa: E402
import paddle  # noqa: E402

from .ptq import BACKENDS, Int8Files, quantize_exported  # noqa: E402

logger = logging.getLogger(__name__)

# The newer families by default; any registry pattern works (``--models "repvgg_*"``).
DEFAULT_PATTERNS = ("qarepvgg_*", "mobileone_*", "dbb_*")


@dataclass(frozen=True)
class SweepResult:
    """One model on one int8 runtime: errors against float32 and how long each step took."""

    model: str
    backend: str
    samples: int
    top1_agreement: float
    max_rel_error: float
    mean_rel_error: float
    worst_layer_db: float | None  # ONNX Runtime's QDQ file only
    median_margin: float  # float32's top-1 minus top-2 logit over max |logit|, median over the samples
    export_s: float
    quantize_s: float


def randomize_bn(model: paddle.nn.Layer, rng: np.random.Generator) -> None:
    """Give every BatchNorm non-default statistics and affine parameters (a fold of the defaults looks right).

    Args:
        model: The model, changed in place.
        rng: Source of the values.
    """
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, paddle.nn.layer.norm._BatchNormBase):
            n, dtype = layer._mean.shape[0], layer._mean.dtype
            layer._mean.set_value(paddle.to_tensor(rng.normal(0.0, 0.5, n), dtype=dtype))
            layer._variance.set_value(paddle.to_tensor(rng.uniform(0.5, 2.0, n), dtype=dtype))
            if layer.weight is not None:
                layer.weight.set_value(paddle.to_tensor(rng.uniform(0.5, 1.5, n), dtype=dtype))
                layer.bias.set_value(paddle.to_tensor(rng.normal(0.0, 0.5, n), dtype=dtype))


def sweep_model(arch: str, folder: Path, size: int = 32, calibration: int = 16, samples: int = 32,
                num_classes: int = 1000, backends: tuple[str, ...] = BACKENDS, threads: int | None = 1,
                seed: int = 0) -> list[SweepResult]:
    """Export one zoo model, quantize it for each backend and compare each int8 runtime with float32.

    Args:
        arch: A registered model name.
        folder: Where the export is written.
        size: Input height and width.
        calibration: Random calibration samples.
        samples: Random held-out samples for the comparison.
        num_classes: Classifier width.
        backends: int8 runtimes.
        threads: Runtime threads (None: the runtime's default).
        seed: Seeds the weights, the BatchNorm values and the inputs.

    Returns:
        One result per backend.
    """
    from paddle_rep.apps.exporter import export
    from paddle_rep.apps.predictor import Predictor
    from paddle_rep.models import create_model

    from .report import check_int8

    paddle.seed(seed)
    model = create_model(arch, num_classes=num_classes)
    rng = np.random.default_rng(seed)
    randomize_bn(model, rng)
    model.eval()
    shape = (3, size, size)
    started = time.perf_counter()
    exported = export(model, folder / arch, shape, onnx=True)
    export_s = time.perf_counter() - started
    del model
    calibration_data = rng.standard_normal((calibration, *shape)).astype("float32")
    held_out = rng.standard_normal((samples, *shape)).astype("float32")
    with Predictor(exported, "onnxruntime", threads=threads) as predictor:
        margin = float(np.median(top1_margins(predictor(held_out))))
    results = []
    for backend in backends:
        started = time.perf_counter()
        files: Int8Files = quantize_exported(exported, calibration_data, (backend,))
        quantize_s = time.perf_counter() - started
        exported = dataclasses.replace(exported, int8=files)
        report = check_int8(exported.onnx_file, files.onnx_file[backend], backend, held_out, threads)
        results.append(SweepResult(arch, backend, report.samples, report.top1_agreement, report.max_rel_error,
                                   report.mean_rel_error, report.layers[0].sqnr_db if report.layers else None,
                                   margin, export_s, quantize_s))
        logger.info("%s %s: agreement %.3f, max rel error %.3g", arch, backend, report.top1_agreement,
                    report.max_rel_error)
    return results


def top1_margins(logits: np.ndarray) -> np.ndarray:
    """Per sample, the top-1 minus the top-2 logit over the largest absolute logit.

    On the same scale as the output error: where it is below the int8 error, int8 may flip the top-1.

    Args:
        logits: ``[N, classes]``.

    Returns:
        ``[N]`` margins.
    """
    ordered = np.sort(logits.reshape(len(logits), -1), axis=1)
    return (ordered[:, -1] - ordered[:, -2]) / np.maximum(np.abs(ordered).max(axis=1), 1e-12)


HEADER = ("| model | runtime | top-1 agreement with f32 | f32 top-1 margin (median) | output rel. error (max / mean) "
          "| worst layer SQNR | export s | quantize s |\n|---|---|---:|---:|---:|---:|---:|---:|")


def render_row(result: SweepResult) -> str:
    """One markdown table row of :data:`HEADER`.

    Args:
        result: From :func:`sweep_model`.

    Returns:
        The row.
    """
    worst = "" if result.worst_layer_db is None else f"{result.worst_layer_db:.1f} dB"
    return (f"| {result.model} | {result.backend} | {100 * result.top1_agreement:.1f} % | {result.median_margin:.3f} | "
            f"{result.max_rel_error:.3f} / {result.mean_rel_error:.3f} | {worst} | {result.export_s:.1f} | "
            f"{result.quantize_s:.1f} |")


def select(patterns: list[str]) -> list[str]:
    """The registered model names matching any of ``patterns`` (shell-style), in registry order.

    Args:
        patterns: e.g. ``["mobileone_*", "dbb_resnet18"]``.

    Returns:
        The names.

    Raises:
        SystemExit: A pattern matches no model.
    """
    from paddle_rep.models import list_models

    names = []
    for pattern in patterns:
        matched = list_models(pattern)
        if not matched:
            raise SystemExit(f"--models: {pattern!r} matches no model (see paddle_rep.list_models())")
        names += [name for name in matched if name not in names]
    return names


def main(argv: list[str] | None = None) -> int:
    """Run the sweep and print its table row by row (also written to ``--out`` when given).

    Args:
        argv: Command-line arguments (default: ``sys.argv``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_PATTERNS),
                        help=f"model names or patterns (default: {' '.join(DEFAULT_PATTERNS)})")
    parser.add_argument("--size", type=int, default=32, help="input height and width (default 32)")
    parser.add_argument("--calibration", type=int, default=16, help="random calibration samples (default 16)")
    parser.add_argument("--samples", type=int, default=32, help="random held-out samples (default 32)")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier width (default 1000)")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads (default 1)")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args(argv)
    logging.getLogger().setLevel(logging.WARNING)  # `import paddle` set the root logger to INFO
    names = select(args.models)
    lines = [HEADER]
    print(HEADER, flush=True)
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            for result in sweep_model(name, Path(tmp), args.size, args.calibration, args.samples,
                                      args.num_classes, threads=args.threads):
                lines.append(render_row(result))
                print(lines[-1], flush=True)
        if args.out is not None:
            args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
