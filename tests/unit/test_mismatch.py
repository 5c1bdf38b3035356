"""``mismatch`` on the tiny random model: every trial's YES − NO logit difference equals an
independent plain-PyTorch copy of Sridharan's logit_steer / mismatch_steer
(``tests/mismatch_reference.py``), and the copy, mutated (the injection one token later, the sign
flipped, the named concept's vector in place of the partner's), no longer matches; the partners;
the twins; the summary's score and gap; bad configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechintro import runs
from mechintro.errors import MechintroError
from mechintro.experiments import mismatch as MM

from .. import mismatch_reference as REF

WORDS = ("dust", "oceans", "bread")


@pytest.fixture(scope="module")
def vecs(tiny):
    from mechintro.vectors import concept_vectors

    return concept_vectors(tiny, WORDS, baseline=["apple", "chair", "river"])


@pytest.fixture(scope="module")
def mm_run(tiny, vecs, tmp_path_factory):
    cfg = MM.Config(concepts=WORDS, k=1, layers=(0, 2), strengths=(4.0,), batch_size=16)
    out = MM.run(cfg, tmp_path_factory.mktemp("mm") / "mm.zarr", model=tiny, vectors=vecs)
    return runs.open_run(out)


def _strs(x):
    return np.array([str(v) for v in np.asarray(x.values)], dtype=object)


def _ids(ds):
    """The yes / no token ids the summary reads (their best variants)."""
    labels = _strs(ds.answer_label)
    logp = np.asarray(ds.answer_logprobs.values)
    first = int(np.flatnonzero(_strs(ds.condition) == "none")[0])
    yes, no = np.flatnonzero(labels == "yes"), np.flatnonzero(labels == "no")
    ids = np.asarray(ds.answer_id.values)
    return int(ids[yes[np.argmax(logp[first, yes])]]), int(ids[no[np.argmax(logp[first, no])]])


def _reference(tiny, ds, vecs, i, *, shift=0, sign=1.0, swap=False):
    yes, no = _ids(ds)
    q, c = str(ds.question.values[i]), str(ds.concept.values[i])
    cond = str(ds.condition.values[i])
    if cond == "none":
        return REF.logit_diff(tiny.hf, tiny.tokenizer, q, c, 0, None, 0.0, yes, no)
    layer = int(ds.inject_layer.values[i])
    if cond == "random":
        v = torch.tensor(np.asarray(ds.injected_vector.values[i])).float()
    else:
        source = c if swap else str(ds.vector_of.values[i])
        v = torch.tensor(np.asarray(vecs.sel(concept=source, layer=layer))).float()
    s = float(ds.strength.values[i])
    return REF.logit_diff(tiny.hf, tiny.tokenizer, q, c, layer, sign * v, s, yes, no, shift=shift)


def test_every_trial_matches_the_plain_pytorch_reference(tiny, vecs, mm_run):
    ds = mm_run
    cond, part = _strs(ds.condition), _strs(ds.part)
    # score: 11 questions x (1 + 3 concepts x 2 layers x 2 conditions);
    # mismatch: 3 named x (1 + 2 layers x (congruent, 1 incongruent, random))
    assert (part == "score").sum() == 11 * 13 and (part == "mismatch").sum() == 3 * 7
    ours = MM.logit_diff(ds)
    for i in range(len(cond)):
        assert ours[i] == pytest.approx(_reference(tiny, ds, vecs, i), abs=1e-4), i
    inj = np.flatnonzero(cond != "none")[::7]  # both parts, conditions and layers
    for mutation, rows in (
        ({"shift": 1}, inj),
        ({"sign": -1.0}, inj),
        ({"swap": True}, np.flatnonzero(cond == "incongruent")),
    ):
        worst = max(abs(ours[i] - _reference(tiny, ds, vecs, i, **mutation)) for i in rows)
        assert worst > 1e-3, mutation


def test_partners_twins_and_controls(tiny, vecs, mm_run):
    ds = mm_run
    ref_layer = 2  # the middle of layers (0, 2), theirs
    expected = REF.partners(
        {c: torch.tensor(np.asarray(vecs.sel(concept=c, layer=ref_layer))) for c in WORDS}, 1
    )
    assert MM.partners(vecs, list(WORDS), ref_layer, 1) == expected
    cond, concept = _strs(ds.condition), _strs(ds.concept)
    inc = cond == "incongruent"
    assert all(str(ds.vector_of.values[i]) == expected[concept[i]][0] for i in np.flatnonzero(inc))
    ids = np.asarray(ds.input_ids.values)
    question, part = _strs(ds.question), _strs(ds.part)
    for i in np.flatnonzero(cond == "none"):  # every trial shares its uninjected twin's prompt
        same = (question == question[i]) & (part == part[i])
        if part[i] == "mismatch":
            same &= concept == concept[i]
        assert all((ids[j] == ids[i]).all() for j in np.flatnonzero(same))
    vec = np.asarray(ds.injected_vector.values, dtype=np.float64)
    for c in np.flatnonzero(cond == "random"):
        twin = np.flatnonzero(
            (cond == "concept")
            & (concept == concept[c])
            & (ds.inject_layer.values == ds.inject_layer.values[c])
        )[0]
        assert np.linalg.norm(vec[c]) == pytest.approx(np.linalg.norm(vec[twin]), rel=1e-5)
    mask = np.asarray(ds.inject_mask.values, dtype=bool)
    i = int(np.flatnonzero(cond == "concept")[0])
    text = "".join(tiny.tokenizer.convert_ids_to_tokens(ids[i][mask[i]].tolist()))
    assert text.startswith(" Trial 1") or text.startswith("\nTrial 1")


def test_summary_score_and_gap(mm_run):
    ds = mm_run.load()
    cond, q = _strs(ds.condition), _strs(ds.question)
    labels = _strs(ds.answer_label)
    logp = np.full((len(cond), len(labels)), -3.0, dtype=np.float32)
    yes, no = labels == "yes", labels == "no"  # every form, so any variant reads the same
    for i, c in enumerate(cond):
        ld = -2.0  # uninjected: NO by 2 logits
        if c == "concept":
            ld = 1.0 if q[i] == "detection" else 0.0  # detection moves 3, factual 2
        elif c == "congruent":
            ld = 0.5
        elif c in ("incongruent", "random"):
            ld = -0.5
        logp[i, yes], logp[i, no] = -3.0 + ld, -3.0
    ds["answer_logprobs"] = (("trial", "answer"), logp)
    s = MM.summarize(ds)
    sc = s.score_part_score.sel(condition="concept")
    assert np.allclose(sc, 1.0) and s.attrs["score_concept"] == pytest.approx(1.0)
    assert np.allclose(s.score_part_det_shift.sel(condition="concept"), 3.0)
    assert np.allclose(s.score_part_score.sel(condition="random"), 0.0)
    assert np.allclose(s.mismatch_part_gap, 1.0) and s.attrs["gap"] == pytest.approx(1.0)
    assert s.attrs["baseline"] == pytest.approx(-2.0) and s.attrs["gap_positive"] == "3/3"
    assert float(s.score_part_flips.sel(condition="random").max()) == 0.0
    assert "no power" in MM.format_summary(s)


@pytest.mark.parametrize(
    "kw",
    [{"concepts": ()}, {"k": 3, "concepts": ("a", "b", "c")}, {"strengths": (0.0,)},
     {"parts": ("score", "score")}, {"parts": ("other",)}],
)  # fmt: skip
def test_bad_configs_are_one_line_errors(kw):
    with pytest.raises(MechintroError):
        MM.Config(**kw)
