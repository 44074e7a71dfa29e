"""Benchmark of ``paddle-rep train``: the trainer's overhead per step and the data pipeline's images/s.

    python tools/bench_train.py [--arch rep_tiny] [--size 32] [--batch 32] [--steps 30] [--workers 2]

1. Overhead: the same model, optimizer and in-memory batches, stepped by a bare Paddle loop
   (forward, loss, backward, step, clear_grad) and by the trainer's ``train_step`` (which adds the
   per-step re-seed, temperature, learning rate and the loss read-back). Interleaved rounds, median.
2. Data: images/s of the training DataLoader (decode, random-resized crop, flip, normalise) over a
   generated image folder with ``--workers`` worker processes, next to the step rate, so that one
   sees whether the loader or the model limits training.
Timing only; nothing is asserted.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import paddle

from paddle_rep.apps.train import TrainConfig, make_optimizer, resolve_recipe
from paddle_rep.apps.training.data import ImageDataset, ShardedBatchSampler, Transform, find_splits, make_loader
from paddle_rep.apps.training.loop import Run, train_step
from paddle_rep.losses import classification_loss
from paddle_rep.models import create_model


def _folder(root: Path, size: int, count: int) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", count), ("val", 8)):
        for i in range(n):
            path = root / split / f"c{i % 4}" / f"{i:05d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size + 8, size + 8, 3), dtype=np.uint8)).save(path)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="rep_tiny")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    paddle.seed(0)
    recipe = resolve_recipe(TrainConfig(batch_size=args.batch, epochs=100))
    batches = [(paddle.randn([args.batch, 3, args.size, args.size]), paddle.randint(0, 4, [args.batch]))
               for _ in range(4)]

    def bare(model, optimizer) -> float:
        started = time.perf_counter()
        for i in range(args.steps):
            x, y = batches[i % 4]
            loss = classification_loss(model(x), y)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
        float(loss)
        return (time.perf_counter() - started) / args.steps

    def trainer(run) -> float:
        started = time.perf_counter()
        for i in range(args.steps):
            train_step(run, *batches[i % 4])
        return (time.perf_counter() - started) / args.steps

    model = create_model(args.arch, num_classes=4)
    optimizer = make_optimizer(model, recipe)
    run = Run(model=model, net=model, optimizer=optimizer, recipe=recipe, train_set=range(args.batch * 1000),
              val_set=None, out=Path(), rank=0, world_size=1, seed=0, workers=0, meta={})
    bare(model, optimizer)  # warm-up
    trainer(run)
    bare_times, trainer_times = [], []
    for _ in range(args.rounds):
        bare_times.append(bare(model, optimizer))
        trainer_times.append(trainer(run))
    b, t = statistics.median(bare_times), statistics.median(trainer_times)
    print(f"{args.arch} {args.size}x{args.size} batch {args.batch}: bare loop {1e3 * b:.2f} ms/step, "
          f"trainer {1e3 * t:.2f} ms/step, overhead {100 * (t - b) / b:+.1f} %, {args.batch / t:.0f} images/s")

    with tempfile.TemporaryDirectory() as tmp:
        samples, _ = find_splits(_folder(Path(tmp), args.size, args.batch * 8))
        dataset = ImageDataset(samples, Transform(True, args.size, round(args.size / 0.875)), seed=0)
        for workers in sorted({0, args.workers}):
            sampler = ShardedBatchSampler(len(dataset), args.batch)
            for _ in make_loader(dataset, sampler, workers):  # warm-up (worker start, page cache)
                break
            started = time.perf_counter()
            count = sum(x.shape[0] for x, *_ in make_loader(dataset, sampler, workers))
            rate = count / (time.perf_counter() - started)
            print(f"data pipeline, {workers} worker(s): {rate:.0f} images/s "
                  f"({rate / (args.batch / t):.1f}x the training step rate)")


if __name__ == "__main__":
    main()
