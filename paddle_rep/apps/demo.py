"""``paddle-rep demo``: the whole story on real data, in a few minutes on a CPU.

Trains a small network of our blocks with ``torch_ref`` on the digits scikit-learn ships,
saves the torch checkpoint, converts it with ``paddle-rep convert --verify``, continues
training in Paddle and in torch from the same state on the same batches (and checks they
agree), fuses, exports with a dynamic batch, runs the export with ``paddle.inference``, and
prints a table. Needs torch and scikit-learn (extras ``torch`` and ``demo``).
"""

import argparse
import json
import logging
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from paddle_rep.core.numeric import relative_error

logger = logging.getLogger(__name__)


def _median_ms(fn: Callable[[], object], repeats: int = 7) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def _trainable(model) -> int:
    if hasattr(model, "sublayers"):
        return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _max_rel(actual: dict, expected: dict) -> float:
    worst = 0.0
    for key, value in expected.items():
        if key.endswith("num_batches_tracked"):
            continue
        worst = max(worst, relative_error(actual[key], value))
    return worst


def _plain_cnn(in_channels: int, num_classes: int):
    """A conventional Conv-BN-ReLU network, the kind a user brings to ``insert_blocks``."""
    from paddle import nn

    def conv_bn_relu(cin: int, cout: int, stride: int) -> list:
        return [nn.Conv2D(cin, cout, 3, stride=stride, padding=1, bias_attr=False), nn.BatchNorm2D(cout), nn.ReLU()]

    return nn.Sequential(*conv_bn_relu(in_channels, 16, 1), *conv_bn_relu(16, 32, 2), *conv_bn_relu(32, 32, 1),
                         nn.AdaptiveAvgPool2D(1), nn.Flatten(), nn.Linear(32, num_classes))


def _surgery(to: str, data, batch_size: int, seed: int) -> str:
    """insert_blocks -> train -> fuse_back on a plain CNN; returns a one-line report."""
    import paddle

    from paddle_rep.surgery import fuse_back, insert_blocks

    from .data import batches

    paddle.seed(seed)
    plain = _plain_cnn(data.x_train.shape[1], 10)
    x_test = paddle.to_tensor(data.x_test)

    def train_epoch(model, epoch: int) -> None:
        optimizer = paddle.optimizer.Momentum(learning_rate=0.02, momentum=0.9, parameters=model.parameters())
        model.train()
        for x, y in batches(data.x_train, data.y_train, batch_size, epoch, seed):
            loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(x)), paddle.to_tensor(y))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()

    def logits(model) -> np.ndarray:
        model.eval()
        with paddle.no_grad():
            return model(x_test).numpy()

    train_epoch(plain, 0)  # "pretrained" weights to start from
    before = logits(plain)
    converted, report = insert_blocks(plain, to)
    start_gap = relative_error(logits(converted), before)
    train_epoch(converted, 1)
    trained = logits(converted)
    reverted, _ = fuse_back(converted, example_input=x_test[:2])
    end_gap = relative_error(logits(reverted), trained)
    same_layout = list(reverted.state_dict()) == list(plain.state_dict())
    accuracy = float((logits(reverted).argmax(1) == data.y_test).mean())
    return (f"insert_blocks({to!r}) on a plain CNN: {len(report.inserted)} convs became blocks, output change "
            f"{start_gap:.1e} rel; after an epoch, fuse_back fused them back to the original layout "
            f"({'same' if same_layout else 'DIFFERENT'} state-dict keys), output change {end_gap:.1e} rel, "
            f"accuracy {accuracy:.4f}")


def _train_torch(args: argparse.Namespace, data, model_args: dict):
    """Phase 1: train the torch reference with upstream's recipe (SGD, momentum 0.9, L2, temperature 30 -> 1)."""
    import torch

    import torch_ref
    from paddle_rep.core.schedules import get_temperature, set_temperature

    from .console import progress
    from .data import batches

    iters = len(data.y_train) // args.batch_size
    torch.manual_seed(args.seed)
    torch_model = torch_ref.create_model(args.model, **model_args)
    optimizer = torch.optim.SGD(torch_model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    for epoch in range(args.epochs):
        torch_model.train()
        with progress(batches(data.x_train, data.y_train, args.batch_size, epoch, args.seed), total=iters,
                      desc=f"torch epoch {epoch + 1}/{args.epochs}") as bar:
            for i, (x, y) in enumerate(bar):
                set_temperature(torch_model, get_temperature(i, epoch, iters, temp_epoch=max(1, args.epochs // 2)))
                loss = torch_ref.classification_loss(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    torch_ckpt = args.out / "torch_model.pth"
    torch.save({"state_dict": torch_model.state_dict(), "epoch": args.epochs}, torch_ckpt)
    print(f"trained {args.model} in torch for {args.epochs} epochs; saved {torch_ckpt}")
    return torch_model, torch_ckpt


def _convert(args: argparse.Namespace, data, model_args: dict, torch_ckpt: Path):
    """Phase 2: ``paddle-rep convert --verify`` on the torch checkpoint, then load it strictly.

    Returns the Paddle model, or the convert command's exit code when it failed.
    """
    from paddle_rep.models import create_model

    from . import cli
    from .convert import load_checkpoint

    paddle_ckpt = args.out / "paddle_model.pdparams"
    convert_args = ["convert", str(torch_ckpt), str(paddle_ckpt), "--arch", args.model, "--verify",
                    "--input-size", str(data.x_train.shape[-1])]
    if "in_channels" in model_args:
        convert_args += ["--model-arg", f"in_channels={model_args['in_channels']}"]
    code = cli.main(convert_args)
    if code != 0:
        print(f"conversion failed (exit {code})")
        return code
    paddle_model = create_model(args.model, **model_args)
    load_checkpoint(paddle_model, paddle_ckpt)
    return paddle_model


def _train_both(args: argparse.Namespace, data, torch_model, paddle_model) -> tuple[float, float]:
    """Phase 3: continue training in both frameworks from the same state, on the same batches.

    Returns the largest relative loss gap and the largest relative parameter/statistic gap.
    """
    import paddle
    import torch

    import torch_ref
    from paddle_rep.core import interop
    from paddle_rep.core.schedules import EVAL_TEMPERATURE, set_temperature
    from paddle_rep.losses import classification_loss

    from .data import batches

    torch_opt = torch.optim.SGD(torch_model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    paddle_opt = paddle.optimizer.Momentum(learning_rate=0.01, momentum=0.9, parameters=paddle_model.parameters(),
                                           weight_decay=1e-4)
    torch_model.train()
    paddle_model.train()
    set_temperature(torch_model, EVAL_TEMPERATURE)
    set_temperature(paddle_model, EVAL_TEMPERATURE)
    loss_gap = 0.0
    steps = batches(data.x_train, data.y_train, args.batch_size, epoch=args.epochs, seed=args.seed)
    for _, (x, y) in zip(range(args.paddle_steps), steps, strict=False):
        torch_loss = torch_ref.classification_loss(torch_model(torch.from_numpy(x)), torch.from_numpy(y))
        torch_opt.zero_grad()
        torch_loss.backward()
        torch_opt.step()
        paddle_loss = classification_loss(paddle_model(paddle.to_tensor(x)), paddle.to_tensor(y))
        paddle_opt.clear_grad()
        paddle_loss.backward()
        paddle_opt.step()
        loss_gap = max(loss_gap, relative_error(float(paddle_loss), torch_loss.item()))
    state_gap = _max_rel(interop.to_torch(paddle_model.state_dict(), dtype=None),
                         {k: v.numpy() for k, v in torch_model.state_dict().items()})
    print(f"continued {args.paddle_steps} steps in both: max loss gap {loss_gap:.1e} rel, "
          f"max parameter/statistic gap {state_gap:.1e} rel")
    return loss_gap, state_gap


def _fuse_and_export(args: argparse.Namespace, data, torch_model, paddle_model):
    """Phases 4 and 5: evaluate, fuse, evaluate again; export with a dynamic batch and run ``paddle.inference``.

    Returns the test logits of every form, the fused models and the predictor.
    """
    import paddle
    import torch

    import torch_ref
    from paddle_rep.reparam import reparameterize_model

    from .exporter import export
    from .predictor import Predictor

    x_test = data.x_test
    torch_model.eval()
    paddle_model.eval()

    def torch_logits(model) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x_test)).numpy()

    def paddle_logits(model) -> np.ndarray:
        with paddle.no_grad():
            return model(paddle.to_tensor(x_test)).numpy()

    logits = {"torch": torch_logits(torch_model), "paddle": paddle_logits(paddle_model)}
    torch_fused = torch_ref.reparameterize_model(torch_model)
    paddle_fused = reparameterize_model(paddle_model)
    logits["torch fused"] = torch_logits(torch_fused)
    logits["paddle fused"] = paddle_logits(paddle_fused)
    exported = export(paddle_fused, args.out / "inference" / "model", tuple(x_test.shape[1:]), reparameterize=False)
    predictor = Predictor(exported)
    logits["paddle inference"] = np.concatenate([predictor(x_test[i:i + 50]) for i in range(0, len(x_test), 50)])
    return logits, torch_fused, paddle_fused, predictor


def _time_forms(batch: np.ndarray, torch_model, torch_fused, paddle_model, paddle_fused, predictor) -> dict:
    """Median milliseconds per batch of every model form."""
    import paddle
    import torch

    with torch.no_grad(), paddle.no_grad():
        return {
            "torch train-form": _median_ms(lambda: torch_model(torch.from_numpy(batch))),
            "torch fused": _median_ms(lambda: torch_fused(torch.from_numpy(batch))),
            "paddle train-form": _median_ms(lambda: paddle_model(paddle.to_tensor(batch))),
            "paddle fused": _median_ms(lambda: paddle_fused(paddle.to_tensor(batch))),
            "paddle inference": _median_ms(lambda: predictor(batch)),
        }


def _deploy_rows(args: argparse.Namespace, data, paddle_fused, predictor, batch: np.ndarray) -> tuple[list[str], dict]:
    """Phase 5b: the fastest float32 and int8 paths (ONNX Runtime, OpenVINO) next to Paddle Inference.

    Exports the fused model again with ONNX and int8 files (calibrated on 64 training images) and times
    each runtime on ``batch``; skipped, with a note, where the ONNX/int8 packages are missing.

    Returns:
        The table's lines and ``{path: {"ms", "accuracy", "backend"}}`` for the summary.
    """
    from paddle_rep.core.errors import MissingPackageError

    from .exporter import export
    from .predictor import Predictor

    x_test, y_test = data.x_test, data.y_test
    try:
        exported = export(paddle_fused, args.out / "deploy" / "model", tuple(x_test.shape[1:]), reparameterize=False,
                          onnx=True, fold_batch_sizes=sorted({1, len(batch)}), calibration=data.x_train[:64])
    except (MissingPackageError, ImportError) as error:
        return ["", f"(int8 and ONNX runtimes skipped: {error})"], {}
    measured = {"paddle inference": ("paddle", predictor, _median_ms(lambda: predictor(batch)))}
    for precision in ("f32", "int8"):
        for backend in ("onnxruntime", "openvino"):
            runner = Predictor(exported, backend, precision=precision)
            measured[f"{backend} {precision}"] = (backend, runner, _median_ms(lambda r=runner: r(batch)))
    rows, summary = {}, {}
    for label, precision in (("fastest float32", "f32"), ("fastest int8", "int8")):
        name = min((k for k in measured if k.endswith(precision)), key=lambda k: measured[k][2])
        rows[label] = name
    lines = ["", f"| deployed (batch of {len(batch)}) | runtime | ms (median) | speed-up over paddle inference "
             "| accuracy |",
             "|---|---|---|---|---|"]
    base = measured["paddle inference"][2]
    for label, name in (("paddle inference", "paddle inference"), *rows.items()):
        backend, runner, ms = measured[name]
        accuracy = float((np.concatenate([runner(x_test[i:i + 50]) for i in range(0, len(x_test), 50)]).argmax(1)
                          == y_test).mean())
        lines.append(f"| {label} | {name} | {ms:.2f} | {base / ms:.2f}x | {accuracy:.4f} |")
        summary[label] = {"path": name, "ms": ms, "accuracy": accuracy}
    return lines, summary


def _compare_forms(logits: dict, y_test: np.ndarray) -> tuple[dict, list[tuple[str, str, str, str]], bool]:
    """Accuracy of every form, its table rows, and whether every form predicts what torch predicts."""
    predictions = {name: value.argmax(1) for name, value in logits.items()}
    accuracy = {name: float((p == y_test).mean()) for name, p in predictions.items()}
    reference = logits["torch"]
    rows = []
    for name in logits:
        agree = int((predictions[name] == predictions["torch"]).sum())
        diff = relative_error(logits[name], reference)
        rows.append((name, f"{accuracy[name]:.4f}", f"{agree}/{len(y_test)}", f"{diff:.1e}"))
    agreed = all(int((predictions[n] == predictions["torch"]).sum()) == len(y_test) for n in predictions)
    return accuracy, rows, agreed


def _tables(model_name: str, rows: list, tested: int, timings: dict, counts: dict, batch_size: int) -> list[str]:
    """Phase 6: the Markdown tables: accuracy and agreement, then parameters and time per form."""
    lines = ["", f"| {model_name} on digits ({tested} test images) | accuracy | same prediction as torch "
             "| max logit diff vs torch (rel) |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    lines += ["", f"| model form | trainable parameters | time per batch of {batch_size} (ms, median) "
              "| vs train-form |", "|---|---|---|---|"]
    for name, ms in timings.items():
        framework = name.split()[0]
        fused = "train-form" not in name
        base = timings[f"{framework} train-form"]
        lines.append(f"| {name} | {counts[framework][fused]:,} | {ms:.2f} | {base / ms:.2f}x |")
    return lines


def run_cli(args: argparse.Namespace) -> int:
    """Handle ``paddle-rep demo``: the phases in order, then the tables and ``summary.json``.

    Args:
        args: The parsed arguments (see :func:`paddle_rep.apps.cli.add_demo_arguments`).

    Returns:
        The exit code: 0 when every form agrees, 1 when they do not, or the converter's code when
        converting the checkpoint failed.
    """
    from paddle_rep.models._registry import registry

    from .data import digits_for_model

    args.out.mkdir(parents=True, exist_ok=True)
    data, model_args = digits_for_model(registry.builder(args.model), seed=args.seed)
    torch_model, torch_ckpt = _train_torch(args, data, model_args)
    paddle_model = _convert(args, data, model_args, torch_ckpt)
    if isinstance(paddle_model, int):
        return paddle_model
    loss_gap, state_gap = _train_both(args, data, torch_model, paddle_model)
    logits, torch_fused, paddle_fused, predictor = _fuse_and_export(args, data, torch_model, paddle_model)
    accuracy, rows, agreed = _compare_forms(logits, data.y_test)
    batch = data.x_test[:args.batch_size]
    timings = _time_forms(batch, torch_model, torch_fused, paddle_model, paddle_fused, predictor)
    counts = {"torch": (_trainable(torch_model), _trainable(torch_fused)),
              "paddle": (_trainable(paddle_model), _trainable(paddle_fused))}
    lines = _tables(args.model, rows, len(data.y_test), timings, counts, len(batch))
    deploy_lines, deploy = _deploy_rows(args, data, paddle_fused, predictor, batch)
    lines += deploy_lines
    lines += ["", f"training in both frameworks for {args.paddle_steps} steps: loss gap {loss_gap:.1e}, "
              f"state gap {state_gap:.1e} (relative)"]
    print("\n".join(lines))
    if args.surgery != "none":
        print(_surgery(args.surgery, data, args.batch_size, args.seed))
    summary = {"accuracy": accuracy, "timings_ms": timings, "loss_gap": loss_gap, "state_gap": state_gap,
               "parameters": counts, "max_rel_logit_diff": {r[0]: float(r[3]) for r in rows}, "deploy": deploy}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    return 0 if agreed else 1

