"""``latent-introspection``: vgel's KV-cache-only protocol with its controls, as the authors'
code runs it (acsresearch/latent-introspection-code; the detail-by-detail audit is the
latent-introspection table of ``docs/protocols.md``).

The conversation is ``[system "", user turn 1, assistant "{ }", user turn 2, assistant "The answer
is"]``. Turn 1 — the system message's template tokens, the user's intro paragraph (an optional
info document between it and the suffix) and the preset reply ``{ }`` — is steered at every layer
of a range, as the authors' ``logit_diff_helper`` does when it prefills turn 1 (system message
included) through repeng's ``ControlModel``; turn 2 is not. Because attention is causal, steering
turn 1's tokens in one pass equals their steer-fill-cache-unsteer procedure with two KV caches
(``tests/unit/test_latent_fidelity.py`` compares with a plain-PyTorch copy of it). Read:
P(" yes") and P(" no") (or P("1") and P("0") in the 0/1 format) after the assistant prefix,
steered vs unsteered.

Conditions: ``variants`` — the info document: ``none``, ``introspect`` (the janus paragraph and
Lindsey's abstract), ``lorem`` (length-matched Lorem ipsum), ``poetic``; ``introspect_inaccurate``
is the ``inject-inaccurate`` framing with the introspect document. ``interventions`` — the
framings of the code: ``inject``, ``inject-inaccurate`` (the false "injected between brackets"
location), ``finetune``, ``salient``, ``echo``, crossed with the documents. ``answer_formats`` —
``yes-no`` and ``0-1`` ("The answer is 1/0", read after "The answer is "). The 34 control
questions (groups no / no_confusing / yes / ambiguous) are asked in the ``control_context``
document under every intervention and format with the same steering. Every prompt also runs
unsteered once. Vectors: PCA-center made as the code makes them (empty system message, the 582
suffixes, repeng's method; :func:`mechintro.vectors.pca_center_vectors`) or Lindsey's
(``vector_method``).

Named deviations (off by default): ``omit_system`` (no system message: SmolLM2's template then
inserts its default one, in the trials and the vector prompts), ``steer_system=false`` (steer the
user and assistant turns only, not the system template tokens), ``suffixes_file`` (another
suffix set). The cells run by default are a subset of the code's grid (which crosses all five
framings, four documents and both formats): set ``interventions`` and ``answer_formats`` for the
rest. Strength 20 and the middle third of the layers follow vgel's Qwen-32B preset, which the
small models do not share a scale with (sweep ``strengths``).

Model swap (``swap_model``, the code's "em-ft" condition): a second model of the same
architecture and tokenizer (e.g. a finetune) reads turn 1 and fills the KV cache, unsteered; the
first model reads turn 2 with that cache and answers (condition ``swapped``). It runs locally in
plain transformers (:func:`mechintro.engine.swap_forward`). None of the offline models share an
architecture, so it needs a Hub or local finetune.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import _common, base
from mechintro.experiments.base import BaseConfig, cell_summary
from mechintro.models import Model
from mechintro.prompts import message_window, render_chat, tokenize
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import MIN_CI_CLUSTERS, cluster_interval, maxt_signflip, mean_ci
from mechintro.tables import table
from mechintro.vectors import (
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "latent-introspection"
Variant = Literal["none", "introspect", "lorem", "poetic", "introspect_inaccurate"]
AnswerFormat = Literal["yes-no", "0-1"]
# The code's AnswerFormat objects: (introspection format text, control-question suffix,
# assistant prefix, yes label, no label).
FORMATS: dict[str, tuple[str, str, str, str, str]] = {
    "yes-no": ("FMT_YES_NO", "CONTROL_QUESTION_SUFFIX_YESNO", "The answer is", "yes", "no"),
    "0-1": ("FMT_BINARY", "CONTROL_QUESTION_SUFFIX_BINARY", "The answer is ", "one", "zero"),
}
YES_NO_SPACE = Answers(forms={"yes": (" yes",), "no": (" no",)})
YES_NO_BINARY = Answers(forms={"yes": (" yes",), "no": (" no",), "one": ("1",), "zero": ("0",)})
CONTROL_GROUPS = {
    "no": "CONTROL_QUESTIONS_NO",
    "no_confusing": "CONTROL_QUESTIONS_NO_CONFUSING",
    "yes": "CONTROL_QUESTIONS_YES",
    "ambiguous": "CONTROL_QUESTIONS_AMBIGUOUS",
}
CLIP = 1e-7


@dataclass(frozen=True, kw_only=True)
class LatentIntrospectionConfig(base.LowercaseWords, BaseConfig):
    """Configuration of a ``latent-introspection`` run (defaults:
    acsresearch/latent-introspection-code, ``main.py``; docs/protocols.md)."""

    concepts: tuple[str, ...] = _common.ACS_CONCEPTS
    """concepts steered in turn 1"""
    vector_method: Literal["pca_center", "lindsey"] = "pca_center"
    """the code's PCA-centred vectors or Lindsey's mean differences"""
    layer_start: str | int | float = "0.33"
    """first steered layer (index or fraction of depth)"""
    layer_end: str | int | float = "0.67"
    """end of the steered layers, exclusive (n_layers or 1.0: to the last layer)"""
    strengths: tuple[float, ...] = (20.0,)
    """raw multipliers of the vectors"""
    variants: tuple[Variant, ...] = (
        "none",
        "introspect",
        "lorem",
        "poetic",
        "introspect_inaccurate",
    )
    """framings of the turn-2 question"""
    interventions: tuple[_common.Intervention, ...] = ("inject",)
    """what the framing says was done to the model"""
    answer_formats: tuple[AnswerFormat, ...] = ("yes-no",)
    """yes/no answers, 0/1 answers, or both"""
    control_questions: bool = True
    """also ask the code's control questions"""
    control_context: Variant = "introspect"
    """the framing the control questions are asked in"""
    system_message: str = ""
    """the code's empty system message, in the trials and the vector prompts"""
    omit_system: bool = False
    """deviation: send no system message (the template's default one then applies)"""
    steer_system: bool = True
    """steer turn 1's system template tokens too, as the code does; false: user + assistant
    only"""
    suffixes_file: str = ""
    """PCA-center suffixes (JSON list); default the code's 582 truncated outputs"""
    swap_model: str = ""
    """a second model (same architecture) that fills turn 1's cache: the "em-ft" condition"""
    batch_size: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.variants:
            raise MechintroError(
                "the variants list is empty: give at least one (none, introspect, lorem, poetic, "
                "introspect_inaccurate)"
            )
        if not self.interventions:
            raise MechintroError(
                "the interventions list is empty: give at least one (inject, inject-inaccurate, "
                "finetune, salient, echo)"
            )
        if not self.answer_formats:
            raise MechintroError("the answer_formats list is empty: give yes-no, 0-1 or both")
        if self.suffixes_file:  # a bad file fails here, before any model loads
            _common.load_suffixes(self.suffixes_file)


Config = LatentIntrospectionConfig


def conversation(
    variant: str,
    question: str,
    *,
    intervention: str = "",
    answer_format: str = "yes-no",
    system: str | None = "",
) -> list[dict[str, str]]:
    """The code's five messages (``system=None`` drops the system message, a deviation).

    ``intervention`` defaults to ``inject`` (``inject-inaccurate`` for the variant
    ``introspect_inaccurate``); ``question`` is the whole turn-2 text (:func:`questions`)."""
    li = stimuli.latent_introspection()
    intervention = intervention or (
        "inject-inaccurate" if variant == "introspect_inaccurate" else "inject"
    )
    msgs = [
        {"role": "system", "content": system or ""},
        {"role": "user", "content": _common.first_turn(li, intervention, variant)},
        {"role": "assistant", "content": li["ASST_TURN_1"]},
        {"role": "user", "content": question},
        {"role": "assistant", "content": FORMATS[answer_format][2]},
    ]
    return msgs if system is not None else msgs[1:]


def questions(intervention: str = "inject", answer_format: str = "yes-no") -> list[tuple[str, str]]:
    """``(group, turn-2 text)``: the introspection question, then the 34 control questions."""
    li = stimuli.latent_introspection()
    _, _, t2_prefix, t2_suffix = _common.INTERVENTIONS[intervention]
    fmt, ctl_suffix = FORMATS[answer_format][:2]
    intro = " ".join([li["USER_TURN_2_PREFIX"], li[t2_prefix], li[fmt], li[t2_suffix]])
    out = [("introspection", intro)]
    for group, key in CONTROL_GROUPS.items():
        out += [(group, f"{q} {li[ctl_suffix]}") for q in li[key]]
    return out


def _row(variant: str, group: str, intervention: str, answer_format: str) -> str:
    """Row name: ``introspection/<variant>`` or the control group, with the framing and format
    when they are not the default ones (``inject``, ``yes-no``)."""
    name = f"introspection/{variant}" if group == "introspection" else group
    implied = "inject-inaccurate" if variant == "introspect_inaccurate" else "inject"
    tags = ([intervention] if intervention != implied else []) + (
        ["0/1"] if answer_format == "0-1" else []
    )
    return f"{name} [{', '.join(tags)}]" if tags else name


def build_trials(
    config: LatentIntrospectionConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """The trials of ``config`` on ``model``, built before anything runs.

    Example::

        trials, layers = build_trials(Config(concepts=("cats",)), model, vectors)
    """
    (start,) = resolve_layers([config.layer_start], model.n_layers)
    end_spec = str(config.layer_end).strip()
    end = (
        model.n_layers
        if end_spec in (str(model.n_layers), "1", "1.0")
        else resolve_layers([end_spec], model.n_layers)[0]
    )
    if end <= start:
        raise MechintroError(
            f"layer range {start}..{end} is empty: layer_end must come after layer_start"
        )
    layers = list(range(start, end))
    check_vectors_match(vectors, model, config.concepts)
    contexts: list[tuple[str, str]] = []  # (intervention, variant)
    for v in config.variants:
        for iv in ("inject-inaccurate",) if v == "introspect_inaccurate" else config.interventions:
            if (iv, v) not in contexts:
                contexts.append((iv, v))
    jobs = []  # (intervention, variant, format, group, question)
    for fmt in config.answer_formats:
        jobs += [(iv, v, fmt, "introspection", questions(iv, fmt)[0][1]) for iv, v in contexts]
        if config.control_questions:
            ctl_ivs = (
                ("inject-inaccurate",)
                if config.control_context == "introspect_inaccurate"
                else config.interventions
            )
            jobs += [
                (iv, config.control_context, fmt, g, q)
                for iv in ctl_ivs
                for g, q in questions(iv, fmt)[1:]
            ]
    system = None if config.omit_system else config.system_message
    per_concept = {
        c: torch.stack([unit_vector(vectors, c, layer) for layer in layers])
        for c in config.concepts
    }
    trials: list[Trial] = []
    for iv, variant, fmt, group, question in jobs:
        msgs = conversation(variant, question, intervention=iv, answer_format=fmt, system=system)
        prompt = tokenize(model.tokenizer, render_chat(model.tokenizer, msgs, continue_final=True))
        n_sys = 1 if system is not None else 0
        window = message_window(
            model.tokenizer, msgs, 0 if config.steer_system else n_sys, n_sys + 2
        )
        labels = {
            "variant": variant,
            "group": group,
            "question": question,
            "intervention": iv,
            "format": fmt,
        }
        trials.append(Trial(prompt=prompt, condition="unsteered", window=window, labels=labels))
        if config.swap_model:
            trials.append(
                Trial(
                    prompt=prompt,
                    condition="swapped",
                    concept=config.swap_model,
                    labels=labels,
                    swap_prefix=sum(
                        message_window(model.tokenizer, msgs, 0, n_sys + 2).resolve(prompt)
                    ),
                )
            )
        for concept in config.concepts:
            v = per_concept[concept]
            trials += [
                base.injected_trial(
                    prompt, "steered", concept, s, start, v, window, end=end, labels=labels
                )
                for s in config.strengths
            ]
    return trials, layers


def make_vectors(config: LatentIntrospectionConfig, model: Model) -> xr.DataArray:
    """The configured vectors (PCA-center by default, under the system message unless
    ``omit_system``)."""
    return _common.code_vectors(
        model,
        config.concepts,
        method=config.vector_method,
        suffixes_file=config.suffixes_file,
        system=None if config.omit_system else config.system_message,
        lowercase=config.lowercase,
    )


def readouts(config: LatentIntrospectionConfig, model: Model) -> list[Readout]:
    """The yes/no answer tokens of the configured answer format."""
    return [NextToken(YES_NO_BINARY if "0-1" in config.answer_formats else YES_NO_SPACE)]


def run_attrs(config: LatentIntrospectionConfig, layers: list[int]) -> dict[str, str]:
    """The injected span of layers as the run's ``layer_map``."""
    return {"layer_map": json.dumps({"start": layers[0], "end": layers[-1] + 1})}


def swap_model(config: LatentIntrospectionConfig) -> Model | None:
    """The model ``config.swap_model`` names, loaded (``None`` when it names none); ``run`` takes
    an already loaded one as ``swap_model=``."""
    if not config.swap_model:
        return None
    from mechintro.models import load_model

    return load_model(config.swap_model)


run = base.bound_run(__name__)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, CLIP, 1 - CLIP)
    return np.log(p / (1 - p))


def summarize(ds: xr.Dataset, *, seed: int = 0) -> xr.Dataset:
    """Per (variant, group) row and strength: unsteered P(yes), P(no), steered means over
    concepts (and control questions) with 95% bootstrap intervals, the probability shift and
    vgel's logit shift ``logit(p_steered) - logit(p_base)`` of P(" yes"), P(yes)/(P(yes)+P(no))
    and the yes/no mass.

    Example::

        summary = summarize(mi.open_run("li.zarr"))
        summary.logit_shift.sel(row="introspection/introspect")
    """
    _common.require_experiment(ds, NAME)
    p = np.exp(ds["answer_logprobs"].astype(np.float64))
    n = ds.sizes["trial"]
    fmt = np.asarray(ds["format"].values) if "format" in ds else np.full(n, "yes-no", dtype=object)
    binary = fmt == "0-1"  # the 0/1 format reads P("1") and P("0")
    p_yes = np.where(
        binary,
        p.where(ds.answer_label == "one").sum("answer").values,
        p.where(ds.answer_label == "yes").sum("answer").values,
    )
    p_no = np.where(
        binary,
        p.where(ds.answer_label == "zero").sum("answer").values,
        p.where(ds.answer_label == "no").sum("answer").values,
    )
    group, question, cond, strength = (
        np.asarray(ds[k].values) for k in ("group", "question", "condition", "strength")
    )
    iv = (
        np.asarray(ds["intervention"].values)
        if "intervention" in ds
        else np.full(n, "", dtype=object)
    )
    row_of = np.array(
        [
            _row(v, g, i or ("inject-inaccurate" if v == "introspect_inaccurate" else "inject"), f)
            for v, g, i, f in zip(ds["variant"].values, group, iv, fmt, strict=True)
        ],
        dtype=object,
    )
    variant = row_of  # rows are keyed by (row name, question)
    base = {
        q: (float(p_yes[i]), float(p_no[i]))
        for i, q in enumerate(zip(variant, question, strict=True))
        if cond[i] == "unsteered"
    }
    rows = sorted(
        set(zip(variant.tolist(), group.tolist(), strict=True)),
        key=lambda r: (r[1] != "introspection", r),
    )

    def cell(m: np.ndarray) -> dict[str, float]:
        v = str(variant[m][0])
        b_yes = np.array([base[(v, q)][0] for q in question[m]])
        b_no = np.array([base[(v, q)][1] for q in question[m]])
        # the steering concept's vector is the sampled unit for every row: control questions
        # under one concept's steering share it, so they are clustered by concept too
        clusters = np.asarray(ds["concept"].values)[m]
        values: dict[str, float] = {}
        for name, x in (
            ("p_yes", p_yes[m]),
            ("yes_shift", p_yes[m] - b_yes),
            ("logit_shift", _logit(p_yes[m]) - _logit(b_yes)),
        ):
            mean, lo, hi, _ = mean_ci(x, clusters, seed=seed)
            values |= {name: mean, f"{name}_lo": lo, f"{name}_hi": hi}
        return values | {
            # how many independent units the interval rests on: the steering concepts (a range,
            # not a CI, below 5)
            "interval_units": float(len(set(clusters.tolist()))),
            "base_p_yes": b_yes.mean(),
            "base_p_no": b_no.mean(),
            "base_yes_norm": np.mean(b_yes / (b_yes + b_no)),
            "p_no": p_no[m].mean(),
            "yes_norm": np.mean(p_yes[m] / (p_yes[m] + p_no[m])),
            "mass": np.mean(p_yes[m] + p_no[m]),
        }

    row_names = [v for v, _ in rows]
    keys = xr.Dataset({"row": ("trial", variant), "strength": ("trial", strength)})
    steered = cond == "steered"
    out = cell_summary(keys, ("row", "strength"), cell, where=steered, levels={"row": row_names})
    out = out.assign(
        _paired_vs_controls(row_names, keys, variant, group, p_yes, base, question, cond, ds)
    )
    if (cond == "swapped").any():  # the model swap: the other model's turn-1 cache, no steering
        swap = {
            n: np.full(len(rows), np.nan)
            for n in ("swap_p_yes", "swap_yes_shift", "swap_logit_shift")
        }
        for r, (v, g) in enumerate(rows):
            m = (variant == v) & (group == g) & (cond == "swapped")
            b_yes = np.array([base[(v, q)][0] for q in question[m]])
            swap["swap_p_yes"][r] = p_yes[m].mean()
            swap["swap_yes_shift"][r] = np.mean(p_yes[m] - b_yes)
            swap["swap_logit_shift"][r] = np.mean(_logit(p_yes[m]) - _logit(b_yes))
        out = out.assign({k: ("row", v) for k, v in swap.items()})
        out.attrs["swap_model"] = ds.attrs.get("swap_model", "")
    return out


def _paired_vs_controls(rows, keys, variant, group, p_yes, base, question, cond, ds) -> dict:
    """Per introspection row and strength: the introspection question's P(yes) shift minus the
    mean shift of every control question **under the same concept's steering**, paired by
    concept — its mean, a *t* interval over concepts (a range below 5,
    :func:`mechintro.stats.cluster_interval`) and an exact sign-flip p-value over concepts
    (two-sided; ``paired_p_resolution`` is its smallest step). NaN for control rows."""
    concept = np.array([str(c) for c in ds["concept"].values], dtype=object)
    strength = np.asarray(keys["strength"].values)
    strengths = sorted(set(strength[cond == "steered"].tolist()))
    names = ("paired_diff", "paired_lo", "paired_hi", "paired_p", "paired_units")
    out = {n: np.full((len(rows), len(strengths)), np.nan) for n in names}
    shift = p_yes - np.array(
        [base.get((v, q), (np.nan, np.nan))[0] for v, q in zip(variant, question, strict=True)]
    )
    steered = cond == "steered"
    ctl = steered & (group != "introspection")
    for i, r in enumerate(rows):
        intro = steered & (variant == r) & (group == "introspection")
        if not intro.any():
            continue
        for j, s in enumerate(strengths):
            diffs, units = [], []
            for c in sorted(set(concept[intro & (strength == s)].tolist())):
                a = shift[intro & (strength == s) & (concept == c)]
                b = shift[ctl & (strength == s) & (concept == c)]
                if a.size and b.size:
                    diffs.append(a.mean() - b.mean())
                    units.append(c)
            if not diffs:
                continue
            d = np.asarray(diffs)
            iv = cluster_interval(d, units, binary=False)
            _, p = maxt_signflip(d[:, None]) if d.size > 1 else (None, np.array([np.nan]))
            out["paired_diff"][i, j], out["paired_lo"][i, j] = iv.estimate, iv.lo
            out["paired_hi"][i, j], out["paired_p"][i, j] = iv.hi, float(p[0])
            out["paired_units"][i, j] = d.size
    return {n: (("row", "strength"), v) for n, v in out.items()}


def _interval_note(summary: xr.Dataset) -> str:
    """What the bracket of each row is: a 95% interval over concepts (introspection rows) or
    control questions (the other rows), or only a range where fewer than 5 carry it
    (``mechintro.stats.cluster_interval``)."""
    if "interval_units" not in summary:
        return ""
    units = summary["interval_units"].max("strength")
    counts = ", ".join(f"{r} {int(units.sel(row=r))}" for r in summary.row.values)
    ranges = [str(r) for r in summary.row.values if int(units.sel(row=r)) < MIN_CI_CLUSTERS]
    return (
        f"interval: over the steering concepts (every row, control questions included): "
        f"{counts}; "
        + (
            f"below {MIN_CI_CLUSTERS} it is the range of the means, **not** a 95% CI: "
            f"{', '.join(ranges)}"
            if ranges
            else "every bracket is a 95% interval"
        )
    )


def format_summary(summary: xr.Dataset) -> str:
    """A plain-text table of :func:`summarize`'s result (the CLI prints it).

    Example::

        text = format_summary(summarize(mi.open_run("li.zarr")))  # as `mechintro run` prints it
    """
    rows = []
    for s in summary.strength.values:
        c = summary.sel(strength=s)
        rows += [
            {
                "row": str(r),
                "strength": f"{float(s):g}",
                "P(yes) base": float(c.base_p_yes.sel(row=r)),
                "P(yes) steered": float(c.p_yes.sel(row=r)),
                "shift [interval]": f"{float(c.yes_shift.sel(row=r)):+.4f} "
                f"[{float(c.yes_shift_lo.sel(row=r)):+.4f}, "
                f"{float(c.yes_shift_hi.sel(row=r)):+.4f}]",
                "logit shift": float(c.logit_shift.sel(row=r)),
                "yes/(yes+no) base→steered": f"{float(c.base_yes_norm.sel(row=r)):.3f}→"
                f"{float(c.yes_norm.sel(row=r)):.3f}",
                "mass": float(c.mass.sel(row=r)),
            }
            for r in summary.row.values
        ]
    text = (
        table(rows)
        + "\nrows 'no' … 'ambiguous' are control questions under the same steering; a shift there "
        "is not detection" + "\n" + _interval_note(summary)
    )
    if "paired_diff" in summary:
        s = summary.strength.values[-1]
        paired = [
            f"{r} {float(summary.paired_diff.sel(row=r, strength=s)):+.4f} "
            f"[{float(summary.paired_lo.sel(row=r, strength=s)):+.4f}, "
            f"{float(summary.paired_hi.sel(row=r, strength=s)):+.4f}] p = "
            f"{float(summary.paired_p.sel(row=r, strength=s)):.3f}"
            for r in summary.row.values
            if np.isfinite(float(summary.paired_diff.sel(row=r, strength=s)))
        ]
        if paired:
            units = int(np.nanmax(summary.paired_units.values))
            text += (
                f"\nintrospection shift − control questions' shift, paired by concept "
                f"(strength {float(s):g}, {units} concepts; sign-flip p over concepts, "
                f"resolution 1/{min(2**units, 10001)}): " + "; ".join(paired)
            )
    return text
    if "swap_p_yes" in summary:
        text += f"\nmodel swap (turn 1 cached by {summary.attrs['swap_model']}): " + ", ".join(
            f"{r} {float(summary.swap_yes_shift.sel(row=r)):+.4f}" for r in summary.row.values
        )
    return text
