"""Issue 32: evaluations that cannot leak, read on the shipped runs (analyses/data). Each test
fails on the code of 0e2b828."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mechintro as mi

DATA = Path(__file__).resolve().parents[2] / "analyses" / "data"


def test_latent_introspection_control_rows_are_clustered_by_the_steering_concept():
    """Item 4: a control question's shift under a concept's steering shares that concept's
    vector; the rows were clustered by question (4–16 questions, no_confusing a range of 4). Now
    every row rests on the 9 concepts, and the introspection rows carry a concept-paired test
    against the control questions."""
    from mechintro.experiments import latent_introspection as li

    s = li.summarize(mi.open_run(DATA / "smollm2-135m-default" / "latent-introspection.zarr"))
    units = s.interval_units.sel(strength=20.0)
    assert {int(units.sel(row=r)) for r in s.row.values} == {9}
    paired = s.paired_diff.sel(strength=20.0, row="introspection/introspect")
    assert float(paired) == pytest.approx(-0.1365, abs=5e-4)
    assert float(s.paired_hi.sel(strength=20.0, row="introspection/introspect")) < 0
    p = float(s.paired_p.sel(strength=20.0, row="introspection/introspect"))
    assert 0 < p < 0.05 and (p * 512) == pytest.approx(round(p * 512))  # exact: 2^9 flips
    assert np.isnan(float(s.paired_diff.sel(strength=20.0, row="no")))


def test_sweep_counts_cells_under_a_mass_rule_fixed_in_advance_for_both_readouts():
    """Item 5 and item 7: the sweep's verdict flipped with the readout (four forms: first in 4 of
    300; Godet's: 59) and Godet's tokens hold < 0.004 of the mass. The rule fixed in advance
    (sweep.MASS_THRESHOLD) reads a cell only where the readout holds ≥ 0.1 of the mass, for both
    readouts; and "above the interval" (one tail) expects 2.5% of cells, not 5%."""
    from mechintro.experiments import sweep

    ds = mi.open_run(DATA / "smollm2-135m" / "sweep.zarr")
    rows = {r["readout"]: r for r in sweep.readout_rows(ds)}
    assert sweep.MASS_THRESHOLD == 0.1
    assert rows["godet"]["cells with mass ≥ 0.1"] == "0 of 300"
    assert rows["godet"]["first (expected, p)"].startswith("—")
    assert rows["four_forms"]["cells with mass ≥ 0.1"] == "64 of 300"
    a = sweep.summarize(ds, readout="four_forms").attrs
    assert a["above_pi_expected"] == pytest.approx(7.5)
    assert a["eligible_above_pi_expected"] == pytest.approx(0.025 * 64)
    assert "7.5 expected above" in sweep.format_summary(sweep.summarize(ds, readout="four_forms"))


def test_localisation_above_chance_is_read_on_balanced_accuracy():
    """Item 7: a model that always answers "first" is right on every "first" target: with most
    targets "first" its raw accuracy's Wilson interval clears chance, its balanced accuracy is
    exactly chance and its permutation p is 1."""
    from mechintro.experiments.localisation import cell_statistics
    from mechintro.stats import wilson

    opts = ["first", "second", "third", "fourth", "fifth"]
    target = np.array(["first"] * 30 + ["second", "third", "fourth", "fifth"] * 5, dtype=object)
    choice = np.array(["first"] * len(target), dtype=object)
    probs = np.full((len(target), 5), 0.2)
    assert wilson(int((choice == target).sum()), len(target))[0] > 1 / 5  # raw: "above chance"
    st = cell_statistics(choice, target, probs, opts)
    assert st["balanced_accuracy"] == pytest.approx(0.2)
    assert st["balanced_p"] == pytest.approx(1.0)
    hit = np.where(np.arange(len(target)) % 2 == 0, target, "second").astype(object)
    assert cell_statistics(hit, target, probs, opts)["balanced_p"] < 0.05


def test_looking_inward_mode_baseline_is_out_of_sample():
    """Item 6: the mode of 8 items per cell counted each item's own answer (in-sample, biased
    upward: 0.455 for self-trained Qwen-0.5B, whose 0.380 read as below it). Leave-one-item-out
    gives 0.313 / 0.407 / 0.564; and the permutation p-values rest on enough sign flips to print
    four digits (steps of 1e-5, not 1/5001)."""
    from mechintro.looking_inward import score as sp

    root = DATA / "looking-inward"
    loo = {
        m: sp.pooled(sp.score(mi.open_run(root / m / "self.zarr")), "test")
        for m in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m")
    }
    assert [round(r["mode_baseline_loo"], 3) for r in loo.values()] == [0.313, 0.407, 0.564]
    assert all(r["mode_baseline_loo"] < r["mode_baseline"] for r in loo.values())
    assert loo["qwen2.5-coder-0.5b"]["accuracy"] > loo["qwen2.5-coder-0.5b"]["mode_baseline_loo"]
    r = sp.self_vs_cross(
        mi.open_run(root / "qwen2.5-coder-0.5b" / "self.zarr"),
        mi.open_run(root / "smollm2-135m" / "cross-on-qwen2.5-coder-0.5b" / "run.zarr"),
    )
    assert r["p_resolution"] <= 1e-4 and r["p"] < 0.001


def test_loo_mode_counts_a_tie_as_a_random_pick():
    from mechintro.looking_inward.score import _loo_mode_hits

    # item 0's answer "a" is the in-sample mode only because it counts itself
    targets = np.array(["a", "a", "b", "c"], dtype=object)
    items = np.array([0, 1, 2, 3])
    # item 0: others a,b,c → tie of 3, a among them → 1/3; item 1 the same; item 2: a,a,c → a
    # (miss); item 3: a,a,b → a (miss)
    assert _loo_mode_hits(targets, items) == pytest.approx(2 / 3)


def test_the_clean_calibration_split_holds_no_item_a_rule_was_written_on():
    """Grader: v2's held-out half held 28 v1 items the first rules were written on, and the Qwen
    set became development data. The clean split is v2 held-out without v1 (95) and v3 (216)."""
    from mechintro import grading

    items = grading.clean_calibration_items()
    assert len(items) == 311
    assert not any("(v1)" in it.get("origin", "") for it in items)
    assert {it["split"] for it in items} == {"held_out", "independent"}
    pool = grading.calibration_items()  # v1, where the first rules were written
    assert not {it["response"] for it in pool} & {it["response"] for it in items}
    qwen = grading.calibration_items(
        str(DATA.parent.parent / "tests/data/grader_calibration_qwen.json")
    )
    assert not {it["response"] for it in qwen} & {it["response"] for it in items}
    assert grading.error_counts("coherent_affirmative") == {"tp": 7, "fn": 6, "tn": 151, "fp": 7}


def test_rogan_gladen_corrects_for_the_graders_error_and_carries_its_uncertainty():
    from mechintro.stats import rogan_gladen

    # a perfect, well-measured grader changes nothing
    iv = rogan_gladen(11, 100, {"tp": 5000, "fn": 0, "tn": 5000, "fp": 0})
    assert iv.estimate == pytest.approx(0.11) and iv.lo < 0.11 < iv.hi
    # the formula: (p + Sp − 1) / (Se + Sp − 1) with Se 0.8, Sp 0.9 → (0.3 + 0.9 − 1) / 0.7
    assert rogan_gladen(30, 100, {"tp": 8, "fn": 2, "tn": 9, "fp": 1}).estimate == pytest.approx(
        0.2 / 0.7
    )
    # the audit's worked example: SmolLM2's default FPR 11/100 with the clean counts
    iv = rogan_gladen(11, 100, {"tp": 7, "fn": 6, "tn": 151, "fp": 7})
    assert 0.06 < iv.estimate < 0.14 and iv.hi > 0.3 and iv.lo < 0.063


def test_every_offline_rate_of_injected_thoughts_has_a_grader_corrected_twin():
    from mechintro.experiments import injected_thoughts as it

    s = it.summarize(mi.open_run(DATA / "smollm2-135m-default" / "injected-thoughts.zarr"))
    k, n, _est, lo, hi = s.attrs["corrected_fpr"]
    assert (k, n) == (11, 100) and lo < 0.063 and hi > 0.3
    for key in (
        "tpr",
        "best_heldout_tpr",
        "coherent_affirmative_injected",
        "identification_injected",
    ):
        assert f"corrected_{key}" in s.attrs
    # the held-out best cell's TPR is corrected over its concepts (0 hits over its concepts,
    # not over independent trials), and the concepts stay out of the attrs
    assert "best_heldout_concepts" not in s.attrs
    k, n, est, lo, hi = s.attrs["corrected_best_heldout_tpr"]
    assert (k, n) == (0, round(s.attrs["best_heldout_n"])) and est == 0 and hi > 0.05
    assert "concepts resampled" in s.attrs["corrected_rates"]
    text = it.format_summary(s)
    assert "grader-corrected rates" in text and "clean calibration set" in text


def test_prefill_reports_worst_case_bounds_for_the_ungraded_share():
    from mechintro.experiments import prefill

    s = prefill.summarize(mi.open_run(DATA / "smollm2-135m-default" / "prefill.zarr"))
    lo, hi = s.attrs["control_worst_case"]
    assert lo <= s.attrs["control_rate"] <= hi and hi - lo == pytest.approx(1 - 0.25, abs=0.2)
    assert "whatever the ungraded responses are" in prefill.format_summary(s)
