# %% [markdown]
# # Looking Inward: do models predict their own behaviour better than others do?
#
# Binder et al. (2024). Each model answers object-level prompts and, in a fresh context,
# hypothetical questions about properties of those answers. We score predictions against the mode
# baseline, compare predictors against targets, and — after LoRA training — ask whether M1 predicts
# itself better than M2 trained on M1's behaviour. Loads the runs of `scripts/looking_inward.py`
# (default: the copies shipped in `analyses/data/looking-inward`; `MECHINTRO_ROOT` for another
# folder).

# %%
import os
from pathlib import Path

import mechintro as mi
from mechintro import plotting
from mechintro.looking_inward import score as sp

root = Path(os.environ.get("MECHINTRO_ROOT", "../analyses/data/looking-inward"))
names = sorted(d.name for d in root.iterdir() if (d / "base.zarr").exists())
base = {n: mi.open_run(root / n / "base.zarr") for n in names}
trained = {
    n: mi.open_run(root / n / "self.zarr") for n in names if (root / n / "self.zarr").exists()
}
names

# %% [markdown]
# Accuracy of each model predicting itself, per property, against the mode baseline (★):
#
# Scoring follows the authors' analysis code (`rules="authors"`, the default): the whole cleaned
# answer must equal the property, and every pair counts. `sp.score(ds, rules="lenient")` gives
# mechintro's earlier, lenient reading. The shipped runs were made with the authors' prompts
# and an empty system message (2026-11-30; docs/looking-inward.md).

# %%
summaries = {n: sp.accuracy(sp.score(ds)) for n, ds in base.items()}
summaries.update({f"{n} self-trained": sp.accuracy(sp.score(ds)) for n, ds in trained.items()})
{
    label: {
        k: round(float(s.attrs[k]), 3)
        for k in ("test_accuracy", "test_lo", "test_hi", "test_mode_baseline")
    }
    for label, s in summaries.items()
}

# %%
plotting.self_prediction_accuracy(summaries)
# %% [markdown]
# Untrained predictor × target accuracy on the held-out tasks:

# %%
matrix = sp.cross_matrix(base)
plotting.self_cross_matrix(matrix)
# %% [markdown]
# After training: M1 predicting itself vs M2 trained on M1's behaviour, on the same held-out pairs.

# %%
runs = sp.study(root)
results = {
    f"target {m1}\nM2 = {m2}": sp.self_vs_cross(mi.open_run(own), mi.open_run(cross))
    for m1, m2, own, cross in runs["self_vs_cross"]
}
plotting.self_vs_cross_bars(results) if results else "no cross-trained runs"
# %%
sp.score(next(iter(base.values()))).to_dataframe().head(12)
