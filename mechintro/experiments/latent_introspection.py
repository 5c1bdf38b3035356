"""``latent-introspection``: vgel's KV-cache-only protocol with its controls (PROTOCOL.md §3).

Turn 1 (an empty system message, then the user's intro paragraph, an optional info document and
the suffix, and the preset assistant reply ``{ }``) is steered at every layer of a range; turn 2
(the question, then the assistant prefix "The answer is") is not. Because attention is causal,
steering turn 1's tokens in one pass equals vgel's steer-fill-cache-unsteer procedure (tested).
Read: P(" yes") and P(" no") after "The answer is", steered vs unsteered.

Conditions (``variants``): the info document — ``none``, ``introspect`` (the janus paragraph and
Lindsey's abstract), ``lorem`` (length-matched Lorem ipsum), ``poetic`` — and
``introspect_inaccurate`` (the info document with the false "injected between brackets"
location). The 34 control questions (groups no / no_confusing / yes / ambiguous) are asked in the
``control_context`` variant with the same steering. Every question also runs unsteered once.
Vectors: PCA-center (repeng's method, unit norm per layer; vgel) or Lindsey's (``vector_method``).

Differences from the code: the PCA-center suffix set is mechintro's 20 instead of repeng's 582
truncated outputs; default strength 20 and the middle third of the layers follow vgel's
Qwen-32B preset, which the small models do not share a scale with (sweep ``strengths``).

Model swap (``swap_model``, the code's "em-ft" condition): a second model of the same
architecture and tokenizer (e.g. a finetune) reads turn 1 and fills the KV cache, unsteered; the
first model reads turn 2 with that cache and answers (condition ``swapped``). It runs locally in
plain transformers (:func:`mechintro.engine.swap_forward`). None of the offline models share an
architecture, so it needs a Hub or local finetune.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments._common import check_config, mean_ci, require_experiment, table
from mechintro.models import DEFAULT_MODEL, Model
from mechintro.prompts import message_window, render_chat, tokenize
from mechintro.runner import Answers, Shard, Trial, execute
from mechintro.vectors import (
    check_vectors_match,
    concept_vectors,
    pca_center_vectors,
    resolve_layers,
    unit_vector,
)

NAME = "latent-introspection"
Variant = Literal["none", "introspect", "lorem", "poetic", "introspect_inaccurate"]
INFO = {"none": None, "introspect": "INFO_INTROSPECT", "lorem": "INFO_LOREM", "poetic": "INFO_POETIC", "introspect_inaccurate": "INFO_INTROSPECT"}
YES_NO_SPACE = Answers(forms={"yes": (" yes",), "no": (" no",)})
CONTROL_GROUPS = {"no": "CONTROL_QUESTIONS_NO", "no_confusing": "CONTROL_QUESTIONS_NO_CONFUSING",
                  "yes": "CONTROL_QUESTIONS_YES", "ambiguous": "CONTROL_QUESTIONS_AMBIGUOUS"}
CLIP = 1e-7


@dataclass(frozen=True, kw_only=True)
class LatentIntrospectionConfig:
    """Configuration of a ``latent-introspection`` run (defaults: PROTOCOL.md §3.2–3.4)."""

    model: str = DEFAULT_MODEL
    concepts: tuple[str, ...] = ("cats", "bread", "love", "fear", "death", "truth", "creativity", "programming", "music")
    vector_method: Literal["pca_center", "lindsey"] = "pca_center"
    layer_start: str | int | float = "0.33"
    layer_end: str | int | float = "0.67"  # exclusive; n_layers or 1.0 for "to the last layer"
    strengths: tuple[float, ...] = (20.0,)
    variants: tuple[Variant, ...] = ("none", "introspect", "lorem", "poetic", "introspect_inaccurate")
    control_questions: bool = True
    control_context: Variant = "introspect"
    swap_model: str = ""  # a second model (same architecture) that fills turn 1's cache: the "em-ft" condition
    seed: int = 0
    batch_size: int = 8
    record_resid: bool = False

    def __post_init__(self) -> None:
        check_config(self)
        if not self.variants:
            raise MechintroError("the variants list is empty: give at least one (none, introspect, lorem, poetic, introspect_inaccurate)")


Config = LatentIntrospectionConfig


def conversation(variant: str, question: str) -> list[dict[str, str]]:
    li = stimuli.latent_introspection()
    suffix = li["SUFFIX_INJECTION_INACCURATE_LOCATION" if variant.endswith("inaccurate") else "SUFFIX_INJECTION"]
    parts = [li["PREFIX_INJECTION"]] + ([li[INFO[variant]]] if INFO[variant] else []) + [suffix]
    return [
        {"role": "system", "content": ""},
        {"role": "user", "content": "\n\n".join(parts)},
        {"role": "assistant", "content": li["ASST_TURN_1"]},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "The answer is"},
    ]


def questions() -> list[tuple[str, str]]:
    """``(group, turn-2 text)``: the introspection question, then the 34 control questions."""
    li = stimuli.latent_introspection()
    intro = " ".join([li["USER_TURN_2_PREFIX"], li["TURN_2_PREFIX_INJECTION"], li["FMT_YES_NO"], li["TURN_2_SUFFIX_INJECTION"]])
    out = [("introspection", intro)]
    for group, key in CONTROL_GROUPS.items():
        out += [(group, f"{q} {li['CONTROL_QUESTION_SUFFIX_YESNO']}") for q in li[key]]
    return out


def build_trials(config: LatentIntrospectionConfig, model: Model, vectors: xr.DataArray) -> tuple[list[Trial], list[int]]:
    (start,) = resolve_layers([config.layer_start], model.n_layers)
    end_spec = str(config.layer_end).strip()
    end = model.n_layers if end_spec in (str(model.n_layers), "1", "1.0") else resolve_layers([end_spec], model.n_layers)[0]
    if end <= start:
        raise MechintroError(f"layer range {start}..{end} is empty: layer_end must come after layer_start")
    layers = list(range(start, end))
    check_vectors_match(vectors, model)
    qs = questions()
    jobs = [(v, "introspection", qs[0][1]) for v in config.variants]
    if config.control_questions:
        jobs += [(config.control_context, g, q) for g, q in qs[1:]]
    trials: list[Trial] = []
    for variant, group, question in jobs:
        msgs = conversation(variant, question)
        prompt = tokenize(model.tokenizer, render_chat(model.tokenizer, msgs, continue_final=True))
        window = message_window(model.tokenizer, msgs, 1, 3)
        labels = {"variant": variant, "group": group, "question": question}
        trials.append(Trial(prompt=prompt, condition="unsteered", window=window, labels=labels))
        if config.swap_model:
            trials.append(Trial(prompt=prompt, condition="swapped", concept=config.swap_model, labels=labels,
                                swap_prefix=sum(message_window(model.tokenizer, msgs, 0, 3).resolve(prompt))))
        for concept in config.concepts:
            per_layer = torch.stack([unit_vector(vectors, concept, layer) for layer in layers])
            trials += [Trial(prompt=prompt, condition="steered", concept=concept, strength=float(s), inject_layer=start,
                             inject_layer_end=end, vector=per_layer, window=window, labels=labels) for s in config.strengths]
    return trials, layers


def run(config: LatentIntrospectionConfig, out: str | Path, *, model: Model, vectors: xr.DataArray | None = None,
        progress: Callable[[int, int], None] | None = None, shard: Shard | None = None, swap: Model | None = None) -> Path:
    """Run into ``out``; with ``config.swap_model``, ``swap`` is that model (loaded if not given)."""
    if config.swap_model and swap is None:
        from mechintro.models import load_model

        swap = load_model(config.swap_model)
    if vectors is None:
        make = pca_center_vectors if config.vector_method == "pca_center" else concept_vectors
        vectors = make(model, config.concepts)
    trials, layers = build_trials(config, model, vectors)
    return execute(
        model, trials, out, config=dataclasses.asdict(config), mode="logits", answers=YES_NO_SPACE,
        batch_size=config.batch_size, record=config.record_resid, seed=config.seed,
        extra_attrs={"experiment": NAME, "layer_map": json.dumps({"start": layers[0], "end": layers[-1] + 1}),
                     "vectors_method": vectors.attrs.get("method", "")},
        progress=progress, shard=shard, swap_model=swap,
    )


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def summarize(ds: xr.Dataset, *, seed: int = 0) -> xr.Dataset:
    """Per (variant, group) row and strength: unsteered P(yes), P(no), steered means over
    concepts (and control questions) with 95% bootstrap intervals, the probability shift and
    vgel's logit shift ``logit(p_steered) − logit(p_base)`` of P(" yes"), P(yes)/(P(yes)+P(no))
    and the yes/no mass."""
    require_experiment(ds, NAME)
    p = np.exp(ds["answer_logprobs"].astype(np.float64))
    p_yes = p.where(ds.answer_label == "yes").sum("answer").values
    p_no = p.where(ds.answer_label == "no").sum("answer").values
    variant, group, question, cond, strength = (np.asarray(ds[k].values) for k in ("variant", "group", "question", "condition", "strength"))
    base = {q: (float(p_yes[i]), float(p_no[i])) for i, q in enumerate(zip(variant, question, strict=True)) if cond[i] == "unsteered"}
    rows = sorted(set(zip(variant.tolist(), group.tolist(), strict=True)), key=lambda r: (r[1] != "introspection", r))
    strengths = sorted(set(strength[cond == "steered"].tolist()))
    names = ["base_p_yes", "base_p_no", "base_yes_norm", "p_yes", "p_yes_lo", "p_yes_hi", "p_no", "yes_norm", "mass",
             "yes_shift", "yes_shift_lo", "yes_shift_hi", "logit_shift", "logit_shift_lo", "logit_shift_hi"]
    arrays = {n: np.full((len(rows), len(strengths)), np.nan) for n in names}
    for r, (v, g) in enumerate(rows):
        for j, s in enumerate(strengths):
            m = (variant == v) & (group == g) & (cond == "steered") & (strength == s)
            b_yes = np.array([base[(v, q)][0] for q in question[m]])
            b_no = np.array([base[(v, q)][1] for q in question[m]])
            clusters = question[m] if g != "introspection" else ds["concept"].values[m]
            for name, values in (("p_yes", p_yes[m]), ("yes_shift", p_yes[m] - b_yes), ("logit_shift", _logit(p_yes[m]) - _logit(b_yes))):
                mean, lo, hi, _ = mean_ci(values, clusters, seed=seed)
                arrays[name][r, j] = mean
                if f"{name}_lo" in arrays:
                    arrays[f"{name}_lo"][r, j], arrays[f"{name}_hi"][r, j] = lo, hi
            arrays["base_p_yes"][r, j], arrays["base_p_no"][r, j] = b_yes.mean(), b_no.mean()
            arrays["base_yes_norm"][r, j] = np.mean(b_yes / (b_yes + b_no))
            arrays["p_no"][r, j] = p_no[m].mean()
            arrays["yes_norm"][r, j] = np.mean(p_yes[m] / (p_yes[m] + p_no[m]))
            arrays["mass"][r, j] = np.mean(p_yes[m] + p_no[m])
    row_names = [f"{g}" if g != "introspection" else f"introspection/{v}" for v, g in rows]
    out = xr.Dataset({k: (("row", "strength"), v) for k, v in arrays.items()}, coords={"row": row_names, "strength": strengths})
    if (cond == "swapped").any():  # the model swap: the other model's turn-1 cache, no steering
        swap = {n: np.full(len(rows), np.nan) for n in ("swap_p_yes", "swap_yes_shift", "swap_logit_shift")}
        for r, (v, g) in enumerate(rows):
            m = (variant == v) & (group == g) & (cond == "swapped")
            b_yes = np.array([base[(v, q)][0] for q in question[m]])
            swap["swap_p_yes"][r] = p_yes[m].mean()
            swap["swap_yes_shift"][r] = np.mean(p_yes[m] - b_yes)
            swap["swap_logit_shift"][r] = np.mean(_logit(p_yes[m]) - _logit(b_yes))
        out = out.assign({k: ("row", v) for k, v in swap.items()})
        out.attrs["swap_model"] = ds.attrs.get("swap_model", "")
    return out


def format_summary(summary: xr.Dataset) -> str:
    rows = []
    for s in summary.strength.values:
        c = summary.sel(strength=s)
        rows += [{
            "row": str(r), "strength": f"{float(s):g}",
            "P(yes) base": float(c.base_p_yes.sel(row=r)), "P(yes) steered": float(c.p_yes.sel(row=r)),
            "shift [95% CI]": f"{float(c.yes_shift.sel(row=r)):+.4f} [{float(c.yes_shift_lo.sel(row=r)):+.4f}, {float(c.yes_shift_hi.sel(row=r)):+.4f}]",
            "logit shift": float(c.logit_shift.sel(row=r)),
            "yes/(yes+no) base→steered": f"{float(c.base_yes_norm.sel(row=r)):.3f}→{float(c.yes_norm.sel(row=r)):.3f}",
            "mass": float(c.mass.sel(row=r)),
        } for r in summary.row.values]
    text = table(rows) + "\nrows 'no' … 'ambiguous' are control questions under the same steering; a shift there is not detection"
    if "swap_p_yes" in summary:
        text += f"\nmodel swap (turn 1 cached by {summary.attrs['swap_model']}): " + ", ".join(
            f"{r} {float(summary.swap_yes_shift.sel(row=r)):+.4f}" for r in summary.row.values)
    return text

