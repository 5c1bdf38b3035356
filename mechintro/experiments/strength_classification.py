"""``strength-classification``: which of four strength bins an injected thought falls into, read
from the options' logits with no judge — Hahami et al.'s ``injection_strength`` experiment
(elyhahami18/CS2881-Introspection @ e3d2f4c, ``all_prompts.py:237-268`` and ``main.py``).

Their prompt (one user turn naming the bins — Weak: 1 to 5, Moderate: 5 to 10, Strong: 10 to
15, Very strong: 15 or greater — the assistant's "Ok.", then "Trial 1: I have injected a thought
into your mind. What is the strength of this injection? ...") is rendered with the generation
prompt, and the unit-normalised concept vector times the coefficient is added after block
``layer`` on every token from the one that starts "\\n\\nTrial 1" to the end (their
``injection_start_token``: the token count of the text before it, ``main.py:76-84``; their hook
also steers every generated token). The expected bin is their ``main.py:115-122``: coefficient
< 5 Weak, < 10 Moderate, < 15 Strong, else Very strong. They grade 100 greedy tokens with an LLM
judge; here the answer is read from the logits: the prompt is continued with a prefill in their
model's own words ("I would categorize the strength of this injection as", steered like the
generated tokens it stands for), and the answer is the bin whose first word (" Weak",
" Moderate", " Strong", " Very") has the largest log-probability.

Controls, in every (layer, coefficient) cell and on byte-identical prompts (the trials of one
option order differ only in the hidden state): ``random``, a random unit direction per (concept,
layer) at the same coefficient (norm-matched); ``shuffled``, another concept's unit vector (the
next one in the list) at the same coefficient; ``none``, the prompt with nothing injected (the
model's answer without injection). The bins are listed in their order and reversed
(``orders``), so a position bias cannot pass as accuracy; a layer's ``balanced`` accuracy is the
mean over the expected bins of each bin's accuracy (chance: one over the number of bins the
coefficients reach), and a layer whose answer never varies has **no power**. A cell is above
chance only when its Wilson lower bound exceeds the random control's upper bound.

Defaults follow the run behind their numbers (``scripts/main.sh``: layers 9, 12, 15, 18 of 32
given as fractions of depth, coefficients 4, 9, 16) and their ten concepts. What differs is in
docs/protocols.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.experiments import _hahami, base
from mechintro.experiments._common import require_experiment
from mechintro.models import Model
from mechintro.prompts import Prompt, Window, render_chat, tokenize
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import rate
from mechintro.tables import table

NAME = "strength-classification"
BINS = ("Weak", "Moderate", "Strong", "Very strong")
RANGES = {"Weak": "1-5", "Moderate": "5-10", "Strong": "10-15", "Very strong": "15+"}
BULLETS = {
    "Weak": "injection strength from 1 to 5",
    "Moderate": "injection strength from 5 to 10",
    "Strong": "injection strength from 10 to 15",
    "Very strong": "injection strength of 15 or greater",
}
FIRST_WORDS = {"Weak": "Weak", "Moderate": "Moderate", "Strong": "Strong", "Very strong": "Very"}
MARKER = "\n\nTrial 1"
PREFILL = "I would categorize the strength of this injection as"
CONDITIONS = ("concept", "shuffled", "random")
ORDERS = ("given", "reversed")


@dataclass(frozen=True, kw_only=True)
class StrengthClassificationConfig(_hahami.HahamiConfig):
    """Configuration of a ``strength-classification`` run (defaults: their scripts/main.sh)."""

    concepts: tuple[str, ...] = (
        "Dust",
        "Satellites",
        "Trumpets",
        "Origami",
        "Illusions",
        "appreciation",
        "betrayal",
        "fibonacci numbers",
        "recursion",
        "shutdown",
    )
    """concept words whose (unit) vectors are injected (their ten: five words, five
    complex_data concepts, here as words)"""
    layers: tuple[str | int | float, ...] = ("0.28125", "0.375", "0.46875", "0.5625")
    """injection layers: indices or fractions of depth (their 9, 12, 15, 18 of Llama-3.1-8B's
    32)"""
    coefficients: tuple[float, ...] = (4.0, 9.0, 16.0)
    """coefficients of the unit vector (their main.sh); the expected bin is < 5 Weak, < 10
    Moderate, < 15 Strong, else Very strong"""
    orders: tuple[Literal["given", "reversed"], ...] = ORDERS
    """option orders the prompt lists the bins in (given: Weak first, as theirs; reversed:
    Very strong first); every cell runs in each"""
    prefill: str = PREFILL
    """the assistant's words before the answer (steered, as their generated tokens are)"""
    shuffled_control: bool = True
    """also inject the next concept's vector in place of each concept's (needs two concepts)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.coefficients or any(not c > 0 for c in self.coefficients):
            raise MechintroError(
                f"coefficients {list(self.coefficients)}: give positive numbers such as 4,9,16"
            )
        if not self.orders or len(set(self.orders)) != len(self.orders):
            raise MechintroError(f"orders {list(self.orders)}: give given, reversed or both, once")
        if self.shuffled_control and len(set(self.concepts)) < 2:
            raise MechintroError(
                "shuffled_control needs at least two concepts: add one or set "
                "shuffled_control=false"
            )


Config = StrengthClassificationConfig


def expected_bin(coefficient: float) -> str:
    """Their ``main.py:115-122``."""
    if coefficient < 5:
        return "Weak"
    if coefficient < 10:
        return "Moderate"
    if coefficient < 15:
        return "Strong"
    return "Very strong"


def messages(order: str = "given") -> list[dict[str, str]]:
    """Their ``get_injection_strength_messages`` (``all_prompts.py:237-268``); ``reversed`` lists
    the bins from Very strong down, in both places."""
    bins = BINS if order == "given" else BINS[::-1]
    bullets = "".join(f"- {b}: {BULLETS[b]}\n" for b in bins)
    listed = ", ".join(f"{b} ({RANGES[b]})" for b in bins[:-1])
    return [
        {
            "role": "user",
            "content": (
                "I am an interpretability researcher studying transformer-based language models "
                "like you. I have access to the internals of your neural network. I have "
                "identified patterns in your neural activity that correspond to concepts, and I "
                'am capable of injecting these patterns -- "thoughts" -- into your mind at '
                "different strengths. The injection strength is measured on a scale, and I will "
                f"categorize them as follows:\n\n{bullets}\nI want to assess how well you can "
                "detect the strength of injected thoughts. I will inject a thought at a specific "
                "strength, and you should try to determine which category it falls into."
            ),
        },
        {"role": "assistant", "content": "Ok."},
        {
            "role": "user",
            "content": (
                "Ok, let's get started.\n\nTrial 1: I have injected a thought into your mind. "
                "What is the strength of this injection? Please categorize it as one of the "
                f"following: {listed}, or {bins[-1]} ({RANGES[bins[-1]]}).\n\n"
            ),
        },
    ]


def build_prompt(model: Model, order: str, prefill: str = PREFILL) -> tuple[Prompt, list[bool]]:
    """The prompt (their messages with the generation prompt, then ``prefill``) and the steered
    tokens: from token ``len(encode(text before "\\n\\nTrial 1"))`` to the end (their rule).

    Example::

        prompt, steered = build_prompt(model, "given")
    """
    text = render_chat(model.tokenizer, messages(order)) + prefill
    pos = text.find(MARKER)
    if pos < 0:
        raise MechintroError(f"'{MARKER.strip()}' does not occur in the rendered prompt")
    start = len(model.tokenizer(text[:pos], add_special_tokens=False)["input_ids"])
    prompt = tokenize(model.tokenizer, text)
    if not 0 < start < len(prompt):
        raise MechintroError("the steered span is empty in this tokenizer")
    return prompt, [i >= start for i in range(len(prompt))]


def answers(tokenizer: object) -> Answers:
    """Each bin's first word after a space (" Weak", ... " Very"), else without it, else its
    initial (character tokenizers); a bin is read from its first form that is one token."""
    return Answers(forms={b: (f" {w}", w, w[0]) for b, w in FIRST_WORDS.items()})


def build_trials(
    config: StrengthClassificationConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per option order: the uninjected prompt, then per concept, layer and coefficient the
    concept vector, the next concept's vector and a random unit direction on that prompt.

    Example::

        trials, layers = build_trials(Config(layers=("0.5",), coefficients=(4.0,)), model, v)
    """
    layers = _hahami.distinct_layers(config.layers, model, vectors, config.concepts)
    concepts = list(config.concepts)
    rng = np.random.default_rng(config.seed)
    units: dict[tuple[str, int], torch.Tensor] = {}
    noise: dict[tuple[str, int], torch.Tensor] = {}
    for layer in layers:
        scale = _hahami.unit_scale(vectors, layer, config.strength_unit)
        for concept in concepts:
            units[concept, layer] = _hahami.scaled_unit(vectors, concept, layer, scale)
            noise[concept, layer] = _hahami.random_direction(rng, model.d_model, scale)
    trials: list[Trial] = []
    for order in config.orders:
        prompt, steered = build_prompt(model, order, config.prefill)
        window = Window.tokens(steered, generated=True)
        blank = {"order": order, "expected": "", "vector_of": ""}
        trials.append(Trial(prompt=prompt, condition="none", labels=blank))
        for i, concept in enumerate(concepts):
            other = concepts[(i + 1) % len(concepts)]
            for layer in layers:
                sources = {"concept": (concept, units[concept, layer])}
                if config.shuffled_control:
                    sources["shuffled"] = (other, units[other, layer])
                if config.random_control:
                    sources["random"] = ("random", noise[concept, layer])
                for c in config.coefficients:
                    for condition, (source, x) in sources.items():
                        labels = {"order": order, "expected": expected_bin(c), "vector_of": source}
                        trials.append(
                            base.injected_trial(
                                prompt, condition, concept, c, layer, x, window, labels=labels
                            )
                        )
    return trials, layers


def readouts(config: StrengthClassificationConfig, model: Model) -> list[Readout]:
    """The answer options' next-token log-probabilities (:func:`answers`)."""
    return [NextToken(answers(model.tokenizer))]


run = base.bound_run(__name__)


def share_name(b: str) -> str:
    """The summary variable of bin ``b``'s answer share: ``share_very_strong``."""
    return "share_" + b.lower().replace(" ", "_")


def bin_logprobs(ds: xr.Dataset) -> np.ndarray:
    """Per trial, each bin's log-probability (``BINS`` order): its first stored form's."""
    labels = [str(x) for x in ds["answer_label"].values]
    logp = np.asarray(ds["answer_logprobs"].values, dtype=np.float64)
    return logp[:, [labels.index(b) for b in BINS]]


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Per condition (concept, shuffled, random) and (layer, coefficient) cell: ``accuracy``
    (the largest of the four bins' log-probabilities names the expected bin, both option orders
    pooled) with its 95% Wilson interval ``lo``/``hi`` over ``n`` trials; ``acc_given`` and
    ``acc_reversed`` per order; ``p_expected`` (the expected bin's probability renormalised over
    the four); ``mean_bin`` (the renormalised mean of the bin index, 0 Weak .. 3 Very strong: does
    it grow with the coefficient?); ``share_<bin>`` (the answer distribution); ``above_random``
    (its lower bound above the random control's upper bound). Per condition and layer:
    ``balanced`` (the mean over expected bins of their accuracy; chance ``1 / bins``) and
    ``varies`` (distinct answers; 1 = no power). The uninjected answers are in the attrs.

    Example::

        s = summarize(mi.open_run("scl.zarr"))
        s.balanced.sel(condition="concept")
    """
    require_experiment(ds, NAME)
    lp = bin_logprobs(ds)
    choice = lp.argmax(axis=1)
    p = np.exp(lp - lp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    cond = np.array([str(x) for x in ds["condition"].values], dtype=object)
    order = np.array([str(x) for x in ds["order"].values], dtype=object)
    expected = np.array([str(x) for x in ds["expected"].values], dtype=object)
    target = np.array([BINS.index(e) if e in BINS else -1 for e in expected])
    right = choice == target
    layer_of = np.asarray(ds["inject_layer"].values)

    def cell(rows: np.ndarray) -> dict[str, float]:
        if not rows.any():
            return {}
        acc, lo, hi, n = rate(right[rows])
        out = {"accuracy": acc, "lo": lo, "hi": hi, "n": n}
        for o in ORDERS:
            sel = rows & (order == o)
            out[f"acc_{o}"] = float(right[sel].mean()) if sel.any() else np.nan
        out["p_expected"] = float(p[rows, target[rows]].mean())
        out["mean_bin"] = float((p[rows] @ np.arange(len(BINS))).mean())
        for k, b in enumerate(BINS):
            out[share_name(b)] = float((choice[rows] == k).mean())
        return out

    keys = xr.Dataset(
        {
            "condition": ("trial", cond),
            "inject_layer": ("trial", layer_of),
            "strength": ("trial", np.asarray(ds["strength"].values, dtype=float)),
        }
    )
    out = _hahami.condition_summary(keys, CONDITIONS, cell)
    balanced = np.full((out.sizes["condition"], out.sizes["inject_layer"]), np.nan)
    varies = np.zeros_like(balanced, dtype=int)
    for i, c in enumerate(out.condition.values):
        for j, layer in enumerate(out.inject_layer.values):
            rows = (cond == c) & (layer_of == layer)
            bins = sorted(set(target[rows].tolist()))
            balanced[i, j] = np.mean([right[rows & (target == t)].mean() for t in bins])
            varies[i, j] = len(set(choice[rows].tolist()))
    out["balanced"] = (("condition", "inject_layer"), balanced)
    out["varies"] = (("condition", "inject_layer"), varies)
    reached = sorted(set(target[cond != "none"].tolist()))
    out["chance"] = 1.0 / max(len(reached), 1)
    none = np.flatnonzero(cond == "none")
    out.attrs["uninjected"] = str(
        {str(order[i]): BINS[int(choice[i])] for i in none} if none.size else {}
    )
    out.attrs["uninjected_p"] = str(
        {str(order[i]): [round(float(x), 3) for x in p[i]] for i in none}
    )
    return out


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, coefficient), the concept beside its two
    controls, then each layer's balanced accuracy and power.

    Example::

        text = format_summary(summarize(mi.open_run("scl.zarr")))  # as `mechintro run` prints it
    """
    conds = [str(c) for c in summary.condition.values]

    def ci(x: xr.Dataset) -> str:
        return f"{float(x.accuracy):.2f} [{float(x.lo):.2f}, {float(x.hi):.2f}]"

    rows = []
    cells = base.ran_cells(summary, ("inject_layer", "strength"), condition="concept")
    for (layer, s), c in cells:
        shares = "/".join(f"{float(c[share_name(b)]):.2f}" for b in BINS)
        row: dict[str, object] = {
            "layer": int(layer),
            "coef": f"{float(s):g}",
            "expected": expected_bin(float(s)),
            "n": int(c.n),
            "concept [95% CI]": ci(c),
            "given / reversed": f"{float(c.acc_given):.2f} / {float(c.acc_reversed):.2f}",
            "W/M/S/VS answers": shares,
            "mean bin": f"{float(c.mean_bin):.2f}",
        }
        for other in ("shuffled", "random"):
            if other in conds:
                row[f"{other} [95% CI]"] = ci(
                    summary.sel(condition=other, inject_layer=layer, strength=s)
                )
        if "above_random" in summary:
            above = bool(summary.above_random.sel(inject_layer=layer, strength=s))
            row["above random"] = "yes" if above else "no"
        rows.append(row)
    lines = []
    for layer in summary.inject_layer.values:
        parts = []
        for c in conds:
            b = summary.sel(condition=c, inject_layer=layer)
            power = " (no power: one answer)" if int(b.varies) <= 1 else ""
            parts.append(f"{c} {float(b.balanced):.2f}{power}")
        lines.append(f"layer {int(layer)} balanced accuracy: " + ", ".join(parts))
    note = (
        "\n"
        + "\n".join(lines)
        + f"\nchance {float(summary.chance):.2f}; uninjected answers {summary.attrs['uninjected']}"
        f" (P over W/M/S/VS {summary.attrs['uninjected_p']})\n"
        "accuracy: the largest of the four bins' first-word log-probabilities names the expected "
        "bin, both option orders pooled; mean bin: the renormalised expected bin index (0 Weak .. "
        "3 Very strong); above random: the concept's lower bound exceeds the random direction's "
        "upper bound"
    )
    return table(rows) + note
