# %% [markdown]
# # Intentional control (Lindsey 2025, experiment 4): think vs don't think
#
# The model writes a sentence while told to think (or not) about a word; the residual stream on
# the sentence's tokens is compared with the word's concept vector, per layer, against 100
# unrelated control words. Loads the main job's `runs/demo-intentional-control.zarr` and
# `runs/demo-vectors.zarr` (`make demo`; or `MECHINTRO_RUN` / `MECHINTRO_VECTORS`). No model
# is needed.

# %%
import os

import mechintro as mi
from mechintro import analysis, plotting
from mechintro.vectors import load_vectors

ds = mi.open_run(os.environ.get("MECHINTRO_RUN", "../runs/demo-intentional-control.zarr"))
vectors = load_vectors(os.environ.get("MECHINTRO_VECTORS", "../runs/demo-vectors.zarr"))
al = analysis.alignment(ds, vectors)
summary = analysis.alignment_summary(al)
plotting.alignment_by_layer(summary)
# %%
summary[["cos_word", "baseline"]].to_dataframe().unstack("condition").round(4)

# %% [markdown]
# Per token, not averaged: Lindsey calls the representation "spiky". The per-trial means above
# hide that; here is one trial's cosine on each sentence token at the layer of the largest gap.

# %%
import numpy as np  # noqa: E402

layer = int(summary.gap.idxmax("layer")) if "gap" in summary else int(ds.layer[-1])
trial = 0
read = ds.read_mask.values[trial].astype(bool)
h = ds.resid.sel(layer=layer).isel(trial=trial).values[read].astype("float32")
v = vectors.sel(concept=str(ds.concept.values[trial]), layer=layer).values
print(
    f"layer {layer}, word {ds.concept.values[trial]!s}, instruction {ds.condition.values[trial]!s}"
)
np.round(h @ v / np.linalg.norm(h, axis=1) / np.linalg.norm(v), 3)
