"""nnsight reads a trace's body from the source lines of its ``with`` block, so two layouts that
a code formatter produces break traces (docs/engineering.md, "Code formatters can break a
trace"): a trace call that does not stand on its ``with`` line, and a comment-only line inside
a trace body. This walks every module of the package and fails on either."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mechintro"
TRACE_CALLS = {"trace", "generate", "invoke", "session", "scan", "edit"}


def trace_blocks(source: str) -> list[tuple[int, int, int]]:
    """``(with_line, call_line, end_line)`` of every ``with`` whose item calls ``x.trace(...)``,
    ``x.generate(...)``, ``x.invoke(...)`` (and nnsight's other context managers)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.With):
            continue
        for item in node.items:
            call = item.context_expr
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr in TRACE_CALLS
            ):
                out.append((node.lineno, call.lineno, node.end_lineno or node.lineno))
    return out


def problems(source: str, name: str = "<source>") -> list[str]:
    found = []
    comments = {
        tok.start[0]
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    lines = source.splitlines()
    for with_line, call_line, end_line in trace_blocks(source):
        if call_line != with_line:
            found.append(f"{name}:{call_line}: the trace call is not on its `with` line")
        for n in range(with_line + 1, end_line + 1):
            if n in comments and lines[n - 1].lstrip().startswith("#"):
                found.append(f"{name}:{n}: a comment-only line inside a trace body")
    return found


def test_no_trace_layout_that_nnsight_cannot_read() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += problems(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "with (\n    a(),\n    model.lm.trace(batch),\n):\n    x = 1\n",
        "with a(), model.lm.generate(b) as t:\n"
        "    with t.invoke(c):\n        # note\n        x = 1\n",
    ],
)
def test_the_check_catches_both_layouts(source: str) -> None:
    assert problems(source)


def test_the_check_passes_the_layout_engine_uses() -> None:
    ok = "with a(), b():\n    with model.lm.trace(batch):\n        x = 1  # an inline comment\n"
    assert problems(ok) == []
