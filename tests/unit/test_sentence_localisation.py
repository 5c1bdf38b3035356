"""``sentence-localisation`` on the tiny random model: every trial's option logits equal an
independent plain-PyTorch copy of Hahami et al.'s ``test_localization``
(``tests/strength_reference.py``), and the copy, mutated (the next sentence steered, the vector's
sign flipped), no longer matches; the grid, twins and summary; bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechintro import runs
from mechintro.errors import MechintroError
from mechintro.experiments import sentence_localisation as SL
from mechintro.vectors import concept_vectors

from .. import strength_reference as REF

WORDS = ("Dust", "Oceans")
K = 3


@pytest.fixture(scope="module")
def vecs(tiny):
    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


@pytest.fixture(scope="module")
def sl_run(tiny, vecs, tmp_path_factory):
    cfg = SL.Config(concepts=WORDS, k=K, layers=(0, 2), strengths=(5.0,), trials=2, batch_size=8)
    out = SL.run(cfg, tmp_path_factory.mktemp("sl") / "sl.zarr", model=tiny, vectors=vecs)
    return runs.open_run(out)


def _strs(x):
    return np.array([str(v) for v in np.asarray(x.values)], dtype=object)


def _reference(tiny, ds, vecs, i, *, shift=0, sign=1.0):
    listed = str(ds.sentences.values[i]).split("\n")
    cond = str(ds.condition.values[i])
    if cond == "none":
        return REF.localisation_logits(tiny.hf, tiny.tokenizer, listed, 0, None, 0.0, 0)
    layer = int(ds.inject_layer.values[i])
    if cond == "concept":
        v = torch.tensor(np.asarray(vecs.sel(concept=str(ds.concept.values[i]), layer=layer)))
        v = v.float() / v.float().norm()
    else:
        v = torch.tensor(np.asarray(ds.injected_vector.values[i])).float()
    target = (int(ds.target.values[i]) - 1 + shift) % len(listed)
    return REF.localisation_logits(
        tiny.hf, tiny.tokenizer, listed, layer, sign * v, float(ds.strength.values[i]), target
    )


def _ours(ds):
    """Per trial, each option's log-probability minus option 1's (= the logit difference)."""
    labels = [str(x) for x in ds.answer_label.values]
    logp = np.asarray(ds.answer_logprobs.values, dtype=np.float64)
    cols = [labels.index(o) for o in SL.options(K)]
    return logp[:, cols] - logp[:, cols[:1]]


def test_every_trial_matches_the_plain_pytorch_reference(tiny, vecs, sl_run):
    ds = sl_run
    cond = _strs(ds.condition)
    # per concept and layer: 2 draws x (3 sentences x 2 conditions + 1 uninjected)
    assert len(cond) == 2 * 2 * 2 * (K * 2 + 1)
    ours = _ours(ds)
    for i in range(len(cond)):
        ref = _reference(tiny, ds, vecs, i)
        np.testing.assert_allclose(ours[i], (ref - ref[0]).numpy(), atol=1e-4, err_msg=str(i))
    inj = np.flatnonzero(cond == "concept")
    for mutation in ({"shift": 1}, {"sign": -1.0}):
        worst = 0.0
        for i in inj:
            ref = _reference(tiny, ds, vecs, i, **mutation)
            worst = max(worst, float(np.abs(ours[i] - (ref - ref[0]).numpy()).max()))
        assert worst > 1e-3, mutation


def test_every_sentence_is_steered_once_per_draw_on_one_prompt(tiny, sl_run):
    ds = sl_run
    cond = _strs(ds.condition)
    ids = np.asarray(ds.input_ids.values)
    mask = np.asarray(ds.inject_mask.values, dtype=bool)
    for i in np.flatnonzero(cond == "none"):
        twins = np.flatnonzero(
            (ds.draw.values == ds.draw.values[i])
            & (ds.cell_layer.values == ds.cell_layer.values[i])
            & (_strs(ds.concept) == str(ds.concept.values[i]))
        )
        assert len(twins) == 2 * K + 1 and all((ids[j] == ids[i]).all() for j in twins)
        listed = str(ds.sentences.values[i]).split("\n")
        for j in twins:
            if cond[j] == "none":
                continue
            t = int(ds.target.values[j])
            text = "".join(tiny.tokenizer.convert_ids_to_tokens(ids[j][mask[j]].tolist()))
            assert text == f"SENTENCE {t}: {listed[t - 1]}"
        assert sorted(ds.target.values[twins][cond[twins] == "concept"].tolist()) == ["1", "2", "3"]


def test_summary_counts_and_the_uninjected_bias(sl_run):
    ds = sl_run.load()
    cond = _strs(ds.condition)
    labels = [str(x) for x in ds.answer_label.values]
    logp = np.full((len(cond), len(labels)), -5.0, dtype=np.float32)
    for i, c in enumerate(cond):  # concept: always right; random and uninjected: always "2"
        logp[i, labels.index(str(ds.target.values[i]) if c == "concept" else "2")] = -0.1
    ds["answer_logprobs"] = (("trial", "answer"), logp)
    s = SL.summarize(ds)
    c, r = s.sel(condition="concept"), s.sel(condition="random")
    assert (c.accuracy == 1.0).all() and (c.n == 2 * 2 * K).all()
    assert np.allclose(r.accuracy, 1 / K) and float(s.chance) == pytest.approx(1 / K)
    assert s.attrs["uninjected_choices"] == str({"1": 0, "2": 8, "3": 0})
    assert (r.varies == 0).all() and "no power" not in SL.format_summary(s)


def test_ten_sentences_read_the_last_token_of_10():
    """Their ``tokenizer.encode(str(i))[-1]``: on a tokenizer that splits digits, sentence 10 is
    read from "0"."""
    from tests.conftest import tiny_tokenizer

    forms = SL.answers(tiny_tokenizer(), 10).forms
    assert forms["10"] == ("0",) and forms["9"] == ("9",)


@pytest.mark.parametrize("kw", [{"k": 1}, {"k": 11}, {"trials": 0}, {"concepts": ()}])
def test_bad_configs_are_one_line_errors(kw):
    with pytest.raises(MechintroError):
        SL.Config(**kw)
