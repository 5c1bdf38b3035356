"""Figure: sentence localisation (Hahami et al., arXiv 2512.12411 v2, section 5.2) — the share of
injections whose largest digit logit names the injected sentence, by strength, for each layer: the
concept vector beside a random unit direction at the same strength (95% Wilson intervals), every
sentence steered once per draw; the dotted line is chance, 1/k.

    python analyses/sentence_localisation.py [--run RUN] [--out figures/]
"""

import matplotlib.pyplot as plt
import numpy as np
from _figure import SHIPPED, arguments, per_model, save, title

from mechintro.experiments import sentence_localisation

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "sentence-localisation.zarr"))


def draw(ds, name: str) -> None:
    summary = sentence_localisation.summarize(ds)
    print(sentence_localisation.format_summary(summary))
    layers = summary.inject_layer.values
    strengths = summary.strength.values
    fig, axes = plt.subplots(
        1, len(layers), figsize=(max(6.5, 4.2 * len(layers)), 3.8), sharey=True, squeeze=False
    )
    for ax, layer in zip(axes[0], layers, strict=True):
        for k, (condition, colour) in enumerate((("concept", "C0"), ("random", "C7"))):
            if condition not in summary.condition.values:
                continue
            c = summary.sel(condition=condition, inject_layer=layer)
            x = np.arange(len(strengths)) + (k - 0.5) * 0.18
            acc = c.accuracy.values
            err = np.vstack([acc - c.lo.values, c.hi.values - acc])
            ax.errorbar(x, acc, yerr=err, fmt="o", color=colour, capsize=3, label=condition)
        ax.axhline(float(summary.chance), color="grey", lw=0.8, ls=":")
        ax.set_xticks(np.arange(len(strengths)), [f"{float(s):g}" for s in strengths])
        ax.set_xlabel("strength (unit vector × a)")
        ax.set_title(f"layer {int(layer)}")
        ax.set_ylim(-0.02, 1.02)
    axes[0][0].set_ylabel("injected sentence named")
    axes[0][0].legend(loc="upper left", fontsize=8)
    n = int(summary.n.sel(condition="concept").max())
    k = round(1 / float(summary.chance))
    fig.suptitle(title(ds, f"sentence localisation, k = {k}, {n} injections per cell"), fontsize=10)
    fig.tight_layout()
    save(fig, args.out, name, ds)


for ds, name in per_model(args.run, "sentence-localisation", "sentence_localisation"):
    draw(ds, name)
