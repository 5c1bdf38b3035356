"""Intervals and tests for the numbers we report, and what each one may be called.

* **Rates** (independent trials): Wilson score intervals (:func:`wilson`, via
  ``scipy.stats.binomtest(...).proportion_ci``): never ``[0, 0]`` at 0/n, never past 0 or 1.
* **A difference of two rates** of independent trials: Newcombe's hybrid score interval
  (Newcombe 1998, method 10; :func:`newcombe`), built from the two Wilson intervals. When one
  rate is clustered (net detection = TPR − FPR: the TPR's trials share concepts) the same
  square-and-add recipe is applied to the **clustered** limits (:func:`mover_difference`, Zou &
  Donner's MOVER, of which Newcombe's method is the Wilson case; :func:`net_interval`).
* **Means of clustered trials** (trials that share a concept are one piece of evidence, not
  many): :func:`cluster_interval` picks the method by the number of clusters *G*:

  - *G* < 5: no interval method has its nominal coverage, so none is called a 95% CI. The result
    is the **range of the per-cluster means**, labelled as such (``Interval.is_ci`` is False).
  - 5 ≤ *G* ≤ 15: a *t* interval on clusters — the ratio estimate Σy/Σn with the cluster-robust
    (CR1) standard error and *G* − 1 degrees of freedom, the small-sample-correct choice (a
    percentile bootstrap over 5–15 clusters undercovers).
  - *G* > 15: a BCa bootstrap that resamples whole clusters (``scipy.stats.bootstrap`` on the
    clusters' (sum, count) pairs).

  A rate of 0 or 1 has no spread to resample; it gets a Wilson interval on the *G* clusters
  (each cluster counted as one trial: the most conservative effective sample size).
* **Layer scans** (one test per layer): :func:`holm` adjusts p-values; :func:`maxt_signflip`
  gives family-wise p-values from a sign-flip permutation of the max |t| over layers.

Every interval is an :class:`Interval` that says which method made it; ``str(interval)`` prints
the words a table should carry.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
MIN_CI_CLUSTERS = 5
# Draws of a grader-corrected, concept-clustered interval for one cell of a grid (each draw
# resamples the concepts, and a table has many cells; the other rates use 20,000): 100 draws in
# each 2.5% tail.
CELL_DRAWS = 4000
T_MAX_CLUSTERS = 15


@dataclass(frozen=True)
class Interval:
    """An estimate with an interval and the method that made it.

    ``is_ci`` is False when the numbers are only a range (too few clusters for any method to
    reach its nominal coverage); ``note`` then says why. ``n`` counts trials, ``clusters`` the
    independent units (``None``: trials were independent)."""

    estimate: float
    lo: float
    hi: float
    method: str
    n: int
    clusters: int | None = None
    is_ci: bool = True
    note: str = ""

    def __iter__(self):
        """``estimate, lo, hi = interval`` (the order every table uses)."""
        return iter((self.estimate, self.lo, self.hi))

    def __str__(self) -> str:
        if math.isnan(self.lo):
            return f"{self.estimate:.3f} (no interval: {self.note or self.method})"
        if self.is_ci:
            return f"{self.estimate:.3f} [{self.lo:.3f}, {self.hi:.3f}] (95% CI, {self.method})"
        return (
            f"{self.estimate:.3f}, range {self.lo:.3f}–{self.hi:.3f} ({self.method}; not a 95% "
            f"CI: {self.note})"
        )


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``(nan, nan)`` when ``n == 0``.

    At the default level this is ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``;
    another ``z`` uses the same formula at the level that ``z`` implies."""
    from scipy import stats as _st  # on first use: scipy.stats takes ~0.6 s to import

    if n == 0:
        return (math.nan, math.nan)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in 0..n, got {successes} of {n}")
    level = 2 * _st.norm.cdf(z) - 1
    ci = _st.binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return (float(ci.low), float(ci.high))


def wilson_interval(successes: int, n: int) -> Interval:
    """:func:`wilson` as an :class:`Interval`."""
    lo, hi = wilson(successes, n)
    return Interval(
        successes / n if n else math.nan, lo, hi, "Wilson", n, note="" if n else "no trials"
    )


def newcombe(k1: int, n1: int, k2: int, n2: int, z: float = Z95) -> Interval:
    """Newcombe's hybrid score interval for ``k1/n1 − k2/n2`` (Newcombe 1998, *Statistics in
    Medicine* 17:873, method 10): from the two Wilson intervals ``(l1, u1)``, ``(l2, u2)``,
    ``d − √((p1−l1)² + (u2−p2)²)`` to ``d + √((u1−p1)² + (p2−l2)²)``. Unlike a bootstrap of the
    difference it is sensible at 0/n and n/n (0/10 − 0/20 gives [−0.161, 0.278])."""
    if n1 == 0 or n2 == 0:
        return Interval(
            math.nan, math.nan, math.nan, "Newcombe", n1 + n2, note="a group has no trials"
        )
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    lo = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return Interval(d, max(-1.0, lo), min(1.0, hi), "Newcombe hybrid score", n1 + n2)


def mover_difference(a: Interval, b: Interval) -> Interval:
    """``a − b`` with the MOVER interval (Zou & Donner 2008) from the two intervals' own limits:
    ``d − √((a−a_lo)² + (b_hi−b)²)`` to ``d + √((a_hi−a)² + (b−b_lo)²)``. With two Wilson
    intervals this is :func:`newcombe`; with a clustered ``a`` (a TPR over concepts) the width
    comes from the clusters, not from the trials. Not a CI when either input is not one."""
    if not (math.isfinite(a.estimate) and math.isfinite(b.estimate)):
        return Interval(math.nan, math.nan, math.nan, "MOVER", a.n + b.n, note="a rate is missing")
    d = a.estimate - b.estimate
    lo = d - math.sqrt((a.estimate - a.lo) ** 2 + (b.hi - b.estimate) ** 2)
    hi = d + math.sqrt((a.hi - a.estimate) ** 2 + (b.estimate - b.lo) ** 2)
    is_ci = a.is_ci and b.is_ci
    return Interval(
        d,
        max(-1.0, lo),
        min(1.0, hi),
        f"MOVER from ({a.method}) and ({b.method})",
        a.n + b.n,
        a.clusters,
        is_ci=is_ci,
        note="" if is_ci else (a.note or b.note),
    )


def net_interval(
    success: np.ndarray,
    clusters: np.ndarray,
    false_pos: np.ndarray,
    fp_clusters: np.ndarray | None = None,
    *,
    seed: int = 0,
) -> Interval:
    """Net detection ``TPR − FPR`` with the interval built from the **clustered** TPR limits
    (:func:`rate_interval` over ``clusters``, the concepts) and the FPR's limits (Wilson for
    independent controls, clustered when ``fp_clusters`` is given), combined by
    :func:`mover_difference`. A trial-level Newcombe interval treats trials of one concept as
    independent and is too narrow when concepts differ."""
    a = rate_interval(success, clusters, seed=seed)
    b = rate_interval(false_pos, fp_clusters, seed=seed)
    return mover_difference(a, b)


def rogan_gladen(
    k: int,
    n: int,
    errors: dict[str, int],
    *,
    draws: int = 20000,
    seed: int = 0,
) -> Interval:
    """A rate measured by an imperfect grader, corrected for its misclassification (Rogan &
    Gladen 1978): ``(p + Sp − 1) / (Se + Sp − 1)``, clipped to [0, 1], with the grader's
    sensitivity and specificity from its confusion counts on a calibration set (``errors``:
    ``tp``, ``fn``, ``tn``, ``fp``, e.g. :func:`mechintro.grading.error_counts`). The interval
    carries both uncertainties: ``draws`` draws of Se ~ Beta(tp+1, fn+1), Sp ~ Beta(tn+1, fp+1)
    and the raw rate ~ Beta(k+1, n−k+1) (uniform priors), each corrected and clipped; a draw
    where Se + Sp ≤ 1 (the grader no better than chance) says nothing and counts as 0 for the
    lower limit and 1 for the upper. ``n`` trials are taken as independent: for a rate whose
    trials cluster (by concept) use :func:`rogan_gladen_clustered`."""
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, "Rogan–Gladen", 0, note="no trials")
    return _rogan_gladen(
        k / n, lambda rng: rng.beta(k + 1, n - k + 1, draws), errors, draws, seed, n, None, ""
    )


def rogan_gladen_clustered(
    hits: Sequence[bool] | np.ndarray,
    clusters: Sequence[object],
    errors: dict[str, int],
    *,
    draws: int = 20000,
    seed: int = 0,
) -> Interval:
    """:func:`rogan_gladen` for a rate whose trials are clustered (the TPR's trials by concept):
    each of the ``draws`` resamples the clusters with replacement, draws the raw rate from
    Beta(k*+1, n*−k*+1) on the resample's k* hits of n* trials (so a rare rate keeps at least the
    trial-level uncertainty a plain bootstrap of a few hits would lose) and, in the same draw, Se
    and Sp from their Beta posteriors: the interval carries the spread between clusters, the
    binomial noise and the grader's error together. Where every cluster has
    the same rate (0 of 1,000 trials: nothing to resample), the raw rate is drawn from
    Beta(m·g+1, (1−m)·g+1) over the ``g`` clusters instead of the trials, as
    :func:`cluster_interval` takes Wilson on the clusters."""
    x = np.asarray(hits, dtype=np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, "Rogan–Gladen", 0, note="no trials")
    sums, counts = _groups(x, clusters)
    g = len(sums)
    means = sums / counts
    if np.ptp(means) == 0:
        m = float(means[0])

        def p_draws(rng: np.random.Generator) -> np.ndarray:
            return rng.beta(m * g + 1, (1 - m) * g + 1, draws)

        how = f", raw rate Beta over {g} clusters (no variation to resample)"
    else:

        def p_draws(rng: np.random.Generator) -> np.ndarray:
            out = np.empty(draws)
            for start in range(0, draws, 2000):  # bounded memory: 2,000 resamples at a time
                pick = rng.integers(0, g, size=(min(2000, draws - start), g))
                k, n = sums[pick].sum(1), counts[pick].sum(1)
                out[start : start + len(pick)] = rng.beta(k + 1, n - k + 1)
            return out

        how = f", {g} clusters resampled"
    return _rogan_gladen(float(x.mean()), p_draws, errors, draws, seed, x.size, g, how)


def _rogan_gladen(
    p: float,
    p_draws: Callable[[np.random.Generator], np.ndarray],
    errors: dict[str, int],
    draws: int,
    seed: int,
    n: int,
    clusters: int | None,
    how: str,
) -> Interval:
    tp, fn, tn, fp = (int(errors[x]) for x in ("tp", "fn", "tn", "fp"))
    se = tp / (tp + fn) if tp + fn else math.nan
    sp = tn / (tn + fp) if tn + fp else math.nan
    j = se + sp - 1
    est = min(1.0, max(0.0, (p + sp - 1) / j)) if j > 0 else math.nan
    rng = np.random.default_rng(seed)
    se_d = rng.beta(tp + 1, fn + 1, draws)
    sp_d = rng.beta(tn + 1, fp + 1, draws)
    p_d = p_draws(rng)  # after Se and Sp: the same stream as before clustering was added
    jd = se_d + sp_d - 1
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = np.clip((p_d + sp_d - 1) / jd, 0.0, 1.0)
    bad = jd <= 0
    lo = float(np.quantile(np.where(bad, 0.0, corr), 0.025))
    hi = float(np.quantile(np.where(bad, 1.0, corr), 0.975))
    return Interval(
        est,
        lo,
        hi,
        f"Rogan–Gladen, Se {tp}/{tp + fn} and Sp {tn}/{tn + fp} drawn from Beta{how}",
        n,
        clusters,
    )


def _groups(values: np.ndarray, clusters: Sequence[object]) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray([str(c) for c in clusters])
    if labels.size != values.size:
        raise ValueError(f"{values.size} values but {labels.size} cluster labels")
    _, index = np.unique(labels, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    return sums, counts


def cluster_interval(
    values: Sequence[float] | np.ndarray,
    clusters: Sequence[object],
    *,
    binary: bool | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """The mean over all trials (Σy/Σn) with the interval its number of clusters allows (see the
    module docstring): a range below 5 clusters, a CR1 *t* interval for 5–15, a BCa cluster
    bootstrap above 15; 0 or 1 rates get Wilson on the clusters. ``binary`` (default: the values
    are all 0/1) marks a rate."""
    from scipy import stats as _st  # on first use: scipy.stats takes ~0.6 s to import

    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, "none", 0, 0, note="no trials")
    sums, counts = _groups(x, clusters)
    g = len(sums)
    mean = float(x.mean())
    binary = bool(np.isin(x, (0.0, 1.0)).all()) if binary is None else binary
    if binary and mean in (0.0, 1.0):
        lo, hi = wilson(round(mean * g), g)
        return Interval(
            mean,
            lo,
            hi,
            f"Wilson on {g} clusters (no variation to resample)",
            x.size,
            g,
            is_ci=g >= MIN_CI_CLUSTERS,
            note=""
            if g >= MIN_CI_CLUSTERS
            else f"only {g} clusters (fewer than {MIN_CI_CLUSTERS})",
        )
    if g < MIN_CI_CLUSTERS:
        means = sums / counts
        return Interval(
            mean,
            float(means.min()),
            float(means.max()),
            f"range of the {g} cluster means",
            x.size,
            g,
            is_ci=False,
            note=f"only {g} clusters: fewer than {MIN_CI_CLUSTERS} cannot support a 95% interval",
        )
    if g <= T_MAX_CLUSTERS:
        resid = sums - mean * counts
        se = math.sqrt(g / (g - 1) * float((resid**2).sum())) / float(counts.sum())
        half = float(_st.t.ppf(0.975, g - 1)) * se
        lo, hi, method = mean - half, mean + half, f"t on {g} clusters (CR1 SE, {g - 1} df)"
        if binary and (lo < 0 or hi > 1):  # a rate's interval stops at 0 and 1
            lo, hi, method = max(lo, 0.0), min(hi, 1.0), method + ", clipped to [0, 1]"
        return Interval(mean, lo, hi, method, x.size, g)
    if np.ptp(sums / counts) == 0:  # every cluster has the same mean: nothing to resample
        return Interval(mean, mean, mean, f"no variation across {g} clusters", x.size, g)
    with (
        warnings.catch_warnings()
    ):  # a near-degenerate resample makes BCa warn; non-finite ends are handled below
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", getattr(_st, "DegenerateDataWarning", RuntimeWarning))
        res = _st.bootstrap(
            (sums, counts),
            lambda s, c, axis=-1: s.sum(axis) / c.sum(axis),
            paired=True,
            vectorized=True,
            n_resamples=n_boot,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(lo) and math.isfinite(hi)):  # BCa is undefined when every resample agrees
        lo = hi = mean
    return Interval(mean, lo, hi, f"BCa bootstrap over {g} clusters", x.size, g)


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence[object] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval ``(mean, low, high)`` of independent values.

    With ``clusters``, whole clusters are resampled with replacement (cluster bootstrap) and the
    statistic is the mean over all trials in the resample. Prefer :func:`cluster_interval` for a
    number you report: it refuses to call a resample of fewer than 5 clusters a 95% CI and uses a
    *t* interval for 5–15; this function stays for the percentile bootstrap itself.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if x.size == 1:
        return (mean, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    if clusters is None:
        idx = rng.integers(0, x.size, size=(n_boot, x.size))
        boots = x[idx].mean(1)
    else:
        sums, counts = _groups(x, clusters)
        pick = rng.integers(0, len(sums), size=(n_boot, len(sums)))
        boots = sums[pick].sum(1) / counts[pick].sum(1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return (mean, float(lo), float(hi))


def describe_methods(methods: Iterable[str]) -> str:
    """The interval methods of a table's cells in one phrase: descriptions that differ only in
    their cluster counts are merged into one with the counts' range, so a 20-cell table reads
    "Wilson on 28–36 clusters (…)" rather than nine near-copies.

    Example::

        describe_methods({"Wilson on 28 clusters (x)", "Wilson on 36 clusters (x)"})
        # 'Wilson on 28–36 clusters (x)'
    """
    counts: dict[str, list[int]] = {}
    for m in methods:
        numbers = set(re.findall(r"\b(\d+) clusters\b", m))
        if len(numbers) == 1:  # one count, perhaps repeated in a note: merge on the rest
            counts.setdefault(re.sub(r"\b\d+ clusters\b", "\x00 clusters", m), []).append(
                int(numbers.pop())
            )
        else:
            counts.setdefault(m, [])
    merged = []
    for shape, ns in counts.items():
        lo, hi = (min(ns), max(ns)) if ns else (0, 0)
        merged.append(shape.replace("\x00", str(lo) if lo == hi else f"{lo}–{hi}"))
    return "; ".join(sorted(merged))


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's κ between two binary raters (``sklearn.metrics.cohen_kappa_score``; NaN when both
    raters are constant and equal, where κ is undefined)."""
    from sklearn.metrics import cohen_kappa_score

    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.size == 0 or (len(set(x.tolist())) == 1 and set(x.tolist()) == set(y.tolist())):
        return math.nan
    return float(cohen_kappa_score(x, y))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error over the tests given); NaNs stay NaN
    and are not counted as tests."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def maxt_signflip(
    diffs: np.ndarray, *, n_perm: int = 10000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Paired differences ``(n_units, n_tests)`` (e.g. think − don't think per word pair, per
    layer): the one-sample t per test and its family-wise p-value from a sign-flip permutation of
    the **maximum |t| over tests** (Westfall & Young): each unit's differences are flipped
    together, so the correlation between layers is kept. The smallest p it can give is
    ``1 / (n_perm + 1)`` (with all ``2^n`` flips enumerated when that is fewer). Two-sided."""
    d = np.asarray(diffs, dtype=np.float64)
    n = d.shape[0]

    def tstat(x: np.ndarray) -> np.ndarray:
        sd = x.std(-2, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return x.mean(-2) / (sd / math.sqrt(n))

    t = tstat(d)
    if 2**n <= n_perm:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1).astype(np.float64)
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_perm, n))
        signs = np.concatenate([np.ones((1, n)), signs])
    maxes = []
    for s in range(0, len(signs), 512):
        tt = np.abs(tstat(signs[s : s + 512, :, None] * d[None]))
        maxes.append(np.nanmax(tt, axis=1))
    maxes = np.concatenate(maxes)
    p = (maxes[:, None] >= np.abs(t)[None, :] - 1e-12).mean(0)
    return t, p


def cluster_bootstrap_weights(clusters: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` weights: how often each row's cluster was drawn in each bootstrap resample
    of the clusters (a row counts as often as its cluster was drawn)."""
    names, index = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n_boot, len(names)))
    counts = (
        np.stack([np.bincount(d, minlength=len(names)) for d in draws])
        if n_boot
        else np.zeros((0, len(names)), int)
    )
    return counts[:, index].astype(np.float64)


def paired_auc_boots(
    scores: np.ndarray, y: np.ndarray, blocks: np.ndarray, boot_weights: np.ndarray
) -> tuple[float, np.ndarray]:
    """The within-block AUC of :func:`paired_auc` and its ``(n_boot,)`` bootstrap replicates
    (NaN where a resample has no pair). Two scores bootstrapped with the same ``boot_weights``
    give paired replicates: the quantiles of their difference are an interval for the difference."""
    y = np.asarray(y, bool)
    scores = np.asarray(scores, np.float64)
    pos, neg = scores[y], scores[~y]
    m = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    blocks = np.asarray(blocks)
    same = (blocks[y][:, None] == blocks[~y][None, :]).astype(np.float64)
    if not same.any():
        return math.nan, np.full(len(boot_weights), math.nan)
    auc = float((m * same).sum() / same.sum())
    wp, wn = boot_weights[:, y], boot_weights[:, ~y]
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = ((wp @ (m * same)) * wn).sum(1) / ((wp @ same) * wn).sum(1)
    return auc, boots


def paired_auc(
    scores: np.ndarray, y: np.ndarray, blocks: np.ndarray, boot_weights: np.ndarray
) -> tuple[float, float, float]:
    """AUC over the (positive, negative) pairs **from the same block**, and a 95% interval from
    bootstrap row weights ``(n_boot, n)`` (:func:`cluster_bootstrap_weights`).

    A block is what makes scores comparable: one cross-validation fold (one fit), or one task
    whose base rate differs from the others'. Pairs across blocks never count, so neither a
    fold's offset nor a block's class balance can make or break the AUC. ``nan`` without pairs.
    """
    auc, boots = paired_auc_boots(scores, y, blocks, boot_weights)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots.size else (math.nan, math.nan)
    return auc, float(lo), float(hi)


def rate(
    successes: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """``(rate, lo, hi, n)`` of a boolean array with a 95% interval: Wilson when trials are
    independent (``clusters`` None or one cluster), else :func:`mechintro.stats.cluster_interval`
    (a range, not a CI, below 5 clusters; *t* on clusters for 5–15; BCa above; Wilson on the
    clusters at 0 or 1). :func:`rate_interval` returns the same with its method. ``n = 0`` gives
    NaNs."""
    iv = rate_interval(successes, clusters, n_boot=n_boot, seed=seed)
    return iv.estimate, iv.lo, iv.hi, iv.n


def rate_interval(
    successes: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> Interval:
    """:func:`rate` as an :class:`mechintro.stats.Interval` (which says what the interval is)."""
    x = np.asarray(successes, dtype=float)
    if x.size == 0:
        return Interval(math.nan, math.nan, math.nan, "none", 0, note="no trials")
    if not np.isin(x, (0.0, 1.0)).all():
        raise AssertionError(
            "rate() takes successes (booleans); use mean_ci() for continuous values"
        )
    if clusters is None or len(set(np.asarray(clusters).tolist())) < 2:
        return wilson_interval(int(x.sum()), x.size)
    return cluster_interval(x, np.asarray(clusters), binary=True, n_boot=n_boot, seed=seed)


def mean_ci(
    values: np.ndarray, clusters: np.ndarray | None = None, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float, int]:
    """``(mean, lo, hi, n)`` of continuous values: a 95% percentile bootstrap when independent,
    else :func:`mechintro.stats.cluster_interval` over ``clusters`` (a range, not a CI, below 5)."""
    x = np.asarray(values, dtype=float)
    if clusters is not None and len(set(np.asarray(clusters).tolist())) < 2:
        clusters = None
    if clusters is None:
        mean, lo, hi = bootstrap_mean_ci(x, n_boot=n_boot, seed=seed)
        return mean, lo, hi, int(x.size)
    iv = cluster_interval(x, np.asarray(clusters), binary=False, n_boot=n_boot, seed=seed)
    return iv.estimate, iv.lo, iv.hi, int(x.size)


def diff_ci(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``a`` minus mean of ``b``: for two sets of **independent** successes
    Newcombe's hybrid score interval (use :func:`net_interval` when ``a``'s trials share
    concepts) (:func:`mechintro.stats.newcombe`, sensible at 0/n and n/n);
    for continuous values a 95% percentile bootstrap resampling each group."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan, math.nan
    if np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all():
        iv = newcombe(int(a.sum()), a.size, int(b.sum()), b.size)
        return iv.estimate, iv.lo, iv.hi
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, a.size, (n_boot, a.size))].mean(1) - b[
        rng.integers(0, b.size, (n_boot, b.size))
    ].mean(1)
    return (
        float(a.mean() - b.mean()),
        float(np.percentile(diffs, 2.5)),
        float(np.percentile(diffs, 97.5)),
    )
