"""Benchmark the checkpoint converter against the floor: ``torch.load`` + ``paddle.save`` of the same tensors.

Builds a checkpoint from ``torch_ref.create_model(MODEL)`` (default repvgg_b3, ~123M parameters),
then runs each variant in a fresh Python process and reports its time (after imports, best of
``--repeat``) and the process's peak RSS. Not a test; run ``python tools/bench_convert.py``.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Each variant runs in its own interpreter so peak RSS is its own. It prints one JSON line.
_PRELUDE = """
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
import numpy, paddle, torch
src, dst = sys.argv[1], sys.argv[2]
start = time.perf_counter()
"""
_EPILOGUE = """
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
VARIANTS = {
    "floor: torch.load + paddle.save": """
state = torch.load(src, map_location="cpu", weights_only=True)
paddle.save({k: v.numpy() for k, v in state.items() if not k.endswith("num_batches_tracked")}, dst)
""",
    "convert (key mapping)": """
from paddle_rep.convert import convert_checkpoint
convert_checkpoint(src, dst, progress=False)
""",
    "convert --arch (strict check)": """
from paddle_rep.convert import convert_checkpoint
convert_checkpoint(src, dst, arch=sys.argv[3], progress=False)
""",
    "convert --arch --deploy": """
from paddle_rep.convert import convert_checkpoint
convert_checkpoint(src, dst, arch=sys.argv[3], deploy=True, progress=False)
""",
}


def _run(code: str, src: Path, dst: Path, model: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PRELUDE + code + _EPILOGUE, str(src), str(dst), model],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="repvgg_b3", help="torch_ref model to build the checkpoint from")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the best time is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write files (default: a temp dir)")
    parser.add_argument("--skip", action="append", default=[], help="variant name prefix to skip (repeatable)")
    args = parser.parse_args(argv)

    import torch

    import torch_ref

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        src, dst = Path(tmp) / f"{args.model}.pth", Path(tmp) / f"{args.model}.pdparams"
        model = torch_ref.create_model(args.model)
        params = sum(p.numel() for p in model.parameters())
        torch.save(model.state_dict(), src)
        del model
        print(f"{args.model}: {params / 1e6:.1f}M parameters, checkpoint {src.stat().st_size / 2**20:.0f} MiB, "
              f"best of {args.repeat}")
        floor = None
        for name, code in VARIANTS.items():
            if any(name.startswith(s) for s in args.skip):
                continue
            runs = [_run(code, src, dst, args.model) for _ in range(args.repeat)]
            seconds = min(r["seconds"] for r in runs)
            rss = statistics.median(r["peak_rss_mb"] for r in runs)
            floor = floor or (seconds, rss)
            print(f"  {name:34s} {seconds:7.2f} s ({seconds / floor[0]:4.2f}x)   peak RSS {rss:7.0f} MiB "
                  f"({rss / floor[1]:4.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
