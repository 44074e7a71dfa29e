"""Smoke test of the benchmark tool (tools/bench.py): a tiny run writes the table, the chart and the JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_quick_smoke(tmp_path: Path) -> None:
    # A subprocess: the tool sets thread counts for both frameworks, which must not leak into other tests.
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "bench.py"), "--quick", "--no-convert", "--no-models",
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
    for key in ("torch fused", "paddle fused", "predictor (oneDNN)", "plain port fused", "paddle train step"):
        assert se["times"][key]["median"] > 0, key
    # Every measured form computes the same function as torch_ref's fused block (float32 noise only).
    for row in rows.values():
        for what, diff in row["diffs"].items():
            assert diff < 1e-4, (row["name"], what, diff)
