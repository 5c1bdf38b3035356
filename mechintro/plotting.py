"""Figures from saved results. Functions take data and return a matplotlib ``Figure``; saving is
the caller's job (``analyses/`` scripts), never the library's."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr


def detection_shift(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """P(yes)/(P(yes)+P(no)) against strength, one line per injection layer, with 95% bands and
    the no-injection control; beside it, the yes+no probability mass (how much of the next-token
    distribution the readout covers). ``summary`` comes from ``detection_logits.summarize``."""
    fig, (ax, mass_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    strengths = summary.strength.values
    colors = plt.cm.viridis(np.linspace(0, 0.9, summary.sizes["inject_layer"]))
    for color, layer in zip(colors, summary.inject_layer.values, strict=True):
        cell = summary.sel(inject_layer=layer)
        ax.plot(strengths, cell.p_yes_norm, "o-", color=color, label=f"layer {int(layer)}")
        ax.fill_between(strengths, cell.p_yes_norm_lo, cell.p_yes_norm_hi, color=color, alpha=0.2)
        mass_ax.plot(strengths, cell.mass, "o-", color=color, label=f"layer {int(layer)}")
    control = float(summary.p_yes_norm_control.mean())
    ax.axhline(control, color="k", ls="--", lw=1, label="no injection")
    mass_ax.axhline(float(summary.mass_control.mean()), color="k", ls="--", lw=1, label="no injection")
    ax.set(xscale="log", xlabel="injection strength (× concept vector)", ylabel="P(yes) / (P(yes) + P(no))", ylim=(0, 1))
    ax.set_xticks(strengths, [f"{s:g}" for s in strengths])
    ax.minorticks_off()
    mass_ax.set(xscale="log", xlabel="injection strength (× concept vector)", ylabel="P(yes) + P(no)  (next-token mass)", ylim=(0, None))
    mass_ax.set_xticks(strengths, [f"{s:g}" for s in strengths])
    mass_ax.minorticks_off()
    ax.legend(fontsize=8)
    mass_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
