"""Figure: Sridharan's YES-bias test (agastyasridharan/introspection) — left, per (layer,
strength) cell, the YES − NO logit shift the injection causes on the detection question and on
the factual NO questions (mean over concepts) and their difference, the introspection score
(95% bootstrap interval over concepts), for the concept vectors and a random direction of the same
norm; right, the mean logit difference on the named-concept prompt with the named concept's
vector (congruent), its least-similar partners' (incongruent), a random direction and nothing.

    python analyses/mismatch.py [--run RUN] [--out figures/]
"""

import matplotlib.pyplot as plt
import numpy as np
from _figure import SHIPPED, arguments, per_model, save, title

from mechintro.experiments import mismatch

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "mismatch.zarr"))


def draw(ds, name: str) -> None:
    s = mismatch.summarize(ds)
    print(mismatch.format_summary(s))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    cells = [(int(lay), float(st)) for lay in s.inject_layer.values for st in s.strength.values]
    if "score_part_score" in s:
        conds = [str(c) for c in s.condition.values]
        width = 0.8 / (3 * len(conds))
        for k, c in enumerate(conds):
            for j, (var, label) in enumerate(
                (
                    ("det_shift", "detection shift"),
                    ("fact_shift", "factual shift"),
                    ("score", "score"),
                )
            ):
                x = np.arange(len(cells)) + (3 * k + j - (3 * len(conds) - 1) / 2) * width
                y = [float(s[f"score_part_{var}"].sel(condition=c, inject_layer=L, strength=t))
                     for L, t in cells]  # fmt: skip
                left.bar(x, y, width, label=f"{c}: {label}", alpha=1.0 if k == 0 else 0.5)
                if var == "score":
                    lo = [float(s.score_part_score_lo.sel(condition=c, inject_layer=L, strength=t))
                          for L, t in cells]  # fmt: skip
                    hi = [float(s.score_part_score_hi.sel(condition=c, inject_layer=L, strength=t))
                          for L, t in cells]  # fmt: skip
                    left.errorbar(x, y, yerr=[np.subtract(y, lo), np.subtract(hi, y)], fmt="none",
                                  color="k", capsize=2)  # fmt: skip
        left.axhline(0, color="grey", lw=0.8)
        left.set_xticks(np.arange(len(cells)), [f"layer {L}\nstrength {t:g}" for L, t in cells])
        left.set_ylabel("logit(YES) − logit(NO), injected − uninjected")
        left.set_title("introspection score", fontsize=9)
        left.legend(fontsize=6)
    if "mismatch_part_gap" in s:
        a = s.attrs
        names = ("congruent", "incongruent", "random", "uninjected")
        rnd = float(s.mismatch_part_random_named.mean())
        right.bar(names, [a["congruent"], a["incongruent"], rnd, a["baseline"]],
                  color=["C0", "C1", "C7", "C2"])  # fmt: skip
        right.axhline(0, color="grey", lw=0.8)
        right.set_ylabel("logit(YES) − logit(NO)")
        right.set_title(
            f"named-concept prompt: gap {a['gap']:+.2f} (p = {a['gap_p']:.2g})", fontsize=9
        )
    fig.suptitle(
        title(ds, "YES-bias test: detection vs factual, congruent vs incongruent"), fontsize=10
    )
    fig.tight_layout()
    save(fig, args.out, name, ds)


for ds, name in per_model(args.run, "mismatch", "mismatch"):
    draw(ds, name)
