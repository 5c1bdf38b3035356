"""Runs killed with SIGKILL at random moments and started again finish identical to
uninterrupted runs — in logit and generation mode, with and without residual recording.

The number of kill points per configuration is ``MECHINTRO_KILL_POINTS`` (default 2).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from mechintro import runs

ROOT = Path(__file__).resolve().parents[2]
KILL_POINTS = int(os.environ.get("MECHINTRO_KILL_POINTS", "2"))


def _child(out: Path, mode: str, record: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.kill_child", str(out), mode, record], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(out: Path, mode: str, record: str) -> float:
    start = time.perf_counter()
    proc = _child(out, mode, record)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return time.perf_counter() - start


@pytest.mark.parametrize(("mode", "record"), [("logits", "0"), ("logits", "1"), ("generate", "0"), ("generate", "1")])
def test_sigkill_then_resume_equals_uninterrupted(tmp_path, mode, record):
    reference = tmp_path / "reference.zarr"
    duration = _finish(reference, mode, record)
    expected = runs.open_run(reference).load().drop_attrs()
    rng = random.Random(f"{mode}{record}")
    for k in range(KILL_POINTS):
        out = tmp_path / f"killed{k}.zarr"
        proc = _child(out, mode, record)
        time.sleep(rng.uniform(0.05, 0.98) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.exists():  # killed after the store was created: only committed trials are visible
            partial = runs.open_run(out)
            assert partial.sizes["trial"] <= expected.sizes["trial"]
            xr.testing.assert_identical(partial.drop_attrs(), expected.isel(trial=partial.trial.values))
        _finish(out, mode, record)
        xr.testing.assert_identical(runs.open_run(out).load().drop_attrs(), expected)
        assert runs.verify(out).ok
