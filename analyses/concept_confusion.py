"""Figure: concept confusion (Pearson-Vogel et al., arXiv 2602.20031) — left, the confusion matrix
(injected × recovered, probabilities averaged over the option orders) at the final layer for the
concept vectors; middle, the mutual information between injected and recovered concept (argmax
decisions, Miller-Madow corrected) at each logit-lens layer for the concept vector, the
norm-matched random direction and the shuffled-coordinate vector, with the permutation null's
mean dashed; right, balanced accuracy with 95% Wilson intervals (chance dotted). One line per
info document. Needs the run's model for the lens layers (its final norm and unembedding): SmolLM2's
runs show every lens layer; the other models' shipped runs (``concept_confusion_{model}.png``) the
final layer only, from the stored answer log-probabilities, so that ``make figures`` loads no Qwen
model.

    python analyses/concept_confusion.py [--run RUN] [--out figures/]
"""

import functools

import matplotlib.pyplot as plt
import numpy as np
from _figure import SHIPPED, arguments, per_model, save, title

from mechintro.experiments import concept_confusion
from mechintro.models import load_model

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "concept-confusion.zarr"))


@functools.cache
def _smollm2():
    """Loaded once for SmolLM2's runs (the shipped run and its info-document variant)."""
    return load_model("smollm2-135m")


def draw(ds, name: str) -> None:
    # the lens needs the model's final norm and unembedding: SmolLM2 is always installed; the
    # other models' figures show the final layer, read from the stored answer log-probabilities
    model = _smollm2() if ds.attrs["model"] == "smollm2-135m" else None
    summary = concept_confusion.summarize(ds, model=model, n_perm=200)
    print(concept_confusion.format_summary(summary))  # every lens layer
    s = summary.isel(intervention=0, strength=-1)
    infos = [str(x) for x in s["info"].values]
    layers = s.lens_layer.values
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), gridspec_kw={"width_ratios": [1.1, 1, 1]})
    shown = "introspect" if "introspect" in infos else infos[0]
    m = s.confusion.sel(condition="concept", info=shown).isel(lens_layer=-1).values
    m = m / m.sum(1, keepdims=True)
    im = axes[0].imshow(m, cmap="viridis", vmin=0, vmax=max(0.2, float(m.max())))
    names = [str(x) for x in s.injected.values]
    axes[0].set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=7)
    axes[0].set_yticks(range(len(names)), names, fontsize=7)
    axes[0].set_xlabel("recovered (share of the options' probability)")
    axes[0].set_ylabel("injected")
    axes[0].set_title(f"info {shown}, layer {int(layers[-1])} (final)", fontsize=9)
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    styles = {"concept": "C0", "random": "C7", "shuffled": "C1"}
    marks = ["o", "s", "^", "D"]
    for j, info in enumerate(infos):
        for q, cond in enumerate(s.condition.values):
            c = s.sel(info=info, condition=cond)
            label = f"{cond}, info {info}"
            axes[1].plot(layers, c.mi_mm, marker=marks[j % 4], color=styles[str(cond)], label=label)
            if cond == "concept":
                axes[1].plot(
                    layers, c.mi_null, ls="--", marker="_", ms=10, color=styles[str(cond)], lw=0.8
                )
            acc = c.accuracy.values
            err = np.vstack([acc - c.lo.values, c.hi.values - acc])
            x = layers + 0.25 * j + 0.08 * (q - 1)
            axes[2].errorbar(x, acc, yerr=err, fmt=marks[j % 4], capsize=2, color=styles[str(cond)])
    axes[1].axhline(0, color="grey", lw=0.6)
    axes[1].set_xlabel("logit-lens layer")
    axes[1].set_ylabel("MI, bits (Miller-Madow); dashed: null")
    axes[1].legend(fontsize=6)
    axes[2].axhline(float(summary.chance), color="grey", lw=0.8, ls=":")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_xlabel("logit-lens layer")
    for ax in axes[1:]:  # whole layers, also where the run kept one (the final layer)
        ax.set_xticks(layers, [str(int(v)) for v in layers])
    axes[2].set_ylabel("balanced accuracy")
    n = int(summary.attrs["orderings"])
    strength = float(s.strength)
    fig.suptitle(
        title(ds, f"concept confusion, {len(names)} options × {n} orders, strength {strength:g}"),
        fontsize=10,
    )
    fig.tight_layout()
    save(fig, args.out, name, ds)


for ds, name in per_model(args.run, "concept-confusion", "concept_confusion"):
    draw(ds, name)
