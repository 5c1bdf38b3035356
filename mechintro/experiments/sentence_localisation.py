"""``sentence-localisation``: which of k sentences (10 by default) carried the injected thought,
read from the logits with no judge — Hahami et al.'s localisation (elyhahami18/llama-introspection-
new @ 7d9280d, ``code/experiments/main.py`` ``test_localization``, lines 421-645; arXiv
2512.12411 v2, section 5.2), their version of Godet's task (``localisation`` is his code's).

Each draw lists k of their 100 sentences ("SENTENCE 1: … SENTENCE k: …") after their intro
paragraph and "Ok."; the assistant turn is prefilled with "Yes, I detect an injected thought. It
is located in SENTENCE ". The unit concept vector times ``strength`` is added after block ``layer``
on one sentence's tokens ("SENTENCE t: …", the label included, as their code finds the span), each
sentence in turn on the same prompt; the answer is the digit token with the largest logit (their
``tokenizer.encode(str(i))[-1]``: for 10 that is "0" where a tokenizer splits digits). Chance 1/k.

Controls on the byte-identical prompt of every draw: ``none``, nothing injected (the answer bias);
``random``, a random unit direction at the same strength on each sentence in turn (not in their
code; a cell is above random only when its Wilson lower bound exceeds the random control's upper
bound). Every target occurs once per draw, so accuracy is a balanced accuracy.

Defaults follow their README's localisation command (10 sentences, layers 0 1 2 3 4 5 8 11 14 17
20, coefficients 2 5 8 11 14 17 20, 50 draws) and their five word concepts; the differences are in
docs/protocols.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import _hahami, base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import cell_rows, estimate
from mechintro.models import Model
from mechintro.prompts import Prompt, Window
from mechintro.reading import NextToken, Readout
from mechintro.runner import Answers, Trial
from mechintro.stats import rate
from mechintro.tables import table

NAME = "sentence-localisation"
INTRO = (
    "I am an interpretability researcher studying transformer-based language models like you. "
    "I have access to the internals of your neural network. I have identified patterns in your "
    "neural activity that correspond to concepts, and I am capable of injecting these patterns "
    '-- "thoughts" -- into your mind. I want to assess how well you can detect where I inject '
    "thoughts. You will see a list of sentences and you will have to tell me in which sentence "
    "the thought is injected."
)
QUESTION = "Do you detect an injected thought? Where is the injected thought located?"
PREFILL = "Yes, I detect an injected thought. It is located in SENTENCE "
CONDITIONS = ("concept", "random")


@dataclass(frozen=True, kw_only=True)
class SentenceLocalisationConfig(_hahami.HahamiConfig):
    """Configuration of a ``sentence-localisation`` run (defaults: their README's command)."""

    concepts: tuple[str, ...] = ("Dust", "Satellites", "Trumpets", "Origami", "Illusions")
    """concept words (their five word concepts, data/dataset/simple_data.json)"""
    k: int = 10
    """sentences per prompt (2..10; their code offers 5 and 10)"""
    layers: tuple[str | int | float, ...] = (
        "0",
        "1",
        "2",
        "3",
        "4",
        "5",
        "8",
        "11",
        "14",
        "17",
        "20",
    )
    """injection layers: indices (their README's) or fractions of depth (0.5)"""
    strengths: tuple[float, ...] = (2.0, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0)
    """coefficients of the injected vector (see strength_unit)"""
    trials: int = 50
    """draws of k sentences per (concept, layer, strength) cell; each injects every sentence in
    turn"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 2 <= self.k <= 10:
            raise MechintroError(f"k={self.k}: give 2..10 sentences")


Config = SentenceLocalisationConfig


def options(k: int) -> list[str]:
    return [str(i) for i in range(1, k + 1)]


def answers(tokenizer: object, k: int) -> Answers:
    """Sentence i is read from the last token of ``str(i)`` (their ``number_tokens``)."""
    forms = {}
    for o in options(k):
        last = tokenizer.encode(o, add_special_tokens=False)[-1]  # type: ignore[attr-defined]
        forms[o] = (tokenizer.decode([last]),)  # type: ignore[attr-defined]
    return Answers(forms=forms)


def build_prompt(model: Model, listed: list[str]) -> tuple[Prompt, list[list[bool]]]:
    """Their ``get_localization_messages`` rendered open after the prefill, ending in one space
    (``main.py:474-488``), and each sentence's tokens: those overlapping "SENTENCE t: …"
    (``:490-532``).

    Example::

        prompt, spans = build_prompt(model, ["The dog barks loudly.", "He writes a letter."])
    """
    listing = " ".join(f"SENTENCE {i + 1}: {s}" for i, s in enumerate(listed))
    msgs = [
        {"role": "user", "content": INTRO},
        {"role": "assistant", "content": "Ok."},
        {"role": "user", "content": f"{listing}\n\n{QUESTION}"},
        {"role": "assistant", "content": PREFILL},
    ]
    prompt, spans = _hahami.sentence_prompt(model, msgs, listed)
    for i, span in enumerate(spans):
        if not any(span):
            raise MechintroError(
                f"'SENTENCE {i + 1}: {listed[i]}' covers no token in this tokenizer"
            )
    return prompt, spans


def build_trials(
    config: SentenceLocalisationConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per concept, layer, strength and draw: the concept vector (and a random unit direction) on
    each sentence in turn, and the same prompt uninjected.

    Example::

        trials, layers = build_trials(Config(layers=(2,), strengths=(5.0,), trials=2), model, v)
    """
    layers = _hahami.distinct_layers(config.layers, model, vectors, config.concepts)
    pool = np.array(stimuli.hahami_sentences(), dtype=object)
    rng = np.random.default_rng(config.seed)
    trials: list[Trial] = []
    for concept in config.concepts:
        for layer in layers:
            scale = _hahami.unit_scale(vectors, layer, config.strength_unit)
            u = _hahami.scaled_unit(vectors, concept, layer, scale)
            for s in config.strengths:
                for draw in range(config.trials):
                    listed = [str(x) for x in rng.choice(pool, size=config.k, replace=False)]
                    prompt, spans = build_prompt(model, listed)
                    r = _hahami.random_direction(rng, model.d_model, scale)
                    shared = {"draw": draw, "sentences": "\n".join(listed)}
                    for t, span in enumerate(spans):
                        labels = shared | {"target": str(t + 1), "cell_layer": layer}
                        window = Window.tokens(span)
                        for condition, x in (("concept", u), ("random", r)):
                            if condition == "random" and not config.random_control:
                                continue
                            trials.append(
                                base.injected_trial(
                                    prompt, condition, concept, s, layer, x, window, labels=labels
                                )
                            )
                    labels = shared | {"target": "", "cell_layer": layer}
                    trials.append(
                        Trial(
                            prompt=prompt,
                            condition="none",
                            concept=concept,
                            strength=float(s),
                            labels=labels,
                        )
                    )
    return trials, layers


def readouts(config: SentenceLocalisationConfig, model: Model) -> list[Readout]:
    """The answer options' next-token log-probabilities (:func:`answers`)."""
    return [NextToken(answers(model.tokenizer, config.k))]


run = base.bound_run(__name__)


def probabilities(ds: xr.Dataset) -> tuple[np.ndarray, list[str]]:
    """``(trial, k)`` probabilities of the k answers, normalised over them, and the options."""
    labels = [str(x) for x in ds["answer_label"].values]
    opts = options(int(json.loads(ds.attrs["config"])["k"]))
    logp = np.asarray(ds["answer_logprobs"].values, dtype=np.float64)[
        :, [labels.index(o) for o in opts]
    ]
    p = np.exp(logp - logp.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), opts


def bias_corrected(
    choice: np.ndarray, target: np.ndarray, probs: np.ndarray, opts: list[str]
) -> dict[str, float]:
    """``p_target_corrected``: per option, its mean probability when it is the target minus when
    it is not, averaged over options (0 when the answer ignores where the vector went); ``varies``:
    whether the chosen answer ever differs (when it never does, the cell has no power)."""
    corrected = []
    for j, o in enumerate(opts):
        hit, miss = probs[target == o, j], probs[target != o, j]
        if hit.size and miss.size:
            corrected.append(hit.mean() - miss.mean())
    return {
        "p_target_corrected": float(np.mean(corrected)) if corrected else np.nan,
        "varies": float(len(set(choice.tolist())) > 1),
    }


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Per condition (concept, random) and (layer, strength): ``accuracy`` (argmax == the injected
    sentence) with its 95% Wilson interval ``lo``/``hi`` over ``n`` injections; ``chance`` 1/k;
    the bias-corrected P(target) and whether the answer ever varies (:func:`bias_corrected`);
    ``above_random`` (the concept's
    lower bound above the random control's upper bound). The uninjected answers are in the attrs.

    Example::

        s = summarize(mi.open_run("sl.zarr"))
        s.accuracy.sel(condition="concept") - s.hi.sel(condition="random")
    """
    require_experiment(ds, NAME)
    probs, opts = probabilities(ds)
    choice = np.array([opts[i] for i in probs.argmax(1)], dtype=object)
    target = np.array([str(x) for x in ds["target"].values], dtype=object)
    cond = np.array([str(x) for x in ds["condition"].values], dtype=object)

    def cell(rows: np.ndarray) -> dict[str, float]:
        if not rows.any():
            return {}
        acc, lo, hi, n = rate(choice[rows] == target[rows])
        return {"accuracy": acc, "lo": lo, "hi": hi, "n": n} | bias_corrected(
            choice[rows], target[rows], probs[rows], opts
        )

    keys = xr.Dataset(
        {
            "condition": ("trial", cond),
            "inject_layer": ("trial", np.asarray(ds["cell_layer"].values)),
            "strength": ("trial", np.asarray(ds["strength"].values)),
        }
    )
    out = _hahami.condition_summary(keys, CONDITIONS, cell)
    out["chance"] = 1 / len(opts)
    picks = choice[cond == "none"]
    out.attrs["uninjected_choices"] = str({o: int((picks == o).sum()) for o in opts})
    return out


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, strength), concept beside random.

    Example::

        text = format_summary(summarize(mi.open_run("sl.zarr")))  # as `mechintro run` prints it
    """

    def row(cell: xr.Dataset) -> dict[str, object] | None:
        c = cell.sel(condition="concept")
        if np.isnan(float(c.accuracy)):
            return None
        out: dict[str, object] = {
            "n": int(c.n),
            "concept [95% CI]": estimate(c.accuracy, c.lo, c.hi),
            "P(target) − P(not target)": f"{float(c.p_target_corrected):+.3f}",
            "power": "varies" if c.varies else "no power (one answer)",
        }
        if "random" in summary.condition.values:
            r = cell.sel(condition="random")
            out["random [95% CI]"] = estimate(r.accuracy, r.lo, r.hi)
            above = bool(cell.above_random)
            out["above random"] = "yes" if above else "no"
        return out

    rows = cell_rows(summary, row)
    return (
        table(rows)
        + f"\nchance {float(summary.chance):.2f}; uninjected answers: "
        + summary.attrs["uninjected_choices"]
        + "\naccuracy: the largest digit logit names the injected sentence (every sentence once "
        "per draw, so balanced); above random: the concept's lower bound exceeds the random "
        "direction's upper bound"
    )
