"""``thoughts-vs-text``: Lindsey's experiment 2 (Lindsey 2025, "Distinguishing
thoughts from text inputs").

Each of the 50 sentences is paired with a concept (a seeded permutation of the 50 words). Two
prompts per pair, the concept vector added only on the sentence's tokens:

* "Tell me what word you think about when you read the line below. Answer immediately." —
  5 tokens; success if the injected concept is the word named (offline: of 10 candidates, the
  injected word and 9 others drawn from the list, the one named first — chance 10%).
* "Repeat the line below. Answer immediately." — 15 tokens; success if the sentence is a
  substring of the response (lowercased), Lindsey's rule.

Strengths 1, 2, 4, 8, 16 over a layer sweep, temperature 1; each pair also runs uninjected once
per prompt (the baselines). The combined metric is the share of pairs for which both succeed.
Both prompts are sampled to 15 tokens and the word prompt's response is cut at 5 (the first five
sampled tokens are the same as a 5-token generation's).

Difference from the paper: Claude's 10-word "which word is it most related to" grader is replaced
by the offline rule above (``mechintro.grading.closest_word``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xarray as xr

from mechintro import grading, stimuli
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import SteeredConfig, cell_rows, cell_summary, interval
from mechintro.models import Model
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.reading import Generate, Readout
from mechintro.runner import Generation, Trial
from mechintro.stats import rate, rogan_gladen, rogan_gladen_clustered
from mechintro.stimuli import WORD_PROMPT, make_pairs
from mechintro.tables import table
from mechintro.vectors import (
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "thoughts-vs-text"
REPEAT_PROMPT = "Repeat the line below. Answer immediately.\n\n{sentence}"
TASKS = {"word": (WORD_PROMPT, 5), "repeat": (REPEAT_PROMPT, 15)}


@dataclass(frozen=True, kw_only=True)
class ThoughtsVsTextConfig(base.LowercaseWords, SteeredConfig):
    """Configuration of a ``thoughts-vs-text`` run (defaults: Lindsey 2025, experiment 2)."""

    concepts: tuple[str, ...] = ()
    """concept words (empty: Lindsey's 50 words)"""
    sentences: tuple[str, ...] = ()
    """sentences to repeat (empty: Lindsey's 50 sentences)"""
    pairs: int = 50
    """(sentence, concept) pairs, each with its own concept and sentence"""
    layers: tuple[str | int | float, ...] = ("0.33", "0.5", "0.6", "0.67", "0.83")
    """injection layers: indices (15) or fractions of depth (0.5)"""
    strengths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    """injection strengths (see strength_unit)"""
    temperature: float = 1.0
    """sampling temperature (0: greedy)"""
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        stimuli.check_pairs(self.pairs, self.words(), self.lines())

    def words(self) -> tuple[str, ...]:
        return self.concepts or tuple(stimuli.concept_words())

    def lines(self) -> tuple[str, ...]:
        return self.sentences or tuple(stimuli.lindsey()["lindsey_sentences_50"])


Config = ThoughtsVsTextConfig


def build_trials(
    config: ThoughtsVsTextConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per sentence-concept pair and task (name the word, repeat the line): the prompt once
    uninjected, then with the concept added on the sentence's tokens at each (layer, strength).

    Example::

        trials, layers = build_trials(Config(pairs=4, layers=("0.5",)), model, vectors)
    """
    layers = resolve_layers(config.layers, model.n_layers)
    pairs = make_pairs(config.words(), config.lines(), config.pairs, config.seed)
    check_vectors_match(vectors, model, [concept for _, concept, _ in pairs])
    trials: list[Trial] = []
    for sentence, concept, candidates in pairs:
        for task, (template, n_tokens) in TASKS.items():
            prompt = tokenize(
                model.tokenizer,
                render_chat(
                    model.tokenizer,
                    [{"role": "user", "content": template.format(sentence=sentence)}],
                ),
            )
            labels = {"task": task, "sentence": sentence, "candidates": json.dumps(candidates)}
            cell = {
                "prompt": prompt,
                "concept": concept,
                "window": Window.span(sentence),
                "labels": labels,
                "max_new_tokens": n_tokens,
            }
            trials.append(Trial(condition="control", **cell))
            for layer in layers:
                v = unit_vector(vectors, concept, layer, config.strength_unit)
                trials += [
                    base.injected_trial(
                        condition="injected", strength=s, layer=layer, vector=v, **cell
                    )
                    for s in config.strengths
                ]
    return trials, layers


def readouts(config: ThoughtsVsTextConfig, model: Model) -> list[Readout]:
    """The sampled answer, as long as the longer task needs."""
    most = max(n for _, n in TASKS.values())
    return [Generate(Generation(max_new_tokens=most, temperature=config.temperature))]


run = base.bound_run(__name__)


def scores(ds: xr.Dataset) -> xr.Dataset:
    """Per trial ``success``: the word task names the injected concept (first named of the 10
    candidates); the repeat task reproduces the sentence."""
    out = []
    for task, response, concept, sentence, candidates in zip(
        ds["task"].values,
        ds["response"].values,
        ds["concept"].values,
        ds["sentence"].values,
        ds["candidates"].values,
        strict=True,
    ):
        if task == "word":
            out.append(grading.closest_word(str(response), json.loads(str(candidates))) == concept)
        else:
            out.append(grading.repeated(str(response), str(sentence)))
    return xr.Dataset(
        {"success": ("trial", np.array(out, dtype=bool))}, coords={"trial": ds.trial.values}
    )


def summarize(ds: xr.Dataset, *, seed: int = 0) -> xr.Dataset:
    """Per (layer, strength): the word-task and repeat-task success rates and the share of pairs
    with both (95% Wilson; each pair has its own concept and sentence), and the uninjected
    baselines in the attrs.

    Example::

        summary = summarize(mi.open_run("tt.zarr"))
        summary.both.sel(strength=4.0)  # word named and sentence repeated
    """
    require_experiment(ds, NAME)
    ok = scores(ds)["success"].values
    task, cond = np.asarray(ds["task"].values), np.asarray(ds["condition"].values)
    sentence = np.asarray(ds["sentence"].values)
    inj = cond == "injected"
    errors = grading.shipped_error_counts("closest_word")

    def cell(rows: np.ndarray) -> dict[str, float]:
        by_task = {
            t: dict(
                zip(
                    sentence[rows & (task == t)].tolist(),
                    ok[rows & (task == t)].tolist(),
                    strict=True,
                )
            )
            for t in TASKS
        }
        both = [
            by_task["word"][k] and by_task["repeat"][k]
            for k in by_task["word"]
            if k in by_task["repeat"]
        ]
        values: dict[str, float] = {"n_pairs": len(both)}
        for name, hits in (
            ("word", list(by_task["word"].values())),
            ("repeat", list(by_task["repeat"].values())),
            ("both", both),
        ):
            r, lo, hi, _ = rate(np.array(hits, dtype=bool))
            values |= {name: r, f"{name}_lo": lo, f"{name}_hi": hi}
        if errors is not None:  # each pair its own concept: the cell's trials are independent
            hits = ok[rows & (task == "word")]
            iv = rogan_gladen(int(hits.sum()), int(hits.size), errors, seed=seed)
            values |= {"word_corr": iv.estimate, "word_corr_lo": iv.lo, "word_corr_hi": iv.hi}
        return values

    out = cell_summary(ds, ("inject_layer", "strength"), cell, where=inj, ints=("n_pairs",))
    for t in TASKS:
        r, lo, hi, n = rate(ok[~inj & (task == t)])
        out.attrs.update(
            {
                f"baseline_{t}": r,
                f"baseline_{t}_lo": lo,
                f"baseline_{t}_hi": hi,
                f"baseline_{t}_n": n,
            }
        )
    out.attrs["chance_word"] = 0.1
    if errors is not None:
        out.attrs.update(corrected_rates(ok, task, inj, np.asarray(ds["concept"].values), errors))
    return out


def corrected_rates(
    ok: np.ndarray,
    task: np.ndarray,
    injected: np.ndarray,
    concept: np.ndarray,
    errors: dict[str, int],
    *,
    seed: int = 0,
) -> dict:
    """The word-task rate raw and corrected for ``closest_word``'s measured error (Rogan–Gladen
    with Beta draws of its sensitivity and specificity on the held-out half of
    :data:`mechintro.grading.WORD_CALIBRATION`, issue 32): over every injected trial (a concept
    recurs in every cell, so concepts are resampled in the same draws,
    :func:`mechintro.stats.rogan_gladen_clustered`) and uninjected (one trial per pair:
    independent). Stored as ``word_corrected_{injected,uninjected}`` = ``[k, n, estimate, lo,
    hi]`` and named in ``word_corrected`` (the grader's counts: ``word_corrected_counts``, tp, fn,
    tn, fp). The repeat task is Lindsey's exact substring rule and
    is not corrected; "both" is bounded above by the corrected word rate."""
    word = task == "word"
    hits = ok[word & injected]
    iv = rogan_gladen_clustered(hits, concept[word & injected], errors, seed=seed)
    base = ok[word & ~injected]
    bv = rogan_gladen(int(base.sum()), int(base.size), errors, seed=seed)
    return {
        "word_corrected_injected": [int(hits.sum()), int(hits.size), iv.estimate, iv.lo, iv.hi],
        "word_corrected_uninjected": [int(base.sum()), int(base.size), bv.estimate, bv.lo, bv.hi],
        "word_corrected_counts": [errors[x] for x in ("tp", "fn", "tn", "fp")],
        "word_corrected": "Rogan–Gladen with Beta draws of closest_word's sensitivity and "
        f"specificity on the {grading.WORD_CALIBRATION}; counts {errors}",
    }


def _estimate(x: float) -> str:
    """A corrected point estimate, or "n/a" where the grader's sensitivity is unmeasured."""
    return f"{x:.3f}" if np.isfinite(x) else "n/a"


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, strength), how often the injected word is
    named and the line repeated (95% CIs), both, and the grader-corrected word rate if stored.

    Example::

        text = format_summary(summarize(mi.open_run("tt.zarr")))  # as `mechintro run` prints it
    """

    def row(c: xr.Dataset) -> dict[str, object]:
        out: dict[str, object] = {
            "pairs": int(c.n_pairs),
            "word named": float(c.word),
            "95% CI": interval(c.word_lo, c.word_hi),
            "repeated": float(c.repeat),
            "95% CI ": interval(c.repeat_lo, c.repeat_hi),
            "both": float(c.both),
        }
        if "word_corr" in summary:
            out["word corrected [95%]"] = (
                f"{_estimate(float(c.word_corr))} {interval(c.word_corr_lo, c.word_corr_hi)}"
            )
        return out

    rows = cell_rows(summary, row)
    a = summary.attrs
    text = table(rows) + (
        f"\nuninjected: word named {a['baseline_word']:.3f} (chance {a['chance_word']:.2f}), "
        f"repeated {a['baseline_repeat']:.3f} (n={a['baseline_word_n']} pairs)"
    )
    if "word_corrected" in a:
        text += f"\nword named, grader-corrected ({a['word_corrected']}):"
        for key, label in (
            ("injected", "injected, every cell (concepts resampled)"),
            ("uninjected", "uninjected"),
        ):
            k, n, est, lo, hi = a[f"word_corrected_{key}"]
            text += (
                f"\n  {label}: raw {int(k)}/{int(n)} = {k / n if n else float('nan'):.3f}; "
                f"corrected {_estimate(est)} [{lo:.3f}, {hi:.3f}]"
            )
        text += (
            "\n  repeated: Lindsey's exact rule, not corrected; both: raw (at most the corrected "
            "word rate)"
        )
    return text
