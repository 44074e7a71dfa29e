"""Smoke test of the benchmark (paddle_rep.apps.bench): a tiny run writes the table, the chart and the JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from parity_tests.tolerances import tolerance

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_smoke(tmp_path: Path) -> None:
    # A subprocess: the tool sets thread counts for both frameworks, which must not leak into other tests.
    result = subprocess.run(
        [sys.executable, "-m", "paddle_rep.apps.bench", "--quick", "--no-convert", "--no-models",
         "--only", "RepVGGBlock + SE", "--only", "ODConv2D", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "bench.md").read_text()
    assert "| RepVGGBlock + SE |" in table and "| ODConv2D k3 kn4 |" in table
    assert "official 6-D sum" in table and "### Training step" in table
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = {r["name"]: r for r in json.loads((tmp_path / "bench.json").read_text())["rows"]}
    se = rows["RepVGGBlock + SE"]
    for key in ("torch fused", "paddle fused", "predictor (oneDNN)", "plain port fused", "paddle train step",
                "onnxruntime", "openvino"):
        assert se["times"][key]["median"] > 0, key
    # ODConv: the fold graph of the run's batch is the backends' default, the other ways of serving a batch too.
    od = rows["ODConv2D k3 kn4"]
    for key in ("predictor fold", "onnxruntime", "onnxruntime unfold", "onnxruntime fold b1 x2", "openvino",
                "openvino unfold"):
        assert od["times"][key]["median"] > 0 and key in od["diffs"], key
    assert "### Deploy backends" in table and "fastest / torch fused" in table
    # Every measured form computes the same function as torch_ref's fused block (float32 noise only;
    # the opt-in bf16 column, present where the CPU has bf16, to bf16 rounding).
    for row in rows.values():
        for what, diff in row["diffs"].items():
            bound = tolerance("openvino_bf16", "float32").rel if what.endswith(" bf16") else 1e-4
            assert diff < bound, (row["name"], what, diff)
    # --render rebuilds the same report from the JSON without timing anything.
    rendered = subprocess.run([sys.executable, "-m", "paddle_rep.apps.bench", "--render",
                               str(tmp_path / "bench.json"), "--out", str(tmp_path / "again")],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert rendered.returncode == 0, rendered.stderr[-3000:]
    assert (tmp_path / "again" / "bench.md").read_text() == table


def test_bench_quick_int8_and_torch_peer_columns(tmp_path: Path) -> None:
    """A model row gets our int8 per runtime and the torch-exported peers (float32 and NNCF int8)."""
    pytest.importorskip("nncf")
    result = subprocess.run(
        [sys.executable, "-m", "paddle_rep.apps.bench", "--quick", "--no-convert", "--no-blocks", "--only",
         "repvgg_a0", "--no-train", "--no-formulations", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    row = json.loads((tmp_path / "bench.json").read_text())["rows"][0]
    columns = ("onnxruntime int8", "openvino int8", "torch-onnx onnxruntime", "torch-onnx onnxruntime int8",
               "torch-onnx openvino", "torch-onnx openvino int8")
    for key in columns:
        assert row["times"][key]["median"] > 0, key
    for key in ("torch-onnx onnxruntime", "torch-onnx openvino"):  # the peers' float32 computes the model
        assert row["diffs"][key] < 1e-4, (key, row["diffs"][key])
    for key in ("onnxruntime int8", "openvino int8", "torch-onnx openvino int8"):  # int8, not float32 in disguise
        assert 1e-5 < row["diffs"][key] < 1.0, (key, row["diffs"][key])
    table = (tmp_path / "bench.md").read_text()
    assert "### int8 (model rows)" in table and "fastest int8 / torch fused" in table
    from paddle_rep.apps import bench

    saved = bench._row_from_json(row)
    assert not bench.best_deploy(saved)[0].endswith("int8")  # int8 never counts as the fastest float32 path
    assert bench.best_int8(saved)[0] in ("onnxruntime int8", "openvino int8")


def test_bench_rewrites_only_the_marked_summary_table(tmp_path: Path) -> None:
    from paddle_rep.apps import bench

    row = bench.Row("repvgg_a0", (8, 3, 224, 224))
    for key, ms in (("torch fused", 80.0), ("paddle fused", 600.0), ("predictor (oneDNN)", 48.0),
                    ("onnxruntime", 50.0), ("openvino", 40.0), ("openvino bf16", 20.0)):
        row.times[key] = bench.Timing(ms / 1e3, ms / 1e3, ms / 1e3)
    row.diffs["openvino bf16"] = 4e-3
    page = tmp_path / "index.md"
    page.write_text(f"intro\n{bench.TABLE_START}\nold table\n{bench.TABLE_END}\noutro\n")
    bench.update_summary_page(page, bench.summary_table([row]))
    text = page.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old table" not in text
    assert "| repvgg_a0 | 80.0 ms |" in text and "**0.50x** openvino |" in text and "48.0 ms (0.60x)" in text
    assert "| 20.0 ms (0.25x; 4e-03) |" in text  # bf16 in its own column, not the float32 "fastest"
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        bench.update_summary_page(page, "x")


def test_cli_bench_passes_arguments_to_the_tool(capsys) -> None:
    from paddle_rep.apps import cli

    # Arguments the subcommand does not know reach the benchmark, whose own check answers.
    assert cli.main(["bench", "--backends", "tensorrt", "--no-convert"]) == cli.EXIT_USAGE
    assert "--backends: unknown ['tensorrt']" in capsys.readouterr().err


def test_default_summary_page_has_the_table_markers() -> None:
    # A full run rewrites this page's table last; a page without the markers would fail it after an hour of timing.
    from paddle_rep.apps import bench

    text = (bench.PERF_DOCS / "index.md").read_text()
    assert text.count(bench.TABLE_START) == 1 and text.count(bench.TABLE_END) == 1
def test_load_bench_quick_smoke(tmp_path: Path) -> None:
    """`bench --load --quick`: every backend at concurrency 1, 2, 4 and in throughput mode, no wrong output."""
    result = subprocess.run([sys.executable, "-m", "paddle_rep.apps.bench", "--load", "--quick", "--threads", "1",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    saved = json.loads((tmp_path / "load.json").read_text())
    backends = {row["backend"] for row in saved["rows"]}
    assert {"paddle", "onnxruntime", "openvino"} <= backends, backends
    for row in saved["rows"]:
        for level in ("c1", "c2", "c4"):
            assert row[level]["images_per_s"] > 0 and row[level]["p99_ms"] >= row[level]["p50_ms"] > 0
            assert row[level]["wrong"] == 0, (row["backend"], level)
        bound = tolerance("openvino_bf16", "float32").rel if row["backend"].endswith("bf16") else 1e-5
        assert row["throughput"]["images_per_s"] > 0 and row["throughput"]["max_rel_diff"] <= bound, row
    assert "| rep_tiny | onnxruntime |" in (tmp_path / "load.md").read_text()


NEW_FAMILY_ROWS = ("qarepvgg_a0", "mobileone_s0", "dbb_resnet18")


def test_bench_model_rows_include_one_per_new_family() -> None:
    """--models picks exact rows (``repvgg_a0`` does not pull in ``qarepvgg_a0``), in any --quick run too."""
    from paddle_rep.apps import bench

    rows = {m.row: m for m in bench.MODELS}
    assert set(NEW_FAMILY_ROWS) <= set(rows)
    # the plain RepVGG port swaps RepVGGBlocks only; ODConv's formulations need ODConv layers
    assert [m.row for m in bench.MODELS if m.repvgg] == ["repvgg_a0", "repvgg_b1g2"]
    assert [m.row for m in bench.MODELS if m.odconv] == ["od_resnet18 4x"]
    assert [m.row for m in bench.select_models(None, quick=True)] == list(bench.QUICK_MODELS)
    assert [m.row for m in bench.select_models(None, quick=False)] == list(rows)
    assert [m.row for m in bench.select_models(["repvgg_a0"], quick=True)] == ["repvgg_a0"]
    assert [m.row for m in bench.select_models(list(reversed(NEW_FAMILY_ROWS)), quick=True)] == list(NEW_FAMILY_ROWS)
    with pytest.raises(SystemExit, match=r"--models: unknown \['repvgg'\]"):
        bench.select_models(["repvgg"], quick=False)
    assert bench.build_parser().parse_args(["--models", "qarepvgg_a0, dbb_resnet18"]).models == [
        "qarepvgg_a0", "dbb_resnet18"]


@pytest.mark.parametrize("row", NEW_FAMILY_ROWS)
def test_bench_new_family_row_builds_matching_models(row: str) -> None:
    """What run_case does before timing: torch_ref's model loads into paddle_rep's and computes the same (eval,
    training form: the fused forms' parity is test_dbb/test_mobileone/test_models', and DBB's fusion takes seconds)."""
    import numpy as np
    import paddle
    import torch

    from paddle_rep.apps import bench
    from paddle_rep.core import interop

    (case,) = bench._models(bench.select_models([row], quick=True), 1, 32, 2, 32)
    assert case.name == row and case.model and not case.repvgg and not case.odconv
    torch.manual_seed(0)
    tm = case.build_torch()
    bench.randomize_bn(tm, np.random.default_rng(0))
    pm = case.build_paddle()
    missing, unexpected = pm.set_state_dict(interop.from_torch(tm.state_dict()))
    assert not missing and not unexpected, (missing, unexpected)
    tm.eval()
    pm.eval()
    x = np.random.default_rng(1).standard_normal(case.shape).astype("float32")
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        out = pm(paddle.to_tensor(x)).numpy()
    assert np.abs(out - ref).max() <= tolerance("network_output", "float32").rel * np.abs(ref).max()
