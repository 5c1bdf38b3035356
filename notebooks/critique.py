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
summary = sweep.summarize(ds)
print(sweep.format_summary(summary)[:2000])

# %%
plotting.sweep_heatmaps(summary)
# %%
ok = np.isfinite(summary.intro_shift.values) & np.isfinite(summary.control_shift.values)
corr = np.corrcoef(summary.intro_shift.values[ok], summary.control_shift.values[ok])[0, 1]
print(f"introspection vs control shift: r = {corr:.3f} over {int(ok.sum())} cells")

# %% [markdown]
# Localisation: which sentence / half / layer depth carried the injection — the same vector and
# strength in every option, so noise alone cannot point to the right one.

# %%
loc = mi.open_run(
    os.environ.get("MECHINTRO_LOCALISATION", "../analyses/data/smollm2-135m/localisation.zarr")
)
print(localisation.format_summary(localisation.summarize(loc)))
