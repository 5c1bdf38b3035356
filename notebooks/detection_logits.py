# %% [markdown]
# # Injected thoughts, read out as next-token probabilities
#
# Loads a saved `detection-logits` run (made by `make demo`, or set `MECHINTRO_RUN`) and
# analyses it without the model: the per-cell yes/no shift against the no-injection control,
# and where in the residual stream the injected vector sits.

# %%
import os

import numpy as np

import mechintro as mi
from mechintro.experiments import detection_logits
from mechintro.plotting import detection_shift

ds = mi.open_run(os.environ.get("MECHINTRO_RUN", "../runs/demo.zarr"))
ds

# %%
summary = detection_logits.summarize(ds)
print(detection_logits.format_summary(summary))
detection_shift(summary);

# %% [markdown]
# Projection of the residual stream at the last prompt token onto each trial's injected vector,
# per layer: the injection appears at its layer and decays (or not) through later blocks.

# %%
inj = ds.where(ds.condition == "injected", drop=True)
last = inj.resid.isel(pos=-1).astype("float32")
unit = inj.injected_vector / np.linalg.norm(inj.injected_vector, axis=-1, keepdims=True)
projection = (last * unit).sum("d_model").groupby(inj.inject_layer).mean("trial").compute()
projection.to_pandas().round(1)
