# %% [markdown]
# # Latent introspection (vgel): steering only turn 1's KV cache, reading P(" yes")
#
# Loads a saved `latent-introspection` run (default: the shipped SmolLM2 run; `MECHINTRO_RUN`):
# the introspection question under each prompt variant (none / info / Lorem ipsum / poetic /
# wrong location) and the control questions, unsteered and steered.

# %%
import os

import mechintro as mi
from mechintro import plotting
from mechintro.experiments import latent_introspection

ds = mi.open_run(
    os.environ.get("MECHINTRO_RUN", "../analyses/data/smollm2-135m/latent-introspection.zarr")
)
summary = latent_introspection.summarize(ds)
print(latent_introspection.format_summary(summary))

# %%
plotting.latent_shifts(summary)
