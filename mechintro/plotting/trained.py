"""Figures of models trained to read activations or to notice injections: Activation Oracles
against their baselines, and the positive control (issue 33)."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt

from mechintro.plotting._style import (
    wrap_figures,
)

# the bars of oracle_comparison's first two panels: (table key, label, colour)
_DETECTS = (
    ("detect_injected", "injected trials: detects", "C3"),
    ("detect_control_fpr", "control trials: false positives", "0.6"),
)
_NAMES = (
    ("identify_injected", "injected: names the concept", "C0"),
    ("names_a_concept_control", "control: names a tested concept", "0.6"),
)


def _interval_bar(
    bar: Callable[..., object],
    at: float,
    size: float,
    cell: dict,
    key: str,
    err: str,
    color: str,
    label: str | None,
) -> None:
    """One bar (``bar``: an axes' ``bar`` or ``barh``) at ``at``, of ``cell[key]``, with the
    cell's ``lo``/``hi`` interval as its error bar (``err``: ``xerr`` or ``yerr``)."""
    value = cell[key]
    interval = [[max(0.0, value - cell["lo"])], [max(0.0, cell["hi"] - value)]]
    bar(
        at,
        value,
        size,
        color=color,
        label=label,
        capsize=2,
        error_kw={"lw": 0.8},
        **{err: interval},
    )


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
            shown = label not in ax.get_legend_handles_labels()[1]
            _interval_bar(ax.barh, y, height, cell, "rate", "xerr", color, label if shown else None)
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
    _rate_bars(d_ax, detect, _DETECTS)
    d_ax.set(xlabel="share of trials", title="detects an injected thought")
    _rate_bars(n_ax, names, _NAMES)
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
            _interval_bar(
                e_ax.bar, x, width, e, "accuracy", "yerr", f"C{k}", reader if s == 0 else None
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


wrap_figures(globals(), __name__)  # every figure shows once in Jupyter (_style.shown_once)
