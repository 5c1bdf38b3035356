"""``resid_positions`` stores the residual stream of chosen prompt positions only (``last:N``,
``window``, their union; default ``all``): the stored values are the full run's there, the
others are zeros, the store records which (``resid_stored``), and an analysis that would read
an unstored position refuses in one line instead of reading the zeros."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mechintro import runner, runs
from mechintro.analysis.anomaly import window_features
from mechintro.analysis.lens import logit_lens
from mechintro.cli import main
from mechintro.errors import MechintroError
from mechintro.experiments import detection_logits
from tests.unit.test_oom_backoff import _trials

KW = dict(mode="logits", answers=runner.YES_NO, batch_size=3, record=True)


@pytest.fixture(scope="module")
def stores(tiny, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("positions")
    specs = {"all": None, "last2": ["last:2"], "window": ["window"], "union": ["last:1", "window"]}
    return {
        name: runs.open_run(
            runner.execute(
                tiny,
                _trials(tiny, 5),
                tmp / f"{name}.zarr",
                config={} if spec is None else {"resid_positions": spec},
                **KW,
            )
        ).load()
        for name, spec in specs.items()
    }


def _first_injected(ds) -> int:
    inject = np.asarray(ds.inject_mask.values, dtype=bool)
    return int(min(np.argmax(row) for row in inject if row.any()))


def test_stored_positions_equal_the_full_run_and_the_rest_are_zero(stores):
    full = stores["all"]
    width = full.sizes["pos"]
    assert full.resid_stored.values.all() and "resid_from" not in full.resid.attrs
    window_from = _first_injected(full)
    assert 2 < width - window_from < width  # prompts of different lengths, padded on the left
    for name, first in (("last2", width - 2), ("window", window_from), ("union", window_from)):
        ds = stores[name]
        assert ds.resid.attrs["resid_from"] == first
        np.testing.assert_array_equal(ds.resid_stored.values, np.arange(width) >= first)
        np.testing.assert_array_equal(
            ds.resid.values[:, :, first:], full.resid.values[:, :, first:]
        )
        assert not ds.resid.values[:, :, :first].any()
        np.testing.assert_array_equal(ds.answer_logprobs.values, full.answer_logprobs.values)


def test_fewer_positions_take_less_disk_and_verify(tiny, tmp_path):
    paths = [
        runner.execute(tiny, _trials(tiny, 5), tmp_path / f"{i}.zarr", config=config, **KW)
        for i, config in enumerate(({}, {"resid_positions": ["last:1"]}))
    ]
    for path in paths:
        assert runs.verify(path).ok
    sizes = [sum(f.stat().st_size for f in (p / "resid").rglob("*") if f.is_file())
             for p in paths]  # fmt: skip
    assert sizes[1] < 0.6 * sizes[0], sizes


def test_analyses_read_stored_positions_and_refuse_the_others(tiny, stores):
    full, window, last2 = stores["all"], stores["window"], stores["last2"]
    np.testing.assert_array_equal(
        window_features(window, positions="window").values,
        window_features(full, positions="window").values,
    )
    np.testing.assert_array_equal(
        window_features(last2, positions="last").values,
        window_features(full, positions="last").values,
    )
    with pytest.raises(MechintroError, match="did not store") as info:
        window_features(last2, positions="window")
    assert "\n" not in str(info.value) and "--resid-positions all" in str(info.value)
    np.testing.assert_allclose(
        logit_lens(last2, tiny, concepts=False).logit_diff.values,
        logit_lens(full, tiny, concepts=False).logit_diff.values,
    )
    with pytest.raises(MechintroError, match="the logit lens reads prompt positions"):
        logit_lens(last2, tiny, position=0, concepts=False)


def test_bad_specs_and_a_window_without_injections_are_one_line(tiny, tmp_path):
    with pytest.raises(MechintroError, match="resid_positions \\['first:2'\\] is invalid"):
        detection_logits.Config(resid_positions=("first:2",))
    trials = [
        dataclasses.replace(t, vector=None, condition="control", strength=0.0)
        for t in _trials(tiny, 2)
    ]
    with pytest.raises(MechintroError, match="there is no window: give last:N or all"):
        runner.execute(tiny, trials, tmp_path / "w.zarr",
                       config={"resid_positions": ["window"]}, **KW)  # fmt: skip
    assert not (tmp_path / "w.zarr").exists()


def test_the_cli_refuses_a_bad_spec_in_one_line(tmp_path, capsys):
    out = tmp_path / "r.zarr"
    code = main(["-q", "run", "detection-logits", "--resid-positions", "last:0", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "at 'last:0'" in err, err
    assert not out.exists()
