"""Figures of where the signal lives: the logit lens, the anomaly direction's AUC, the
cosines between anomaly directions and concept vectors."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from mechintro.plotting._style import (
    band,
    finish,
    wrap_figures,
)


def lens_curves(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Logit lens: per layer, the Yes−No log-odds and P(concept word) at the answer position, per
    group (e.g. injected vs control), with 95% bands over concepts."""
    fig, (ax, c_ax) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    layers = summary.layer.values
    for color, g in zip(
        plt.cm.tab10(np.arange(summary.sizes["group"])), summary.group.values, strict=True
    ):
        cell = summary.sel(group=g)
        band(
            ax,
            layers,
            cell.logit_diff,
            cell.logit_diff_lo,
            cell.logit_diff_hi,
            color,
            str(g),
            marker="-",
        )
        if np.isfinite(cell.p_concept).any():
            band(
                c_ax,
                layers,
                cell.p_concept,
                cell.p_concept_lo,
                cell.p_concept_hi,
                color,
                str(g),
                marker="-",
            )
    ax.axhline(0, color="k", lw=0.5)
    ax.set(
        xlabel="layer (residual stream after the block)",
        ylabel="log P(yes) − log P(no) through the lens",
    )
    c_ax.set(
        xlabel="layer (residual stream after the block)",
        ylabel="P(first token of the concept word)",
    )
    return finish(fig, (ax, c_ax), None, title, fontsize=8)


def anomaly_auc(result: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Held-out-concept AUC of the anomaly direction per layer — difference of means and probe —
    before and after projecting the injected concept out, with 95% bands (cluster bootstrap over
    concepts)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True, sharey=True)
    layers = result.layer.values
    styles = {
        "none": ("C0", "as recorded"),
        "span": ("C3", "injected vectors projected out (their span)"),
    }
    for ax, est, name in zip(
        axes,
        ("diff_means", "probe"),
        ("difference of means", "logistic-regression probe"),
        strict=True,
    ):
        for removal, (color, label) in styles.items():
            cell = result.sel(estimator=est, removal=removal)
            band(ax, layers, cell.auc, cell.auc_lo, cell.auc_hi, color, label, marker="-")
        ax.axhline(0.5, color="k", ls=":", lw=1, label="chance")
        ax.set(xlabel="layer", title=name, ylim=(0.2, 1.0))
        ax.legend(fontsize=7, loc="lower right")
    axes[0].set_ylabel(
        f"AUC on held-out concepts ({result.attrs['n_detected']} detected "
        f"vs {result.attrs['n_negative']} {result.attrs['negatives']})"
    )
    if title:
        fig.suptitle(title)
    return fig


def anomaly_cosine_matrix(
    cosines: xr.DataArray, *, title: str = "", no_signal_below: int | None = None
) -> plt.Figure:
    """Cosine of the anomaly direction (difference of means) with concept vectors, layer × word;
    |cosine| below the random-direction 95% bound (``attrs["chance"]``) is hatched out. Layers
    below ``no_signal_below`` (before the first injection layer every trial's residual is the
    same, so the direction there is rounding noise) are masked in grey."""
    fig, ax = plt.subplots(
        figsize=(max(6, 0.45 * cosines.sizes["word"] + 2), 5), constrained_layout=True
    )
    values = cosines.transpose("layer", "word").values.astype(float).copy()
    if no_signal_below is not None:
        values[np.asarray(cosines.layer.values) < no_signal_below] = np.nan
    lim = max(float(np.nanmax(np.abs(values))), 0.1)
    im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
    weak = np.abs(np.nan_to_num(values, nan=np.inf)) < cosines.attrs["chance"]
    ax.contourf(weak, levels=[0.5, 1.5], colors="none", hatches=["///"])
    if no_signal_below is not None and (cosines.layer.values < no_signal_below).any():
        top = int(np.flatnonzero(cosines.layer.values < no_signal_below).max())
        ax.axhspan(-0.5, top + 0.5, color="0.88", zorder=0)
        ax.text(
            cosines.sizes["word"] / 2 - 0.5,
            top / 2,
            f"layers 0–{int(cosines.layer.values[top])}: no signal "
            "(residuals identical before the first injection layer)",
            ha="center",
            va="center",
            fontsize=8,
            color="0.3",
        )
    ax.set_xticks(np.arange(cosines.sizes["word"]), cosines.word.values, rotation=60, ha="right")
    ax.set_yticks(np.arange(cosines.sizes["layer"])[::2], cosines.layer.values[::2])
    ax.set(
        xlabel=f"concept vector   (hatched: |cos| < {cosines.attrs['chance']:.3f}, "
        "the 95% bound for a random direction)",
        ylabel="layer",
    )
    fig.colorbar(im, ax=ax, label="cosine with the anomaly direction")
    if title:
        fig.suptitle(title)
    return fig


wrap_figures(globals(), __name__)  # every figure shows once in Jupyter (_style.shown_once)
