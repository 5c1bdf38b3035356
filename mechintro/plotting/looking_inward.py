"""Figures of Looking Inward (Binder et al. 2024; :mod:`mechintro.looking_inward`): accuracy
against the mode baseline, the predictor × target matrix, self vs cross, the residual probes."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from mechintro.plotting._style import (
    band,
    wrap_figures,
)
from mechintro.stats import wilson


def self_prediction_accuracy(
    summaries: dict[str, xr.Dataset], *, split: str = "test", title: str = ""
) -> plt.Figure:
    """Accuracy per property (pooled over the ``split`` tasks) of each model predicting itself,
    with 95% Wilson intervals, against each property's mode baseline (★)."""
    props = list(
        dict.fromkeys(
            p
            for s in summaries.values()
            for p, sp in zip(s.property.values.tolist(), s.split.values.tolist(), strict=True)
            if sp == split
        )
    )
    fig, ax = plt.subplots(figsize=(min(16.0, 4 + 1.1 * len(props)), 4), constrained_layout=True)
    width = 0.8 / max(1, len(summaries))
    for k, (name, s) in enumerate(summaries.items()):
        keep = s.split.values == split
        x, acc, lo, hi, base = [], [], [], [], []
        for i, prop in enumerate(props):
            cell = keep & (s.property.values == prop)
            n = s.n.values[cell]
            if n.sum() == 0:
                continue
            hits = round(float(np.nansum(s.accuracy.values[cell] * n)))
            low, high = wilson(hits, int(n.sum()))
            x.append(i + (k - (len(summaries) - 1) / 2) * width)
            acc.append(hits / n.sum())
            lo.append(low)
            hi.append(high)
            base.append(float(np.nansum(s.mode_baseline.values[cell] * n) / n.sum()))
        acc_a = np.array(acc, dtype=float)
        yerr = np.clip([acc_a - np.array(lo), np.array(hi) - acc_a], 0, None) if acc else None
        ax.bar(x, acc_a, width, color=f"C{k}", label=name, yerr=yerr, capsize=2)
        ax.plot(x, base, "k*", ms=7, label="mode baseline" if k == 0 else None)
    ax.set_xticks(
        range(len(props)), [p.replace("_", " ") for p in props], rotation=30, ha="right", fontsize=8
    )
    where = "held-out" if split == "test" else "training"
    # 1.05: a mode baseline of 1 (its star) is drawn whole, not cut by the frame
    ax.set(ylabel=f"accuracy on {where} tasks", ylim=(0, 1.05))
    # outside the axes: inside, it covers bars and stars whatever corner it is put in
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    if title:
        fig.suptitle(title)
    return fig


def self_cross_matrix(matrix: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Predictor × target accuracy (held-out tasks) with intervals and each target's mode
    baseline."""
    names = matrix.predictor.values.tolist()
    fig, ax = plt.subplots(
        figsize=(3.4 + 1.6 * len(names), 1.8 + 1.2 * len(names)), constrained_layout=True
    )
    image = ax.imshow(
        matrix.accuracy.values,
        cmap="viridis",
        vmin=0,
        vmax=max(0.6, float(np.nanmax(matrix.accuracy.values))),
    )
    for i in range(len(names)):
        for j in range(len(names)):
            c = matrix.isel(predictor=i, target=j)
            ax.text(
                j,
                i,
                f"{float(c.accuracy):.3f}\n[{float(c.lo):.2f}, {float(c.hi):.2f}]\nn={int(c.n)}",
                ha="center",
                va="center",
                fontsize=7,
                color="w" if float(c.accuracy) < 0.45 else "k",
                fontweight="bold" if i == j else "normal",
            )
    ax.set_xticks(
        range(len(names)),
        [
            f"{n}\n(mode {float(b):.2f})"
            for n, b in zip(names, matrix.mode_baseline.values, strict=True)
        ],
        fontsize=7,
    )
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(xlabel="target: whose behaviour", ylabel="predictor: who predicts")
    fig.colorbar(image, ax=ax, label="accuracy")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def self_vs_cross_bars(results: dict[str, dict[str, float]], *, title: str = "") -> plt.Figure:
    """For each trained pair: accuracy of M1 predicting itself vs M2 (trained on M1's behaviour)
    predicting M1, on the same held-out pairs; the difference's interval and p in the labels."""
    fig, ax = plt.subplots(figsize=(2 + 2.2 * len(results), 4), constrained_layout=True)
    for k, r in enumerate(results.values()):
        ax.bar(
            k - 0.2,
            r["self"],
            0.4,
            color="C0",
            label="self-prediction (M1 → M1)" if k == 0 else None,
        )
        ax.bar(
            k + 0.2,
            r["cross"],
            0.4,
            color="C1",
            label="cross-prediction (M2 → M1)" if k == 0 else None,
        )
        ax.text(
            k,
            max(r["self"], r["cross"]) + 0.03,
            f"Δ {r['difference']:+.3f}\n[{r['lo']:+.3f}, {r['hi']:+.3f}]\np = {r['p']:.3f}",
            ha="center",
            fontsize=7,
        )
    ax.set_xticks(range(len(results)), list(results), fontsize=7)
    ax.set(ylabel="accuracy on held-out tasks", ylim=(0, 1))
    ax.legend(fontsize=7, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def probe_auc(result: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Task-held-out AUC (over true/false pairs within a task) of a linear probe for each boolean
    property of the target's answers, by relative depth, from the target's own activations and
    from another model's on the same prompts."""
    props = [p for p in result.property.values.tolist() if int(result.n.sel(property=p).max()) > 0]
    fig, axes = plt.subplots(
        1,
        max(1, len(props)),
        figsize=(max(4.5, 3.2 * len(props)), 3.4),
        constrained_layout=True,
        sharey=True,
        squeeze=False,
    )
    for ax, prop in zip(axes[0], props, strict=False):
        for k, source in enumerate(result.source.values.tolist()):
            cell = result.sel(source=source, property=prop)
            band(
                ax,
                result.depth.values,
                cell.auc,
                cell.lo,
                cell.hi,
                f"C{k}",
                f"{source} activations",
            )
        ax.axhline(0.5, color="k", ls=":", lw=1)
        n, pairs = (
            int(result.n.sel(property=prop).max()),
            int(result.pairs.sel(property=prop).max()),
        )
        ax.set(
            title=f"{prop.replace('_', ' ')} (n={n}, {pairs} pairs)",
            xlabel="depth (fraction of layers)",
            ylim=(0, 1),
        )
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("AUC (pairs within a held-out task)")
    if not props:  # say why the axes are empty instead of leaving them blank
        axes[0][0].text(
            0.5,
            0.5,
            "no boolean property of these answers\nvaries within a held-out task",
            ha="center",
            va="center",
            transform=axes[0][0].transAxes,
        )
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


wrap_figures(globals(), __name__)  # every figure shows once in Jupyter (_style.shown_once)
