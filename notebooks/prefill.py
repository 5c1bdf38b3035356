# %% [markdown]
# # Detecting prefilled outputs (Lindsey 2025, experiment 3)
#
# A word is prefilled as the model's answer; does the model apologise for it, and does injecting
# the word's concept vector *before* the prefill (retroactively "intending" it) reduce apologies?
# Loads a saved `prefill` run (default: the small shipped SmolLM2 run; `MECHINTRO_RUN`).

# %%
import os

import mechintro as mi
from mechintro import plotting
from mechintro.experiments import prefill

ds = mi.open_run(os.environ.get("MECHINTRO_RUN", "../analyses/data/smollm2-135m/prefill.zarr"))
summary = prefill.summarize(ds)
print(prefill.format_summary(summary))

# %%
plotting.prefill_apology(summary)
# %%
ds[["concept", "condition", "strength", "inject_layer", "response"]].to_dataframe().head(12)
