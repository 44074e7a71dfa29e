"""Train a registry model with Paddle on your images (or the shipped digits), in one process or several.

One process:   ``paddle-rep train --arch repvgg_a0 --data ROOT --out runs/a0``
Several:       ``python -m paddle.distributed.launch --nproc_per_node 8 tools/train.py --arch repvgg_a0 ...``
Several hosts: add ``--ips host1,host2`` to the launcher on every host (see docs/train-your-data.md).

``--batch-size`` is the global batch: each rank takes a contiguous ``1/N`` of every global batch and
``paddle.DataParallel`` averages the gradients, so N ranks compute what one process with the whole
batch would (BN statistics aside: without ``--sync-bn`` each rank normalises its own shard). The
learning rate is the recipe's at its reference batch, scaled linearly to the global batch unless the
recipe says ``lr_scaling=none``; the run logs the value. Rank 0 evaluates and writes: ``init.pdparams``,
checkpoints under ``checkpoints/``, ``metrics.jsonl``, and at the end ``model.pdparams`` (train form),
``model_deploy.pdparams`` (fused), ``ema*.pdparams`` with ``--ema``, ``metrics.json`` and the exported
inference model ``inference/model``.
"""

import argparse
import copy
import inspect
import json
import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle
import paddle.distributed as dist

from paddle_rep.bn import SyncBatchNorm, convert_sync_batchnorm
from paddle_rep.core.errors import CheckpointError, MissingPackageError
from paddle_rep.models import create_model
from paddle_rep.models._registry import registry
from paddle_rep.odconv import set_attention_bn
from paddle_rep.reparam import reparameterize_model

from .cli import add_train_arguments
from .convert.arch import parse_model_args
from .convert.write import PICKLE_PROTOCOL, write_atomically
from .data import DIGITS_CLASSES, digits_for_model
from .training import checkpoint, recipes
from .training.data import ArrayDataset, ImageDataset, Transform, check_labels, find_splits
from .training.loop import Run, evaluate, fit, restore
from .training.model import EMA, load_pretrained, parameter_groups

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """What ``paddle-rep train`` was asked for; None values fall back to the recipe's (see :func:`resolve_recipe`).

    Each field is the command-line option of the same name (``--arch``, ``--data``, ``--recipe``,
    ``--epochs``, ...); ``overrides`` holds ``--override field=value`` pairs and ``model_args`` the
    ``--model-arg`` pairs. The comments in the source say what None means where it matters.
    """

    arch: str = "rep_tiny"
    data: str | None = None  # ROOT with train/ + val/ or train_list.txt + val_list.txt; None: the digits
    recipe: str | None = None  # preset name; None: the family's (digits without data)
    epochs: int | None = None  # None: the recipe's (also batch_size, lr, temp_epochs, image_size)
    steps: int | None = None  # stop after this many optimizer steps in total (a checkpoint is written)
    batch_size: int | None = None  # global, split across ranks
    lr: float | None = None
    temp_epochs: int | None = None
    image_size: int | None = None
    overrides: dict = field(default_factory=dict)  # any other recipe field
    num_classes: int | None = None
    workers: int = 0
    seed: int = 0
    pretrained: str | None = None
    resume: str | None = None  # a checkpoint, or "latest" (newest in out/checkpoints)
    skip_bad_images: bool = False
    amp: str | None = None  # "fp16" (GPU) or "bf16"
    ema: bool = False
    ema_decay: float = 0.9999
    sync_bn: bool = False
    use_checkpoint: bool = False
    attention_bn: str | None = None  # "running": ODConv attention BN on running statistics (batch 1)
    model_args: dict = field(default_factory=dict)
    save_every_steps: int = 0
    keep_last: int = 3
    export: bool = True
    visualdl: bool = False
    save_every_rank: bool = False
    progress: bool | None = None


AMP_DTYPES = {"fp16": "float16", "bf16": "bfloat16"}


def shard(x: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Take this rank's contiguous part of a global batch (what :class:`.training.data.ShardedBatchSampler` gives).

    Args:
        x: The global batch.
        rank: This process's rank.
        world_size: The number of ranks.

    Returns:
        Items ``[rank * B / world_size, (rank + 1) * B / world_size)`` of ``x``.

    Raises:
        ValueError: The batch does not split into ``world_size`` equal shards.
    """
    if len(x) % world_size:
        raise ValueError(f"global batch of {len(x)} does not split into {world_size} equal shards")
    size = len(x) // world_size
    return x[rank * size:(rank + 1) * size]


def resolve_recipe(config: TrainConfig) -> recipes.Recipe:
    """Resolve the recipe ``config`` asks for, with its explicit values and ``overrides`` applied.

    Args:
        config: The run's configuration.

    Returns:
        The recipe.

    Raises:
        ValueError: An unknown preset or field, or an invalid value (see :func:`.training.recipes.resolve`).
    """
    name = config.recipe or recipes.default_recipe(config.arch, config.data is not None)
    changes = {key: value for key, value in (("epochs", config.epochs), ("batch_size", config.batch_size),
                                             ("lr", config.lr), ("temp_epochs", config.temp_epochs))
               if value is not None}
    if config.image_size is not None:
        changes.update(image_size=config.image_size, eval_size=config.image_size,
                       eval_resize=round(config.image_size / 0.875))
    return recipes.resolve(name, {**changes, **config.overrides})


def make_optimizer(model: paddle.nn.Layer, recipe: recipes.Recipe) -> paddle.optimizer.Momentum:
    """Build SGD with momentum (Nesterov when the recipe says so) and the recipe's weight-decay groups.

    Args:
        model: The model to train.
        recipe: The recipe.

    Returns:
        The optimizer.
    """
    return paddle.optimizer.Momentum(learning_rate=recipe.lr, momentum=recipe.momentum,
                                     parameters=parameter_groups(model, recipe), use_nesterov=recipe.nesterov)


def build_datasets(config: TrainConfig, recipe: recipes.Recipe, builder: Callable[..., Any]) -> tuple:
    """Build the training and validation sets ``config.data`` names, with the recipe's preprocessing.

    ``paddle-rep qat`` reads the user's images through this too.

    Args:
        config: The run's configuration (``data``, ``num_classes``, ``model_args``, ``seed``).
        recipe: The recipe (crop sizes, evaluation resize, minimum crop area).
        builder: The architecture's registry builder (whether it takes ``in_channels``).

    Returns:
        ``(train set, val set, model constructor arguments, input channels)``.

    Raises:
        DataError: No such folder, neither layout, a bad folder or list, or labels outside the classes.
        MissingPackageError: Pillow is missing (image folders).
    """
    kwargs = dict(config.model_args)
    if config.data is None:
        data, digit_args = digits_for_model(builder, seed=config.seed)
        if config.num_classes not in (None, DIGITS_CLASSES):
            raise ValueError(f"the digits have {DIGITS_CLASSES} classes; --num-classes {config.num_classes}")
        kwargs.update(digit_args)
        channels = data.x_train.shape[1]
        return ArrayDataset(data.x_train, data.y_train), ArrayDataset(data.x_test, data.y_test), kwargs, channels
    train_samples, val_samples = find_splits(config.data)
    num_classes = config.num_classes or len(train_samples.classes)
    check_labels(train_samples, num_classes)
    check_labels(val_samples, num_classes)
    kwargs["num_classes"] = num_classes
    if "in_channels" in inspect.signature(builder).parameters:
        kwargs.setdefault("in_channels", 3)
    train_set = ImageDataset(train_samples, Transform(True, recipe.image_size, recipe.eval_resize,
                                                      recipe.min_crop_area), config.seed)
    val_set = ImageDataset(val_samples, Transform(False, recipe.eval_size, recipe.eval_resize), config.seed)
    logger.info("data %s: %d training and %d validation images, %d classes", config.data, len(train_set),
                len(val_set), num_classes)
    return train_set, val_set, kwargs, 3


def _build_model(config: TrainConfig, kwargs: dict, world_size: int) -> paddle.nn.Layer:
    builder = registry.builder(config.arch)
    if config.use_checkpoint:
        if "use_checkpoint" not in inspect.signature(builder).parameters:
            raise ValueError(f"--use-checkpoint: {config.arch} has no gradient checkpointing")
        kwargs["use_checkpoint"] = True
    paddle.seed(config.seed)
    model = create_model(config.arch, **kwargs)
    if config.pretrained:
        load_pretrained(model, config.pretrained, kwargs.get("num_classes", DIGITS_CLASSES), config.arch)
    if config.attention_bn:
        logger.info("ODConv attention BN on %s statistics in %d layers", config.attention_bn,
                    set_attention_bn(model, config.attention_bn))
    if config.sync_bn:
        if paddle.device.get_device().startswith("gpu") or world_size == 1:  # one rank: plain BN, also on a CPU
            model = convert_sync_batchnorm(model)
            logger.info("converted %d BNs to SyncBatchNorm (torch's running variance over the global count)",
                        sum(isinstance(layer, SyncBatchNorm) for layer in model.sublayers()))
        else:
            logger.warning("--sync-bn ignored: Paddle's SyncBatchNorm has no CPU kernel")
    return model


def _amp(config: TrainConfig):
    if config.amp is None:
        return None, None
    if config.amp not in AMP_DTYPES:
        raise ValueError(f"--amp must be one of {sorted(AMP_DTYPES)}, got {config.amp!r}")
    on_gpu = paddle.device.get_device().startswith("gpu")
    if config.amp == "fp16" and not on_gpu:
        raise ValueError("--amp fp16 needs a GPU (float16 with loss scaling); use --amp bf16 on a CPU")
    scaler = paddle.amp.GradScaler(init_loss_scaling=2.0 ** 16) if config.amp == "fp16" else None
    return AMP_DTYPES[config.amp], scaler


def _visualdl(out: Path):
    try:
        from visualdl import LogWriter
    except ImportError as err:
        raise MissingPackageError("--visualdl needs VisualDL: pip install 'paddle-rep[visualdl]'",
                                  package="visualdl", extra="visualdl") from err
    return LogWriter(logdir=str(out / "visualdl"))


def save_state(state: dict, dst: Path) -> None:
    """Write a state dict as a ``.pdparams`` (pickled numpy arrays, read by ``paddle.load``), atomically.

    Args:
        state: The state dict (tensors or arrays).
        dst: The file to write.
    """
    arrays = {k: v.numpy() if hasattr(v, "numpy") else np.asarray(v) for k, v in state.items()}
    write_atomically(dst, lambda f: pickle.dump(arrays, f, protocol=PICKLE_PROTOCOL))


def _logged_step(line: str) -> float:
    """The step of one ``metrics.jsonl`` line; a line torn by a kill mid-write counts as past every step."""
    try:
        return json.loads(line).get("step", 0)
    except json.JSONDecodeError:
        return float("inf")


def _resume(run: Run, config: TrainConfig, out: Path) -> None:
    path = checkpoint.latest(out) if config.resume == "latest" else Path(config.resume)
    data = checkpoint.load(path)
    saved = data["meta"]
    expected = {"arch": run.meta["arch"], "model_args": run.meta["model_args"], "recipe": asdict(run.recipe),
                "seed": run.seed}
    differ = [key for key, value in expected.items() if json.loads(json.dumps(saved.get(key))) !=
              json.loads(json.dumps(value))]
    if differ:
        raise CheckpointError(f"{path}: cannot resume: {', '.join(differ)} differ from this run's "
                              f"(saved {[saved.get(k) for k in differ]}); repeat the original command with --resume",
                              path=str(path))
    restore(run, data, str(path))
    lines = (out / "metrics.jsonl").read_text().splitlines() if (out / "metrics.jsonl").is_file() else []
    if run.rank == 0:  # epochs logged after this checkpoint will be logged again
        kept = [line for line in lines if _logged_step(line) <= run.step]
        (out / "metrics.jsonl").write_text("".join(line + "\n" for line in kept))
    logger.info("resumed from %s at step %d (epoch %d)", path, run.step, run.step // run.iters_per_epoch)


def train(config: TrainConfig, out: Path) -> dict:
    """Train as ``config`` says, on this process's rank.

    Args:
        config: The run's configuration.
        out: The output folder (rank 0 writes the files the module docstring lists).

    Returns:
        The metrics (rank 0 also writes them to ``metrics.json``, with the final accuracies).

    Raises:
        DataError: Unusable training data.
        CheckpointError: A bad ``--pretrained`` or ``--resume`` checkpoint.
        ArchMismatchError: ``--pretrained`` weights that do not fit the model.
        ValueError: A bad option (recipe field, ``--amp``, ``--num-classes`` with the digits, ...).
        MissingPackageError: An optional package the options need (Pillow, VisualDL).
    """
    out = Path(out)
    world_size = dist.get_world_size()
    if world_size > 1:
        dist.init_parallel_env()
    rank = dist.get_rank()
    recipe = resolve_recipe(config)
    train_set, val_set, kwargs, channels = build_datasets(config, recipe, registry.builder(config.arch))
    model = _build_model(config, kwargs, world_size)
    amp_dtype, scaler = _amp(config)
    lr = recipe.scaled(recipe.lr, recipe.batch_size)
    logger.info("recipe %s: %d epochs, global batch %d over %d rank(s), lr %g (%s scaling from %g at batch %d)",
                recipe.name, recipe.epochs, recipe.batch_size, world_size, lr, recipe.lr_scaling, recipe.lr,
                recipe.reference_batch)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0 and not config.resume:
        save_state(model.state_dict(), out / "init.pdparams")
    meta = {"arch": config.arch, "model_args": {k: v for k, v in kwargs.items() if k != "use_checkpoint"}}
    run = Run(model=model, net=paddle.DataParallel(model) if world_size > 1 else model,
              optimizer=make_optimizer(model, recipe), recipe=recipe, train_set=train_set, val_set=val_set, out=out,
              rank=rank, world_size=world_size, seed=config.seed, workers=config.workers, meta=meta,
              steps=config.steps, amp=amp_dtype, scaler=scaler,
              ema=EMA(model, config.ema_decay) if config.ema else None, skip_bad_images=config.skip_bad_images,
              save_every_steps=config.save_every_steps, keep_last=config.keep_last, show_progress=config.progress,
              writer=_visualdl(out) if config.visualdl and rank == 0 else None)
    if config.resume:
        _resume(run, config, out)
    started = time.perf_counter()
    fit(run)
    seconds = time.perf_counter() - started
    if config.save_every_rank:
        save_state(model.state_dict(), out / f"rank{rank}.pdparams")
    metrics = {"rank": rank, "world_size": world_size, "steps": run.step, "seconds": seconds, "losses": run.losses,
               "skipped_images": run.skipped}
    if rank == 0:
        metrics.update(_final_outputs(run, config, channels))
        (out / "metrics.json").write_text(json.dumps({"config": asdict(config), "recipe": asdict(recipe), **metrics},
                                                     indent=2, default=str))
        logger.info("rank 0: %d steps in %.1fs, accuracy %.4f (fused %.4f)", run.step, seconds,
                    metrics["accuracy"], metrics["deploy_accuracy"])
    if run.writer is not None:
        run.writer.close()
    return metrics


def _final_outputs(run: Run, config: TrainConfig, channels: int) -> dict:
    batch = max(1, run.recipe.batch_size // run.world_size)
    scores = evaluate(run.model, run.val_set, batch, config.workers)
    save_state(run.model.state_dict(), run.out / "model.pdparams")
    deployed = reparameterize_model(run.model)
    metrics = {"accuracy": scores["top1"], "top5": scores["top5"],
               "deploy_accuracy": evaluate(deployed, run.val_set, batch, config.workers)["top1"]}
    save_state(deployed.state_dict(), run.out / "model_deploy.pdparams")
    if run.ema is not None:
        ema_model = copy.deepcopy(run.model)
        ema_model.set_state_dict(run.ema.state)
        metrics["ema_accuracy"] = evaluate(ema_model, run.val_set, batch, config.workers)["top1"]
        save_state(ema_model.state_dict(), run.out / "ema.pdparams")
        save_state(reparameterize_model(ema_model).state_dict(), run.out / "ema_deploy.pdparams")
    if config.export:
        from .exporter import export

        size = run.recipe.eval_size
        exported = export(run.model, run.out / "inference" / "model", (channels, size, size))
        metrics["exported"] = exported.model_file
    return metrics


def run_cli(args: argparse.Namespace) -> int:
    """Handle ``paddle-rep train`` and ``tools/train.py``.

    Args:
        args: The parsed arguments (see :func:`paddle_rep.apps.cli.add_train_arguments`).

    Returns:
        The exit code, 0 (errors are raised, and the command line turns them into codes).

    Raises:
        PaddleRepError: As :func:`train` raises them (bad data, checkpoints, options).
    """
    overrides = parse_model_args(args.override)
    config = TrainConfig(
        arch=args.arch, data=args.data, recipe=args.recipe, epochs=args.epochs, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, temp_epochs=args.temp_epochs, image_size=args.image_size,
        overrides=overrides, num_classes=args.num_classes, workers=args.workers, seed=args.seed,
        pretrained=args.pretrained, resume=args.resume, skip_bad_images=args.skip_bad_images, amp=args.amp,
        ema=args.ema, ema_decay=args.ema_decay, sync_bn=args.sync_bn, use_checkpoint=args.use_checkpoint,
        attention_bn=args.attention_bn, model_args=parse_model_args(args.model_arg),
        save_every_steps=args.save_every_steps, keep_last=args.keep_last, export=not args.no_export,
        visualdl=args.visualdl, save_every_rank=args.save_every_rank,
        progress=False if getattr(args, "quiet", False) else None)
    metrics = train(config, args.out)
    if metrics["rank"] == 0 and not getattr(args, "quiet", False):
        print(f"trained {config.arch} for {metrics['steps']} steps on {metrics['world_size']} process(es): "
              f"top-1 {metrics['accuracy']:.4f}, fused {metrics['deploy_accuracy']:.4f}; wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run ``tools/train.py`` (what ``paddle.distributed.launch`` runs on every rank).

    Args:
        argv: The arguments; ``sys.argv[1:]`` when None.

    Returns:
        The exit code (see :func:`paddle_rep.apps.cli.main`).
    """
    from .cli import run_with_exit_codes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_with_exit_codes("train", lambda: run_cli(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
