"""MkDocs hook: tables generated at build time from the code, so the pages cannot drift from it.

- ``<!-- zoo-table -->`` (docs/zoo.md): every registered Paddle model, its trainable parameter counts in
  the training and the deployed form (built under ``paddle.LazyGuard``, so no weights are allocated) and
  the upstream name its builder's docstring gives as ``(upstream ``NAME``)``.
- ``<!-- tolerance-table -->`` (docs/parity.md): the parity suite's tolerance table, its ill-conditioned
  comparisons and the own-error factors, read from ``parity_tests/tolerances.py``.
"""

import logging
import re
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ZOO_MARKER = "<!-- zoo-table -->"
TOLERANCE_MARKER = "<!-- tolerance-table -->"
_UPSTREAM = re.compile(r"upstream ``([^`]+)``")

log = logging.getLogger("mkdocs.hooks.tables")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def zoo_table() -> str:
    """The model zoo as a markdown table (about 4 s: every model built twice under LazyGuard)."""
    warnings.filterwarnings("ignore", message="No ccache found")
    import paddle

    import paddle_rep
    from paddle_rep.models._registry import registry

    def trainable(model: object) -> int:
        return sum(int(p.size) for p in model.parameters() if not p.stop_gradient)

    lines = ["| model | family | train-form parameters | deployed parameters | upstream name |",
             "|---|---|---:|---:|---|"]
    for name in paddle_rep.list_models():
        with paddle.LazyGuard():
            train, deploy = paddle_rep.create_model(name), paddle_rep.create_model(name, deploy=True)
        builder = registry.builder(name)
        match = _UPSTREAM.search(builder.__doc__ or "")
        family = builder.__module__.rsplit(".", 1)[-1]
        upstream = f"`{match.group(1)}`" if match else "(none)"
        lines.append(f"| `{name}` | {family} | {trainable(train):,} | {trainable(deploy):,} | {upstream} |")
    return "\n".join(lines) + "\n"


def tolerance_tables() -> str:
    """The parity suite's tolerance table and its two lists of exceptions, as markdown."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from parity_tests import tolerances

    lines = ["| comparison | dtype | where | bound (rel) | reason and measured figure |", "|---|---|---|---:|---|"]
    for key, tol in tolerances.TOLERANCES.items():
        kind, dtype, *where = key
        lines.append(f"| `{kind}` | {dtype} | {where[0] if where else 'all'} | {tol.rel:g} | {_cell(tol.reason)} |")
    lines += ["", "**Ill-conditioned in float32** (past the bound, held to torch's own float32 error instead):", "",
              "| comparison (pattern) | why |", "|---|---|"]
    lines += [f"| `{pattern}` | {_cell(reason)} |" for pattern, reason in tolerances.ILL_CONDITIONED.items()]
    lines += ["", "**Own-error factors** (Paddle's float32 error may exceed the default multiple of torch's):", "",
              "| comparison (pattern) | factor | why |", "|---|---:|---|"]
    lines += [f"| `{pattern}` | {factor:g} | {_cell(reason)} |"
              for pattern, (factor, reason) in tolerances.OWN_ERROR_FACTORS.items()]
    return "\n".join(lines) + "\n"


_cache: dict[str, str] = {}


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    """Replace the markers with the generated tables (each built once per ``mkdocs build``)."""
    for marker, build in ((ZOO_MARKER, zoo_table), (TOLERANCE_MARKER, tolerance_tables)):
        if marker in markdown:
            if marker not in _cache:
                _cache[marker] = build()
            markdown = markdown.replace(marker, _cache[marker])
    return markdown
