"""Figures from saved results. Functions take data and return a matplotlib ``Figure``; saving is
the caller's job (``analyses/`` scripts), never the library's. The library never selects a
matplotlib backend: in Jupyter the figures show inline, and scripts (or ``MPLBACKEND``) choose
their own."""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from mechintro.stats import wilson


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
    ax.legend(fontsize=8)
    mass_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# condition names as code writes them → as a reader says them (legends show words, not identifiers)
LABELS = {
    "think": "think about the word",
    "dont_think": "don't think about it",
    "rewarded": "rewarded for thinking of it",
    "punished": "punished for thinking of it",
    "happy": "happy if you think of it",
    "sad": "sad if you think of it",
    "charity": "charity if you think of it",
    "terrorist": "terrorist if you think of it",
    "matched": "matched concept, injected on the sentence",
    "random": "random concept, injected on the sentence",
    "matched_after": "matched concept, injected after the prefill",
    "injected": "injected",
    "control": "no injection",
}
# distinguishable even where lines coincide and in greyscale: each series its own dash and marker
_STYLES = [
    ("-", "o"),
    ("--", "s"),
    (":", "^"),
    ("-.", "D"),
    ((0, (5, 1, 1, 1)), "v"),
    ((0, (1, 1)), "P"),
]


def label(name: object) -> str:
    """A condition's name in words (``dont_think`` → "don't think about it")."""
    text = str(name)
    return LABELS.get(text, text.replace("dont_", "don't ").replace("_", " "))


def _legend_below(ax: plt.Axes, fontsize: int = 7, ncol: int = 2) -> None:
    """The legend under the axes, off the data."""
    ax.legend(
        fontsize=fontsize, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False
    )


def _layer_colors(n: int) -> np.ndarray:
    return plt.cm.viridis(np.linspace(0, 0.9, n))


def _finish(fig: plt.Figure, axes, ticks, title: str, fontsize: int = 7) -> plt.Figure:
    """Ticks at the data, legends, the title."""
    for a in axes:
        a.set_xticks(ticks)
        a.legend(fontsize=fontsize)
    if title:
        fig.suptitle(title)
    return fig


def _wilson_band(rates: xr.DataArray, n: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """95% Wilson interval of each rate (a share of ``n`` trials)."""
    lo, hi = np.array(
        [
            wilson(round(float(r) * int(k)), int(k))
            for r, k in zip(rates.values, n.values, strict=True)
        ]
    ).T
    return lo, hi


def _band(ax: plt.Axes, x, mid, lo, hi, color, label: str, marker: str = "o-") -> None:
    ax.plot(x, mid, marker, color=color, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.2)


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
        w_lo, w_hi = _wilson_band(cell.tpr, cell.n)
        flat = hi - lo <= 0
        lo, hi = np.where(flat, w_lo, lo), np.where(flat, w_hi, hi)
        ls, marker = _STYLES[k % len(_STYLES)]
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
        aff_ax.fill_between(x, *_wilson_band(cell.affirmative, cell.n), color=color, alpha=0.2)
    ax.set(xlabel="injection layer", ylabel="rate (share of trials)", ylim=(-0.02, 1.02))
    aff_ax.set(
        xlabel="injection layer",
        ylabel="injected trials answering 'yes' (any concept)",
        ylim=(-0.02, 1.02),
    )
    for a in (ax, aff_ax):
        a.set_xticks(layers)
        _legend_below(a)
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
        _layer_colors(summary.sizes["inject_layer"]), summary.inject_layer.values, strict=True
    ):
        cell = summary.sel(inject_layer=layer)
        _band(
            ax,
            strengths,
            cell.tpr,
            cell.tpr_lo,
            cell.tpr_hi,
            color,
            f"detected, layer {int(layer)}",
        )
        _band(
            ax,
            strengths,
            cell.net,
            cell.net_lo,
            cell.net_hi,
            color,
            f"net (detected − false positives), layer {int(layer)}",
            marker="x--",
        )
        _band(
            coh_ax,
            strengths,
            cell.coherence,
            *_wilson_band(cell.coherence, cell.n),
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
    return _finish(fig, (ax, coh_ax), strengths, title)


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
        _layer_colors(summary.sizes["inject_layer"]), summary.inject_layer.values, strict=True
    ):
        cell = summary.sel(inject_layer=layer)
        _band(
            axes[0], strengths, cell.word, cell.word_lo, cell.word_hi, color, f"layer {int(layer)}"
        )
        _band(
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
    return _finish(fig, axes, strengths, title, fontsize=8)


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
            ls, marker = _STYLES[k % len(_STYLES)]
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
        _legend_below(ax, ncol=1)
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
        ls, marker = _STYLES[k % len(_STYLES)]
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
    _legend_below(ax, fontsize=8, ncol=3)
    if "gap" in summary:
        _band(
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
        _legend_below(gap_ax, fontsize=8)
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


def lens_curves(summary: xr.Dataset, *, title: str = "") -> plt.Figure:
    """Logit lens: per layer, the Yes−No log-odds and P(concept word) at the answer position, per
    group (e.g. injected vs control), with 95% bands over concepts."""
    fig, (ax, c_ax) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    layers = summary.layer.values
    for color, g in zip(
        plt.cm.tab10(np.arange(summary.sizes["group"])), summary.group.values, strict=True
    ):
        cell = summary.sel(group=g)
        _band(
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
            _band(
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
    ax.legend(fontsize=8)
    c_ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


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
            _band(ax, layers, cell.auc, cell.auc_lo, cell.auc_hi, color, label, marker="-")
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
            _band(
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


def _rate_bars(ax: plt.Axes, rows: list[dict], keys: tuple[tuple[str, str, str], ...]) -> None:
    """Horizontal bars, one group per reader (top to bottom) and one bar per ``(key, label,
    colour)`` present in a row, each with its Wilson interval and ``k/n`` written beside it."""
    height = 0.8 / len(keys)
    for i, row in enumerate(rows):
        for j, (key, label, color) in enumerate(keys):
            cell = row.get(key)
            if cell is None:
                continue
            y = i + (j - (len(keys) - 1) / 2) * height
            ax.barh(
                y,
                cell["rate"],
                height,
                color=color,
                label=label if label not in ax.get_legend_handles_labels()[1] else None,
                xerr=[[max(0.0, cell["rate"] - cell["lo"])], [max(0.0, cell["hi"] - cell["rate"])]],
                capsize=2,
                error_kw={"lw": 0.8},
            )
            ax.text(
                min(cell["hi"], 1.0) + 0.02, y, f"{cell['k']}/{cell['n']}", va="center", fontsize=6
            )
    ax.set_yticks(
        range(len(rows)),
        [
            r["reader"] + (f"\nAUC of P(yes) {r['p_yes_auc']:.2f}" if "p_yes_auc" in r else "")
            for r in rows
        ],
        fontsize=7,
    )
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlim(0, 1.15)
    ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)


def oracle_comparison(table: dict, evaluation: list[dict], *, title: str = "") -> plt.Figure:
    """Activation Oracles, from ``scripts/oracle_compare.py``'s ``table.json`` and ``mechintro
    oracle eval``'s JSON: (1) the share of injected trials each reader detects beside its
    false-positive rate on control trials; (2) the share of injected trials where it names the
    injected concept beside the share of control trials where it names any tested concept; (3)
    accuracy on the held-out task sets of the oracle, the untrained model, the oracle fed shuffled
    activations and a linear probe, with the majority-class baseline as a star. Wilson 95 %
    intervals throughout."""
    rows = table["rows"]
    detect = [r for r in rows if "detect_injected" in r]
    names = [r for r in rows if "identify_injected" in r]
    fig, (d_ax, n_ax, e_ax) = plt.subplots(
        1,
        3,
        figsize=(14, 4.2),
        constrained_layout=True,
        gridspec_kw={"width_ratios": [1.1, 1.0, 1.2]},
    )
    _rate_bars(
        d_ax,
        detect,
        (
            ("detect_injected", "injected trials: detects", "C3"),
            ("detect_control_fpr", "control trials: false positives", "0.6"),
        ),
    )
    d_ax.set(xlabel="share of trials", title="detects an injected thought")
    _rate_bars(
        n_ax,
        names,
        (
            ("identify_injected", "injected: names the concept", "C0"),
            ("names_a_concept_control", "control: names a tested concept", "0.6"),
        ),
    )
    n_ax.set(xlabel="share of trials", title="names the injected concept")
    sets = list(dict.fromkeys(e["set"] for e in evaluation))
    readers = [r for r in dict.fromkeys(e["reader"] for e in evaluation) if r != "majority"]
    width = 0.8 / len(readers)
    cells = {(e["set"], e["reader"]): e for e in evaluation}
    for k, reader in enumerate(readers):
        for s, name in enumerate(sets):
            e = cells.get((name, reader))
            if e is None:
                continue
            x = s + (k - (len(readers) - 1) / 2) * width
            e_ax.bar(
                x,
                e["accuracy"],
                width,
                color=f"C{k}",
                label=reader if s == 0 else None,
                yerr=[[max(0.0, e["accuracy"] - e["lo"])], [max(0.0, e["hi"] - e["accuracy"])]],
                capsize=2,
                error_kw={"lw": 0.8},
            )
            e_ax.text(
                x,
                min(e["hi"], 1.0) + 0.01,
                f"{e['correct']}/{e['n']}",
                ha="center",
                fontsize=5,
                rotation=90,
            )
    for s, name in enumerate(sets):
        if (name, "majority") in cells:
            e_ax.plot(
                s,
                cells[(name, "majority")]["accuracy"],
                "k*",
                ms=8,
                label="majority class" if s == 0 else None,
            )
    n = sorted({e["n"] for e in evaluation})
    e_ax.set_xticks(
        range(len(sets)), [s.replace("held-out concepts, ", "") for s in sets], fontsize=7
    )
    e_ax.set(
        ylabel="accuracy (yes/no)",
        ylim=(0, 1.1),
        title=f"held-out task sets (n = {', '.join(map(str, n))} each)",
    )
    e_ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=5)
    meta = table.get("meta", {})
    if title or meta:
        fig.suptitle(
            title
            or f"{meta.get('model', '')}: layer {meta.get('layer', '')}, "
            f"{meta.get('n_injected', '')} injected / "
            f"{meta.get('n_control', '')} control trials; Wilson 95 % intervals",
            fontsize=9,
        )
    return fig


def positive_control(
    evaluation: dict, scaling: list[dict], settings: dict, *, title: str = ""
) -> plt.Figure:
    """The positive control (issue 33), from ``scripts/positive_control_train.py``'s JSON: (1)
    held-out detection and identification vs injection strength for the untrained and the trained
    model on the same trials, with each model's control false-positive rate as a dashed line; (2)
    held-out detection and identification vs training examples seen (the scaling curve). 95 %
    intervals clustered by concept (:func:`mechintro.stats.rate_interval`)."""
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    cells = [
        r for r in evaluation["summary"] if r["group"] == "held-out" and r["strength"] is not None
    ]
    controls = {  # sampled controls (distinct answers) where run, else the greedy one
        r["model"]: r
        for g in ("control", "control-sampled")
        for r in evaluation["summary"]
        if r["group"] == g
    }

    def bars(axis, xs, rows, metric, **kw):
        mid = [r[metric][0] for r in rows]
        err = [
            [r[metric][0] - r[metric][1] for r in rows],
            [r[metric][2] - r[metric][0] for r in rows],
        ]
        axis.errorbar(xs, mid, yerr=err, capsize=3, **kw)

    for model, colour, marker in (("untrained", "tab:gray", "o"), ("trained", "tab:blue", "s")):
        rows = sorted((r for r in cells if r["model"] == model), key=lambda r: r["strength"])
        if not rows:
            continue
        xs = [r["strength"] for r in rows]
        for metric, ls in (("detected", "-"), ("identified", ":")):
            bars(
                ax, xs, rows, metric, color=colour, marker=marker, ls=ls, label=f"{model}: {metric}"
            )
        if model in controls:
            ax.axhline(
                controls[model]["detected"][0], color=colour, lw=0.8, ls="--",
                label=f"{model}: control false positives",
            )  # fmt: skip
    ax.set_xscale("log", base=2)
    ax.set_xlabel("strength (× the raw CAA vector)")
    ax.set_ylabel("rate (95 % CI, clustered by concept)")
    ax.set_ylim(-0.03, 1.03)
    n_concepts = len({r["concept"] for r in evaluation["trials"] if r["group"] == "held-out"})
    ax.set_title(f"held-out concepts (n={n_concepts}), layer {settings['layer']}", fontsize=9)
    ax.legend(fontsize=7)
    if scaling:
        xs = [r["examples_seen"] for r in scaling]
        # sampled held-out trials where every snapshot has them: the same strengths at every
        # point, decoded as the sampled controls are; else the greedy ones, all strengths pooled
        sampled = all(r.get("held_out_sampled") for r in scaling)
        held = [r["held_out_sampled"] if sampled else r["held_out"] for r in scaling]
        for metric, ls in (("detected", "-"), ("identified", ":")):
            bars(bx, xs, held, metric, marker="o", ls=ls, label=f"held-out {metric}")
        bx.plot(
            xs, [r.get("control_sampled", r["control"])["detected"][0] for r in scaling], "k--",
            lw=0.8,
            label="control false positives",
        )  # fmt: skip
        bx.set_xlabel("training examples seen")
        bx.set_ylim(-0.03, 1.03)
        strengths = "/".join(f"{s:g}×" for s in scaling[-1].get("net_sampled_strengths", []))
        bx.set_title(
            f"scaling: sampled (T = 1), {strengths or 'pooled'}" if sampled
            else "scaling: greedy, all strengths pooled", fontsize=9,
        )  # fmt: skip
        bx.legend(fontsize=7)
    fig.suptitle(
        title or f"{settings['model']}: trained to notice injected thoughts vs untrained",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _inline_backend() -> bool:
    """Whether pyplot draws into Jupyter's inline backend (the kernel's default)."""
    import matplotlib

    return "inline" in str(matplotlib.get_backend()).lower()


def _shown_once(draw):
    """In Jupyter's inline backend pyplot shows every figure still open when a cell ends, and the
    cell's value is shown too: a figure a function returns appeared twice. There it is closed
    (detached from pyplot) before it is returned, so it shows once, as the value of the cell or
    through ``display(fig)``, and is still a figure to save. Elsewhere (scripts, GUI backends)
    it stays open for ``plt.show()``."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        fig = draw(*args, **kwargs)
        if _inline_backend():
            plt.close(fig)
        return fig

    return wrapper


# every public function drawing a figure
for _name in [
    n
    for n, f in list(globals().items())
    if callable(f)
    and not n.startswith("_")
    and getattr(f, "__module__", None) == __name__
    and f.__annotations__.get("return") == "plt.Figure"
]:
    globals()[_name] = _shown_once(globals()[_name])
