"""The background writer: a batch is written while the next one runs, and errors on either side
leave the store with whole, committed batches only (the SIGKILL case is tests/unit/test_kill.py,
which runs through the writer)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import xarray as xr

from mechintro import engine, runner, runs
from tests.unit.test_oom_backoff import _trials

KW = dict(config={"writer": 1}, mode="logits", answers=runner.YES_NO, batch_size=2, record=True)


def test_writes_overlap_the_next_forward(tiny, tmp_path, monkeypatch):
    """While batch b is being written, batch b + 1's forward runs (the write of batch 0 waits
    for batch 1's forward to start, which only happens if it runs on another thread)."""
    started = threading.Event()
    real_forward, real_write = engine.run_batch, runs.write_batch
    overlapped = []

    def run_batch(*a, **kw):
        started.set()
        return real_forward(*a, **kw)

    def write_batch(path, start, outputs):
        if start == 0:
            started.clear()
            overlapped.append(started.wait(timeout=60))
        real_write(path, start, outputs)

    monkeypatch.setattr(engine, "run_batch", run_batch)
    monkeypatch.setattr(runs, "write_batch", write_batch)
    out = runner.execute(tiny, _trials(tiny, 6), tmp_path / "r.zarr", **KW)
    assert overlapped == [True]
    assert runs.open_run(out).attrs["complete"] == "true" and runs.verify(out).ok


def test_inline_writes_equal_background_writes(tiny, tmp_path, monkeypatch):
    a = runs.open_run(runner.execute(tiny, _trials(tiny, 5), tmp_path / "a.zarr", **KW)).load()
    monkeypatch.setattr(runner, "BACKGROUND_WRITES", False)
    b = runs.open_run(runner.execute(tiny, _trials(tiny, 5), tmp_path / "b.zarr", **KW)).load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


@pytest.mark.parametrize("where", ["write", "forward"])
def test_an_error_leaves_only_whole_committed_batches(tiny, tmp_path, monkeypatch, where):
    """A failing write (disk full) or forward ends the run with that error; the batches before
    it are committed, the failing one is not, and the same command resumes to the whole run."""
    real_forward, real_write = engine.run_batch, runs.write_batch
    calls = {"forward": 0}

    def run_batch(*a, **kw):
        calls["forward"] += 1
        if where == "forward" and calls["forward"] == 3:
            raise RuntimeError("forward failed")
        return real_forward(*a, **kw)

    def write_batch(path, start, outputs):
        if where == "write" and start == 4:
            raise OSError(28, "No space left on device")
        real_write(path, start, outputs)

    monkeypatch.setattr(engine, "run_batch", run_batch)
    monkeypatch.setattr(runs, "write_batch", write_batch)
    out = tmp_path / "r.zarr"
    with pytest.raises(OSError if where == "write" else RuntimeError):
        runner.execute(tiny, _trials(tiny, 8), out, **KW)
    committed = runs.committed_mask(out)
    assert committed.tolist() == [True] * 4 + [False] * 4  # batches 0 and 1 whole, no others
    monkeypatch.setattr(engine, "run_batch", real_forward)
    monkeypatch.setattr(runs, "write_batch", real_write)
    runner.execute(tiny, _trials(tiny, 8), out, **KW)
    whole = runner.execute(tiny, _trials(tiny, 8), tmp_path / "whole.zarr", **KW)
    xr.testing.assert_identical(
        runs.open_run(out).load().drop_attrs(), runs.open_run(whole).load().drop_attrs()
    )
    assert np.all(runs.committed_mask(out))
