"""The training loop: one optimizer step per global batch, evaluation, checkpoints and metrics.

Everything random or scheduled in a step is a function of ``(seed, step)``: the data order and
augmentation (see :mod:`.data`), Paddle's generator (re-seeded before each step, e.g. for dropout),
the learning rate and the ODConv temperature (:mod:`.recipes`). With the model, optimizer, EMA and
loss-scaler state from a checkpoint, a resumed run repeats the uninterrupted run's arithmetic.
"""

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from paddle_rep.core.errors import DataError
from paddle_rep.core.schedules import EVAL_TEMPERATURE, set_temperature
from paddle_rep.losses import classification_loss

from ..console import progress
from . import checkpoint
from .data import ShardedBatchSampler, make_loader
from .model import EMA, custom_l2
from .recipes import Recipe, learning_rate, temperature

logger = logging.getLogger(__name__)


def step_seed(seed: int, step: int) -> int:
    """Derive the seed Paddle's generator gets before optimizer step ``step``.

    Args:
        seed: The run's seed.
        step: The optimizer step.

    Returns:
        A 32-bit seed that depends only on ``(seed, step)``.
    """
    return int(np.random.SeedSequence([seed, step]).generate_state(1, np.uint32)[0])


@dataclass
class Run:
    """What the loop needs; built by :func:`paddle_rep.apps.train.train`."""

    model: paddle.nn.Layer
    net: paddle.nn.Layer  # the model, or its paddle.DataParallel wrapper
    optimizer: paddle.optimizer.Optimizer
    recipe: Recipe
    train_set: Any
    val_set: Any
    out: Path
    rank: int
    world_size: int
    seed: int
    workers: int
    meta: dict  # arch, model_args, ... (stored in checkpoints)
    steps: int | None = None
    amp: str | None = None
    scaler: Any = None
    ema: EMA | None = None
    skip_bad_images: bool = False
    save_every_steps: int = 0
    keep_last: int = 3
    show_progress: bool | None = None
    writer: Any = None  # visualdl LogWriter
    step: int = 0
    best_top1: float = -1.0
    losses: list = field(default_factory=list)
    skipped: int = 0

    @property
    def iters_per_epoch(self) -> int:
        """Optimizer steps per epoch (the last incomplete global batch is dropped).

        Returns:
            ``len(train_set) // recipe.batch_size``.
        """
        return len(self.train_set) // self.recipe.batch_size


def _topk(logits: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    k = min(5, logits.shape[1])
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(axis=1).sum())


def evaluate(model: paddle.nn.Layer, dataset: Any, batch_size: int, workers: int = 0) -> dict:
    """Measure top-1 and top-5 (top-k for fewer classes) accuracy in eval mode, at the evaluation temperature.

    The model's training mode is restored afterwards.

    Args:
        model: The model.
        dataset: The validation set (:class:`~paddle_rep.apps.training.data.ImageDataset` or ``ArrayDataset``).
        batch_size: Samples per batch.
        workers: Loader worker processes (0: in this process).

    Returns:
        ``{"top1": ..., "top5": ..., "samples": ...}``.

    Raises:
        DataError: An image does not decode.
    """
    was_training = model.training
    model.eval()
    set_temperature(model, EVAL_TEMPERATURE)
    loader = make_loader(dataset, ShardedBatchSampler(len(dataset), batch_size, shuffle=False), workers)
    top1 = top5 = count = 0
    with paddle.no_grad():
        for x, y, index, ok in loader:
            _raise_bad(dataset, index.numpy(), ok.numpy())
            first, five = _topk(model(x).numpy(), y.numpy())
            top1, top5, count = top1 + first, top5 + five, count + len(y)
    if was_training:  # Paddle 2.6's Layer.train() takes no mode argument
        model.train()
    return {"top1": top1 / count, "top5": top5 / count, "samples": count}


def _raise_bad(dataset: Any, index: np.ndarray, ok: np.ndarray) -> list[str]:
    bad = [dataset.samples.paths[i] for i in index[~ok]] if not ok.all() else []
    if bad:
        raise DataError(f"cannot decode image {bad[0]} (corrupt or truncated; --skip-bad-images skips such files)",
                        path=bad[0])
    return bad


def _filter_bad(run: Run, x: paddle.Tensor, y: paddle.Tensor, index: np.ndarray, ok: np.ndarray):
    if ok.all():
        return x, y
    if not run.skip_bad_images:
        _raise_bad(run.train_set, index, ok)
    bad = [run.train_set.samples.paths[i] for i in index[~ok]]
    run.skipped += len(bad)
    logger.warning("skipped %d unreadable image(s) (%d so far): %s", len(bad), run.skipped, ", ".join(bad[:3]))
    keep = paddle.to_tensor(np.flatnonzero(ok))
    if keep.shape[0] == 0:
        raise DataError(f"every image of a batch is unreadable, e.g. {bad[0]}", path=bad[0])
    return paddle.gather(x, keep), paddle.gather(y, keep)


def train_step(run: Run, x: paddle.Tensor, y: paddle.Tensor) -> float:
    """Take one optimizer step at ``run.step`` (seed, temperature and learning rate set from the step).

    Args:
        run: The run.
        x: The batch's images.
        y: The batch's labels.

    Returns:
        The loss (custom L2 included), as a float.
    """
    recipe, iters = run.recipe, run.iters_per_epoch
    paddle.seed(step_seed(run.seed, run.step))
    set_temperature(run.model, temperature(recipe, run.step, iters))
    run.optimizer.set_lr(learning_rate(recipe, run.step, iters, recipe.batch_size))
    with paddle.amp.auto_cast(enable=run.amp is not None, dtype=run.amp or "float16", level="O1"):
        outputs = run.net(x)  # RepVGGplus: a dict with the aux logits
        loss = classification_loss(outputs, y, recipe.aux_weight, recipe.label_smoothing)
    if recipe.custom_l2:
        l2 = custom_l2(run.model)
        if l2 is not None:
            loss = loss + recipe.weight_decay * 0.5 * l2
    if run.scaler is not None:
        run.scaler.minimize(run.optimizer, run.scaler.scale(loss))
    else:
        loss.backward()
        run.optimizer.step()
    run.optimizer.clear_grad()
    if run.ema is not None:
        run.ema.update(run.model)
    run.step += 1
    value = float(loss)
    run.losses.append(value)
    return value


def payload(run: Run) -> dict:
    """Gather the checkpoint of ``run`` now (see :mod:`.checkpoint`).

    Args:
        run: The run.

    Returns:
        ``{"meta", "model", "optimizer"}`` plus ``"ema"`` with EMA.
    """
    scaler = None
    if run.scaler is not None:
        scaler = {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in run.scaler.state_dict().items()}
    meta = {**run.meta, "step": run.step, "epoch": run.step // run.iters_per_epoch, "recipe": asdict(run.recipe),
            "world_size": run.world_size, "best_top1": run.best_top1, "scaler": scaler, "seed": run.seed}
    data = {"meta": meta, "model": checkpoint.numpy_state(run.model),
            "optimizer": checkpoint.optimizer_state(run.optimizer, run.model)}
    if run.ema is not None:
        data["ema"] = run.ema.numpy()
    return data


def restore(run: Run, data: dict, path: str) -> None:
    """Put ``data`` (a loaded checkpoint) into ``run``: model, optimizer, EMA, scaler, step, best.

    Args:
        run: The run.
        data: The checkpoint, as :func:`paddle_rep.apps.training.checkpoint.load` returns it.
        path: The checkpoint's file, named in errors.

    Raises:
        CheckpointError: The optimizer state names a parameter the model lacks.
    """
    meta = data["meta"]
    run.model.set_state_dict({k: paddle.to_tensor(v) for k, v in data["model"].items()})
    checkpoint.load_optimizer_state(run.optimizer, run.model, data["optimizer"], path)
    if run.ema is not None:
        run.ema = EMA(run.model, run.ema.decay, data.get("ema") or data["model"])
    if run.scaler is not None and meta.get("scaler"):
        state = dict(meta["scaler"])
        state["scale"] = np.asarray(state["scale"], dtype=np.float32)
        run.scaler.load_state_dict(state)
    run.step, run.best_top1 = int(meta["step"]), float(meta["best_top1"])


def _log(run: Run, record: dict) -> None:
    with (run.out / "metrics.jsonl").open("a") as f:
        f.write(json.dumps(record) + "\n")
    if run.writer is not None:
        for key, value in record.items():
            if isinstance(value, float) and key != "seconds":
                run.writer.add_scalar(f"train/{key}", value, record["step"])


def _save(run: Run, top1: float | None = None) -> None:
    if run.rank != 0:
        return
    saved = checkpoint.save(run.out, run.step, payload(run), run.keep_last)
    if top1 is not None and top1 >= run.best_top1:
        checkpoint.save_best(run.out, saved)


def _end_of_epoch(run: Run, epoch: int, epoch_losses: list, started: float, images: int) -> None:
    seconds = time.perf_counter() - started
    record = {"epoch": epoch, "step": run.step, "loss": float(np.mean(epoch_losses)) if epoch_losses else None,
              "lr": learning_rate(run.recipe, run.step - 1, run.iters_per_epoch, run.recipe.batch_size),
              "seconds": seconds, "images_per_s": images * run.world_size / seconds if seconds else None,
              "skipped_images": run.skipped}
    top1 = None
    if run.rank == 0:
        batch = max(1, run.recipe.batch_size // run.world_size)
        scores = evaluate(run.model, run.val_set, batch, run.workers)
        record.update(top1=scores["top1"], top5=scores["top5"])
        if run.ema is not None:
            ema_model = copy.deepcopy(run.model)
            ema_model.set_state_dict(run.ema.state)
            ema_scores = evaluate(ema_model, run.val_set, batch, run.workers)
            record.update(ema_top1=ema_scores["top1"], ema_top5=ema_scores["top5"])
        top1 = max(scores["top1"], record.get("ema_top1", -1.0))
        run.best_top1 = max(run.best_top1, top1)
        logger.info("epoch %d (step %d): loss %.4f, top-1 %.4f, top-5 %.4f%s", epoch, run.step, record["loss"] or 0,
                    scores["top1"], scores["top5"],
                    f", EMA top-1 {record['ema_top1']:.4f}" if run.ema is not None else "")
    # The line goes out before the checkpoint: a kill between the two resumes from the step before, and the
    # resume drops lines past its step, so the epoch is logged exactly once either way.
    if run.rank == 0:
        _log(run, record)
    _save(run, top1)  # after the evaluation: the checkpoint carries best_top1


def fit(run: Run) -> None:
    """Train from ``run.step`` to the end of the recipe (or ``run.steps``), checkpointing on the way.

    Args:
        run: The run.

    Raises:
        DataError: An image does not decode (unless ``run.skip_bad_images``), or a whole batch does not.
    """
    recipe, iters = run.recipe, run.iters_per_epoch
    total = recipe.epochs * iters
    stop = min(total, run.steps) if run.steps is not None else total
    sampler = ShardedBatchSampler(len(run.train_set), recipe.batch_size, run.rank, run.world_size, run.seed)
    while run.step < stop:
        epoch, first = divmod(run.step, iters)
        sampler.set_position(epoch, first)
        loader = make_loader(run.train_set, sampler, run.workers)
        run.model.train()
        epoch_losses, images, started = [], 0, time.perf_counter()
        with progress(loader, total=len(sampler), desc=f"epoch {epoch + 1}/{recipe.epochs}", unit="batch",
                      enabled=run.show_progress if run.rank == 0 else False) as batches:
            for x, y, index, ok in batches:
                x, y = _filter_bad(run, x, y, index.numpy(), ok.numpy())
                epoch_losses.append(train_step(run, x, y))
                images += x.shape[0]
                if run.rank == 0 and run.writer is not None:
                    run.writer.add_scalar("train/loss", epoch_losses[-1], run.step)
                if run.step % iters and run.save_every_steps and run.step % run.save_every_steps == 0:
                    _save(run)
                if run.step >= stop:
                    break
        if run.step % iters == 0:
            _end_of_epoch(run, epoch, epoch_losses, started, images)
        elif not (run.save_every_steps and run.step % run.save_every_steps == 0):
            _save(run)  # stopped early (--steps): resumable from here
