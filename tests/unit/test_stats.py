"""Interval and test functions against independent references (scipy, statsmodels, published
tables), on grids that include 0/n and n/n."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from mechintro.stats import (
    Interval,
    cluster_interval,
    cohen_kappa,
    holm,
    maxt_signflip,
    newcombe,
    wilson,
)

GRID = [
    (k, n) for n in (1, 2, 5, 10, 37, 400) for k in sorted({0, 1, n // 2, n - 1, n}) if 0 <= k <= n
]


@pytest.mark.parametrize(("k", "n"), GRID)
def test_wilson_matches_the_closed_form_and_statsmodels(k, n):
    lo, hi = wilson(k, n)
    z = 1.959963984540054
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    assert lo == pytest.approx(max(0, centre - half), abs=1e-12) and hi == pytest.approx(
        min(1, centre + half), abs=1e-12
    )
    assert 0 <= lo <= p <= hi <= 1 and hi > lo  # 0/n and n/n still get a width
    sm = pytest.importorskip("statsmodels.stats.proportion")
    assert (lo, hi) == pytest.approx(sm.proportion_confint(k, n, method="wilson"), abs=1e-10)


def test_wilson_textbook_value_and_empty():
    assert tuple(round(x, 4) for x in wilson(8, 10)) == (0.4902, 0.9433)
    assert all(math.isnan(x) for x in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(3, 2)


# Newcombe (1998) Table II, method 10, examples (a)–(h).
NEWCOMBE_TABLE = [
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((0, 10, 0, 10), (-0.2775, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0000)),
    ((10, 10, 0, 10), (0.6075, 1.0000)),
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE_TABLE)
def test_newcombe_reproduces_the_published_table(counts, expected):
    iv = newcombe(*counts)
    assert (round(iv.lo, 4), round(iv.hi, 4)) == expected
    assert iv.estimate == pytest.approx(counts[0] / counts[1] - counts[2] / counts[3])


@pytest.mark.parametrize(("k1", "n1"), GRID[::3])
@pytest.mark.parametrize(("k2", "n2"), [(0, 16), (3, 16), (16, 16), (0, 1)])
def test_newcombe_matches_statsmodels_on_a_grid(k1, n1, k2, n2):
    sm = pytest.importorskip("statsmodels.stats.proportion")
    iv = newcombe(k1, n1, k2, n2)
    ref = sm.confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    assert (iv.lo, iv.hi) == pytest.approx(ref, abs=1e-9)


def test_two_clusters_give_a_range_that_is_not_called_a_ci():
    values = [0.0, 0.2, 0.1, 0.9, 0.8, 1.0]
    iv = cluster_interval(values, list("aaabbb"))
    assert not iv.is_ci and iv.clusters == 2
    assert (iv.lo, iv.hi) == pytest.approx((0.1, 0.9))
    assert "not a 95% CI" in str(iv) and "fewer than 5" in str(iv)


def test_five_to_fifteen_clusters_use_t_with_g_minus_1_df():
    rng = np.random.default_rng(0)
    means = rng.normal(size=8)
    values = np.repeat(means, 3) + rng.normal(scale=0.1, size=24)
    clusters = np.repeat(np.arange(8), 3)
    iv = cluster_interval(values, clusters)
    assert iv.is_ci and iv.method.startswith("t on 8 clusters")
    # equal cluster sizes: identical to a one-sample t interval on the cluster means ×
    # √(G/(G−1))·√((G−1)/G) = plain t
    cm = values.reshape(8, 3).mean(1)
    ref = st.t.interval(0.95, 7, loc=cm.mean(), scale=cm.std(ddof=1) / math.sqrt(8))
    assert (iv.lo, iv.hi) == pytest.approx(ref, rel=1e-9)


def test_many_clusters_use_a_bca_cluster_bootstrap_that_covers():
    rng = np.random.default_rng(1)
    clusters = np.repeat(np.arange(30), 4)
    values = np.repeat(rng.normal(size=30), 4) + rng.normal(scale=0.5, size=120)
    iv = cluster_interval(values, clusters, n_boot=999)
    assert iv.method.startswith("BCa") and iv.lo < values.mean() < iv.hi
    # about as wide as a t interval on the 30 cluster means
    cm = values.reshape(30, 4).mean(1)
    width_t = 2 * st.t.ppf(0.975, 29) * cm.std(ddof=1) / math.sqrt(30)
    assert 0.7 < (iv.hi - iv.lo) / width_t < 1.3


def test_clustered_rate_at_zero_or_one_is_wilson_on_clusters_never_zero_width():
    iv = cluster_interval(np.zeros(40), np.repeat(np.arange(8), 5))
    assert (
        iv.estimate == 0 and iv.lo == 0 and iv.hi == pytest.approx(wilson(0, 8)[1]) and iv.hi > 0.3
    )
    assert cluster_interval(np.ones(40), np.repeat(np.arange(8), 5)).lo == pytest.approx(
        wilson(8, 8)[0]
    )


def test_interval_unpacks_and_prints_its_method():
    iv = Interval(0.5, 0.4, 0.6, "Wilson", 100)
    est, lo, hi = iv
    assert (est, lo, hi) == (0.5, 0.4, 0.6) and "95% CI, Wilson" in str(iv)


def test_cohen_kappa_matches_sklearn_and_is_nan_when_undefined():
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(2)
    a, b = rng.random(50) < 0.3, rng.random(50) < 0.4
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    assert math.isnan(cohen_kappa([True] * 5, [True] * 5))
    assert cohen_kappa([True, False], [True, False]) == 1.0


def test_holm_matches_statsmodels():
    sm = pytest.importorskip("statsmodels.stats.multitest")
    p = np.array([0.01, 0.04, 0.03, 0.2, 0.001, 0.5])
    assert holm(p) == pytest.approx(sm.multipletests(p, method="holm")[1])
    assert np.isnan(holm([np.nan, 0.01])[0]) and holm([np.nan, 0.01])[1] == 0.01


def test_maxt_single_test_equals_scipy_exact_sign_flip_and_the_family_is_stricter():
    rng = np.random.default_rng(3)
    d = rng.normal(0.4, 1, size=(10, 1))
    t, p = maxt_signflip(d)
    ref = st.permutation_test(
        (d[:, 0],),
        lambda x, axis=-1: st.ttest_1samp(x, 0, axis=axis).statistic,
        permutation_type="samples",
        n_resamples=np.inf,
        alternative="two-sided",
    )
    assert t[0] == pytest.approx(st.ttest_1samp(d[:, 0], 0).statistic)
    assert p[0] == pytest.approx(ref.pvalue)
    many = np.concatenate([d, rng.normal(size=(10, 9))], 1)
    _, pf = maxt_signflip(many)
    assert pf[0] >= p[0] - 1e-12  # adjusting for 10 layers can only raise the p-value
    planted = rng.normal(size=(20, 12))
    planted[:, 5] += 2.0
    _, pp = maxt_signflip(planted, n_perm=2000)
    assert pp[5] < 0.01 and np.median(pp[np.arange(12) != 5]) > 0.2


def test_sweep_standing_ranks_among_all_questions_and_uses_a_prediction_interval():
    from mechintro.experiments.sweep import _standing

    ctl = np.array([0.1, 0.5, -0.2, 0.3, 0.0, 0.2])
    top = _standing(0.6, ctl)
    assert (
        top["rank"] == 1 and top["outside_pi"] == 0.0
    )  # top rank, yet inside one question's spread
    half = st.t.ppf(0.975, 5) * ctl.std(ddof=1) * math.sqrt(1 + 1 / 6)
    assert (top["pi_lo"], top["pi_hi"]) == pytest.approx((ctl.mean() - half, ctl.mean() + half))
    assert _standing(5.0, ctl)["outside_pi"] == 1.0
    assert _standing(0.3, ctl)["rank"] == 3  # a tie counts against the introspection question


def test_localisation_cell_statistics_see_through_a_constant_answer():
    from mechintro.experiments.localisation import cell_statistics

    target = np.array(["first", "second"] * 20, dtype=object)
    always = np.array(["second"] * 40, dtype=object)
    probs = np.tile([0.1, 0.9], (40, 1))
    s = cell_statistics(always, target, probs, ["first", "second"])
    assert (
        s["balanced_accuracy"] == 0.5
        and s["varies"] == 0.0
        and s["p_target_corrected"] == pytest.approx(0.0)
    )
    skewed = np.array(["second"] * 30 + ["first", "second"] * 5, dtype=object)
    assert (
        cell_statistics(
            np.array(["second"] * 40, dtype=object),
            skewed,
            np.tile([0.1, 0.9], (40, 1)),
            ["first", "second"],
        )["balanced_accuracy"]
        == 0.5
    )
    perfect = cell_statistics(
        target.copy(),
        target,
        np.where(target[:, None] == np.array(["first", "second"]), 0.8, 0.2),
        ["first", "second"],
    )
    assert (
        perfect["balanced_accuracy"] == 1.0
        and perfect["p_target_corrected"] == pytest.approx(0.6)
        and perfect["varies"] == 1.0
    )
    assert s["mde"] == pytest.approx(0.5 + 2.8015817 * math.sqrt(0.25 / 40), abs=1e-6)


def test_cluster_interval_on_degenerate_data_is_quiet_and_finite():
    """Layers before the injection give identical values in every cluster: BCa is undefined there;
    the interval is the point, with no scipy warning reaching the user."""
    import warnings

    clusters = np.repeat(np.arange(20), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = cluster_interval(np.full(40, 0.3), clusters)
        nearly = np.full(40, 0.3)
        nearly[0] += 1e-12
        almost = cluster_interval(nearly, clusters)
    assert (flat.lo, flat.hi) == (0.3, 0.3) and "no variation" in flat.method
    assert np.isfinite(almost.lo) and np.isfinite(almost.hi)


def test_a_clustered_rate_with_t_never_leaves_zero_to_one():
    """A rare event over 6 clusters: the CR1 t interval's lower end would be negative (the tiny
    self-prediction run gave −0.025); a rate's interval is clipped to [0, 1] and says so."""
    from mechintro.stats import cluster_interval

    clusters = np.repeat(np.arange(6), 10)
    x = np.zeros(60)
    x[0] = 1.0  # one success in one cluster
    iv = cluster_interval(x, clusters, binary=True)
    assert iv.lo == 0.0 and 0 < iv.hi < 1 and "clipped" in iv.method
    cont = cluster_interval(x * 0.5 - 0.1, clusters, binary=False)  # not a rate: not clipped
    assert cont.lo < -0.1 and "clipped" not in cont.method


def test_describe_methods_merges_cluster_counts_and_keeps_other_methods_apart():
    """A table's per-cell methods read as one phrase per method: counts become a range, a note
    repeating the count follows it, and methods with other words are not merged into them."""
    from mechintro.stats import describe_methods

    wilson = "Wilson on {} clusters (no variation to resample)"
    few = "Wilson on {0} clusters (no variation to resample) — not a 95% CI (only {0} clusters)"
    methods = {wilson.format(n) for n in (28, 36, 30)} | {few.format(3), few.format(4)}
    methods |= {"t on 9 cluster means", "BCa cluster bootstrap"}
    assert describe_methods(methods) == "; ".join(
        sorted(
            [
                wilson.format("28–36"),
                few.format("3–4"),
                "t on 9 cluster means",
                "BCa cluster bootstrap",
            ]
        )
    )
    assert describe_methods({wilson.format(7)}) == wilson.format(7)  # one count: no range
    assert describe_methods([]) == ""


def test_net_detection_interval_is_built_from_the_concept_clustered_tpr_limits():
    """Issue 32, item 4: net = TPR − FPR used a trial-level Newcombe interval while its TPR was
    clustered by concept. With all-or-nothing concepts the trials are not independent: the net
    interval must be at least as wide as the clustered TPR interval (lo ≤ TPR_lo − FPR)."""
    from mechintro.experiments.injected_thoughts import held_out_best
    from mechintro.stats import rate_interval, wilson_interval

    concepts = np.repeat([f"c{i}" for i in range(20)], 10)
    success = np.isin(concepts, [f"c{i}" for i in range(0, 20, 3)])  # 7 concepts always succeed
    layers, strengths = np.full(200, 9), np.full(200, 2.0)
    false_pos = np.r_[np.ones(5, bool), np.zeros(95, bool)]
    a = held_out_best(concepts, layers, strengths, success, false_pos, seed=0)
    rng = np.random.default_rng(0)
    select = set(rng.permutation(np.array(sorted(set(concepts.tolist())), object))[:10].tolist())
    held = np.array([c not in select for c in concepts])
    tpr = rate_interval(success[held], concepts[held])
    assert tpr.clusters == 10 and a["best_heldout_tpr_lo"] == pytest.approx(tpr.lo)
    assert a["best_heldout_net_lo"] <= tpr.lo - 0.05 + 1e-12
    assert a["best_heldout_net_hi"] >= tpr.hi - 0.05 - 1e-12
    # the recipe is Newcombe's when both inputs are Wilson intervals
    from mechintro.stats import mover_difference

    iv = mover_difference(wilson_interval(7, 20), wilson_interval(3, 30))
    ref = newcombe(7, 20, 3, 30)
    assert (iv.lo, iv.hi) == pytest.approx((ref.lo, ref.hi))
