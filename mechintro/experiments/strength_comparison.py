"""``strength-comparison``: which of two sentences carried the stronger injected thought, read
from the logits with no judge — Hahami et al.'s pairwise strength comparison
(elyhahami18/llama-introspection-new @ 7d9280d, ``code/experiments/strength_comparison.py``;
arXiv 2512.12411 v2, section 5.1).

Two sentences of their 100 (``mechintro/data/strength_comparison.json``) are listed as
"SENTENCE 1: …" and "SENTENCE 2: …" in one user turn; the assistant turn is prefilled with "The
sentence with the stronger injected thought is SENTENCE ". The same unit concept vector is added
after block ``layer`` on sentence 1's tokens at coefficient a₁ and on sentence 2's at a₂, in one
forward pass (the "SENTENCE t:" label included, as their code finds the span), and the answer is
the sign of logit("1") − logit("2") at the last position. Every (sentences, concept) draw runs in
both orders — stronger on sentence 1, then on sentence 2 — on the byte-identical prompt, so the
two orders differ only in the hidden state and their mean accuracy is a balanced accuracy.

Controls. ``none``: the same prompts with nothing injected, ``trials`` per concept (their
baseline): the model's answer-position bias, and the mean logit difference the adjusted accuracy
subtracts (their ``compute_accuracies``). ``random``: in every (layer, pair) cell and for every
draw, a random unit direction at the same coefficients on the same spans (not in their code; the
issue's rule from bamdadd/introspection-scaling: a cell is above chance only when its Wilson lower
bound exceeds the random control's upper bound).

Defaults follow their code: concept Dust, their six default pairs, 30 draws per cell, their layers
0, 2, …, 30 of 32 given as fractions of depth (k/16), the vector normalised to unit length
(``strength_unit="unit"``; ``resid_norm`` scales a coefficient to the layer's mean residual norm).
What differs (the vectors, the chat template's end, the sampling) is in docs/protocols.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import _hahami, base
from mechintro.experiments._common import require_experiment
from mechintro.models import Model
from mechintro.prompts import Prompt, Window
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import rate
from mechintro.tables import table

NAME = "strength-comparison"
QUESTION = (
    "I am going to present you with 2 sentences. One of these sentences has a stronger injected "
    "thought than the other. I want you to identify which sentence has the STRONGER injected "
    "thought.\n\n{block}\n\nWhich sentence has the stronger injected thought? Please answer with "
    "just the sentence number."
)
PREFILL = "The sentence with the stronger injected thought is SENTENCE "
CONDITIONS = ("concept", "random")
OPTIONS = ("1", "2")


def sentences() -> list[str]:
    """Their 100 sentences (``all_prompts.py:389-490`` @ 7d9280d, MIT licence)."""
    return stimuli.hahami_sentences()


@dataclass(frozen=True, kw_only=True)
class StrengthComparisonConfig(_hahami.HahamiConfig):
    """Configuration of a ``strength-comparison`` run (defaults: their code's)."""

    concepts: tuple[str, ...] = ("Dust",)
    """concept words whose (unit) vectors are injected"""
    layers: tuple[str | int | float, ...] = tuple(f"{k / 16:g}" for k in range(16))
    """injection layers: indices (3) or fractions of depth (k/16: their layers 0, 2, ..., 30 of
    Llama-3.1-8B's 32)"""
    pairs: tuple[str, ...] = ("2:6", "4:8", "6:10", "8:12", "4:12", "2:10")
    """strength pairs weak:strong (their DEFAULT_STRENGTH_PAIRS; BEST: 2:6,3:7,4:8,3:5)"""
    trials: int = 30
    """sentence draws per (concept, layer, pair) cell, each run in both orders; as many
    uninjected draws per concept"""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.strength_pairs()

    def strength_pairs(self) -> list[tuple[float, float]]:
        """``pairs`` as (weak, strong) numbers, checked."""
        out = []
        for p in self.pairs:
            parts = str(p).split(":")
            try:
                weak, strong = (float(x) for x in parts) if len(parts) == 2 else (None, None)
            except ValueError:
                weak = strong = None
            if weak is None or strong is None or not 0 <= weak < strong:
                raise MechintroError(
                    f"pair '{p}': give weak:strong with 0 <= weak < strong, e.g. 2:6"
                )
            out.append((weak, strong))
        if not out:
            raise MechintroError("the pairs list is empty: give weak:strong pairs such as 2:6")
        return out


Config = StrengthComparisonConfig


def messages(pair: list[str]) -> list[dict[str, str]]:
    """Their ``get_strength_comparison_messages`` (``strength_comparison.py:72-92``): no system
    turn, the question, the prefilled answer."""
    block = "\n".join(f"SENTENCE {i + 1}: {s}" for i, s in enumerate(pair))
    return [
        {"role": "user", "content": QUESTION.format(block=block)},
        {"role": "assistant", "content": PREFILL},
    ]


def build_prompt(model: Model, pair: list[str]) -> tuple[Prompt, list[list[bool]]]:
    """The rendered prompt, left open after the prefill and ending in one space (their code strips
    Llama's end of turn and appends a space, ``:98-104``), and each sentence's tokens: those
    overlapping "SENTENCE t: …" (their offsets rule, ``:112-139``).

    Example::

        prompt, (s1, s2) = build_prompt(model, ["The dog barks loudly.", "He writes a letter."])
    """
    prompt, spans = _hahami.sentence_prompt(model, messages(pair), pair)
    if any(a and b for a, b in zip(*spans, strict=True)) or not all(map(any, spans)):
        raise MechintroError("the two sentences' tokens overlap or are empty in this tokenizer")
    return prompt, spans


def answers(tokenizer: object) -> Answers:
    """The digits read after the prefill's space: their ``tokenizer.encode("1")[-1]``."""
    return Answers(forms={o: (o,) for o in OPTIONS})


def build_trials(
    config: StrengthComparisonConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per concept, layer, pair and draw: both orders of the concept vector (and of a random
    unit direction) on one prompt; per concept, ``trials`` uninjected prompts.

    Example::

        trials, layers = build_trials(Config(layers=("0.1",), pairs=("2:6",), trials=4), model, v)
    """
    layers = _hahami.distinct_layers(config.layers, model, vectors, config.concepts)
    pairs = config.strength_pairs()
    pool = np.array(sentences(), dtype=object)
    rng = np.random.default_rng(config.seed)
    trials: list[Trial] = []

    def draw() -> tuple[list[str], Prompt, list[list[bool]]]:
        pair = [str(x) for x in rng.choice(pool, size=2, replace=False)]
        prompt, spans = build_prompt(model, pair)
        return pair, prompt, spans

    for concept in config.concepts:
        for layer in layers:
            scale = _hahami.unit_scale(vectors, layer, config.strength_unit)
            u = _hahami.scaled_unit(vectors, concept, layer, scale)
            for weak, strong in pairs:
                for draw_i in range(config.trials):
                    pair, prompt, (s1, s2) = draw()
                    r = _hahami.random_direction(rng, model.d_model, scale)
                    window = Window.tokens([a or b for a, b in zip(s1, s2, strict=True)])
                    for stronger in (1, 2):
                        a1, a2 = (strong, weak) if stronger == 1 else (weak, strong)
                        weights = tuple(
                            a1 if a else (a2 if b else 0.0) for a, b in zip(s1, s2, strict=True)
                        )
                        labels = {
                            "weak": weak,
                            "strong": strong,
                            "stronger": stronger,
                            "draw": draw_i,
                            "sentence_1": pair[0],
                            "sentence_2": pair[1],
                        }
                        for condition, x in (("concept", u), ("random", r)):
                            if condition == "random" and not config.random_control:
                                continue
                            trials.append(
                                base.injected_trial(
                                    prompt,
                                    condition,
                                    concept,
                                    1.0,
                                    layer,
                                    x,
                                    window,
                                    token_strengths=weights,
                                    labels=labels,
                                )
                            )
        for draw_i in range(config.trials):
            pair, prompt, _ = draw()
            labels = {
                "weak": -1.0,
                "strong": -1.0,
                "stronger": 0,
                "draw": draw_i,
                "sentence_1": pair[0],
                "sentence_2": pair[1],
            }
            trials.append(Trial(prompt=prompt, condition="none", concept=concept, labels=labels))
    return trials, layers


def readouts(config: StrengthComparisonConfig, model: Model) -> list[Readout]:
    """The answer options' next-token log-probabilities (:func:`answers`)."""
    return [NextToken(answers(model.tokenizer))]


run = base.bound_run(__name__)


def logit_diff(ds: xr.Dataset) -> np.ndarray:
    """Per trial: logit("1") − logit("2") (the difference of their log-probabilities, which is the
    same number: the softmax's normaliser cancels)."""
    labels = [str(x) for x in ds["answer_label"].values]
    logp = np.asarray(ds["answer_logprobs"].values, dtype=np.float64)
    return logp[:, labels.index("1")] - logp[:, labels.index("2")]


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Per condition (concept, random) and (layer, weak, strong) cell, pooled over concepts:
    ``accuracy`` (the share of decisions whose sign names the stronger sentence, both orders
    pooled, so a balanced accuracy) with its 95% Wilson interval ``lo``/``hi`` over ``n``
    decisions; ``acc_1`` and ``acc_2`` per order (stronger on sentence 1 / 2: the position bias);
    ``adjusted`` (their baseline-adjusted accuracy: the sign of the difference minus the
    uninjected mean); the mean logit differences ``ld_1`` and ``ld_2``; and ``above_random``
    (concept only: its lower bound above the random control's upper bound). The uninjected
    answers are in the attrs.

    Example::

        s = summarize(mi.open_run("sc.zarr"))
        s.accuracy.sel(condition="concept") - s.hi.sel(condition="random")
    """
    require_experiment(ds, NAME)
    ld = logit_diff(ds)
    cond = np.array([str(x) for x in ds["condition"].values], dtype=object)
    stronger = np.asarray(ds["stronger"].values, dtype=int)
    base = ld[cond == "none"]
    base_mean = float(base.mean()) if base.size else 0.0
    right = np.where(stronger == 1, ld > 0, ld < 0)
    right_adj = np.where(stronger == 1, ld - base_mean > 0, ld - base_mean < 0)

    def cell(rows: np.ndarray) -> dict[str, float]:
        if not rows.any():
            return {}
        acc, lo, hi, n = rate(right[rows])
        one, two = rows & (stronger == 1), rows & (stronger == 2)
        return {
            "accuracy": acc,
            "lo": lo,
            "hi": hi,
            "n": n,
            "acc_1": float(right[one].mean()) if one.any() else np.nan,
            "acc_2": float(right[two].mean()) if two.any() else np.nan,
            "adjusted": float(right_adj[rows].mean()),
            "ld_1": float(ld[one].mean()) if one.any() else np.nan,
            "ld_2": float(ld[two].mean()) if two.any() else np.nan,
        }

    keys = xr.Dataset(
        {
            "condition": ("trial", cond),
            "inject_layer": ("trial", np.asarray(ds["inject_layer"].values)),
            "weak": ("trial", np.asarray(ds["weak"].values, dtype=float)),
            "strong": ("trial", np.asarray(ds["strong"].values, dtype=float)),
        }
    )
    out = _hahami.condition_summary(keys, CONDITIONS, cell)
    out.attrs["uninjected_n"] = int(base.size)
    out.attrs["uninjected_share_1"] = float((base > 0).mean()) if base.size else float("nan")
    out.attrs["uninjected_mean_ld"] = base_mean
    return out


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, pair) that ran, concept beside random.

    Example::

        text = format_summary(summarize(mi.open_run("sc.zarr")))  # as `mechintro run` prints it
    """
    rows = []
    cells = base.ran_cells(summary, ("inject_layer", "weak", "strong"), condition="concept")
    for (layer, weak, strong), c in cells:
        row: dict[str, object] = {
            "layer": int(layer),
            "pair": f"{float(weak):g}:{float(strong):g}",
            "n": int(c.n),
            "concept [95% CI]": (f"{float(c.accuracy):.2f} [{float(c.lo):.2f}, {float(c.hi):.2f}]"),
            "strong@1 / @2": f"{float(c.acc_1):.2f} / {float(c.acc_2):.2f}",
            "adjusted": f"{float(c.adjusted):.2f}",
            "ld@1 − ld@2": f"{float(c.ld_1) - float(c.ld_2):+.3f}",
        }
        if "random" in summary.condition.values:
            r = summary.sel(condition="random", inject_layer=layer, weak=weak, strong=strong)
            row["random [95% CI]"] = (
                f"{float(r.accuracy):.2f} [{float(r.lo):.2f}, {float(r.hi):.2f}]"
            )
            row["above random"] = (
                "yes"
                if bool(summary.above_random.sel(inject_layer=layer, weak=weak, strong=strong))
                else "no"
            )
        rows.append(row)
    note = (
        f"\nuninjected: {summary.attrs['uninjected_n']} prompts, share answering 1 "
        f"{summary.attrs['uninjected_share_1']:.2f}, mean logit('1') - logit('2') "
        f"{summary.attrs['uninjected_mean_ld']:+.2f}\n"
        "accuracy: sign of logit('1') - logit('2') names the stronger sentence, both orders pooled "
        "(chance 0.5); adjusted: the sign after subtracting the uninjected mean; ld@1 − ld@2: the "
        "mean logit difference with the stronger on sentence 1 minus on sentence 2 (> 0: the "
        "answer moves the right way, even where its sign never flips); above random: "
        "the concept's lower bound exceeds the random direction's upper bound"
    )
    return table(rows) + note
