# %% [markdown]
# # A positive control: SmolLM2 trained to notice injected thoughts
#
# Fonseca Rivera (2025)'s steering-awareness recipe (code david-aisi/steering-awareness @ 4f0dab39)
# at CPU scale (`docs/positive-control.md`): SmolLM2-135M-Instruct LoRA-trained to report CAA
# vectors injected at the last prompt token at 2/3 depth, evaluated on Lindsey's 50 concept words,
# none of which appears in any training text. Loads the small results shipped in
# `analyses/data/positive-control` (`MECHINTRO_ROOT` for another folder written by
# `scripts/positive_control_train.py`).

# %%
import json
import os
from pathlib import Path

from mechintro import plotting
from mechintro.tables import table as markdown_table

base = Path(os.environ.get("MECHINTRO_ROOT", "../analyses/data/positive-control"))
evaluation = json.loads((base / "eval_main.json").read_text())
settings = json.loads((base / "settings.json").read_text())
scaling = (
    json.loads((base / "scaling.json").read_text()) if (base / "scaling.json").exists() else []
)
print(
    f"{settings['model']}: layer {settings['layer']} of {settings['n_layers']}, "
    f"{evaluation['examples']} examples, {evaluation['steps']} steps, families "
    f"{evaluation['families']}"
)
print("strength → injected norm in residual norms:", settings["eval_strength_ratios"])

# %% [markdown]
# Untrained vs trained on the same trials (their question, greedy): detection, identification
# (detected and the concept named), the share of answers in a trained format; the controls'
# false-positive rate. Intervals: 95 %, clustered by concept.


# %%
def cell(v):
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


print(
    markdown_table(
        [
            {
                "model": r["model"],
                "group": r["group"],
                "n": r["n"],
                "distinct answers": r["distinct"],
                "detected": cell(r["detected"]),
                "identified": cell(r["identified"]),
                "in format": cell(r["in_format"]),
            }
            for r in evaluation["summary"]
            if r["strength"] is None or r["group"].startswith("control")
        ]
    )
)
cap = evaluation["capability"]
print(
    f"held-out text log-likelihood per token: untrained {cap['untrained_loglik_per_token']}, "
    f"trained {cap['trained_loglik_per_token']}"
)

# %% [markdown]
# A few of the trained model's answers on held-out concepts at the strongest injection.

# %%
for r in [t for t in evaluation["trials"] if t["model"] == "trained" and t["group"] == "held-out"][
    4::25
]:
    print(f"{r['concept']:>14} ×{r['strength']:g}: {r['response']!r}")

# %% [markdown]
# Detection and identification by strength, and the scaling curve.

# %%
plotting.positive_control(evaluation, scaling, settings)

# %% [markdown]
# Net detection: held-out claims minus the sampled controls' claims, the held-out side's interval
# clustered by concept (MOVER). "sampled": the held-out trials sampled as the controls are (like
# with like); "greedy": the greedy held-out trials at the same strengths against the same
# sampled controls. A positive control needs the interval above 0.

# %%
for label, nets in evaluation.get("nets", {}).items():
    print(label, {k: v for k, v in nets.items() if not k.endswith("strengths")})

# %% [markdown]
# Depth: greedy held-out detection with the vectors made and injected at other layers (the same
# injected norm in residual norms), untrained vs trained.

# %%
for r in evaluation["summary"]:
    if r["group"].startswith("layer-") and r["strength"] is None:
        print(f"{r['model']:>9} {r['group']}: detected {cell(r['detected'])}")

# %% [markdown]
# The sensitivity table (each instrument on the untrained and the trained model, the same
# trials), if `scripts/positive_control_instruments.py` has been run.

# %%
if (base / "sensitivity.json").exists():
    for r in json.loads((base / "sensitivity.json").read_text()):
        print(
            f"{r['instrument']} | {r['readout']} | {cell(r['untrained'])} → "
            f"{cell(r['trained'])} | {r['sees']}"
        )

# %% [markdown]
# Seen vs unseen: the same strengths on 20 training concepts (injected as positives in training)
# beside the 50 held-out ones. Their paper reports the gap; here it says whether what the model
# learned is tied to the training concepts' vectors.

# %%
for r in evaluation["summary"]:
    if r["strength"] is None and r["group"] in (
        "held-out",
        "seen",
        "held-out-sampled",
        "seen-sampled",
    ):
        print(
            f"{r['model']:>9} {r['group']:>16}: detected {cell(r['detected'])}, "
            f"identified {cell(r['identified'])}"
        )

# %% [markdown]
# Why Lindsey's injected-thoughts protocol misses the trained detection: the trained protocol's
# question, vector and injection window swapped for Lindsey's one at a time
# (`scripts/positive_control_why.py`), greedy, 50 held-out concepts, the same injected norm.

# %%
if (base / "why.json").exists():
    why = json.loads((base / "why.json").read_text())
    for r in why["summary"]:
        print(
            f"{r['model']:>9} | {r['condition']:<22} | detected {cell(r['detected'])} | "
            f"in format {r['in_format']:.2f} | control: {r['control_response'][:40]!r}"
        )

# %% [markdown]
# Their out-of-distribution suites (`scripts/positive_control_ood.py`): each suite's entries
# injected as the held-out words are, greedy, untrained vs trained.


# %%
def ood_rows(folder):
    ood = json.loads((folder / "ood.json").read_text())
    for r in ood["summary"]:
        if r["strength"] is None and not r["group"].endswith("-untrained-entries"):
            print(
                f"{r['model']:>9} {r['group'][4:]:>9}: detected {cell(r['detected'])}, "
                f"identified {cell(r['identified'])}"
            )


if (base / "ood.json").exists():
    ood_rows(base)

# %% [markdown]
# Every other model trained with the same recipe (its own folder beside SmolLM2's, e.g.
# Qwen2.5-Coder-0.5B): held-out net detection, identification and the suites.

# %%
for folder in sorted(p for p in base.iterdir() if (p / "settings.json").exists()):
    if json.loads((folder / "settings.json").read_text())["model"] == settings["model"]:
        continue  # SmolLM2's earlier runs and its replication
    other = json.loads((folder / "eval_main.json").read_text())
    print(folder.name, {m: n.get("net_sampled") for m, n in other.get("nets", {}).items()})
    for r in other["summary"]:
        if r["strength"] is None and r["group"] in ("held-out-sampled", "seen-sampled"):
            print(f"  {r['model']:>9} {r['group']}: identified {cell(r['identified'])}")
    if (folder / "ood.json").exists():
        ood_rows(folder)
