"""Tables for summaries and analyses: plain text (:func:`table`) and two-column HTML
(:func:`html_table`, the ``_repr_html_`` of models, configs and results)."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence


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


def html_table(rows: Mapping[str, object], *, caption: str = "") -> str:
    """A two-column HTML table of ``rows`` (the ``_repr_html_`` of models, configs, results)."""
    body = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td style='text-align:left'>{html.escape(str(v))}</td></tr>"
        for k, v in rows.items()
    )
    cap = (
        f"<caption style='text-align:left;font-weight:600'>{html.escape(caption)}</caption>"
        if caption
        else ""
    )
    return f"<table>{cap}{body}</table>"
