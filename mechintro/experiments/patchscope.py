"""``patchscope``: what a concept vector says when the model is asked to repeat it — the token
identity Patchscope of Ghandeharioun et al. (2024, "Patchscopes: A Unifying Framework for
Inspecting Hidden Representations of Language Models", ICML), applied to a concept vector.

The paper's identity target prompt, "cat->cat; 1135->1135; hello->hello; ?", teaches the model
to repeat whatever stands before the arrow; the hidden state at the placeholder "?" is replaced,
at one layer, by the representation under study, and the continuation decodes it. Here the
representation is a concept vector (Lindsey's mean difference, scaled by ``strength`` in
``strength_unit``), written into the residual stream at the placeholder after block ``layer``
(``mode="replace"``: h ← v; ``"add"``: the oracles' norm-matched h ← h + strength·‖h‖·v/‖v‖).
The model's greedy continuation is read, and a trial succeeds when it starts with the concept
word. Controls in every (layer, strength) cell and for every concept: a random vector of the same
norm patched the same way (``random``), and no patch (``none``: the prompt's own answer).

Differences from the paper: one line per example and an arrow after the placeholder
("? ->"), so the next token is the answer; a concept vector instead of a hidden state taken from
a source prompt; success is the continuation starting with the word, not a rank or a judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro.engine import Patch
from mechintro.experiments import base
from mechintro.experiments._common import require_experiment
from mechintro.experiments.base import SteeredConfig, cell_rows, cell_summary, estimate
from mechintro.models import Model
from mechintro.prompts import tokenize
from mechintro.reading import Generate, Readout
from mechintro.runner import Generation, Trial
from mechintro.stats import rate
from mechintro.tables import table
from mechintro.vectors import (
    StrengthUnit,
    check_vectors_match,
    resolve_layers,
    unit_vector,
)

NAME = "patchscope"
PROMPT = "cat -> cat\n1135 -> 1135\nhello -> hello\n? ->"
CONDITIONS = ("concept", "random", "none")


@dataclass(frozen=True, kw_only=True)
class PatchscopeConfig(base.LowercaseWords, SteeredConfig):
    """Configuration of a ``patchscope`` run."""

    concepts: tuple[str, ...] = ("Dust", "Trumpets", "Lightning", "Oceans", "Poetry", "Bread")
    """concept words whose vectors are patched"""
    layers: tuple[str | int | float, ...] = ("0.25", "0.5", "0.75")
    """patched layers: indices (15) or fractions of depth (0.5)"""
    strengths: tuple[float, ...] = (1.0, 2.0)
    """the patched vector's length (replace) or coefficient (add), see strength_unit"""
    strength_unit: StrengthUnit = "resid_norm"
    mode: Literal["replace", "add"] = "replace"
    """replace the placeholder's residual (Patchscopes) or add norm-matched (oracles)"""
    max_new_tokens: int = 4
    """greedy tokens read after the arrow"""


Config = PatchscopeConfig


def build_trials(
    config: PatchscopeConfig, model: Model, vectors: xr.DataArray
) -> tuple[list[Trial], list[int]]:
    """Per (layer, strength) cell and concept: the concept's vector, a random vector of its norm
    and no patch, all at the placeholder of :data:`PROMPT`.

    Example::

        trials, layers = build_trials(Config(layers=("0.5",)), model, vectors)
    """
    layers = resolve_layers(config.layers, model.n_layers)
    check_vectors_match(vectors, model, config.concepts)
    prompt = tokenize(model.tokenizer, PROMPT)
    at = next(i for i, (a, b) in enumerate(prompt.offsets) if a <= PROMPT.rindex("?") < b)
    rng = np.random.default_rng(config.seed)
    trials = []
    for layer in layers:
        for s in config.strengths:
            for concept in config.concepts:
                v = unit_vector(vectors, concept, layer, config.strength_unit) * s
                noise = torch.from_numpy(rng.standard_normal(model.d_model)).float()
                cell = dict(prompt=prompt, concept=concept, strength=float(s), inject_layer=layer)
                for condition, x in (("concept", v), ("random", noise * v.norm() / noise.norm())):
                    patch = Patch(x[None], (at,), layer, mode=config.mode, coefficient=s)
                    trials.append(Trial(condition=condition, patch=patch, **cell))
                trials.append(Trial(condition="none", **cell))
    return trials, layers


def readouts(config: PatchscopeConfig, model: Model) -> list[Readout]:
    """The greedy continuation (temperature 0: the reading is deterministic)."""
    return [Generate(Generation(max_new_tokens=config.max_new_tokens, temperature=0.0))]


run = base.bound_run(__name__)


def hits(ds: xr.Dataset) -> np.ndarray:
    """Per trial: the continuation starts with the concept word (case and spaces ignored)."""
    pairs = zip(ds["response"].values, ds["concept"].values, strict=True)
    return np.array([str(r).strip().lower().startswith(str(c).lower()) for r, c in pairs])


def summarize(ds: xr.Dataset) -> xr.Dataset:
    """Per condition and (layer, strength) cell: the share of concepts the continuation names,
    with a 95% Wilson interval (``rate``, ``lo``, ``hi``, ``n``).

    Example::

        summary = summarize(mi.open_run("ps.zarr"))
        summary.rate.sel(condition="concept") - summary.rate.sel(condition="random")
    """
    require_experiment(ds, NAME)
    ok = hits(ds)

    def cell(rows: np.ndarray) -> dict[str, float]:
        return dict(zip(("rate", "lo", "hi", "n"), rate(ok[rows]), strict=True))

    by = ("condition", "inject_layer", "strength")
    return cell_summary(ds, by, cell, ints=("n",), levels={"condition": CONDITIONS})


def format_summary(summary: xr.Dataset) -> str:
    """:func:`summarize`'s table: one row per (layer, strength), a column per condition.

    Example::

        text = format_summary(summarize(mi.open_run("ps.zarr")))  # as `mechintro run` prints it
    """

    def row(cell: xr.Dataset) -> dict[str, object]:
        cells = [(c, cell.sel(condition=c)) for c in cell.condition.values]
        return {f"{c} [95% CI]": estimate(x.rate, x.lo, x.hi) for c, x in cells}

    rows = cell_rows(summary, row)
    return table(rows) + "\nshare of concepts the continuation names (n per cell in .n)"
