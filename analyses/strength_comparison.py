"""Figure: pairwise strength comparison (Hahami et al., arXiv 2512.12411 v2, section 5.1) — the
share of decisions whose sign of logit("1") − logit("2") names the sentence with the stronger
injection, by layer, for each strength pair: the concept vector beside a random unit direction at
the same coefficients (95% Wilson intervals), both orders pooled (chance 0.5); the thin markers
are each order alone (stronger on sentence 1 / on sentence 2), whose gap is the position bias.

    python analyses/strength_comparison.py [--run RUN] [--out figures/]
"""

import matplotlib.pyplot as plt
import numpy as np
from _figure import SHIPPED, arguments, per_model, save, title

from mechintro.experiments import strength_comparison

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "strength-comparison.zarr"))


def draw(ds, name: str) -> None:
    summary = strength_comparison.summarize(ds)
    print(strength_comparison.format_summary(summary))
    pairs = [
        (float(w), float(s))
        for w in summary.weak.values
        for s in summary.strong.values
        if np.isfinite(summary.accuracy.sel(condition="concept", weak=w, strong=s)).any()
    ]
    fig, axes = plt.subplots(
        1, len(pairs), figsize=(max(4.2 * len(pairs), 7.0), 3.8), sharey=True, squeeze=False
    )
    layers = summary.inject_layer.values
    for ax, (weak, strong) in zip(axes[0], pairs, strict=True):
        for k, (condition, colour) in enumerate((("concept", "C0"), ("random", "C7"))):
            if condition not in summary.condition.values:
                continue
            c = summary.sel(condition=condition, weak=weak, strong=strong)
            x = np.arange(len(layers)) + (k - 0.5) * 0.18
            acc = c.accuracy.values
            err = np.vstack([acc - c.lo.values, c.hi.values - acc])
            ax.errorbar(x, acc, yerr=err, fmt="o", color=colour, capsize=3, label=condition)
            ax.plot(x, c.acc_1.values, "^", color=colour, ms=4, alpha=0.6)
            ax.plot(x, c.acc_2.values, "v", color=colour, ms=4, alpha=0.6)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xticks(np.arange(len(layers)), [str(int(v)) for v in layers])
        ax.set_xlabel("injection layer")
        ax.set_title(f"a = {weak:g} vs {strong:g}")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("stronger sentence named (both orders)")
    axes[0][0].legend(
        loc="lower left", fontsize=8, title="▲ strong@1  ▼ strong@2", title_fontsize=7
    )
    n = int(summary.n.sel(condition="concept").max())
    fig.suptitle(
        title(
            ds,
            f"strength comparison, {n} decisions per cell; uninjected answer '1' in "
            f"{summary.attrs['uninjected_share_1']:.0%} of {summary.attrs['uninjected_n']}",
        ),
        fontsize=10,
    )
    fig.tight_layout()
    save(fig, args.out, name, ds)


for ds, name in per_model(args.run, "strength-comparison", "strength_comparison"):
    draw(ds, name)
