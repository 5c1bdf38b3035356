# %% [markdown]
# # Activation Oracles: does an external reader find the injected concept that self-report misses?
#
# Karvonen et al. (2025): a model finetuned to answer questions about activations fed into its
# residual stream. Here the smoke-scale SmolLM2-135M oracle of `docs/oracles.md` (480 examples,
# 60 steps), its untrained baselines, and a linear probe read the same activations of Lindsey's
# injected-thoughts trials (layer 20, last prompt token), next to the model's own self-report.
# Loads the shipped results in `analyses/data/oracles/smollm2-135m` (`MECHINTRO_ROOT` for
# another folder written by `scripts/oracle_compare.py` and `mechintro oracle eval`).

# %%
import json
import os
from pathlib import Path

import mechintro as mi
from mechintro import plotting
from mechintro.tables import table as markdown_table

root = Path(os.environ.get("MECHINTRO_ROOT", "../analyses/data/oracles/smollm2-135m"))
comparison = json.loads((root / "table.json").read_text())
evaluation = json.loads((root / "eval.json").read_text())
training = json.loads((root / "training.json").read_text())
{
    k: comparison["meta"][k]
    for k in ("model", "layer", "strengths", "n_injected", "n_control", "question")
}


# %% [markdown]
# Injected vs control trials, per reader: detection and its control false-positive rate; naming
# the injected concept and the control rate of naming any tested concept (Wilson 95 %).


# %%
def cell(v):
    return f"{v['k']}/{v['n']} = {v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}]" if v else "—"


keys = ("detect_injected", "detect_control_fpr", "identify_injected", "names_a_concept_control")
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

# %%
fig = plotting.oracle_comparison(comparison, evaluation)

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
