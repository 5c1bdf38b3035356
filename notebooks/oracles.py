# %% [markdown]
# # Activation Oracles: does an external reader find the injected concept that self-report misses?
#
# Karvonen et al. (2025): a model finetuned to answer questions about activations fed into its
# residual stream. Here the smoke-scale SmolLM2-135M oracle of `docs/oracles.md` (480 examples,
# 60 steps), its untrained baselines, and a linear probe read the same activations of Lindsey's
# injected-thoughts trials (injection at 2/3 depth; SmolLM2's readers at 3/4 depth, last prompt
# token, beside the trivial "differs from the control activations" detector), next to the model's
# own self-report; the same for Qwen2.5-Coder-0.5B (its comparison predates that design). Loads
# the shipped results in `analyses/data/oracles/{model}`
# (`MECHINTRO_ROOT` for another folder holding such model folders, written by
# `scripts/oracle_compare.py` and `mechintro oracle eval`).

# %%
import json
import os
from pathlib import Path

import mechintro as mi
from mechintro import plotting
from mechintro.tables import table as markdown_table

base = Path(os.environ.get("MECHINTRO_ROOT", "../analyses/data/oracles"))
models = sorted(d.name for d in base.glob("*") if (d / "table.json").exists())
models


# %% [markdown]
# Injected vs control trials, per reader: detection and its control false-positive rate; naming
# the injected concept and the control rate of naming any tested concept (Wilson 95 %).


# %%
def cell(v):
    return f"{v['k']}/{v['n']} = {v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}]" if v else "—"


keys = ("detect_injected", "detect_control_fpr", "identify_injected", "names_a_concept_control")
for model in models:
    comparison = json.loads((base / model / "table.json").read_text())
    meta = comparison["meta"]
    print(
        f"{model}: layer {meta['layer']}, strengths {meta['strengths']}, "
        f"{meta['n_injected']} injected / {meta['n_control']} control trials"
    )
    print(
        markdown_table(
            [
                {
                    "reader": r["reader"],
                    **{k: cell(r.get(k)) for k in keys},
                    "AUC of P(yes)": f"{r['p_yes_auc']:.3f}" if "p_yes_auc" in r else "—",
                }
                for r in comparison["rows"]
            ]
        )
    )

# %% [markdown]
# The oracle's own evaluation: yes/no accuracy on held-out task families and held-out concepts,
# against the untrained model, the oracle fed shuffled activations, a linear probe and the
# majority class.

# %%
for model in models:
    evaluation = json.loads((base / model / "eval.json").read_text())
    print(model)
    print(
        markdown_table(
            [
                {
                    "set": e["set"],
                    "reader": e["reader"],
                    "correct": f"{e['correct']}/{e['n']}",
                    "accuracy": f"{e['accuracy']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]",
                }
                for e in evaluation
            ]
        )
    )

# %% [markdown]
# One figure per model; in a loop a figure is not the cell's value, so `display` shows it.

# %%
from IPython.display import display  # noqa: E402

for model in models:
    display(
        plotting.oracle_comparison(
            json.loads((base / model / "table.json").read_text()),
            json.loads((base / model / "eval.json").read_text()),
        )
    )

# %%
root = base / ("smollm2-135m" if "smollm2-135m" in models else models[0])  # one model's details
training = json.loads((root / "training.json").read_text())

# %% [markdown]
# One asked trial: the oracle's answer is a run in the same store as every experiment, its trial
# coordinates the source trial's own.

# %%
answers = mi.open_run(root / "oracle.zarr")
config = json.loads(answers.attrs["config"])
first = answers.isel(trial=0)
{
    "oracle": answers.attrs["model"],
    "question": config["question"],
    "layer": config["layer"],
    "positions": config["positions"],
    "source trial": int(first.source_trial),
    "condition": str(first.condition.values),
    "concept": str(first.concept.values),
    "strength": float(first.strength),
    "answer": str(first.response.values),
}

# %% [markdown]
# What the oracle cost to train (its `training.json`; no adapter weights are shipped):

# %%
{k: v for k, v in training.items() if not isinstance(v, (list, dict))}
