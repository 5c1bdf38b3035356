"""Intervals for the numbers we report.

Proportions get Wilson score intervals; means get percentile-bootstrap intervals, resampling
whole clusters (concepts) when trials share a concept, so repeated trials of one concept are not
counted as independent evidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``(nan, nan)`` when ``n == 0``."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray,
    *,
    clusters: Sequence[object] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean and percentile-bootstrap interval ``(mean, low, high)``.

    With ``clusters``, whole clusters are resampled with replacement (cluster bootstrap) and the
    statistic is the mean over all trials in the resample.
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
        labels = np.asarray(clusters, dtype=object)
        groups = [x[labels == g] for g in dict.fromkeys(labels.tolist())]
        sums = np.array([g.sum() for g in groups])
        counts = np.array([g.size for g in groups])
        pick = rng.integers(0, len(groups), size=(n_boot, len(groups)))
        boots = sums[pick].sum(1) / counts[pick].sum(1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(boots, [alpha, 1 - alpha])
    return (mean, float(lo), float(hi))


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's κ between two binary raters (NaN when both are constant and equal)."""
    x, y = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if x.size == 0:
        return math.nan
    observed = float((x == y).mean())
    expected = float(x.mean() * y.mean() + (1 - x.mean()) * (1 - y.mean()))
    return math.nan if expected == 1 else (observed - expected) / (1 - expected)


def cluster_bootstrap_weights(clusters: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n)`` weights: how often each row's cluster was drawn in each bootstrap resample
    of the clusters (a row counts as often as its cluster was drawn)."""
    names, index = np.unique(np.asarray(clusters).astype(str), return_inverse=True)
    draws = np.random.default_rng(seed).integers(0, len(names), size=(n_boot, len(names)))
    counts = np.stack([np.bincount(d, minlength=len(names)) for d in draws]) if n_boot else np.zeros((0, len(names)), int)
    return counts[:, index].astype(np.float64)


def paired_auc(scores: np.ndarray, y: np.ndarray, blocks: np.ndarray, boot_weights: np.ndarray) -> tuple[float, float, float]:
    """AUC over the (positive, negative) pairs **from the same block**, and a 95% interval from
    bootstrap row weights ``(n_boot, n)`` (:func:`cluster_bootstrap_weights`).

    A block is what makes scores comparable: one cross-validation fold (one fit), or one task
    whose base rate differs from the others'. Pairs across blocks never count, so neither a
    fold's offset nor a block's class balance can make or break the AUC. ``nan`` without pairs.
    """
    y = np.asarray(y, bool)
    pos, neg = scores[y], scores[~y]
    m = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    same = (blocks[y][:, None] == blocks[~y][None, :]).astype(np.float64)
    if not same.any():
        return math.nan, math.nan, math.nan
    auc = float((m * same).sum() / same.sum())
    wp, wn = boot_weights[:, y], boot_weights[:, ~y]
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = ((wp @ (m * same)) * wn).sum(1) / ((wp @ same) * wn).sum(1)
    boots = boots[np.isfinite(boots)]
    lo, hi = np.quantile(boots, [0.025, 0.975]) if boots.size else (math.nan, math.nan)
    return auc, float(lo), float(hi)
