# %% [markdown]
# # Thoughts vs text (Lindsey 2025, experiment 2)
#
# With a concept injected on a sentence, can the model both name the "thought" (the injected
# word, among ten) and repeat the sentence it read? Loads a saved `thoughts-vs-text` run (default:
# the small shipped SmolLM2 run; `MECHINTRO_RUN` for another).

# %%
import os

import mechintro as mi
from mechintro import plotting
from mechintro.experiments import thoughts_vs_text

ds = mi.open_run(
    os.environ.get("MECHINTRO_RUN", "../analyses/data/smollm2-135m/thoughts-vs-text.zarr")
)
summary = thoughts_vs_text.summarize(ds)
print(thoughts_vs_text.format_summary(summary))

# %%
plotting.thoughts_vs_text(
    summary,
    chance=summary.attrs["chance_word"],
    baseline=(summary.attrs["baseline_word"], summary.attrs["baseline_repeat"]),
)
# %%
ds[["concept", "condition", "strength", "inject_layer", "response"]].to_dataframe().head(12)
