"""Issue 32, the grader half: the grader's measured error carried into the rates with the right
unit (concepts), the apology grader's calibration, the learned grader. Each test fails on the code
of c3baf9a."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

DATA = Path(__file__).resolve().parents[2] / "analyses" / "data"
CLEAN = {"tp": 7, "fn": 6, "tn": 151, "fp": 7}  # coherent-and-affirmative on the clean split


def _clustered(n_concepts: int = 20, per: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Half the concepts always hit, half never: all the rate's spread is between concepts."""
    concept = np.repeat([f"c{i}" for i in range(n_concepts)], per)
    hits = np.repeat(np.arange(n_concepts) % 2 == 0, per)
    return hits, concept


def test_the_corrected_interval_resamples_concepts_when_the_rate_is_clustered():
    """The corrected interval took the 1,000 trials as independent; 20 concepts that either always
    or never hit carry the information of 20 units, not 1,000. Resampling concepts (and drawing
    Se and Sp in the same draw) widens it accordingly; a perfect grader leaves the cluster
    bootstrap's width."""
    from mechintro.stats import rogan_gladen, rogan_gladen_clustered

    hits, concept = _clustered()
    k, n = int(hits.sum()), hits.size
    flat = rogan_gladen(k, n, CLEAN)
    iv = rogan_gladen_clustered(hits, concept, CLEAN)
    assert iv.estimate == pytest.approx(flat.estimate)
    assert iv.clusters == 20 and iv.n == 1000 and "clusters resampled" in iv.method
    assert iv.hi - iv.lo > 1.3 * (flat.hi - flat.lo)
    perfect = {"tp": 10**6, "fn": 0, "tn": 10**6, "fp": 0}
    p = rogan_gladen_clustered(hits, concept, perfect)
    # 10 of 20 concepts hit: a cluster bootstrap's 95% range is about 0.5 ± 0.22
    assert 0.25 < p.lo < 0.32 and 0.68 < p.hi < 0.75
    assert rogan_gladen(k, n, perfect).hi < 0.54  # the trial-level interval: far too narrow
    # no variation to resample (0 of 1,000): the raw rate is drawn over the 20 concepts
    zero = rogan_gladen_clustered(np.zeros(n, bool), concept, perfect)
    assert zero.estimate == 0 and 0.1 < zero.hi < 0.2  # Beta(1, 21): 97.5% point 0.161
    assert rogan_gladen(0, n, perfect).hi < 0.005
    # a rare rate (1 hit in 80 trials over 20 concepts) keeps at least the trial-level width:
    # the raw rate is drawn from Beta on each resample, not taken as the resample's k*/n*
    one = np.zeros(80, bool)
    one[0] = True
    few = np.repeat([f"c{i}" for i in range(20)], 4)
    assert rogan_gladen_clustered(one, few, CLEAN).hi >= rogan_gladen(1, 80, CLEAN).hi


def test_injected_thoughts_corrects_its_concept_clustered_rates_over_concepts(monkeypatch):
    """corrected_rates: the TPR and the injected trials' rates resample concepts; the FPR's
    controls stay independent trials."""
    from mechintro import grading
    from mechintro.experiments.injected_thoughts import corrected_rates
    from mechintro.stats import rogan_gladen

    monkeypatch.setattr(grading, "error_counts", lambda name: dict(CLEAN))  # no grading here

    hits, concept = _clustered()
    n_ctl = 100
    injected = np.r_[np.ones(hits.size, bool), np.zeros(n_ctl, bool)]
    allc = np.r_[concept, np.array([""] * n_ctl, dtype=object)]
    fp = np.r_[np.zeros(hits.size, bool), np.arange(n_ctl) < 11]
    g = xr.Dataset(
        {
            "false_positive": ("trial", fp),
            "success": ("trial", np.r_[hits, np.zeros(n_ctl, bool)]),
            "coherence": ("trial", np.r_[hits, fp[hits.size :]]),
            "affirmative": ("trial", np.r_[hits, fp[hits.size :]]),
            "affirmative_identification": ("trial", np.r_[hits, np.zeros(n_ctl, bool)]),
        }
    )
    out = corrected_rates(g, injected, "detect", {}, allc.astype(object))
    _, _, _, lo, hi = out["corrected_coherent_affirmative_injected"]
    flat = rogan_gladen(int(hits.sum()), hits.size, CLEAN)
    assert hi - lo > 1.3 * (flat.hi - flat.lo)
    assert out["corrected_fpr"][3:] == [*rogan_gladen(11, 100, CLEAN)][1:]
    assert "concepts resampled" in out["corrected_rates"]


def test_the_apology_calibration_split_is_fixed_by_a_hash_not_by_the_items():
    """The halves were fixed by run and trial before labelling; a label cannot move an item."""
    from mechintro import grading

    items = grading.apology_calibration_items(None)
    assert len(items) == 240 and {it["stance"] for it in items} == {
        "accident",
        "intended",
        "neither",
    }
    assert all(it["split"] == grading.apology_split(it["run"], it["trial"]) for it in items)
    held = grading.apology_calibration_items("held_out")
    assert len(held) == 102 and sum(it["stance"] == "accident" for it in held) == 33
    assert grading.apology_error_counts() == {"tp": 26, "fn": 7, "tn": 63, "fp": 6}


def test_an_unlabelled_apology_item_is_refused_with_one_line(tmp_path):
    import json

    from mechintro import grading
    from mechintro.errors import MechintroError

    p = tmp_path / "a.json"
    p.write_text(json.dumps({"items": [{"id": "x", "stance": None, "split": "dev"}]}))
    with pytest.raises(MechintroError, match="1 items have no stance"):
        grading.apology_calibration_items(None, str(p))


def test_prefill_apology_rates_carry_the_apology_graders_measured_error():
    """The apology rate had no corrected twin (no calibration set); now the control rate, the
    best cell's random and matched rates and its reduction are corrected with Se 26/33 and Sp
    63/69 of the held-out half, over all replies."""
    import mechintro as mi
    from mechintro.experiments import prefill
    from mechintro.stats import rogan_gladen

    s = prefill.summarize(mi.open_run(DATA / "qwen2.5-coder-1.5b" / "prefill.zarr"))
    k, n, est, lo, hi = s.attrs["apology_corrected_control"]
    assert n == 20 and [est, lo, hi] == [
        *rogan_gladen(k, n, {"tp": 26, "fn": 7, "tn": 63, "fp": 6})
    ]
    raw, est, lo, hi = s.attrs["apology_corrected_reduction"]
    assert lo < est < hi and lo < raw
    text = prefill.format_summary(s)
    assert "apologies among all replies, grader-corrected" in text
    assert "apology calibration set" in text and "reduction min(control, random)" in text
