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
# %% [markdown]
# ## Your own trace on the run's model
#
# The README's recipe (`run_with_cache` / `run_with_hooks` in nnsight terms) on this run's first
# injected prompt: cache the residual stream at two blocks and add the trial's concept vector
# (times its strength) at one, here on every position (the run added it on its window only);
# the cosine of the last token's residual with the vector, before and where it was added.

# %%
import nnsight  # noqa: E402
import torch  # noqa: E402

from mechintro.arch import get_module  # noqa: E402

first = int(np.flatnonzero(ds.condition.values == "injected")[0])
steer = int(ds.inject_layer.values[first])
read = (max(steer - 1, 0), steer)
concept = str(ds.concept.values[first])
vector = torch.as_tensor(vectors.sel(concept=concept, layer=steer).values, dtype=model.dtype)
keep = ds.attention_mask.values[first].astype(bool)
ids = torch.as_tensor(ds.input_ids.values[first][keep], dtype=torch.long)[None]

layers = get_module(model.lm, model.arch.layers)
unembed = get_module(model.lm, model.arch.unembed)
cache = {}
with torch.no_grad():
    with model.lm.trace(ids):
        for i in sorted({*read, steer}):
            out = layers[i].output
            h = out[0] if isinstance(out, tuple) else out
            if i == steer:
                h += float(ds.strength.values[first]) * vector
            if i in read:
                cache[i] = nnsight.save(h.clone())
        logits = nnsight.save(unembed.output[:, -1])
{
    f"layer {i}": round(float(torch.cosine_similarity(cache[i][0, -1], vector, dim=0)), 3)
    for i in read
}
