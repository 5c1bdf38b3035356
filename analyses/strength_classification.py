"""Figure: strength classification (Hahami et al., elyhahami18/CS2881-Introspection @ e3d2f4c) —
for each layer, the share of trials whose largest bin log-probability names the expected bin
(Weak < 5 ≤ Moderate < 10 ≤ Strong < 15 ≤ Very strong), by coefficient: the concept vector beside
the next concept's vector (shuffled) and a random unit direction at the same coefficient (95%
Wilson intervals; both option orders pooled); each panel's title gives the layer's balanced
accuracy (chance: one over the bins the coefficients reach, the dotted line).

    python analyses/strength_classification.py [--run RUN] [--out figures/]
"""

import matplotlib.pyplot as plt
import numpy as np
from _figure import SHIPPED, arguments, per_model, save, title

from mechintro.experiments import strength_classification

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "strength-classification.zarr"))


def draw(ds, name: str) -> None:
    summary = strength_classification.summarize(ds)
    print(strength_classification.format_summary(summary))
    layers = summary.inject_layer.values
    coefs = summary.strength.values
    fig, axes = plt.subplots(
        1, len(layers), figsize=(max(6.5, 4.2 * len(layers)), 3.8), sharey=True, squeeze=False
    )
    styles = (("concept", "C0"), ("shuffled", "C1"), ("random", "C7"))
    for ax, layer in zip(axes[0], layers, strict=True):
        shown = [c for c, _ in styles if c in summary.condition.values]
        for k, (condition, colour) in enumerate(styles):
            if condition not in shown:
                continue
            c = summary.sel(condition=condition, inject_layer=layer)
            x = np.arange(len(coefs)) + (k - 1) * 0.15
            acc = c.accuracy.values
            err = np.vstack([acc - c.lo.values, c.hi.values - acc])
            ax.errorbar(x, acc, yerr=err, fmt="o", color=colour, capsize=3, label=condition)
        ax.axhline(float(summary.chance), color="grey", lw=0.8, ls=":")
        labels = [f"{float(s):g}\n{strength_classification.expected_bin(float(s))}" for s in coefs]
        ax.set_xticks(np.arange(len(coefs)), labels)
        ax.set_xlabel("coefficient (unit vector × a) and expected bin")
        b = summary.balanced.sel(inject_layer=layer)
        parts = ", ".join(f"{c} {float(b.sel(condition=c)):.2f}" for c in shown)
        ax.set_title(f"layer {int(layer)}; balanced: {parts}", fontsize=8)
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("expected bin named")
    axes[0][0].legend(loc="upper left", fontsize=8)
    n = int(summary.n.sel(condition="concept").max())
    fig.suptitle(title(ds, f"strength classification, 4 bins, {n} trials per cell"), fontsize=10)
    fig.tight_layout()
    save(fig, args.out, name, ds)


for ds, name in per_model(args.run, "strength-classification", "strength_classification"):
    draw(ds, name)
