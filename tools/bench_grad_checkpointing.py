"""Peak training memory and step time with ``use_checkpoint`` off and on, in both frameworks.

Each (framework, use_checkpoint) runs in a fresh Python process, so its peak RSS is its own:
it builds ``create_model(MODEL, use_checkpoint=...)``, runs ``--warmup`` training steps
(forward, loss, backward, SGD step), then times ``--steps`` more. Reported: the median step
time, the process's peak RSS, and the training increment (peak RSS minus the RSS before the
first step: activations, gradients and optimizer state). CPU RSS stands in for GPU memory
here; the saving is the activations that recomputation does not keep. Not a test; run
``python tools/bench_grad_checkpointing.py [--model repvgg_a0 --batch 8 --size 224] [--markdown out.md]``.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

_CHILD = """
import json, resource, statistics, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy as np
framework, model_name, use_checkpoint = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
batch, size, warmup, steps, threads = (int(v) for v in sys.argv[4:9])

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20

x = np.random.default_rng(0).normal(0, 1, (batch, 3, size, size)).astype("float32")
y = np.random.default_rng(1).integers(0, 1000, batch)
if framework == "torch":
    import torch, torch_ref
    torch.set_num_threads(threads)
    model = torch_ref.create_model(model_name, use_checkpoint=use_checkpoint).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    def step():
        loss = torch_ref.classification_loss(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
else:
    import paddle, paddle_rep
    paddle.base.core.set_num_threads(threads)
    model = paddle_rep.create_model(model_name, use_checkpoint=use_checkpoint)
    model.train()
    opt = paddle.optimizer.Momentum(learning_rate=1e-3, momentum=0.9, parameters=model.parameters())
    xp, yp = paddle.to_tensor(x), paddle.to_tensor(y)
    def step():
        loss = paddle_rep.classification_loss(model(xp), yp)
        loss.backward()
        opt.step()
        opt.clear_grad()
before = rss_mb()
times = []
for i in range(warmup + steps):
    start = time.perf_counter()
    step()
    if i >= warmup:
        times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"step_ms": 1000 * statistics.median(times), "peak_rss_mb": peak,
                  "train_increment_mb": peak - before}))
"""


def run_one(framework: str, model: str, use_checkpoint: bool, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-c", _CHILD, framework, model, "1" if use_checkpoint else "0", str(args.batch),
           str(args.size), str(args.warmup), str(args.steps), str(args.threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="repvgg_a0")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="append the table rows to this file")
    args = parser.parse_args(argv)
    rows = []
    for framework in ("torch", "paddle"):
        off, on = (run_one(framework, args.model, flag, args) for flag in (False, True))
        rows.append(f"| {args.model} | {framework} | {args.batch}x3x{args.size}x{args.size} "
                    f"| {off['step_ms']:.0f} | {on['step_ms']:.0f} | {on['step_ms'] / off['step_ms']:.2f}x "
                    f"| {off['peak_rss_mb']:.0f} | {on['peak_rss_mb']:.0f} "
                    f"| {off['train_increment_mb']:.0f} | {on['train_increment_mb']:.0f} |")
        print(rows[-1], flush=True)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write("\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
