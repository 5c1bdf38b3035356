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

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.config import finite
from mechintro.errors import MechintroError
from mechintro.experiments._common import layer_map, require_experiment
from mechintro.models import DEFAULT_MODEL, Model
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.readouts import yes_no
from mechintro.runner import YES_NO, Shard, Trial, execute
from mechintro.stats import cluster_interval
from mechintro.vectors import (
    StrengthUnit,
    check_vectors_match,
    concept_vectors,
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
class DetectionLogitsConfig:
    """Configuration of a ``detection-logits`` run (defaults: the main demo job)."""

    model: str = DEFAULT_MODEL
    concepts: tuple[str, ...] = DEFAULT_CONCEPTS
    layers: tuple[str, ...] = ("0.33", "0.5", "0.67", "0.83")
    strengths: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    strength_unit: StrengthUnit = "raw"
    trials: int | None = (
        None  # injected trials per cell, concepts drawn without replacement; None: all
    )
    seed: int = 0
    batch_size: int = 16
    record_resid: bool = True
    question: str = stimuli.TRIAL_QUESTION

    def __post_init__(self) -> None:
        _check_types(self)
        if not self.concepts:
            raise MechintroError("the concept list is empty: give at least one concept")
        if len(set(c.lower() for c in self.concepts)) != len(self.concepts):
            raise MechintroError("the concept list has duplicates: give each concept once")
        if not self.strengths:
            raise MechintroError("the strength list is empty: give at least one strength")
        if not all(finite(s) for s in self.strengths):
            raise MechintroError(f"strengths must be finite numbers, got {list(self.strengths)}")
        if len(set(self.strengths)) != len(self.strengths):
            raise MechintroError(
                f"the strength list {list(self.strengths)} has duplicates (by value): give each strength once"
            )
        if not 0 <= self.seed < 2**63:
            raise MechintroError(
                f"seed {self.seed} is out of range: give an integer from 0 to 2**63 - 1"
            )
        if self.trials is not None and not 1 <= self.trials <= len(self.concepts):
            raise MechintroError(
                f"--trials {self.trials}: logit mode is deterministic, so each cell takes at most one "
                f"trial per concept (1..{len(self.concepts)}); add concepts for more trials"
            )
        if self.batch_size < 1:
            raise MechintroError(f"batch size must be at least 1, got {self.batch_size}")


def _check_types(config: DetectionLogitsConfig) -> None:
    """Wrong types from the Python API get the same one-line errors as bad CLI input."""

    def is_number(x: object) -> bool:
        return isinstance(x, int | float) and not isinstance(x, bool)

    checks = [
        ("model", isinstance(config.model, str), "a string"),
        (
            "concepts",
            isinstance(config.concepts, tuple | list)
            and all(isinstance(c, str) for c in config.concepts),
            "a tuple of strings",
        ),
        (
            "layers",
            isinstance(config.layers, tuple | list)
            and all(isinstance(x, str) or is_number(x) for x in config.layers),
            "a tuple of indices or fractions",
        ),
        (
            "strengths",
            isinstance(config.strengths, tuple | list)
            and all(is_number(x) for x in config.strengths),
            "a tuple of numbers",
        ),
        ("strength_unit", config.strength_unit in ("raw", "resid_norm"), "'raw' or 'resid_norm'"),
        (
            "trials",
            config.trials is None
            or (isinstance(config.trials, int) and not isinstance(config.trials, bool)),
            "an integer or None",
        ),
        ("seed", isinstance(config.seed, int) and not isinstance(config.seed, bool), "an integer"),
        (
            "batch_size",
            isinstance(config.batch_size, int) and not isinstance(config.batch_size, bool),
            "an integer",
        ),
        ("record_resid", isinstance(config.record_resid, bool), "True or False"),
        ("question", isinstance(config.question, str), "a string"),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise MechintroError(
                f"{name}={getattr(config, name)!r} is invalid: it must be {expected}"
            )


Config = DetectionLogitsConfig  # the name the CLI and the experiment registry use


def build_trials(
    config: DetectionLogitsConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """The trial grid: per (layer, strength) cell, ``trials`` concepts and one control."""
    layers = resolve_layers(config.layers, model.n_layers)
    check_vectors_match(vectors, model)
    missing = [c for c in config.concepts if c not in set(vectors.concept.values.tolist())]
    if missing:
        raise MechintroError(f"no vectors for {missing}: compute vectors for these concepts")
    text = render_chat(model.tokenizer, stimuli.injected_thoughts_messages(config.question))
    prompt = tokenize(model.tokenizer, text)
    window = Window.from_marker(stimuli.TRIAL_MARKER)
    rng = np.random.default_rng(config.seed)
    n = config.trials or len(config.concepts)
    trials: list[Trial] = []
    for layer in layers:
        for strength in config.strengths:
            for concept in rng.permutation(np.array(config.concepts, dtype=object))[:n]:
                trials.append(
                    Trial(
                        prompt=prompt,
                        condition="injected",
                        concept=str(concept),
                        strength=float(strength),
                        inject_layer=layer,
                        inject_layer_end=layer + 1,
                        vector=unit_vector(vectors, str(concept), layer, config.strength_unit),
                        window=window,
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


def run(
    config: DetectionLogitsConfig,
    out: str | Path,
    *,
    model: Model,
    vectors: xr.DataArray | None = None,
    progress: Callable[[int, int], None] | None = None,
    shard: Shard | None = None,
) -> Path:
    """Run the experiment into ``out`` (resuming it if present). Computes Lindsey vectors for
    the configured concepts when ``vectors`` is not given."""
    if vectors is None:
        vectors = concept_vectors(model, config.concepts)
    trials, layers = build_trials(config, model, vectors)
    return execute(
        model,
        trials,
        out,
        config=dataclasses.asdict(config),
        mode="logits",
        answers=YES_NO,
        batch_size=config.batch_size,
        record=config.record_resid,
        seed=config.seed,
        extra_attrs={
            "experiment": NAME,
            "layer_map": layer_map(config.layers, layers),
            "vectors_method": vectors.attrs.get("method", ""),
        },
        progress=progress,
        shard=shard,
    )


def summarize(ds: xr.Dataset, *, n_boot: int = 2000, seed: int = 0) -> xr.Dataset:
    """Per (inject_layer, strength) cell: mean over injected trials with an interval over concepts
    (:func:`mechintro.stats.cluster_interval`: *t* on 5–15 concepts, BCa above, a range that is
    not called a CI below 5; ``attrs["interval"]`` says which), the control's value, and the shift (injected − control).

    Returns:
        Dataset with dims ``(inject_layer, strength)`` and, for each of ``p_yes_norm``, ``p_yes``,
        ``mass``, ``logit_diff``: ``{m}`` (injected mean), ``{m}_lo``, ``{m}_hi``, ``{m}_control``,
        ``{m}_shift``, ``{m}_shift_lo``, ``{m}_shift_hi``; plus ``n`` (injected trials per cell).
    """
    require_experiment(ds, NAME)
    yn = (
        yes_no(ds)
        .assign_coords(
            condition=ds.condition,
            concept=ds.concept,
            inject_layer=ds.inject_layer,
            strength=ds.strength,
        )
        .compute()
    )
    layers = sorted(set(ds.inject_layer.values.tolist()))
    strengths = sorted(set(ds.strength.values.tolist()))
    metrics = ("p_yes_norm", "p_yes", "mass", "logit_diff")
    suffixes = ("", "_lo", "_hi", "_control", "_shift", "_shift_lo", "_shift_hi")
    arrays = {
        f"{m}{s}": np.full((len(layers), len(strengths)), np.nan) for m in metrics for s in suffixes
    }
    counts = np.zeros((len(layers), len(strengths)), dtype=int)
    methods: set[str] = set()
    for i, layer in enumerate(layers):
        for j, strength in enumerate(strengths):
            cell = (yn.inject_layer == layer) & (yn.strength == strength)
            inj = yn.where(cell & (yn.condition == "injected"), drop=True)
            ctl = yn.where(cell & (yn.condition == "control"), drop=True)
            counts[i, j] = inj.sizes.get("trial", 0)
            for m in metrics:
                values = inj[m].values
                control = float(ctl[m].values.mean()) if ctl.sizes.get("trial", 0) else np.nan
                iv = cluster_interval(
                    values, inj.concept.values, binary=False, n_boot=n_boot, seed=seed
                )
                mean, lo, hi = iv
                methods.add(iv.method if iv.is_ci else f"{iv.method} — not a 95% CI ({iv.note})")
                arrays[m][i, j], arrays[f"{m}_lo"][i, j], arrays[f"{m}_hi"][i, j] = mean, lo, hi
                arrays[f"{m}_control"][i, j] = control
                arrays[f"{m}_shift"][i, j] = mean - control
                arrays[f"{m}_shift_lo"][i, j] = lo - control
                arrays[f"{m}_shift_hi"][i, j] = hi - control
    out = xr.Dataset(
        {k: (("inject_layer", "strength"), v) for k, v in arrays.items()}
        | {"n": (("inject_layer", "strength"), counts)},
        coords={"inject_layer": layers, "strength": strengths},
    )
    out.attrs["interval"] = (
        "over concepts (mechintro.stats.cluster_interval): "
        + "; ".join(sorted(methods))
        + "; the control is deterministic in logit mode"
    )
    return out


def format_summary(summary: xr.Dataset) -> str:
    """A plain-text table of :func:`summarize`'s result (the CLI prints it)."""
    head = f"{'layer':>5} {'strength':>8} {'n':>3}  {'P(yes)/(P(yes)+P(no)) [95% CI]':>32}  {'control':>7}  {'shift [95% CI]':>24}  {'yes+no mass':>11}  {'logit diff shift':>16}"
    lines = [head, "-" * len(head)]
    for layer in summary.inject_layer.values:
        for strength in summary.strength.values:
            c = summary.sel(inject_layer=layer, strength=strength)
            lines.append(
                f"{int(layer):>5} {float(strength):>8g} {int(c.n):>3}  "
                f"{float(c.p_yes_norm):>10.3f} [{float(c.p_yes_norm_lo):.3f}, {float(c.p_yes_norm_hi):.3f}]      "
                f"{float(c.p_yes_norm_control):>7.3f}  "
                f"{float(c.p_yes_norm_shift):>+8.3f} [{float(c.p_yes_norm_shift_lo):+.3f}, {float(c.p_yes_norm_shift_hi):+.3f}]  "
                f"{float(c.mass):>11.3f}  {float(c.logit_diff_shift):>+16.3f}"
            )
    if "interval" in summary.attrs:
        lines.append(f"intervals: {summary.attrs['interval']}")
    return "\n".join(lines)
