"""``strength-classification`` on the tiny random model: every trial's four bin log-probabilities
equal an independent plain-PyTorch copy of Hahami et al.'s ``injection_strength`` protocol
(``tests/classification_reference.py``), and the copy, mutated (the steered span moved by a
token, the vector's sign flipped, the other option order), no longer matches; the grid, its
byte-identical twins and controls; the summary; bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechintro import runs
from mechintro.errors import MechintroError
from mechintro.experiments import strength_classification as SC
from mechintro.vectors import concept_vectors

from .. import classification_reference as REF

WORDS = ("Dust", "Oceans", "Bread")


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


@pytest.fixture(scope="module")
def sc_run(tiny, vecs, tmp_path_factory):
    cfg = SC.Config(concepts=WORDS, layers=(0, 2), coefficients=(4.0, 16.0), batch_size=8)
    out = SC.run(cfg, tmp_path_factory.mktemp("scl") / "scl.zarr", model=tiny, vectors=vecs)
    return runs.open_run(out)


def _strs(x):
    return np.array([str(v) for v in np.asarray(x.values)], dtype=object)


def _reference(tiny, ds, vecs, i, *, shift=0, sign=1.0, flip=False):
    labels = [str(x) for x in ds.answer_label.values]
    ids = [int(ds.answer_id.values[labels.index(b)]) for b in SC.BINS]
    order = str(ds.order.values[i])
    if flip:
        order = "reversed" if order == "given" else "given"
    cond = str(ds.condition.values[i])
    if cond == "none":
        return REF.logprobs(tiny.hf, tiny.tokenizer, order, 0, None, 0.0, ids)
    layer = int(ds.inject_layer.values[i])
    if cond == "random":
        v = torch.tensor(np.asarray(ds.injected_vector.values[i])).float()
    else:
        source = str(ds.vector_of.values[i])
        v = torch.tensor(np.asarray(vecs.sel(concept=source, layer=layer))).float()
    coeff = float(ds.strength.values[i])
    return REF.logprobs(tiny.hf, tiny.tokenizer, order, layer, sign * v, coeff, ids, shift=shift)


def test_every_trial_matches_the_plain_pytorch_reference(tiny, vecs, sc_run):
    ds = sc_run
    cond = _strs(ds.condition)
    # per order: 1 uninjected + 3 concepts x 2 layers x 2 coefficients x 3 conditions
    assert len(cond) == 2 * (1 + 3 * 2 * 2 * 3)
    ours = SC.bin_logprobs(ds)
    for i in range(len(cond)):
        ref = _reference(tiny, ds, vecs, i).numpy()
        np.testing.assert_allclose(ours[i], ref, atol=1e-4, err_msg=str(i))
    inj = np.flatnonzero(cond != "none")[:12]  # every condition, both coefficients
    for mutation in ({"shift": 1}, {"sign": -1.0}, {"flip": True}):
        worst = max(
            float(np.abs(ours[i] - _reference(tiny, ds, vecs, i, **mutation).numpy()).max())
            for i in inj
        )
        assert worst > 1e-3, mutation


def test_twins_controls_and_the_steered_span(tiny, sc_run):
    ds = sc_run
    cond, order = _strs(ds.condition), _strs(ds.order)
    ids = np.asarray(ds.input_ids.values)
    mask = np.asarray(ds.inject_mask.values, dtype=bool)
    for o in SC.ORDERS:
        rows = np.flatnonzero(order == o)
        assert all((ids[j] == ids[rows[0]]).all() for j in rows)  # byte-identical twins
        steered = next(j for j in rows if cond[j] == "concept")
        text = "".join(tiny.tokenizer.convert_ids_to_tokens(ids[steered][mask[steered]].tolist()))
        assert text.startswith("\n\nTrial 1") and text.endswith(SC.PREFILL)
    given = "".join(tiny.tokenizer.convert_ids_to_tokens(ids[order == "given"][0].tolist()))
    assert given.index("- Weak") < given.index("- Very strong")
    rev = "".join(tiny.tokenizer.convert_ids_to_tokens(ids[order == "reversed"][0].tolist()))
    assert rev.index("- Very strong") < rev.index("- Weak")
    shuffled = cond == "shuffled"
    assert (_strs(ds.vector_of)[shuffled] != _strs(ds.concept)[shuffled]).all()
    vec = np.asarray(ds.injected_vector.values, dtype=np.float64)
    rnd, con = vec[cond == "random"], vec[cond == "concept"]
    np.testing.assert_allclose(np.linalg.norm(rnd, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(con, axis=1), 1.0, rtol=1e-5)
    assert np.abs((rnd * con).sum(axis=1)).max() < 0.9
    assert sorted(set(_strs(ds.expected)[cond != "none"])) == ["Very strong", "Weak"]


def test_summary_balanced_accuracy_power_and_the_random_rule(sc_run):
    ds = sc_run.load()
    cond, expected = _strs(ds.condition), _strs(ds.expected)
    labels = [str(x) for x in ds.answer_label.values]
    logp = np.full((len(cond), len(labels)), -5.0, dtype=np.float32)
    for i, c in enumerate(cond):  # concept: always right; the others always "Moderate"
        logp[i, labels.index(expected[i] if c == "concept" else "Moderate")] = -0.1
    ds["answer_logprobs"] = (("trial", "answer"), logp)
    s = SC.summarize(ds)
    c, r = s.sel(condition="concept"), s.sel(condition="random")
    assert (c.accuracy == 1.0).all() and (c.n == 2 * 3).all() and (c.balanced == 1.0).all()
    assert (r.accuracy == 0.0).all() and (r.balanced == 0.0).all() and (r.varies == 1).all()
    assert bool(s.above_random.all()) and float(s.chance) == pytest.approx(0.5)
    assert s.attrs["uninjected"] == str({"given": "Moderate", "reversed": "Moderate"})
    assert float(c.share_weak.sel(strength=4.0).mean()) == 1.0
    text = SC.format_summary(s)
    assert "random 0.00 (no power: one answer)" in text and "concept 1.00," in text


def test_expected_bins_are_their_thresholds():
    assert [SC.expected_bin(c) for c in (1, 4.9, 5, 9.9, 10, 14.9, 15, 40)] == [
        "Weak", "Weak", "Moderate", "Moderate", "Strong", "Strong", "Very strong", "Very strong"
    ]  # fmt: skip


@pytest.mark.parametrize(
    "kw",
    [
        {"coefficients": (0.0,)},
        {"coefficients": ()},
        {"concepts": ()},
        {"concepts": ("Dust",)},
        {"orders": ("given", "given")},
        {"orders": ("sideways",)},
    ],
)
def test_bad_configs_are_one_line_errors(kw):
    with pytest.raises(MechintroError):
        SC.Config(**kw)
