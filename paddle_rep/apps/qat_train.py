"""``paddle-rep qat``: RepVGG's quantization-aware training (upstream "Solution C") on your images, exported as int8.

``paddle-rep qat --arch repvgg_a0 --checkpoint a0.pdparams --data ROOT --out OUT``

The steps: read the data the way ``paddle-rep train`` does (:func:`paddle_rep.apps.train.build_datasets`:
image folders or label lists, the family recipe's crops and ImageNet normalisation); load the trained
weights (train or deploy form) strictly; :func:`~paddle_rep.apps.quantize.qat.quantization_aware_training`
(fuse, :func:`~paddle_rep.quant.insert_bn` on training batches, per-channel int8 weights and per-tensor
activations, the last ``--freeze-steps`` with BN statistics and observers frozen);
:func:`~paddle_rep.apps.quantize.qat.export_qat` with activation ranges calibrated on training images;
then one pass over the validation split measures top-1 of the float32 model, of the QAT model's own
fake-quant forward and of each int8 runtime on the exported files, and how often int8 agrees with the
fake-quant model. Written to OUT: the export ``OUT/model`` with its manifest (so
``Predictor.load("OUT/model", backend, precision="int8")`` runs it; the manifest's ``checks`` carry the
agreement) and ``OUT/metrics.json``.

Every argument, the data, the checkpoint and the optional packages are checked before the first step.
The files are staged in a temporary folder next to OUT and moved into OUT only when everything,
evaluation included, has succeeded (the manifest, then ``metrics.json``, last): a failed run leaves no
OUT behind, or an earlier run's OUT as it was.
"""

import argparse
import fnmatch
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import paddle

from paddle_rep.core.errors import CheckpointError, DataError, UnsupportedModelError
from paddle_rep.core.schedules import EVAL_TEMPERATURE, set_temperature
from paddle_rep.models._registry import registry
from paddle_rep.reparam import reparameterize_model

from .cli import QAT_DEFAULTS
from .console import progress
from .convert.arch import check_state, paddle_shapes
from .convert.write import write_atomically
from .optional import require
from .training import checkpoint
from .training.data import ImageDataset, ShardedBatchSampler, make_loader

logger = logging.getLogger(__name__)

# Registry names Solution C applies to: models built from RepVGG / QARepVGG blocks, whose fused convs get a BN.
QAT_ARCH_PATTERNS = ("repvgg_*", "repvggplus_*", "qarepvgg_*", "rep_tiny")
INT8_BACKENDS = ("onnxruntime", "openvino")
EXPORT_NAME = "model"
METRICS_NAME = "metrics.json"


def qat_archs() -> list[str]:
    """List the registered models ``paddle-rep qat`` accepts.

    Returns:
        The names matching :data:`QAT_ARCH_PATTERNS`, sorted.
    """
    return [name for name in registry.names() if any(fnmatch.fnmatchcase(name, p) for p in QAT_ARCH_PATTERNS)]


def check_arch(arch: str) -> None:
    """Refuse an architecture that Solution C does not apply to.

    Args:
        arch: A registry name.

    Raises:
        UnknownModelError: No model is registered under ``arch``.
        UnsupportedModelError: It is registered but holds no RepVGG-family block; the message lists the
            supported names.
    """
    registry.builder(arch)  # UnknownModelError, with the closest names, for a name nobody registered
    if arch not in qat_archs():
        raise UnsupportedModelError(
            f"--arch {arch}: quantization-aware training (Solution C) inserts a BN after RepVGG-family fused "
            f"convs and does not apply to {arch}; supported: {', '.join(qat_archs())} (for other models use "
            "post-training int8: paddle-rep export --precision int8)")


@dataclass
class QATRun:
    """What ``paddle-rep qat`` was asked for; each field is the option of the same name.

    None for ``epochs`` and ``steps`` means :data:`~paddle_rep.apps.cli.QAT_DEFAULTS`'s epochs; None for
    ``batch_size`` and ``image_size`` the family recipe's; None for ``freeze_steps`` a quarter of the steps.
    """

    arch: str
    checkpoint: str
    data: str
    epochs: int | None = None
    steps: int | None = None
    lr: float = QAT_DEFAULTS["lr"]
    batch_size: int | None = None
    image_size: int | None = None
    freeze_steps: int | None = None
    calibration_size: int = QAT_DEFAULTS["calibration_size"]
    backends: tuple[str, ...] = INT8_BACKENDS
    workers: int = QAT_DEFAULTS["workers"]
    seed: int = QAT_DEFAULTS["seed"]
    progress: bool | None = None


def _check_numbers(run: QATRun) -> None:
    for name in ("epochs", "steps", "batch_size", "image_size", "calibration_size"):
        value = getattr(run, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if run.freeze_steps is not None and run.freeze_steps < 0:
        raise ValueError(f"--freeze-steps must be >= 0, got {run.freeze_steps}")
    if run.workers < 0:
        raise ValueError(f"--workers must be >= 0, got {run.workers}")
    if not run.lr > 0:
        raise ValueError(f"--lr must be > 0, got {run.lr}")
    unknown = [b for b in run.backends if b not in INT8_BACKENDS]
    if unknown or not run.backends:
        raise ValueError(f"backends must be some of {INT8_BACKENDS}, got {run.backends}")


def read_weights(path: str | Path) -> dict[str, np.ndarray]:
    """Read trained weights under Paddle's names, from any file ``paddle-rep convert`` or ``train`` writes.

    Args:
        path: A ``.pdparams`` (or another container ``convert`` reads; official torch names are mapped)
            or a ``paddle-rep train`` checkpoint ``.pdtrain`` (its model weights).

    Returns:
        The state dict as numpy arrays.

    Raises:
        CheckpointError: No such file, or a file that is not a checkpoint.
    """
    from .convert.canonical import to_paddle
    from .convert.load import read_checkpoint

    path = Path(path)
    if path.suffix == checkpoint.SUFFIX:
        return dict(checkpoint.load(path)["model"])
    loaded = read_checkpoint(path)
    return dict(to_paddle(loaded.state).state) if loaded.framework == "torch" else dict(loaded.state)


def _is_deploy(state: dict) -> bool:
    """Whether a state dict holds fused blocks (RepVGG ``rbr_reparam``, ACBlock ``fused_conv``)."""
    return any(f".{marker}." in f".{key}" for key in state for marker in ("rbr_reparam", "fused_conv"))


def build_model(arch: str, kwargs: dict, path: str | Path) -> paddle.nn.Layer:
    """Build ``arch`` in the form the checkpoint holds (train or deploy) and load it strictly.

    Args:
        arch: The registry name.
        kwargs: Constructor arguments (``num_classes`` from the data, ``in_channels``).
        path: The checkpoint.

    Returns:
        The model with the checkpoint's weights, in eval mode.

    Raises:
        CheckpointError: The file cannot be read.
        ArchMismatchError: The weights do not fit ``arch`` with the data's classes (every key listed).
    """
    from paddle_rep.models import create_model

    state = read_weights(path)
    deploy = _is_deploy(state)
    model = create_model(arch, **kwargs, deploy=deploy)
    classes = kwargs.get("num_classes")
    check_state(state, paddle_shapes(model), arch, str(path),
                heading=f"{path} does not fit {arch} ({'deploy' if deploy else 'train'} form) with the data's "
                        f"{classes} classes:")
    current = model.state_dict()
    model.set_state_dict({k: paddle.to_tensor(np.ascontiguousarray(v)).astype(current[k].dtype)
                          for k, v in state.items()})
    model.eval()
    logger.info("loaded %s (%s form) into %s", path, "deploy" if deploy else "train", arch)
    return model


def _require_packages(backends: tuple[str, ...]) -> None:
    """The export and the int8 runtimes' packages, checked before training (MissingExportPackageError)."""
    require("paddle2onnx", "paddle-rep qat's export")
    require("onnx", "paddle-rep qat's export")
    for backend in backends:
        modules = ("onnxruntime.quantization",) if backend == "onnxruntime" else ("openvino", "nncf")
        for module in modules:
            require(module, f"{backend} int8")


def _bad(dataset: ImageDataset, index: np.ndarray, ok: np.ndarray) -> None:
    if not ok.all():
        path = dataset.samples.paths[int(index[~ok][0])]
        raise DataError(f"cannot decode image {path} (corrupt or truncated)", path=path)


def _training_batches(dataset: ImageDataset, batch_size: int, seed: int, workers: int) -> Iterator:
    """Augmented training batches ``(x, y)`` as numpy arrays, epoch after epoch, without end."""
    sampler = ShardedBatchSampler(len(dataset), batch_size, seed=seed)  # DataError: fewer images than a batch
    epoch = 0
    while True:
        sampler.set_position(epoch)
        for x, y, index, ok in make_loader(dataset, sampler, workers):
            _bad(dataset, index.numpy(), ok.numpy())
            yield x.numpy(), y.numpy()
        epoch += 1


def _calibration(train_set: ImageDataset, transform, size: int, seed: int) -> np.ndarray:
    """``size`` training images (a seeded choice) with the evaluation transform, ``[N, C, H, W]``."""
    picked = np.sort(np.random.default_rng(seed).choice(len(train_set), min(size, len(train_set)), replace=False))
    plain = ImageDataset(train_set.samples, transform, seed)
    arrays = []
    for i in picked:
        array, _, _, ok = plain[(int(i), 0)]
        _bad(plain, np.asarray([i]), np.asarray([ok]))
        arrays.append(array)
    if len(picked) < size:
        logger.warning("--calibration-size %d: the training split has only %d images; calibrating on all",
                       size, len(picked))
    return np.stack(arrays)


def _top1(logits: np.ndarray) -> np.ndarray:
    return np.argmax(logits, axis=1)


def _evaluate(models: dict, val_set: ImageDataset, batch_size: int, workers: int, show: bool | None) -> dict:
    """One pass over the validation split: top-1 of each model and agreement of each with the QAT model."""
    loader = make_loader(val_set, ShardedBatchSampler(len(val_set), batch_size, shuffle=False), workers)
    predicted: dict[str, list[np.ndarray]] = {name: [] for name in models}
    labels = []
    with paddle.no_grad(), progress(loader, total=len(loader), desc="evaluate", unit="batch", enabled=show) as rows:
        for x, y, index, ok in rows:
            _bad(val_set, index.numpy(), ok.numpy())
            array = x.numpy()
            for name, model in models.items():
                out = model(array) if not isinstance(model, paddle.nn.Layer) else model(x).numpy()
                predicted[name].append(_top1(out))
            labels.append(y.numpy())
    truth = np.concatenate(labels)
    tops = {name: np.concatenate(values) for name, values in predicted.items()}
    return {"samples": int(len(truth)),
            "top1": {name: float(np.mean(top == truth)) for name, top in tops.items()},
            "agreement_with_qat": {name: float(np.mean(top == tops["qat_fake_quant"])) for name, top in tops.items()
                                   if name != "qat_fake_quant"}}


def _move_into(stage: Path, out: Path) -> None:
    """Move the staged files into ``out``: OpenVINO's ``.bin`` before its ``.xml``, the manifest, then the metrics."""
    out.mkdir(parents=True, exist_ok=True)

    def order(file: Path) -> tuple[int, str]:
        rank = 3 if file.name == METRICS_NAME else 2 if file.name.endswith("-manifest.json") else \
            1 if file.suffix == ".xml" else 0
        return rank, file.name

    for file in sorted((f for f in stage.iterdir() if f.is_file()), key=order):
        file.replace(out / file.name)


def run_qat(run: QATRun, out: str | Path) -> dict:
    """Run ``paddle-rep qat``: check everything, train, export, evaluate, then write OUT (see the module docstring).

    Args:
        run: What was asked for.
        out: The output folder.

    Returns:
        The metrics (also written to ``OUT/metrics.json``).

    Raises:
        UnknownModelError: ``run.arch`` is not registered.
        UnsupportedModelError: Solution C does not apply to ``run.arch``.
        ValueError: A bad number (steps, sizes, learning rate, freeze steps beyond the steps), or an OUT that
            is a file.
        DataError: Unusable data (missing folder, bad layout, an image that does not decode).
        CheckpointError: An unreadable checkpoint.
        ArchMismatchError: Weights that do not fit the architecture with the data's classes.
        MissingExportPackageError: paddle2onnx, onnx or an int8 runtime's packages are missing.
        QuantizationError: Quantization or the int8 export failed.
    """
    from .train import TrainConfig, build_datasets, resolve_recipe

    out = Path(out)
    _check_numbers(run)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: exists and is not a folder")
    check_arch(run.arch)
    data = Path(run.data)
    if not data.is_dir():  # before the recipe: say what is missing first
        raise DataError(f"--data {data}: no such data folder", path=str(data))
    train_config = TrainConfig(arch=run.arch, data=str(data), batch_size=run.batch_size, image_size=run.image_size,
                               seed=run.seed, workers=run.workers)
    recipe = resolve_recipe(train_config)
    train_set, val_set, kwargs, channels = build_datasets(train_config, recipe, registry.builder(run.arch))
    if not Path(run.checkpoint).is_file():
        raise CheckpointError(f"--checkpoint {run.checkpoint}: no such file", path=str(run.checkpoint))
    model = build_model(run.arch, kwargs, run.checkpoint)
    set_temperature(model, EVAL_TEMPERATURE)  # ODConv (rep_tiny): QAT fine-tunes the trained model at its end point
    iters = len(train_set) // recipe.batch_size
    if iters < 1:
        raise DataError(f"{data}: {len(train_set)} training images make no batch of {recipe.batch_size}; lower "
                        "--batch-size", path=str(data))
    steps = run.steps if run.steps is not None else (run.epochs or QAT_DEFAULTS["epochs"]) * iters
    freeze_steps = run.freeze_steps if run.freeze_steps is not None else steps // 4
    if freeze_steps > steps:
        raise ValueError(f"--freeze-steps {freeze_steps} exceeds the {steps} QAT steps")
    _require_packages(run.backends)
    from .quantize.qat import QATConfig, export_qat, quantization_aware_training  # paddle.quantization: only now

    config = QATConfig(steps=steps, freeze_steps=freeze_steps, lr=run.lr)
    logger.info("QAT %s: %d steps (%.2f epochs of %d images), last %d frozen, batch %d, lr %g, weight decay %g, "
                "%dx%d crops", run.arch, steps, steps / iters, len(train_set), freeze_steps, recipe.batch_size,
                config.lr, config.weight_decay, recipe.image_size, recipe.image_size)
    paddle.seed(run.seed)
    started = time.perf_counter()
    stream = _training_batches(train_set, recipe.batch_size, run.seed, run.workers)
    try:
        with progress(stream, total=steps + config.calibration_batches, desc="QAT", unit="batch",
                      enabled=run.progress) as bar:
            batches = iter(bar)
            qat = quantization_aware_training(model, lambda: batches, config)
    finally:
        stream.close()  # shuts down the loader's workers
    seconds = {"qat": time.perf_counter() - started}

    started = time.perf_counter()
    calibration = _calibration(train_set, val_set.transform, run.calibration_size, run.seed)
    shape = (channels, recipe.eval_size, recipe.eval_size)
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.qat-"))
    try:
        from paddle_rep.quant import insert_bn

        template = insert_bn(model, calibration[:16])
        exported = export_qat(qat, template, stage / EXPORT_NAME, shape, calibration, int8_backends=run.backends)
        seconds["export"] = time.perf_counter() - started
        metrics = _evaluate_and_record(run, model, qat, exported, val_set, recipe.batch_size, seconds)
        metrics.update(steps=steps, freeze_steps=freeze_steps, batch_size=recipe.batch_size,
                       image_size=recipe.image_size, input_shape=list(shape), num_classes=kwargs.get("num_classes"),
                       train_images=len(train_set), calibration_samples=len(calibration), losses=config.losses,
                       weight_decay=config.weight_decay, momentum=config.momentum, recipe=recipe.name,
                       export=EXPORT_NAME)
        text = json.dumps(metrics, indent=2, default=str) + "\n"
        write_atomically(stage / METRICS_NAME, lambda f: f.write(text.encode()))
        _move_into(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    logger.info("wrote %s: int8 export %s and %s", out, EXPORT_NAME, METRICS_NAME)
    return metrics


def _evaluate_and_record(run: QATRun, model: paddle.nn.Layer, qat: paddle.nn.Layer, exported, val_set: ImageDataset,
                         batch_size: int, seconds: dict) -> dict:
    """Evaluate float32, fake-quant and each int8 runtime; record the agreement in the staged manifest."""
    from .exporter import INT8_AGREEMENT_WARN
    from .manifest import add_checks
    from .predictor import Predictor

    fused = reparameterize_model(model, inplace=False)
    fused.eval()
    qat.eval()
    for layer in (fused, qat):
        set_temperature(layer, EVAL_TEMPERATURE)  # ODConv (rep_tiny): the evaluation temperature
    predictors = {backend: Predictor(exported, backend, precision="int8") for backend in run.backends}
    started = time.perf_counter()
    try:
        models = {"float32": fused, "qat_fake_quant": qat, **{f"int8_{b}": p for b, p in predictors.items()}}
        scores = _evaluate(models, val_set, batch_size, run.workers, run.progress)
    finally:
        for predictor in predictors.values():
            predictor.close()
    seconds["evaluate"] = time.perf_counter() - started
    checks = [{"name": f"{backend} int8 vs QAT fake-quant",
               "passed": scores["agreement_with_qat"][f"int8_{backend}"] >= INT8_AGREEMENT_WARN,
               "figure": f"top-1 agreement {100 * scores['agreement_with_qat'][f'int8_{backend}']:.2f} % on "
                         f"{scores['samples']} validation images; top-1 {100 * scores['top1'][f'int8_{backend}']:.2f}"
                         f" % (QAT fake-quant {100 * scores['top1']['qat_fake_quant']:.2f} %, float32 "
                         f"{100 * scores['top1']['float32']:.2f} %)"} for backend in run.backends]
    add_checks(exported.manifest_file, checks)
    return {"run": asdict(run), **scores, "seconds": seconds}


def run_cli(args: argparse.Namespace) -> int:
    """Handle ``paddle-rep qat``: run it and print a short summary.

    Args:
        args: The parsed arguments (see :func:`paddle_rep.apps.cli.add_qat_arguments`).

    Returns:
        The exit code, 0 (errors are raised, and the command line turns them into codes).

    Raises:
        PaddleRepError: As :func:`run_qat` raises them.
    """
    quiet = getattr(args, "quiet", False)
    run = QATRun(arch=args.arch, checkpoint=args.checkpoint, data=args.data, epochs=args.epochs, steps=args.steps,
                 lr=args.lr, batch_size=args.batch_size, image_size=args.image_size, freeze_steps=args.freeze_steps,
                 calibration_size=args.calibration_size,
                 backends=INT8_BACKENDS if args.backend == "both" else (args.backend,), workers=args.workers,
                 seed=args.seed, progress=False if quiet else None)
    metrics = run_qat(run, args.out)
    if not quiet:
        top1, agree = metrics["top1"], metrics["agreement_with_qat"]
        print(f"QAT of {run.arch}: {metrics['steps']} steps (the last {metrics['freeze_steps']} frozen), batch "
              f"{metrics['batch_size']}, lr {run.lr:g}; top-1 on {metrics['samples']} validation images:")
        print(f"  float32 {100 * top1['float32']:.2f} %, QAT fake-quant {100 * top1['qat_fake_quant']:.2f} % "
              f"(agrees with float32 on {100 * agree['float32']:.2f} %)")
        for backend in run.backends:
            print(f"  int8 {backend} {100 * top1[f'int8_{backend}']:.2f} % (agrees with QAT fake-quant on "
                  f"{100 * agree[f'int8_{backend}']:.2f} %)")
        print(f"wrote {Path(args.out) / EXPORT_NAME} (Predictor.load(..., precision=\"int8\")) and "
              f"{Path(args.out) / METRICS_NAME}")
    return 0
