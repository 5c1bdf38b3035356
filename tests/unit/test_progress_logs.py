"""Progress bars written to a log (stderr not a terminal) are plain lines: no ``\\r`` and no
cursor moves, even with one bar inside another."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NESTED = """
from mechintro.progress import steps
for outer in steps(None, "layers", [9, 15], unit="layer"):
    for inner in steps(None, "trials", list(range(25)), unit="trial"):
        pass
"""


def test_nested_bars_in_a_log_are_plain_lines():
    done = subprocess.run(
        [sys.executable, "-c", NESTED], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    log = done.stderr
    assert "\r" not in log and "\x1b" not in log, repr(log[:400])
    lines = log.splitlines()
    # each bar: its start, each tenth, nothing twice; the outer bar's three lines in order
    assert [line.split(",")[0] for line in lines if line.startswith("layers")] == [
        "layers: 0/2 layer",
        "layers: 1/2 layer",
        "layers: 2/2 layer",
    ]
    trials = [line.split(",")[0] for line in lines if line.startswith("trials")]
    assert trials.count("trials: 25/25 trial") == 2 and len(trials) == 2 * 11
    assert len(lines) == 3 + 2 * 11


def test_a_stopped_loop_says_where_it_stopped():
    code = (
        "from mechintro.progress import reporter\n"
        "with reporter(None, 'grade', 'trial') as report:\n"
        "    report(0, 100); report(3, 100); report(7, 100)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert [line.split(",")[0] for line in done.stderr.splitlines()] == [
        "grade: 0/100 trial",
        "grade: 7/100 trial",
    ]
