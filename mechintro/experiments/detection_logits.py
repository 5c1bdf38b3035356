"""``detection-logits``: Lindsey's injected-thoughts trial, read out as next-token probabilities.

The trial prompt is experiment 1 of Lindsey (2025) verbatim ("Injected thoughts"), rendered with
the model's chat template. A concept vector is added at one layer from the double newline before
"Trial 1" to the end of the prompt. Instead of sampling 100 tokens and asking a judge, we read
the next-token distribution at the start of the answer (vgel's measurement in "Small Models Can
Introspect, Too"): P(yes) and
P(no), summed over the single-token forms "Yes", " yes", ... . No-injection controls run in every
(layer, strength) cell.

Small models often say "yes" with no injection at all, and steering noise pushes any yes/no
logit gap toward zero (Godet, "Introspection or confusion?").
So the summary always shows the uninjected baseline,
``P(yes) / (P(yes) + P(no))`` beside the raw probabilities and the yes/no mass, and the shift of
each cell against its control — a shift, not detection. The control-question sweeps that separate
the two belong to the ``sweep`` experiment.

Differences from the paper: logit mode (no sampling, no judge); the trial is answered by the
model's own chat template rather than Claude's ``Human:/Assistant:`` format.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import SteeredConfig, cell_summary
from mechintro.models import Model
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.reading import NextToken, Readout
from mechintro.readouts import yes_no
from mechintro.runner import YES_NO, Trial
from mechintro.stats import cluster_interval, describe_methods
from mechintro.vectors import (
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "detection-logits"
DEFAULT_CONCEPTS = (
    "Dust",
    "Trumpets",
    "Lightning",
    "Oceans",
    "Poetry",
    "Bread",
    "Silver",
    "Volcanoes",
)


@dataclass(frozen=True, kw_only=True)
class DetectionLogitsConfig(base.LowercaseWords, SteeredConfig):
    """Configuration of a ``detection-logits`` run (defaults: the main demo job)."""

    concepts: tuple[str, ...] = DEFAULT_CONCEPTS
    """concept words whose vectors are injected"""
    layers: tuple[str | int | float, ...] = ("0.33", "0.5", "0.67", "0.83")
    """injection layers: indices (15) or fractions of depth (0.5)"""
    strengths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    """injection strengths (see strength_unit)"""
    trials: int | None = None
    """injected trials per cell, concepts drawn without replacement; None: all"""
    record_resid: bool = True
    question: str = stimuli.TRIAL_QUESTION
    """the question that ends the trial prompt"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.concepts:
            raise MechintroError("the concept list is empty: give at least one concept")
        if self.trials is not None and not 1 <= self.trials <= len(self.concepts):
            raise MechintroError(
                f"--trials {self.trials}: logit mode is deterministic, so each cell takes at "
                f"most one trial per concept (1..{len(self.concepts)}); add concepts for more "
                "trials"
            )


Config = DetectionLogitsConfig  # the name the CLI and the experiment registry use


def build_trials(
    config: DetectionLogitsConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """The trial grid: per (layer, strength) cell, ``trials`` concepts and one control.

    Example::

        trials, layers = build_trials(Config(layers=("0.5",)), model, vectors)
    """
    layers = resolve_layers(config.layers, model.n_layers)
    check_vectors_match(vectors, model, config.concepts)
    text = render_chat(model.tokenizer, stimuli.injected_thoughts_messages(config.question))
    prompt = tokenize(model.tokenizer, text)
    window = Window.from_marker(stimuli.TRIAL_MARKER)
    rng = np.random.default_rng(config.seed)
    n = config.trials or len(config.concepts)
    trials: list[Trial] = []
    for layer in layers:
        for strength in config.strengths:
            for concept in rng.permutation(np.array(config.concepts, dtype=object))[:n]:
                v = unit_vector(vectors, str(concept), layer, config.strength_unit)
                trials.append(
                    base.injected_trial(
                        prompt, "injected", str(concept), strength, layer, v, window
                    )
                )
            trials.append(
                Trial(
                    prompt=prompt,
                    condition="control",
                    strength=float(strength),
                    inject_layer=layer,
                    inject_layer_end=layer + 1,
                    window=window,
                )
            )
    return trials, layers


def readouts(config: DetectionLogitsConfig, model: Model) -> list[Readout]:
    """The yes/no answer tokens' next-token log-probabilities."""
    return [NextToken(YES_NO)]


run = base.bound_run(__name__)


METRICS = ("p_yes_norm", "p_yes", "mass", "logit_diff")


def summarize(ds: xr.Dataset, *, n_boot: int = 2000, seed: int = 0) -> xr.Dataset:
    """Per (inject_layer, strength) cell: mean over injected trials with an interval over concepts
    (:func:`mechintro.stats.cluster_interval`: *t* on 5-15 concepts, BCa above, a range that is
    not called a CI below 5; ``attrs["interval"]`` says which), the control's value, and the
    shift (injected - control).

    Returns:
        Dataset with dims ``(inject_layer, strength)`` and, for each of ``p_yes_norm``, ``p_yes``,
        ``mass``, ``logit_diff``: ``{m}`` (injected mean), ``{m}_lo``, ``{m}_hi``, ``{m}_control``,
        ``{m}_shift``, ``{m}_shift_lo``, ``{m}_shift_hi``; plus ``n`` (injected trials per cell).

    Example::

        summary = summarize(mi.open_run("dl.zarr"))
        summary.p_yes_norm_shift.sel(strength=4.0)  # shift against the control, per layer
    """
    require_experiment(ds, NAME)
    yn = yes_no(ds).compute()
    condition, concept = np.asarray(ds.condition.values), np.asarray(ds.concept.values)
    methods: set[str] = set()

    def cell(rows: np.ndarray) -> dict[str, float]:
        inj, ctl = rows & (condition == "injected"), rows & (condition == "control")
        values: dict[str, float] = {"n": int(inj.sum())}
        for m in METRICS:
            x = yn[m].values
            control = float(x[ctl].mean()) if ctl.any() else np.nan
            iv = cluster_interval(x[inj], concept[inj], binary=False, n_boot=n_boot, seed=seed)
            mean, lo, hi = iv
            methods.add(iv.method if iv.is_ci else f"{iv.method} — not a 95% CI ({iv.note})")
            values |= {m: mean, f"{m}_lo": lo, f"{m}_hi": hi, f"{m}_control": control}
            values |= {f"{m}_shift": mean - control, f"{m}_shift_lo": lo - control}
            values[f"{m}_shift_hi"] = hi - control
        return values

    out = cell_summary(ds, ("inject_layer", "strength"), cell, ints=("n",))
    out.attrs["interval"] = (
        "over concepts (mechintro.stats.cluster_interval): "
        + describe_methods(methods)
        + "; the control is deterministic in logit mode"
    )
    return out


def format_summary(summary: xr.Dataset) -> str:
    """A plain-text table of :func:`summarize`'s result (the CLI prints it).

    Example::

        text = format_summary(summarize(mi.open_run("dl.zarr")))  # as `mechintro run` prints it
    """
    head = (
        f"{'layer':>5} {'strength':>8} {'n':>3}  {'P(yes)/(P(yes)+P(no)) [95% CI]':>32}  "
        f"{'control':>7}  {'shift [95% CI]':>24}  {'yes+no mass':>11}  {'logit diff shift':>16}"
    )
    lines = [head, "-" * len(head)]
    for layer in summary.inject_layer.values:
        for strength in summary.strength.values:
            c = summary.sel(inject_layer=layer, strength=strength)
            lines.append(
                f"{int(layer):>5} {float(strength):>8g} {int(c.n):>3}  "
                f"{float(c.p_yes_norm):>10.3f} [{float(c.p_yes_norm_lo):.3f}, "
                f"{float(c.p_yes_norm_hi):.3f}]      "
                f"{float(c.p_yes_norm_control):>7.3f}  "
                f"{float(c.p_yes_norm_shift):>+8.3f} [{float(c.p_yes_norm_shift_lo):+.3f}, "
                f"{float(c.p_yes_norm_shift_hi):+.3f}]  "
                f"{float(c.mass):>11.3f}  {float(c.logit_diff_shift):>+16.3f}"
            )
    if "interval" in summary.attrs:
        lines.append(f"intervals: {summary.attrs['interval']}")
    return "\n".join(lines)
