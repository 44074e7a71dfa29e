"""Load benchmark of the deploy backends (``python -m paddle_rep.apps.bench --load``): one
:class:`~paddle_rep.apps.predictor.Predictor` per backend and precision, called with one image per
request from 1, 2 and 4 threads at once, and in throughput mode (:meth:`Predictor.predict_many` on
one large array). Reports images/s and p50/p99 request latency; every output is checked against the
single-threaded answer of the same predictor, so a figure never comes from a wrong answer.

Full run: repvgg_a0 and od_mobilenetv2_100 at 224x224; ``--quick``: rep_tiny at 16x16, few requests.
"""

import argparse
import json
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paddle

from paddle_rep.core.numeric import relative_error
from paddle_rep.models import create_model

from .exporter import export
from .predictor import Predictor

CONCURRENCY = (1, 2, 4)


def _predictors(files, backends: list[str], threads: int):
    for backend in backends:
        yield backend, Predictor(files, backend, threads)
        if backend == "openvino":
            bf16 = Predictor(files, backend, threads, precision="bf16")
            if bf16.precision == "bf16":  # f32 (and a warning) on a CPU without bf16: not a column
                yield "openvino bf16", bf16
            else:
                bf16.close()


def _under_load(predictor: Predictor, images: list[np.ndarray], expected: list[np.ndarray], concurrency: int,
                requests: int) -> dict:
    """``requests`` one-image calls spread over ``concurrency`` threads; images/s, latency percentiles (ms)."""
    latencies, wrong, lock = [], [0], threading.Lock()
    start = threading.Barrier(concurrency + 1)

    def work(thread: int) -> None:
        start.wait()
        for call in range(thread, requests, concurrency):
            k = call % len(images)
            t0 = time.perf_counter()
            out = predictor(images[k])
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                wrong[0] += not np.array_equal(out, expected[k])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    t0 = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - t0
    ms = sorted(1e3 * t for t in latencies)
    return {"images_per_s": requests / wall, "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))], "wrong": wrong[0]}


def _throughput(predictor: Predictor, batch: np.ndarray, expected: np.ndarray, batch_size: int) -> dict:
    predictor.predict_many(batch[:batch_size], batch_size=batch_size)  # builds OpenVINO's throughput model
    t0 = time.perf_counter()
    out = predictor.predict_many(batch, batch_size=batch_size)
    wall = time.perf_counter() - t0
    error = relative_error(out, expected)
    return {"images_per_s": len(batch) / wall, "batch_size": batch_size, "max_rel_diff": error}


def run_load(args: argparse.Namespace) -> dict:
    """Every model x backend x load; returns the results (also written to ``args.out/load.json``)."""
    models = [("rep_tiny", 16)] if args.quick else [("repvgg_a0", 224), ("od_mobilenetv2_100", 224)]
    requests = 16 if args.quick else 96
    many = 8 if args.quick else 64
    batch_size = 2 if args.quick else 8
    rng = np.random.default_rng(0)
    results = {"threads": args.threads, "cores": os.cpu_count(), "requests": requests, "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        for arch, size in models:
            paddle.seed(0)
            model = create_model(arch)
            model.eval()
            files = export(model, Path(tmp) / arch, (3, size, size), onnx=True, fold_batch_sizes=(1, batch_size))
            images = [rng.standard_normal((1, 3, size, size)).astype("float32") for _ in range(8)]
            batch = rng.standard_normal((many, 3, size, size)).astype("float32")
            for name, predictor in _predictors(files, args.backends, args.threads):
                with predictor:
                    expected = [predictor(x) for x in images]  # single-threaded answers (and the warm-up)
                    row = {"model": arch, "input": [1, 3, size, size], "backend": name}
                    for concurrency in CONCURRENCY:
                        row[f"c{concurrency}"] = _under_load(predictor, images, expected, concurrency, requests)
                    row["throughput"] = _throughput(predictor, batch, predictor(batch), batch_size)
                results["rows"].append(row)
                print(_line(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(results, indent=1))
    (args.out / "load.md").write_text(render_load(results))
    return results


def _line(row: dict) -> str:
    cells = [f"c{c} {row[f'c{c}']['images_per_s']:.1f}/s" for c in CONCURRENCY]
    return f"{row['model']} {row['backend']}: " + ", ".join(cells) + f", many {row['throughput']['images_per_s']:.1f}/s"


def render_load(results: dict) -> str:
    """The markdown table of a load run."""
    head = ["model", "backend"] + [f"concurrency {c}: img/s, p50 / p99 ms" for c in CONCURRENCY]
    head += ["throughput mode: img/s (batch)", "wrong outputs"]
    lines = [f"One image per request; {results['threads']} runtime threads per call, {results['cores']} cores, "
             f"{results['requests']} requests per level. Throughput mode: `predict_many` on one array.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in results["rows"]:
        cells = [row["model"], row["backend"]]
        for c in CONCURRENCY:
            load = row[f"c{c}"]
            cells.append(f"{load['images_per_s']:.1f}: {load['p50_ms']:.1f} / {load['p99_ms']:.1f}")
        cells.append(f"{row['throughput']['images_per_s']:.1f} ({row['throughput']['batch_size']})")
        cells.append(str(sum(row[f"c{c}"]["wrong"] for c in CONCURRENCY)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
