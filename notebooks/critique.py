# %% [markdown]
# # The critique (Godet): steering noise, sweeps with control questions, localisation
#
# Loads a saved `sweep` run and a `localisation` run (defaults: the shipped SmolLM2 runs;
# `MECHINTRO_SWEEP` / `MECHINTRO_LOCALISATION`). If injection only adds noise, the introspection
# question's Yes−No shift should track the control questions' shift cell by cell.

# %%
import os

import numpy as np

import mechintro as mi
from mechintro import plotting
from mechintro.experiments import localisation, sweep

ds = mi.open_run(os.environ.get("MECHINTRO_SWEEP", "../analyses/data/smollm2-135m/sweep.zarr"))
# Godet's readout (logit " Yes" − logit " No", the default) and the four yes / no forms summed:
# on SmolLM2 his two tokens hold at most 0.004 of the next-token mass, so read the mass first.
godet = sweep.summarize(ds)
summary = sweep.summarize(ds, readout="four_forms")
for s in (godet, summary):
    print(
        s.attrs["readout"],
        "| introspection first in",
        s.attrs["top_rank_cells"],
        "cells (expected",
        s.attrs["top_rank_expected"],
        ")",
    )
print(sweep.format_summary(summary)[:2000])

# %%
plotting.sweep_heatmaps(summary)
# %%
ok = np.isfinite(summary.intro_shift.values) & np.isfinite(summary.control_shift.values)
corr = np.corrcoef(summary.intro_shift.values[ok], summary.control_shift.values[ok])[0, 1]
print(f"introspection vs control shift: r = {corr:.3f} over {int(ok.sum())} cells")

# %% [markdown]
# Localisation: which sentence / half / layer depth carried the injection. Each trial draws its
# own sentences, concept and target, so noise points to every option equally only on average;
# balanced accuracy and the uninjected trials measure the model's answer bias.

# %%
loc = mi.open_run(
    os.environ.get("MECHINTRO_LOCALISATION", "../analyses/data/smollm2-135m/localisation.zarr")
)
print(localisation.format_summary(localisation.summarize(loc)))
