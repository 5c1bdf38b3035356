"""Figures of the concept-injection protocols (Lindsey 2025 and the replications that
follow it): the detection readout, injected thoughts by layer and strength, thoughts vs text,
prefill apologies, intentional-control alignment, latent introspection's shifts, the sweep."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from mechintro.plotting._style import (
    STYLES,
    band,
    finish,
    label,
    layer_colors,
    legend_below,
    wilson_band,
    wrap_figures,
)


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
    mass_ax.axhline(
        float(summary.mass_control.mean()), color="k", ls="--", lw=1, label="no injection"
    )
    ax.set(
        xscale="log",
        xlabel="injection strength (× concept vector)",
        ylabel="P(yes) / (P(yes) + P(no))",
        ylim=(0, 1),
    )
    ax.set_xticks(strengths, [f"{s:g}" for s in strengths])
    ax.minorticks_off()
    mass_ax.set(
        xscale="log",
        xlabel="injection strength (× concept vector)",
        ylabel="P(yes) + P(no)  (next-token mass)",
        ylim=(0, None),
    )
    mass_ax.set_xticks(strengths, [f"{s:g}" for s in strengths])
    mass_ax.minorticks_off()
    return finish(fig, (ax, mass_ax), None, title, fontsize=8)


def injected_thoughts_by_layer(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Lindsey's figure: detection rate (success) against the injection layer, one line per
    strength, with the false-positive rate of the controls (dotted bands); beside it the share of
    injected trials that *claim* detection (affirmative, right or wrong; Wilson bands). Bands: 95%
    intervals."""
    fig, (ax, aff_ax) = plt.subplots(1, 2, figsize=(10, 4.8), constrained_layout=True)
    layers = summary.inject_layer.values
    n_s = summary.sizes["strength"]
    # strengths side by side at each layer, so equal rates (e.g. 0 detected everywhere) stay apart
    step = float(np.min(np.diff(layers))) if len(layers) > 1 else 1.0
    dodge = (np.arange(n_s) - (n_s - 1) / 2) * 0.06 * step
    for k, (color, s) in enumerate(
        zip(plt.cm.plasma(np.linspace(0, 0.8, n_s)), summary.strength.values, strict=True)
    ):
        cell = summary.sel(strength=s)
        x = layers + dodge[k]
        lo, hi = np.asarray(cell.tpr_lo, dtype=float), np.asarray(cell.tpr_hi, dtype=float)
        # a bootstrap over clusters that all scored 0 (or 1) has zero width; Wilson's does not
        w_lo, w_hi = wilson_band(cell.tpr, cell.n)
        flat = hi - lo <= 0
        lo, hi = np.where(flat, w_lo, lo), np.where(flat, w_hi, hi)
        ls, marker = STYLES[k % len(STYLES)]
        ax.plot(x, cell.tpr, marker=marker, ls=ls, color=color, label=f"detected, strength {s:g}")
        ax.fill_between(x, lo, hi, color=color, alpha=0.25)
        ax.plot(
            x,
            cell.fpr,
            marker="x",
            ls="--",
            color=color,
            label=f"false positives (controls), strength {s:g} cell",
        )
        ax.fill_between(x, cell.fpr_lo, cell.fpr_hi, color=color, alpha=0.1, hatch="..")
        aff_ax.plot(x, cell.affirmative, marker=marker, ls=ls, color=color, label=f"strength {s:g}")
        aff_ax.fill_between(x, *wilson_band(cell.affirmative, cell.n), color=color, alpha=0.2)
    ax.set(xlabel="injection layer", ylabel="rate (share of trials)", ylim=(-0.02, 1.02))
    aff_ax.set(
        xlabel="injection layer",
        ylabel="injected trials answering 'yes' (any concept)",
        ylim=(-0.02, 1.02),
    )
    for a in (ax, aff_ax):
        a.set_xticks(layers)
        legend_below(a)
    if title:
        fig.suptitle(title)
    return fig


def injected_thoughts_by_strength(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Detection rate and net detection (detected − false positives) against strength, one line
    per layer, beside the coherence of the injected responses (the steering-damage side of the
    same sweep); 95% bands (bootstrap; Wilson for coherence)."""
    fig, (ax, coh_ax) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    strengths = summary.strength.values
    for color, layer in zip(
        layer_colors(summary.sizes["inject_layer"]), summary.inject_layer.values, strict=True
    ):
        cell = summary.sel(inject_layer=layer)
        band(
            ax,
            strengths,
            cell.tpr,
            cell.tpr_lo,
            cell.tpr_hi,
            color,
            f"detected, layer {int(layer)}",
        )
        band(
            ax,
            strengths,
            cell.net,
            cell.net_lo,
            cell.net_hi,
            color,
            f"net (detected − false positives), layer {int(layer)}",
            marker="x--",
        )
        band(
            coh_ax,
            strengths,
            cell.coherence,
            *wilson_band(cell.coherence, cell.n),
            color,
            f"layer {int(layer)}",
        )
    ax.axhline(0, color="k", lw=0.5)
    ax.set(xlabel="injection strength (× concept vector)", ylabel="rate", ylim=(-1.02, 1.02))
    coh_ax.set(
        xlabel="injection strength (× concept vector)",
        ylabel="coherent injected responses (share)",
        ylim=(-0.02, 1.02),
    )
    return finish(fig, (ax, coh_ax), strengths, title)


def thoughts_vs_text(
    summary: xr.Dataset,
    *,
    chance: float | None = None,
    baseline: tuple[float, float] | None = None,
    title: str = "",
) -> plt.Figure:
    """Lindsey's experiment 2: naming the injected word ("thought") and repeating the sentence
    ("text") against strength, one line per layer, 95% bands; ``baseline`` = the uninjected
    rates (word, repeat)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True, sharey=True)
    strengths = summary.strength.values
    for color, layer in zip(
        layer_colors(summary.sizes["inject_layer"]), summary.inject_layer.values, strict=True
    ):
        cell = summary.sel(inject_layer=layer)
        band(
            axes[0], strengths, cell.word, cell.word_lo, cell.word_hi, color, f"layer {int(layer)}"
        )
        band(
            axes[1],
            strengths,
            cell.repeat,
            cell.repeat_lo,
            cell.repeat_hi,
            color,
            f"layer {int(layer)}",
        )
    if chance is not None:
        axes[0].axhline(chance, color="k", ls=":", lw=1, label=f"chance ({chance:g})")
    if baseline is not None:
        for ax, value in zip(axes, baseline, strict=True):
            ax.axhline(value, color="k", ls="--", lw=1, label=f"no injection ({value:.2f})")
    axes[0].set(
        xlabel="injection strength (× concept vector)",
        ylabel="rate (share of pairs)",
        title="names the injected word",
        ylim=(-0.02, 1.02),
    )
    axes[1].set(
        xlabel="injection strength (× concept vector)", title="repeats the sentence exactly"
    )
    return finish(fig, axes, strengths, title, fontsize=8)


def prefill_apology(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Lindsey's experiment 3: apology rate after a prefilled word against the injection layer,
    one panel per strength, per condition (matched concept, random concept, matched after the
    prefill), with the no-injection rate and 95% bands."""
    strengths = summary.strength.values
    fig, axes = plt.subplots(
        1,
        len(strengths),
        figsize=(4 * len(strengths), 4),
        constrained_layout=True,
        sharey=True,
        squeeze=False,
    )
    layers = summary.inject_layer.values
    colors = dict(
        zip(
            summary.condition.values,
            plt.cm.tab10(np.arange(summary.sizes["condition"])),
            strict=True,
        )
    )
    for ax, s in zip(axes[0], strengths, strict=True):
        for c in summary.condition.values:
            cell = summary.sel(condition=c, strength=s)
            k = list(summary.condition.values).index(c)
            ls, marker = STYLES[k % len(STYLES)]
            ax.errorbar(
                layers + (k - 1) * 0.08,
                cell.rate,
                yerr=[cell.rate - cell.lo, cell.hi - cell.rate],
                marker=marker,
                ls=ls,
                capsize=3,
                color=colors[c],
                label=f"{label(c)} (n={int(cell.n.min())}–{int(cell.n.max())})",
            )
        ax.axhline(
            summary.attrs["control_rate"],
            color="k",
            ls="--",
            lw=1,
            label=f"no injection (n={summary.attrs['control_n']})",
        )
        ax.set(xlabel="injection layer", title=f"strength {s:g}", ylim=(-0.02, 1.02))
        ax.set_xticks(layers)
        legend_below(ax, ncol=1)
    axes[0][0].set_ylabel("apology rate (graded responses)")
    if title:
        fig.suptitle(title)
    return fig


def alignment_by_layer(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Lindsey's experiment 4: cosine between the residual stream on the written sentence and the
    word's concept vector, per layer and instruction (95% bands across words), over the band of
    100 unrelated control words; beside it the paired think − don't-think gap."""
    fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    layers = summary.layer.values
    base = summary.isel(condition=0)
    ax.fill_between(
        layers,
        base.baseline_lo,
        base.baseline_hi,
        color="0.85",
        label="100 control words (2.5–97.5%)",
    )
    ax.plot(layers, base.baseline, color="0.5", lw=1, label="control words (median)")
    for k, (color, c) in enumerate(
        zip(
            plt.cm.tab10(np.arange(summary.sizes["condition"])),
            summary.condition.values,
            strict=True,
        )
    ):
        cell = summary.sel(condition=c)
        ls, marker = STYLES[k % len(STYLES)]
        ax.plot(
            layers,
            cell.cos_word,
            ls=ls,
            marker=marker,
            ms=3,
            markevery=(k, 4),
            color=color,
            label=label(c),
        )
        ax.fill_between(layers, cell.cos_word_lo, cell.cos_word_hi, color=color, alpha=0.15)
    ax.set(
        xlabel="layer",
        ylabel="cosine(residual, concept vector)",
        title="mean over the sentence's tokens; bands: 95% over words",
    )
    legend_below(ax, fontsize=8, ncol=3)
    if "gap" in summary:
        band(
            gap_ax,
            layers,
            summary.gap,
            summary.gap_lo,
            summary.gap_hi,
            "C3",
            "think − don't think (paired)",
            marker="-",
        )
        peak = int(np.nanargmax(summary.gap.values))
        gap_ax.annotate(
            f"max {float(summary.gap[peak]):+.3f} at layer {int(layers[peak])}",
            (layers[peak], float(summary.gap[peak])),
            xytext=(-10, 4),
            textcoords="offset points",
            ha="right",
            fontsize=8,
        )
        gap_ax.axhline(0, color="k", lw=0.5)
        gap_ax.set(xlabel="layer", ylabel="cosine difference")
        legend_below(gap_ax, fontsize=8)
    else:
        gap_ax.set_visible(False)
    if title:
        fig.suptitle(title)
    return fig


def latent_shifts(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """vgel's logit-shift measurement: P(" yes") without and with steering for the introspection
    question under each prompt variant, and for each group of control questions; bars are 95%
    intervals over concepts (and questions), or only the range of the means where fewer than 5
    carry them (``format_summary`` says which, row by row)."""
    s = summary.isel(strength=-1)
    rows = [str(r) for r in s.row.values]
    y = np.arange(len(rows))[::-1]
    fig, (ax, shift_ax) = plt.subplots(
        1, 2, figsize=(11, 0.45 * len(rows) + 1.8), constrained_layout=True, sharey=True
    )
    ax.plot(s.base_p_yes, y, "o", color="0.5", label="unsteered")
    ax.errorbar(
        s.p_yes,
        y,
        xerr=[s.p_yes - s.p_yes_lo, s.p_yes_hi - s.p_yes],
        fmt="o",
        color="C0",
        capsize=3,
        label=f"steered (strength {float(s.strength):g})",
    )
    ax.set(xlabel="P(yes) (summed over yes forms)", xlim=(-0.02, 1.02))
    ax.set_yticks(
        y,
        [
            r.replace("introspection/", "introspection q., ") if "/" in r else f"control q.: {r}"
            for r in rows
        ],
    )
    ax.legend(fontsize=8)
    colors = ["C3" if r.startswith("introspection") else "C2" for r in rows]
    for yi, r, c in zip(y, rows, colors, strict=True):
        cell = s.sel(row=r)
        shift_ax.errorbar(
            float(cell.yes_shift),
            yi,
            xerr=[
                [float(cell.yes_shift - cell.yes_shift_lo)],
                [float(cell.yes_shift_hi - cell.yes_shift)],
            ],
            fmt="o",
            color=c,
            capsize=3,
        )
    shift_ax.axvline(0, color="k", lw=0.5)
    shift_ax.set(
        xlabel="shift in P(yes), steered − unsteered",
        title="red: introspection question; green: control questions",
    )
    if title:
        fig.suptitle(title)
    return fig


def sweep_heatmaps(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Godet's critique: the Yes−No logit-difference shift over layer × strength for the
    introspection question, the mean over control questions, and their difference (cells whose
    95% interval excludes 0 are dotted)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5), constrained_layout=True, sharey=True)
    layers, strengths = summary.inject_layer.values, summary.strength.values
    lim = float(np.nanmax(np.abs([summary.intro_shift, summary.control_shift])))
    for ax, var, name in zip(
        axes[:2],
        ("intro_shift", "control_shift"),
        ("introspection question", "control questions (mean)"),
        strict=True,
    ):
        im = ax.pcolormesh(
            strengths,
            layers,
            summary[var].values,
            cmap="RdBu_r",
            vmin=-lim,
            vmax=lim,
            shading="nearest",
        )
        ax.set(xlabel="injection strength (× vector)", title=name)
    fig.colorbar(im, ax=axes[:2], label="shift of log P(yes) − log P(no) vs unsteered")
    diff = summary.difference.values
    dlim = float(np.nanmax(np.abs(diff)))
    im = axes[2].pcolormesh(
        strengths, layers, diff, cmap="PuOr_r", vmin=-dlim, vmax=dlim, shading="nearest"
    )
    sig = (summary.difference_lo.values > 0) | (summary.difference_hi.values < 0)
    ss, ll = np.meshgrid(strengths, layers)
    axes[2].plot(ss[sig], ll[sig], "k.", ms=2, label="95% interval excludes 0")
    axes[2].set(xlabel="injection strength (× vector)", title="introspection − control")
    axes[2].legend(fontsize=7, loc="upper left")
    fig.colorbar(im, ax=axes[2], label="difference of shifts")
    axes[0].set_ylabel("injection layer")
    if title:
        fig.suptitle(title)
    return fig


wrap_figures(globals(), __name__)  # every figure shows once in Jupyter (_style.shown_once)
