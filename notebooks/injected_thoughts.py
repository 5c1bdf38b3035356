# %% [markdown]
# # Injected thoughts (Lindsey 2025, experiment 1) — sampled answers, graded
#
# Loads a saved `injected-thoughts` run (default: the small SmolLM2 run shipped in
# `analyses/data/`; set `MECHINTRO_RUN` for another) and grades it with the offline grader
# (`docs/grading.md`); a run graded by `mechintro grade` can use `source="judge"` instead.

# %%
import os

import numpy as np

import mechintro as mi
from mechintro import plotting
from mechintro.experiments import injected_thoughts

ds = mi.open_run(
    os.environ.get("MECHINTRO_RUN", "../analyses/data/smollm2-135m/injected-thoughts.zarr")
)
print(ds.attrs["model"], dict(ds.sizes))

# %%
summary = injected_thoughts.summarize(ds)
print(injected_thoughts.format_summary(summary))

# %%
plotting.injected_thoughts_by_layer(summary)
# %%
plotting.injected_thoughts_by_strength(summary)
# %% [markdown]
# Every response with its grades — read them: the grader's blind spots are listed in
# `docs/grading.md`.

# %%
grades = injected_thoughts.grades(ds)
table = ds[["concept", "condition", "strength", "inject_layer"]].assign(
    response=ds.response, **{k: grades[k] for k in ("coherence", "affirmative", "success")}
)
table.to_dataframe()[
    [
        "condition",
        "concept",
        "inject_layer",
        "strength",
        "coherence",
        "affirmative",
        "success",
        "response",
    ]
].head(20)

# %% [markdown]
# One trial read as a transcript: the prompt with the injected window highlighted, the whole
# response, and each grader verdict with the rule that decided it.

# %%
mi.show(ds, int(np.flatnonzero(ds.condition.values == "injected")[0]))
