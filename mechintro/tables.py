"""Plain-text tables for summaries and analyses."""

from __future__ import annotations

import math
from collections.abc import Sequence


def table(rows: Sequence[dict[str, object]]) -> str:
    """A plain-text table of dict rows (same keys); floats to 3 decimals."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])

    def fmt(v: object) -> str:
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}"
        return str(v)

    cells = [[fmt(r[k]) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)
