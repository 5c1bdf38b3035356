# %% [markdown]
# # Injected thoughts, read as next-token probabilities — and what the residual stream shows
#
# Loads the main job's `detection-logits` run (`make demo` writes `runs/demo.zarr` with every
# residual stream, and `runs/demo-vectors.zarr`; or set `MECHINTRO_RUN` / `MECHINTRO_VECTORS`)
# and analyses it: the yes/no shift per cell, where the injection sits in the residual stream,
# an **anomaly direction** separating trials whose answer moved toward "yes" from the rest
# (scored on held-out concepts, before and after projecting the concepts out), its cosines with
# concept vectors, and the **logit lens** (this part loads the run's model: norm and unembedding
# only).

# %%
import os

import numpy as np

import mechintro as mi
from mechintro import analysis, plotting, stimuli
from mechintro.experiments import detection_logits
from mechintro.readouts import yes_no
from mechintro.vectors import load_vectors

ds = mi.open_run(os.environ.get("MECHINTRO_RUN", "../runs/demo.zarr"))
vectors = load_vectors(os.environ.get("MECHINTRO_VECTORS", "../runs/demo-vectors.zarr"))
ds

# %%
summary = detection_logits.summarize(ds)
print(detection_logits.format_summary(summary))
plotting.detection_shift(summary)
# %% [markdown]
# Projection of the last prompt token's residual stream onto each trial's injected vector, per
# layer: the injection appears at its layer and decays (or not) through later blocks.

# %%
inj = ds.where(ds.condition == "injected", drop=True)
last = inj.resid.isel(pos=-1).astype("float32")
unit = inj.injected_vector / np.linalg.norm(inj.injected_vector, axis=-1, keepdims=True)
projection = (last * unit).sum("d_model").groupby(inj.inject_layer).mean("trial").compute()
projection.to_pandas().round(1)

# %% [markdown]
# ## Anomaly direction
#
# "Detected" here is the logit-mode rule: an injected trial whose Yes−No log-odds exceed the 95th
# percentile of the controls'. The AUC is out of fold with folds grouped by concept; the interval
# resamples concepts. `removal="span"` projects every injected vector out of every trial.

# %%
labels = analysis.detection_labels(ds)
print(
    labels.attrs["rule"], {k: int((labels == k).sum()) for k in ("detected", "missed", "control")}
)
features = analysis.window_features(ds)  # read once, reused below
result = analysis.anomaly_directions(ds, labels, features=features)
plotting.anomaly_auc(result)
# %%
result.auc.sel(estimator="probe").to_pandas().T.round(3)

# %% [markdown]
# Against missed injections only (both groups were injected):

# %%
missed = analysis.anomaly_directions(ds, labels, negatives="missed", features=features)
missed.auc.sel(estimator="probe").to_pandas().T.round(3)

# %%
concepts = sorted({str(c) for c in ds.concept.values if str(c)})
cosines = analysis.anomaly_cosines(result, vectors, words=[*stimuli.ANOMALY_WORDS, *concepts])
plotting.anomaly_cosine_matrix(cosines)
# %% [markdown]
# ## Logit lens
#
# Final norm and unembedding applied to every layer's residual at the answer position. At the
# last layer it reproduces the model's own log-probabilities (to float16 precision).

# %%
model = mi.load_model(ds.attrs["model"])
lens = analysis.logit_lens(ds, model)
print(
    "last layer vs the model's own log-odds, max |difference|:",
    float(abs(lens.logit_diff.isel(layer=-1) - yes_no(ds).logit_diff).max()),
)
groups = ds.inject_layer.astype(str).where(ds.condition != "control", "control")
plotting.lens_curves(analysis.lens_summary(lens, groups))
