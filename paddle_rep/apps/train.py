"""Train a registry model on the shipped digits with Paddle, in one process or several.

One process:      ``paddle-rep train --arch rep_tiny --epochs 3 --out runs/tiny``
Several (gloo on CPU, NCCL on GPU):
``python -m paddle.distributed.launch --nproc_per_node 2 tools/train.py --arch rep_tiny --out runs/tiny``

Each global batch is split into one contiguous shard per rank; ``paddle.DataParallel``
averages the gradients, so all ranks keep identical parameters. Without SyncBatchNorm every
rank normalises with its own shard's statistics and keeps its own running statistics
(``--sync-bn`` converts them to ``paddle_rep.SyncBatchNorm``, on GPU or in one process; Paddle
has no CPU sync kernel). Rank 0 writes
``init.pdparams`` (before the first step), ``model.pdparams`` (train form) and
``model_deploy.pdparams`` (re-parameterized); ``--save-every-rank`` adds ``rank{N}.pdparams``.
"""

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import paddle
import paddle.distributed as dist

from paddle_rep.bn import SyncBatchNorm, convert_sync_batchnorm
from paddle_rep.core.schedules import EVAL_TEMPERATURE, get_temperature, set_temperature
from paddle_rep.losses import classification_loss
from paddle_rep.models import create_model
from paddle_rep.models._registry import registry
from paddle_rep.reparam import reparameterize_model

from .cli import add_train_arguments
from .data import batches as digit_batches
from .data import digits_for_model

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    arch: str = "rep_tiny"
    epochs: int = 3
    steps: int | None = None  # stop after this many steps (tests); None: whole epochs
    batch_size: int = 64  # global, split across ranks
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    seed: int = 0
    temp_epochs: int = 1  # ODConv temperature 30 -> 1 over this many epochs (upstream: 10 of 100)
    sync_bn: bool = False
    save_every_rank: bool = False


def shard(x: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous part of a global batch."""
    if len(x) % world_size:
        raise ValueError(f"global batch of {len(x)} does not split into {world_size} equal shards")
    size = len(x) // world_size
    return x[rank * size:(rank + 1) * size]




def evaluate(model: paddle.nn.Layer, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy in eval mode, at the evaluation temperature."""
    model.eval()
    set_temperature(model, EVAL_TEMPERATURE)
    correct = 0
    with paddle.no_grad():
        for start in range(0, len(y), batch_size):
            logits = model(paddle.to_tensor(x[start:start + batch_size]))
            correct += int((logits.argmax(axis=1).numpy() == y[start:start + batch_size]).sum())
    return correct / len(y)


def train(config: TrainConfig, out: Path) -> dict:
    """Train on this process's shard of every batch; returns the metrics rank 0 writes to metrics.json."""
    world_size = dist.get_world_size()
    if world_size > 1:
        dist.init_parallel_env()
    rank = dist.get_rank()
    data, model_args = digits_for_model(registry.builder(config.arch), seed=config.seed)
    paddle.seed(config.seed)
    model = create_model(config.arch, **model_args)
    if config.sync_bn:
        if paddle.device.get_device().startswith("gpu") or world_size == 1:  # one rank: plain BN, also on a CPU
            model = convert_sync_batchnorm(model)
            logger.info("converted %d BNs to SyncBatchNorm (torch's running variance over the global count)",
                        sum(isinstance(layer, SyncBatchNorm) for layer in model.sublayers()))
        else:
            logger.warning("--sync-bn ignored: Paddle's SyncBatchNorm has no CPU kernel")
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        paddle.save(model.state_dict(), str(out / "init.pdparams"))
    net = paddle.DataParallel(model) if world_size > 1 else model
    optimizer = paddle.optimizer.Momentum(learning_rate=config.lr, momentum=config.momentum,
                                          parameters=model.parameters(), weight_decay=config.weight_decay)
    iters_per_epoch = len(data.y_train) // config.batch_size
    step, losses, started = 0, [], time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        for i, (x, y) in enumerate(digit_batches(data.x_train, data.y_train, config.batch_size, epoch, config.seed)):
            set_temperature(model, get_temperature(i, epoch, iters_per_epoch, temp_epoch=config.temp_epochs))
            outputs = net(paddle.to_tensor(shard(x, rank, world_size)))  # RepVGGplus: dict with aux logits
            loss = classification_loss(outputs, paddle.to_tensor(shard(y, rank, world_size)))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            losses.append(float(loss))
            step += 1
            if config.steps is not None and step >= config.steps:
                break
        if config.steps is not None and step >= config.steps:
            break
    seconds = time.perf_counter() - started
    if config.save_every_rank:
        paddle.save(model.state_dict(), str(out / f"rank{rank}.pdparams"))
    metrics = {"rank": rank, "world_size": world_size, "steps": step, "seconds": seconds, "losses": losses}
    if rank == 0:
        metrics["accuracy"] = evaluate(model, data.x_test, data.y_test)
        paddle.save(model.state_dict(), str(out / "model.pdparams"))
        deployed = reparameterize_model(model)
        metrics["deploy_accuracy"] = evaluate(deployed, data.x_test, data.y_test)
        paddle.save(deployed.state_dict(), str(out / "model_deploy.pdparams"))
        (out / "metrics.json").write_text(json.dumps({"config": asdict(config), **metrics}, indent=2))
        logger.info("rank 0: %d steps in %.1fs, accuracy %.4f (fused %.4f)", step, seconds,
                    metrics["accuracy"], metrics["deploy_accuracy"])
    return metrics


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``paddle-rep train`` and ``tools/train.py``."""
    config = TrainConfig(arch=args.arch, epochs=args.epochs, steps=args.steps, batch_size=args.batch_size,
                         lr=args.lr, seed=args.seed, temp_epochs=args.temp_epochs, sync_bn=args.sync_bn,
                         save_every_rank=args.save_every_rank)
    metrics = train(config, args.out)
    if metrics["rank"] == 0:
        print(f"trained {config.arch} for {metrics['steps']} steps on {metrics['world_size']} process(es): "
              f"test accuracy {metrics['accuracy']:.4f}, fused {metrics['deploy_accuracy']:.4f}; wrote {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``tools/train.py`` (what ``paddle.distributed.launch`` runs on every rank)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_train_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(parser.parse_args(argv))

