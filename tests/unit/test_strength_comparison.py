"""``strength-comparison`` on the tiny random model: every trial's logit difference equals an
independent plain-PyTorch copy of Hahami et al.'s code (``tests/strength_reference.py``), and that
copy, mutated (strengths swapped, spans moved, the vector's sign flipped), no longer matches; the
summary's signs and counts; bad configs; the per-token strengths the kit gained for it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from mechintro import engine, runs
from mechintro.errors import MechintroError
from mechintro.experiments import strength_comparison as SC
from mechintro.prompts import Window, tokenize
from mechintro.runner import Trial
from mechintro.vectors import concept_vectors

from .. import strength_reference as REF

WORDS = ("Dust", "Oceans")


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


@pytest.fixture(scope="module")
def sc_run(tiny, vecs, tmp_path_factory):
    cfg = SC.Config(concepts=WORDS, layers=(0, 2), pairs=("2:6",), trials=2, batch_size=8)
    out = SC.run(cfg, tmp_path_factory.mktemp("sc") / "sc.zarr", model=tiny, vectors=vecs)
    return runs.open_run(out)


def _reference(tiny, ds, i, vector, *, swap=False, shift=0, sign=1.0):
    """The reference's logit difference for stored trial ``i`` (optionally mutated)."""
    pair = [str(ds.sentence_1.values[i]), str(ds.sentence_2.values[i])]
    if str(ds.condition.values[i]) == "none":
        return REF.logit_diff(tiny.hf, tiny.tokenizer, pair, 0, None, 0, 0)
    weak, strong = float(ds.weak.values[i]), float(ds.strong.values[i])
    a1, a2 = (strong, weak) if int(ds.stronger.values[i]) == 1 else (weak, strong)
    if swap:
        a1, a2 = a2, a1
    tok = tiny.tokenizer
    if shift:  # the same injection on spans moved `shift` tokens right
        real = REF.prompt_and_ranges
        REF.prompt_and_ranges = lambda t, s: (
            lambda ids_r: (ids_r[0], [(a + shift, b + shift) for a, b in ids_r[1]])
        )(real(t, s))
        try:
            return REF.logit_diff(
                tiny.hf, tok, pair, int(ds.inject_layer.values[i]), sign * vector, a1, a2
            )
        finally:
            REF.prompt_and_ranges = real
    return REF.logit_diff(tiny.hf, tok, pair, int(ds.inject_layer.values[i]), sign * vector, a1, a2)


def _strs(x):
    return np.array([str(v) for v in np.asarray(x.values)], dtype=object)


def _vector(ds, vecs, i):
    if str(ds.condition.values[i]) == "concept":
        v = torch.tensor(
            np.asarray(
                vecs.sel(concept=str(ds.concept.values[i]), layer=int(ds.inject_layer.values[i]))
            )
        ).float()
        return v / v.norm()  # their load_vector: the vector over its L2 norm
    return torch.tensor(np.asarray(ds.injected_vector.values[i])).float()


def test_every_trial_matches_the_plain_pytorch_reference(tiny, vecs, sc_run):
    ds = sc_run
    cond = _strs(ds.condition)
    assert sorted(set(cond)) == ["concept", "none", "random"]
    # per concept: 2 layers x 1 pair x 2 draws x 2 orders x 2 conditions, and 2 uninjected
    assert len(cond) == 2 * (2 * 1 * 2 * 2 * 2 + 2)
    got = SC.logit_diff(ds)
    for i in range(len(cond)):
        v = None if cond[i] == "none" else _vector(ds, vecs, i)
        if cond[i] == "concept":  # the stored vector is the unit concept vector
            stored = torch.tensor(np.asarray(ds.injected_vector.values[i]))
            assert torch.allclose(stored, v, atol=1e-6)
        if cond[i] == "random":  # a unit random direction, not the concept's
            assert cond[i - 1] == "concept"
            c = _vector(ds, vecs, i - 1)  # its concept twin
            assert float(v.norm()) == pytest.approx(1.0, abs=1e-5)
            assert abs(float(v @ c)) < 0.9
        assert got[i] == pytest.approx(_reference(tiny, ds, i, v), abs=1e-4), i
    # the reference, mutated, no longer matches: it can catch each of these bugs
    inj = np.flatnonzero(cond == "concept")
    for mutation in ({"swap": True}, {"shift": 1}, {"sign": -1.0}):
        worst = max(
            abs(got[i] - _reference(tiny, ds, i, _vector(ds, vecs, i), **mutation)) for i in inj
        )
        assert worst > 1e-3, mutation


def test_both_orders_share_one_prompt_and_the_spans_are_the_sentences(tiny, sc_run):
    ds = sc_run
    cond = _strs(ds.condition)
    ids = np.asarray(ds.input_ids.values)
    mask = np.asarray(ds.inject_mask.values, dtype=bool)
    for i in np.flatnonzero(cond == "concept"):
        # concept, random, in each order: four trials on byte-identical prompts
        twins = np.flatnonzero(
            (ds.draw.values == ds.draw.values[i])
            & (ds.inject_layer.values == ds.inject_layer.values[i])
            & (ds.concept.values == ds.concept.values[i])
        )
        assert len(twins) == 4 and all((ids[j] == ids[i]).all() for j in twins)
        assert sorted(ds.stronger.values[twins].tolist()) == [1, 1, 2, 2]
        text = "".join(tiny.tokenizer.convert_ids_to_tokens(ids[i][mask[i]].tolist()))
        s1, s2 = str(ds.sentence_1.values[i]), str(ds.sentence_2.values[i])
        assert text == f"SENTENCE 1: {s1}SENTENCE 2: {s2}"


def test_summary_signs_counts_and_the_random_rule(sc_run):
    ds = sc_run.load()
    cond = _strs(ds.condition)
    stronger = ds.stronger.values.astype(int)
    labels = [str(x) for x in ds.answer_label.values]
    logp = np.zeros((len(cond), 2), dtype=np.float32)
    # concept: always right; random: always "1"; uninjected: "2" by 0.5
    ld = np.where(cond == "concept", np.where(stronger == 1, 1.0, -1.0), 1.0)
    ld[cond == "none"] = -0.5
    logp[:, labels.index("1")] = ld
    ds["answer_logprobs"] = (("trial", "answer"), logp)
    s = SC.summarize(ds)
    c = s.sel(condition="concept", weak=2.0, strong=6.0)
    r = s.sel(condition="random", weak=2.0, strong=6.0)
    assert (c.accuracy == 1.0).all() and (c.n == 8).all()
    assert (r.accuracy == 0.5).all() and (r.acc_1 == 1.0).all() and (r.acc_2 == 0.0).all()
    # adjusted: the sign after subtracting the uninjected mean (-0.5): random's +1 stays "1"
    assert (r.adjusted == 0.5).all()
    assert s.attrs["uninjected_share_1"] == 0.0 and s.attrs["uninjected_mean_ld"] == -0.5
    # 8 of 8 has Wilson lower bound 0.68 < random's upper bound 0.78: not above random
    assert not bool(s.above_random.sel(weak=2.0, strong=6.0).any())
    text = SC.format_summary(s)
    row = next(line for line in text.splitlines() if line.strip().startswith("0   2:6"))
    assert row.split()[3:] == [
        *("1.00", "[0.68,", "1.00]", "1.00", "/", "1.00", "1.00", "+2.000"),
        *("0.50", "[0.22,", "0.78]", "no"),
    ]
    # a sign error in the summary would score the concept at 0
    ds["answer_logprobs"] = (("trial", "answer"), -logp)
    assert (SC.summarize(ds).accuracy.sel(condition="concept", weak=2.0, strong=6.0) == 0).all()


@pytest.mark.parametrize("pairs", [("6:2",), ("2",), ("a:b",), ()])
def test_bad_pairs_are_one_line_errors(pairs):
    with pytest.raises(MechintroError, match="pair"):
        SC.Config(pairs=pairs)


def test_repeated_layers_are_refused_before_the_run(tiny, vecs, tmp_path):
    with pytest.raises(MechintroError, match="more than once"):
        SC.run(SC.Config(concepts=WORDS, layers=("0.1", "0.2")), tmp_path / "x", model=tiny,
               vectors=vecs)  # fmt: skip
    assert not (tmp_path / "x").exists()


def test_token_strengths_weight_the_window_and_must_cover_the_prompt(tiny):
    prompt = tokenize(tiny.tokenizer, "abcdef")
    v = torch.ones(tiny.d_model)
    mask = [False, True, True, False, True, False]
    weights = (9.0, 2.0, 3.0, 9.0, 4.0, 9.0)
    t = Trial(prompt=prompt, condition="x", vector=v, strength=0.5, inject_layer=1,
              inject_layer_end=2, window=Window.tokens(mask), token_strengths=weights)  # fmt: skip
    assert t.injection().mask == (0.0, 2.0, 3.0, 0.0, 4.0, 0.0)
    bad = dataclasses.replace(t, token_strengths=(1.0,))
    with pytest.raises(MechintroError, match="one per prompt token"):
        bad.injection()


def test_shared_prefix_stops_at_the_first_weighted_token():
    """A weight other than 1 (2.0 here) is an injected token: the shared prefix ends before it
    (mechintro before per-token strengths looked for ``True`` only and ran past it)."""
    inj = engine.Injection(torch.ones(4), (1,), (0.0, 0.0, 2.0, 0.0, 0.0))
    assert engine.shared_prefix([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]], [inj, None]) == 2


def test_fields_help_lists_the_pairs():
    out = subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "run", "strength-comparison", "--fields"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "pairs" in out and "weak:strong" in out and "'2:6'" in out
