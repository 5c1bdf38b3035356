"""Readouts own their variables (issue 31, item 2): a run stores its readouts' list, the schema
expects what that list names, and stores made before it (a ``mode`` attribute) still open,
verify and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from mechintro import runner, runs
from mechintro.errors import MechintroError
from mechintro.reading import Generate, NextToken, Resid
from mechintro.store.manifest import _update_manifest_root
from tests.unit.test_oom_backoff import _trials

DATA = Path(__file__).resolve().parents[2] / "analyses" / "data" / "smollm2-135m"
KW = dict(config={"reading": 1}, batch_size=2)


@pytest.mark.parametrize(
    ("store", "mode"),
    [
        ("mismatch.zarr", "logits"),
        ("injected-thoughts.zarr", "generate"),
        ("concept-confusion.zarr", "logits"),  # with residual streams
    ],
)
def test_shipped_stores_read_as_their_modes_readouts(tiny, store, mode):
    """A shipped store names a mode, not readouts; it opens (every chunk against its digest),
    verifies, and its mode reads as the list the kit's readouts describe, so a resume compares
    equal."""
    path = DATA / store
    attrs = runs.read_attrs(path)
    assert "readouts" not in attrs and attrs["mode"] == mode
    ds = runs.open_run(path, check="full")
    assert runs.verify(path).ok
    readout = NextToken(runner.YES_NO) if mode == "logits" else Generate(runner.Generation())
    now = [readout.stored(tiny).described()]
    if "resid" in ds:
        now.append(Resid().stored(tiny).described())
    assert runs.stored_readouts(attrs) == now
    assert set(runs.readout_variables(attrs)) <= set(ds.data_vars)


def _legacy(path: Path, mode: str) -> None:
    """Make ``path`` look like a store written before the readouts attribute existed."""
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"]["readouts"]
    meta["attributes"]["mode"] = mode
    (path / "zarr.json").write_text(json.dumps(meta))
    _update_manifest_root(path)


class _Stop(Exception):
    pass


def test_a_store_made_before_readouts_resumes_to_the_same_run(tiny, tmp_path):
    whole = runner.execute(tiny, _trials(tiny, 6), tmp_path / "w.zarr", mode="logits",
                           answers=runner.YES_NO, **KW)  # fmt: skip
    assert json.loads(runs.read_attrs(whole)["readouts"])[0]["readout"] == "next_token"

    def stop_after_one_batch(done: int, total: int) -> None:
        if done >= 2:
            raise _Stop

    out = tmp_path / "cut.zarr"
    readouts = [NextToken(runner.YES_NO)]
    with pytest.raises(_Stop):
        runner.execute(tiny, _trials(tiny, 6), out, readouts=readouts,
                       progress=stop_after_one_batch, **KW)  # fmt: skip
    _legacy(out, "logits")
    assert 0 < runs.committed_mask(out).sum() < 6
    assert runs.verify(out).problems == ["incomplete: run the same command again to finish it"]
    with pytest.raises(MechintroError, match="differs in: readouts"):
        runner.execute(tiny, _trials(tiny, 6), out,
                       readouts=[Generate(runner.Generation(max_new_tokens=2))], **KW)  # fmt: skip
    runner.execute(tiny, _trials(tiny, 6), out, readouts=readouts, **KW)
    a, b = runs.open_run(whole).load(), runs.open_run(out).load()
    assert b.attrs["mode"] == "logits" and "readouts" not in b.attrs
    np.testing.assert_array_equal(a.answer_logprobs.values, b.answer_logprobs.values)
    np.testing.assert_array_equal(a.digest.values, b.digest.values)
    assert runs.verify(out).ok


def test_the_schema_expects_what_the_readouts_name(tiny, tmp_path):
    out = runner.execute(tiny, _trials(tiny, 2), tmp_path / "r.zarr", mode="generate",
                         generation=runner.Generation(max_new_tokens=3), **KW)  # fmt: skip
    ds = runs.open_run(out)
    assert "mode" not in ds.attrs and "answer_logprobs" not in ds
    with pytest.raises(MechintroError, match="missing variable 'response_ids'"):
        runs.validate(ds.drop_vars("response_ids"))
    bad = ds.copy()
    bad.attrs["readouts"] = json.dumps([{"readout": "x", "variables": {"y": ["trial"]}}])
    with pytest.raises(MechintroError, match="not a list of readouts"):
        runs.validate(bad)
    bad.attrs["readouts"] = json.dumps(
        [{"readout": "x", "variables": {"y": ["trial"]}, "coords": []}]
    )
    with pytest.raises(MechintroError, match="missing variable 'y'"):
        runs.validate(bad)
    del bad.attrs["readouts"]
    with pytest.raises(MechintroError, match="missing attribute 'readouts'"):
        runs.validate(bad)


def test_two_next_token_readouts_are_refused_before_any_file(tiny, tmp_path):
    both = [NextToken(runner.YES_NO), Generate(runner.Generation(max_new_tokens=2))]
    with pytest.raises(MechintroError, match="split it into two runs"):
        runner.execute(tiny, _trials(tiny, 2), tmp_path / "r.zarr", readouts=both, **KW)
    assert not (tmp_path / "r.zarr").exists()


def test_the_apology_calibration_tells_a_generation_run_by_its_responses():
    """A run made now names readouts, not a ``mode`` (issue 31, item 2): the apology calibration
    script draws from a store that holds responses and refuses one that does not, in one line,
    whichever attribute the store has (on the merge's first state it refused every new store)."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location(
        "apology_calibration_under_test", root / "scripts" / "apology_calibration.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readouts = json.dumps([{"readout": "generate"}])
    generated = xr.Dataset({"response": ("trial", np.array(["a", "b", "c"]))})
    generated.attrs["readouts"] = readouts
    assert script._pool("new.zarr", generated) == 3
    generated.attrs = {"mode": "generate"}  # a store made before readouts were stored
    assert script._pool("old.zarr", generated) == 3
    logits = xr.Dataset({"answer_logprobs": (("trial", "answer"), np.zeros((3, 2)))})
    with pytest.raises(MechintroError, match=r"new\.zarr is not a generation-mode prefill run"):
        script._pool("new.zarr", logits)
