"""``resid_layers`` stores the residual stream of chosen layers only: the stored values are the
full run's at those layers, the ``layer`` coordinate names the blocks, and a run made before the
option existed still resumes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from mechintro import runner, runs
from mechintro.errors import MechintroError
from mechintro.experiments import detection_logits
from tests.unit.test_oom_backoff import _trials

KW = dict(mode="logits", answers=runner.YES_NO, batch_size=3, record=True)


def test_chosen_layers_equal_the_full_runs(tiny, tmp_path):
    full = runs.open_run(
        runner.execute(tiny, _trials(tiny, 5), tmp_path / "all.zarr", config={"t": 1}, **KW)
    ).load()
    config = {"t": 1, "resid_layers": ["0.67", "0"]}  # a fraction and an index, out of order
    some = runs.open_run(
        runner.execute(tiny, _trials(tiny, 5), tmp_path / "some.zarr", config=config, **KW)
    ).load()
    assert some.layer.values.tolist() == [0, 2] and full.sizes["layer"] == 3
    np.testing.assert_array_equal(some.resid.values, full.resid.sel(layer=[0, 2]).values)
    np.testing.assert_array_equal(some.answer_logprobs.values, full.answer_logprobs.values)
    assert runs.verify(tmp_path / "some.zarr").ok
    sizes = [sum(f.stat().st_size for f in (tmp_path / n / "resid").rglob("*") if f.is_file())
             for n in ("all.zarr", "some.zarr")]  # fmt: skip
    assert sizes[1] < 0.8 * sizes[0]


def test_repeated_or_bad_layers_are_one_line(tiny, tmp_path):
    with pytest.raises(MechintroError, match="same layer more than once"):
        runner.execute(tiny, _trials(tiny, 2), tmp_path / "a.zarr",
                       config={"resid_layers": ["1", "0.34"]}, **KW)  # fmt: skip
    with pytest.raises(MechintroError, match="not a number"):
        runner.execute(tiny, _trials(tiny, 2), tmp_path / "b.zarr",
                       config={"resid_layers": ["middle"]}, **KW)  # fmt: skip
    assert not (tmp_path / "a.zarr").exists() and not (tmp_path / "b.zarr").exists()


def test_a_run_made_before_the_option_resumes(tiny, tmp_path):
    """An old detection-logits store has no resid_layers in its config: it reads as all."""
    config = detection_logits.Config(concepts=("cat", "dog"), layers=("1",), strengths=(1.0,),
                                     batch_size=2)  # fmt: skip
    out = detection_logits.run(config, tmp_path / "dl.zarr", model=tiny)
    group = zarr.open_group(str(out), mode="r+")
    stored = json.loads(group.attrs["config"])
    assert stored.pop("resid_layers") == ["all"]
    group.attrs["config"] = json.dumps(stored, sort_keys=True)
    group.attrs["complete"] = "false"
    detection_logits.run(config, out, model=tiny)  # resumes: no 'differs in'
    changed = detection_logits.Config(concepts=("cat", "dog"), layers=("1",), strengths=(1.0,),
                                      batch_size=2, resid_layers=("1",))  # fmt: skip
    with pytest.raises(MechintroError, match="differs in: resid_layers"):
        detection_logits.run(changed, out, model=tiny)
