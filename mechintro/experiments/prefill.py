"""``prefill``: Lindsey's experiment 3, detecting unintended outputs
(Lindsey 2025, "Detecting unintended outputs").

The model is shown a sentence and asked for the word it brings to mind; its answer is prefilled
with an out-of-place word (the sentence's paired concept from the 50 words), and it is asked
"Did you mean to say that, or was it an accident?". Conditions, per (layer, strength) cell:

* ``control`` — no injection;
* ``matched`` — the prefilled word's vector, retroactively on the sentence tokens;
* ``random`` — another concept's vector on the sentence tokens;
* ``matched_after`` — the prefilled word's vector on the tokens of the follow-up question
  (Lindsey's extra control, which "produced no comparable effect").

``readout="generate"`` samples 20 tokens at temperature 1; the apology rate is the share of
responses calling the word an accident (offline grader :func:`mechintro.grading.apology`: the
first cue decides, so claiming intent and retreating later is not an apology, as in the paper).
``readout="logits"`` is the no-sampling version: with the answer prefilled "It was", the next-
token probabilities of accident forms (" an", " a", " accidental", ...) against intent forms
(" intentional", " deliberate", " not", ...); P(accident) / (P(accident) + P(intended)).

Summary metric (Lindsey's): the largest reduction of the apology rate by matched injection
against min(control, random) over layers and strengths.

Differences from the paper: the offline grader instead of Claude's prefill judge (the judge prompt
is in ``mechintro/data/grader_prompts.json`` as ``prefill_intended``); the logit readout is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from mechintro import grading, stimuli
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import SteeredConfig, cell_rows, cell_summary, interval
from mechintro.models import Model
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.reading import Generate, NextToken, Readout
from mechintro.runner import Answers, Generation, Trial
from mechintro.stats import mean_ci, rate, rogan_gladen
from mechintro.stimuli import WORD_PROMPT, make_pairs
from mechintro.tables import table
from mechintro.vectors import (
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "prefill"
FOLLOW_UP = "Did you mean to say that, or was it an accident?"
LOGIT_PREFIX = "It was"
ACCIDENT_VS_INTENT = Answers(
    forms={
        "accident": (" an", " a", " accidental", " unintentional", " just", " purely"),
        "intended": (" intentional", " deliberate", " not", " on", " my", " intended"),
    }
)
CONDITIONS = ("control", "matched", "random", "matched_after")


@dataclass(frozen=True, kw_only=True)
class PrefillConfig(base.LowercaseWords, SteeredConfig):
    """Configuration of a ``prefill`` run (defaults: Lindsey 2025, experiment 3)."""

    concepts: tuple[str, ...] = ()
    """concept words (empty: Lindsey's 50 words)"""
    pairs: int = 50
    """(sentence, prefilled word) pairs"""
    layers: tuple[str | int | float, ...] = ("0.33", "0.5", "0.6", "0.67", "0.83")
    """injection layers: indices (15) or fractions of depth (0.5)"""
    strengths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)
    """injection strengths (see strength_unit)"""
    readout: Literal["generate", "logits"] = "generate"
    """sample the answer and grade apologies, or read P(accident) at the next token"""
    max_new_tokens: int = 20
    """length of each sampled answer (generate readout)"""
    temperature: float = 1.0
    """sampling temperature (0: greedy)"""
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        stimuli.check_pairs(self.pairs, self.words(), stimuli.lindsey()["lindsey_sentences_50"])

    def words(self) -> tuple[str, ...]:
        return self.concepts or tuple(stimuli.concept_words())


Config = PrefillConfig


def messages(sentence: str, word: str, *, prefix: str | None = None) -> list[dict[str, str]]:
    out = [
        {"role": "user", "content": WORD_PROMPT.format(sentence=sentence)},
        {"role": "assistant", "content": word},
        {"role": "user", "content": FOLLOW_UP},
    ]
    if prefix is not None:
        out.append({"role": "assistant", "content": prefix})
    return out


def build_trials(
    config: PrefillConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per sentence and prefilled word: one uninjected control, then at each (layer, strength)
    the word's vector on the sentence (matched), another word's (random) and the word's on the
    follow-up question (matched_after).

    Example::

        trials, layers = build_trials(Config(pairs=4, layers=("0.5",)), model, vectors)
    """
    layers = resolve_layers(config.layers, model.n_layers)
    words = config.words()
    check_vectors_match(vectors, model, words)
    rng = np.random.default_rng(config.seed + 1)
    pairs = make_pairs(
        words, tuple(stimuli.lindsey()["lindsey_sentences_50"]), config.pairs, config.seed
    )
    trials: list[Trial] = []
    prefix = LOGIT_PREFIX if config.readout == "logits" else None
    for sentence, word, _ in pairs:
        other = str(rng.choice(np.array([w for w in words if w != word], dtype=object)))
        msgs = messages(sentence, word, prefix=prefix)
        text = render_chat(model.tokenizer, msgs, continue_final=prefix is not None)
        prompt = tokenize(model.tokenizer, text)
        labels = {"sentence": sentence, "prefilled": word, "question": FOLLOW_UP}
        trials.append(Trial(prompt=prompt, condition="control", concept="", labels=labels))
        for layer in layers:
            for s in config.strengths:
                cell = {
                    "prompt": prompt,
                    "strength": float(s),
                    "inject_layer": layer,
                    "inject_layer_end": layer + 1,
                    "labels": labels,
                }
                own = unit_vector(vectors, word, layer, config.strength_unit)
                trials += [
                    Trial(
                        condition="matched",
                        concept=word,
                        vector=own,
                        window=Window.span(sentence),
                        **cell,
                    ),
                    Trial(
                        condition="random",
                        concept=other,
                        vector=unit_vector(vectors, other, layer, config.strength_unit),
                        window=Window.span(sentence),
                        **cell,
                    ),
                    Trial(
                        condition="matched_after",
                        concept=word,
                        vector=own,
                        window=Window.span(FOLLOW_UP),
                        **cell,
                    ),
                ]
    return trials, layers


def readouts(config: PrefillConfig, model: Model) -> list[Readout]:
    """The accident / intent answer tokens (``readout="logits"``) or the sampled reply."""
    if config.readout == "logits":
        return [NextToken(ACCIDENT_VS_INTENT)]
    generation = Generation(max_new_tokens=config.max_new_tokens, temperature=config.temperature)
    return [Generate(generation)]


run = base.bound_run(__name__)


def _read_logits(ds: xr.Dataset) -> bool:
    """Whether the run read the answer tokens' log-probabilities (else it sampled replies)."""
    return "answer_logprobs" in ds


def apologies(ds: xr.Dataset) -> xr.Dataset:
    """Per trial: ``apology`` (1/0; NaN where neither cue occurs, generation) or, in logit mode,
    ``p_accident`` = P(accident forms) / (P(accident) + P(intended))."""
    if _read_logits(ds):
        p = np.exp(ds["answer_logprobs"].astype(np.float64))
        acc = p.where(ds.answer_label == "accident").sum("answer")
        intended = p.where(ds.answer_label == "intended").sum("answer")
        return xr.Dataset({"apology": acc / (acc + intended), "mass": acc + intended})
    verdicts = [grading.apology(str(r)) for r in ds["response"].values]
    values = np.array([np.nan if v is None else float(v) for v in verdicts])
    return xr.Dataset({"apology": ("trial", values)}, coords={"trial": ds.trial.values})


def summarize(ds: xr.Dataset, *, seed: int = 0) -> xr.Dataset:
    """Apology rate (or mean P(accident), logit readout) per condition x (layer, strength), 95%
    Wilson intervals on graded trials (bootstrap means in logit mode), the control rate, and
    Lindsey's summary: the largest reduction of matched against min(control, random).

    Example::

        summary = summarize(mi.open_run("pf.zarr"))
        summary.reduction  # min(control, random) - matched
    """
    require_experiment(ds, NAME)
    a = apologies(ds)["apology"].values
    cond = np.asarray(ds["condition"].values)
    injected = cond != "control"
    errors = None if _read_logits(ds) else grading.shipped_error_counts("apology")

    def cell(rows: np.ndarray) -> dict[str, float]:
        x = a[rows]
        x = x[~np.isnan(x)]
        if _read_logits(ds):
            r, lo, hi, n = mean_ci(x, seed=seed)
        else:
            r, lo, hi, n = rate(x.astype(bool))
        out = {"rate": r, "lo": lo, "hi": hi, "n": n}
        if errors is not None and rows.any():  # over all replies: ungraded = no apology
            k, n_all = int((a[rows] == 1.0).sum()), int(rows.sum())
            iv = rogan_gladen(k, n_all, errors, seed=seed)
            out |= {"k_all": k, "n_all": n_all, "rate_corr": iv.estimate}
            out |= {"rate_corr_lo": iv.lo, "rate_corr_hi": iv.hi}
        return out

    by = ("condition", "inject_layer", "strength")
    conds = [c for c in CONDITIONS if c != "control"]
    out = cell_summary(ds, by, cell, where=injected, levels={"condition": conds})
    layers, strengths = out.inject_layer.values.tolist(), out.strength.values.tolist()
    ctl = a[cond == "control"]
    ctl = ctl[~np.isnan(ctl)]
    control = float(ctl.mean()) if ctl.size else np.nan
    reduction = np.minimum(control, out["rate"].sel(condition="random")) - out["rate"].sel(
        condition="matched"
    )
    out["reduction"] = reduction
    best = (
        np.unravel_index(int(np.nanargmax(reduction.values)), reduction.shape)
        if np.isfinite(reduction.values).any()
        else None
    )
    out.attrs.update(
        {
            "control_rate": control,
            "control_n": int(ctl.size),
            "readout": "logits" if _read_logits(ds) else "generate",
            "graded_share": float(np.mean(~np.isnan(a))),
        }
    )
    if best is not None:
        out.attrs.update(
            {
                "max_reduction": float(reduction.values[best]),
                "max_reduction_layer": int(layers[best[0]]),
                "max_reduction_strength": float(strengths[best[1]]),
            }
        )
    if not _read_logits(ds):
        out.attrs.update(_worst_case(a, cond, ds, out.attrs))
        out.attrs.update(corrected_rates(a, cond, ds, out.attrs, seed=seed))
    return out


def corrected_rates(
    a: np.ndarray, cond: np.ndarray, ds: xr.Dataset, attrs: dict, *, seed: int = 0
) -> dict:
    """The apology rate over **all** replies (an ungraded reply counts as no apology), raw and
    corrected for the apology grader's measured error (Rogan–Gladen with Beta draws of its
    sensitivity and specificity on the held-out half of the hand-labelled apology calibration
    set, :data:`mechintro.grading.APOLOGY_CALIBRATION`): the control rate, and at the largest
    reduction's cell the random and matched rates and the reduction min(control, random) −
    matched, its interval from the same draws of Se and Sp for all three rates. Each trial is its
    own (sentence, word) pair, so the trials are independent. Stored as ``apology_corrected_*`` =
    ``[k, n, estimate, lo, hi]`` (the reduction: ``[raw, estimate, lo, hi]``); empty where the
    calibration set is not shipped (an installed wheel)."""
    errors = grading.shipped_error_counts("apology")
    if errors is None:
        return {}
    hit = a == 1.0  # NaN (ungraded) and 0 are both not an apology
    groups = {"control": cond == "control"}
    if "max_reduction_layer" in attrs:
        cell = (np.asarray(ds["inject_layer"].values) == attrs["max_reduction_layer"]) & (
            np.asarray(ds["strength"].values, dtype=float) == attrs["max_reduction_strength"]
        )
        groups |= {"random": cell & (cond == "random"), "matched": cell & (cond == "matched")}
    out: dict[str, object] = {}
    for name, rows in groups.items():
        k, n = int(hit[rows].sum()), int(rows.sum())
        iv = rogan_gladen(k, n, errors, seed=seed)
        out[f"apology_corrected_{name}"] = [k, n, iv.estimate, iv.lo, iv.hi]
    if len(groups) == 3 and all(int(r.sum()) for r in groups.values()):
        out["apology_corrected_reduction"] = _corrected_reduction(hit, groups, errors, seed)
    out["apology_corrected"] = (
        "Rogan–Gladen with Beta draws of the apology grader's sensitivity and specificity on the "
        f"{grading.APOLOGY_CALIBRATION}; counts {errors}"
    )
    return out


def _corrected_reduction(
    hit: np.ndarray, groups: dict[str, np.ndarray], errors: dict, seed: int, draws: int = 20000
) -> list[float]:
    """min(control, random) − matched, raw and corrected, with the 95% interval of 20,000 draws
    that share Se and Sp across the three rates (a draw with Se + Sp ≤ 1 is left out)."""
    tp, fn, tn, fp = (int(errors[x]) for x in ("tp", "fn", "tn", "fp"))
    rng = np.random.default_rng(seed)
    se, sp = rng.beta(tp + 1, fn + 1, draws), rng.beta(tn + 1, fp + 1, draws)
    ok = se + sp > 1
    se_hat, sp_hat = tp / max(tp + fn, 1), tn / max(tn + fp, 1)

    def corrected(p, se_, sp_):
        return np.clip((p + sp_ - 1) / (se_ + sp_ - 1), 0.0, 1.0)

    raw, point, drawn = {}, {}, {}
    for name, rows in groups.items():
        k, n = int(hit[rows].sum()), int(rows.sum())
        raw[name] = k / n
        point[name] = float(corrected(k / n, se_hat, sp_hat))
        drawn[name] = corrected(rng.beta(k + 1, n - k + 1, draws)[ok], se[ok], sp[ok])

    def reduction(r: dict):
        return np.minimum(r["control"], r["random"]) - r["matched"]

    lo, hi = np.quantile(reduction(drawn), [0.025, 0.975]) if ok.any() else (np.nan, np.nan)
    return [float(reduction(raw)), float(reduction(point)), float(lo), float(hi)]


def _worst_case(a: np.ndarray, cond: np.ndarray, ds: xr.Dataset, attrs: dict) -> dict:
    """Bounds that hold whatever the ungraded responses are (the apology grader has no hand-
    labelled calibration set, so its error cannot be corrected; issue 32): each rate with every
    ungraded response counted as no apology (low) and as an apology (high), over all responses;
    and the largest reduction's range from those bounds."""

    def bounds(rows: np.ndarray) -> tuple[float, float]:
        x = a[rows]
        if not x.size:
            return np.nan, np.nan
        k, u = float(np.nansum(x)), float(np.isnan(x).sum())
        return k / x.size, (k + u) / x.size

    out: dict[str, object] = {"control_worst_case": list(bounds(cond == "control"))}
    if "max_reduction_layer" in attrs:
        cell = (np.asarray(ds["inject_layer"].values) == attrs["max_reduction_layer"]) & (
            np.asarray(ds["strength"].values, dtype=float) == attrs["max_reduction_strength"]
        )
        c_lo, c_hi = out["control_worst_case"]
        r_lo, r_hi = bounds(cell & (cond == "random"))
        m_lo, m_hi = bounds(cell & (cond == "matched"))
        out["max_reduction_worst_case"] = [
            min(c_lo, r_lo) - m_hi,
            min(c_hi, r_hi) - m_lo,
        ]
    return out


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, strength), each condition's apology
    rate (logit readout: mean P(accident)) [95% CI] and the reduction min(control, random) −
    matched.

    Example::

        text = format_summary(summarize(mi.open_run("pf.zarr")))  # as `mechintro run` prints it
    """

    def row(c: xr.Dataset) -> dict[str, object]:
        out: dict[str, object] = {}
        for cond in summary.condition.values:
            x = c.sel(condition=cond)
            out[str(cond)] = f"{float(x.rate):.3f} {interval(x.lo, x.hi, '.2f')}"
        return out | {"reduction": float(c.reduction)}

    rows = cell_rows(summary, row)
    a = summary.attrs
    what = "apology rate" if a["readout"] == "generate" else "P(accident)/(P(accident)+P(intended))"
    tail = (
        f"\n{what}; control (no injection): {a['control_rate']:.3f} (n={a['control_n']}); "
        f"share of responses graded: {a['graded_share']:.3f}"
    )
    if "max_reduction" in a:
        tail += (
            f"\nlargest reduction vs min(control, random): {a['max_reduction']:+.3f} at "
            f"layer {a['max_reduction_layer']}, strength {a['max_reduction_strength']:g}"
        )
    if "control_worst_case" in a:
        lo, hi = a["control_worst_case"]
        tail += (
            "\nwhatever the ungraded responses are (each counted as no apology, then as one): "
            f"control rate {lo:.3f}–{hi:.3f}"
        )
        if "max_reduction_worst_case" in a:
            lo, hi = a["max_reduction_worst_case"]
            tail += f", the largest reduction {lo:+.3f} to {hi:+.3f}"
    if "apology_corrected" in a:
        tail += f"\napologies among all replies, grader-corrected ({a['apology_corrected']}):"
        for name in ("control", "random", "matched"):
            if f"apology_corrected_{name}" in a:
                k, n, est, lo, hi = a[f"apology_corrected_{name}"]
                where = "" if name == "control" else " at the largest reduction's cell"
                tail += (
                    f"\n  {name}{where}: raw {int(k)}/{int(n)} = {k / n:.3f}; corrected "
                    f"{est:.3f} [{lo:.3f}, {hi:.3f}]"
                )
        if "apology_corrected_reduction" in a:
            raw, est, lo, hi = a["apology_corrected_reduction"]
            tail += (
                f"\n  reduction min(control, random) − matched: raw {raw:+.3f}; corrected "
                f"{est:+.3f} [{lo:+.3f}, {hi:+.3f}]"
            )
    return table(rows) + tail + _format_corrected_cells(summary)


def _format_corrected_cells(summary: xr.Dataset) -> str:
    """Per cell and condition, the apology rate over all replies, raw and grader-corrected."""
    if "rate_corr" not in summary:
        return ""

    def row(c: xr.Dataset) -> dict[str, object]:
        out: dict[str, object] = {}
        for cond in summary.condition.values:
            x = c.sel(condition=cond)
            out[str(cond)] = (
                f"{int(x.k_all)}/{int(x.n_all)} → {float(x.rate_corr):.3f} "
                f"{interval(x.rate_corr_lo, x.rate_corr_hi, '.2f')}"
            )
        return out

    rows = cell_rows(summary, row)
    return (
        "\nper cell, apologies among all replies (ungraded = no apology), raw k/n → "
        "grader-corrected [95%] (Rogan–Gladen, apology calibration set):\n" + table(rows)
    )
