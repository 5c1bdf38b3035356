"""`--dry-run` sizes a run from one calibration batch and writes nothing; a run whose store
cannot fit in the free space is refused before it starts."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest

from mechintro import planning, runner
from mechintro.cli import main
from mechintro.errors import MechintroError
from tests.unit.test_oom_backoff import _trials


def _size(path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


@pytest.mark.parametrize(
    "kw",
    [
        dict(mode="logits", answers=runner.YES_NO, record=True),
        dict(mode="generate", generation=runner.Generation(max_new_tokens=16, temperature=1.0)),
    ],
    ids=["logits-resid", "generate"],
)
def test_estimate_is_close_and_writes_nothing(tiny, tmp_path, kw):
    trials, out = _trials(tiny, 48), tmp_path / "r.zarr"
    kw = dict(config={"plan": kw["mode"]}, batch_size=8, **kw)
    e = planning.estimate(lambda: runner.execute(tiny, trials, out, **kw))
    assert not out.exists() and not list(tmp_path.iterdir())
    assert (e.trials, e.batches, e.calibration_trials) == (48, 6, 8)
    assert e.prompt_tokens == sum(len(t.prompt.input_ids) for t in trials)
    runner.execute(tiny, trials, out, progress=False, **kw)
    measured = _size(out)
    assert abs(e.bytes - measured) <= 0.2 * measured, (e.bytes, measured)
    assert e.raw_bytes >= 0.9 * measured  # the refusal's bound is not below the real size
    text = planning.format_estimate(e)
    assert "48" in text and "fits" in text


def test_estimate_of_a_run_that_writes_nothing_is_one_line():
    with pytest.raises(MechintroError, match="nothing to estimate"):
        planning.estimate(lambda: None)


def test_run_that_does_not_fit_is_refused_before_it_starts(tiny, tmp_path, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**6, 10**6 - 5000, 5000))
    out = tmp_path / "r.zarr"
    kw = dict(config={"t": 1}, mode="logits", answers=runner.YES_NO, batch_size=4, record=True)
    with pytest.raises(MechintroError, match=r"would need up to .* but 5.0 kB is free"):
        runner.execute(tiny, _trials(tiny, 8), out, **kw)
    assert not out.exists()
    with planning.no_space_check():
        runner.execute(tiny, _trials(tiny, 8), out, progress=False, **kw)
    assert out.exists()


def test_cli_dry_run_writes_nothing(tmp_path, capsys, monkeypatch, tiny):
    from mechintro.cli import _common

    monkeypatch.setattr(_common, "load", lambda args, name=None: tiny)
    out = tmp_path / "dl.zarr"
    code = main(
        [
            "run", "detection-logits", "--concepts", "Dust,Oceans", "--layers", "1",
            "--strengths", "1,2", "--batch-size", "4", "--out", str(out), "--dry-run",
        ]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and not out.exists()
    assert "detection-logits on tiny-llama" in text and "on disk" in text and "time" in text
