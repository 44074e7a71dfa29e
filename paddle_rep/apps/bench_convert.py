"""Benchmark the checkpoint converter against the floor: ``torch.load`` + ``paddle.save`` of the same tensors.

Builds a checkpoint from ``torch_ref.create_model(MODEL)`` (default repvgg_b3, ~123M parameters),
then runs each variant in a fresh Python process and reports its time (after imports, best of
``--repeat``) and the process's peak RSS. Not a test; run ``python -m paddle_rep.apps.bench_convert``.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
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
from paddle_rep.apps.convert import convert_checkpoint
convert_checkpoint(src, dst, progress=False)
""",
    "convert --arch (strict check)": """
from paddle_rep.apps.convert import convert_checkpoint
convert_checkpoint(src, dst, arch=sys.argv[3], progress=False)
""",
    "convert --arch --deploy": """
from paddle_rep.apps.convert import convert_checkpoint
convert_checkpoint(src, dst, arch=sys.argv[3], deploy=True, progress=False)
""",
}


def _run(code: str, src: Path, dst: Path, model: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _PRELUDE + code + _EPILOGUE, str(src), str(dst), model],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_variants(model: str = "repvgg_b3", repeat: int = 3, workdir: Path | None = None,
                 skip: list[str] | tuple = (), echo: Callable[[str], object] = print) -> list[dict]:
    """Time every variant not skipped, each in a fresh interpreter.

    Args:
        model: The ``torch_ref`` model whose state dict is the checkpoint.
        repeat: Runs per variant.
        workdir: Where to write the files (a temporary folder inside it); None for the system's.
        skip: Name prefixes of variants to leave out.
        echo: Gets the progress lines.

    Returns:
        One dict per variant, the floor first: ``name``, ``seconds`` (best of ``repeat``),
        ``peak_rss_mb`` (median), ``runs`` (all times), ``params_m``, ``checkpoint_mib``.

    Raises:
        subprocess.CalledProcessError: A variant's process failed.
    """
    import torch

    import torch_ref

    rows = []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        src, dst = Path(tmp) / f"{model}.pth", Path(tmp) / f"{model}.pdparams"
        net = torch_ref.create_model(model)
        params = sum(p.numel() for p in net.parameters())
        torch.save(net.state_dict(), src)
        del net
        echo(f"{model}: {params / 1e6:.1f}M parameters, checkpoint {src.stat().st_size / 2**20:.0f} MiB, "
             f"best of {repeat}")
        for name, code in VARIANTS.items():
            if any(name.startswith(s) for s in skip):
                continue
            runs = [_run(code, src, dst, model) for _ in range(repeat)]
            rows.append({"name": name, "seconds": min(r["seconds"] for r in runs),
                         "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs),
                         "runs": [r["seconds"] for r in runs], "params_m": params / 1e6,
                         "checkpoint_mib": src.stat().st_size / 2**20})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line and print one line per variant.

    Args:
        argv: The arguments (``--model``, ``--repeat``, ``--workdir``, ``--skip``); ``sys.argv[1:]`` when None.

    Returns:
        The exit code, 0.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="repvgg_b3", help="torch_ref model to build the checkpoint from")
    parser.add_argument("--repeat", type=int, default=3, help="runs per variant; the best time is reported")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write files (default: a temp dir)")
    parser.add_argument("--skip", action="append", default=[], help="variant name prefix to skip (repeatable)")
    args = parser.parse_args(argv)

    rows = run_variants(args.model, args.repeat, args.workdir, args.skip)
    floor = rows[0] if rows else None
    for row in rows:
        seconds, rss = row["seconds"], row["peak_rss_mb"]
        print(f"  {row['name']:34s} {seconds:7.2f} s ({seconds / floor['seconds']:4.2f}x)   peak RSS {rss:7.0f} MiB "
              f"({rss / floor['peak_rss_mb']:4.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
