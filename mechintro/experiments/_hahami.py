"""What Hahami et al.'s three protocols share (``sentence-localisation``, ``strength-comparison``,
``strength-classification``; elyhahami18/llama-introspection-new @ 7d9280d): their config fields,
the layer check, the unit vectors scaled as ``strength_unit`` says, the random control's
direction and the "SENTENCE t: …" spans of a prompt left open after the prefill."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.experiments.base import BaseConfig, cell_summary
from mechintro.models import Model
from mechintro.prompts import Prompt, render_chat, tokenize
from mechintro.vectors import check_vectors_match, resolve_layers, unit_vector


@dataclass(frozen=True, kw_only=True)
class HahamiConfig(BaseConfig):
    """The fields the three protocols share (their code's defaults); each gives its own default
    ``concepts``."""

    concepts: tuple[str, ...]
    """concept words whose (unit) vectors are injected"""
    strength_unit: Literal["unit", "resid_norm"] = "unit"
    """a coefficient multiplies the unit-length vector (their code) or the layer's mean residual
    norm (resid_norm)"""
    random_control: bool = True
    """also inject a random unit direction at the same coefficients, where the concept vector
    goes, on the same prompts"""
    lowercase: bool = False
    """Lindsey vectors computed here (no --vectors): lowercase the concept and baseline words
    (False: as listed, like their "Tell me about Dust.")"""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.concepts:
            raise MechintroError("the concepts list is empty: give at least one concept word")


def distinct_layers(
    layers: tuple[str | int | float, ...],
    model: Model,
    vectors: xr.DataArray,
    concepts: Sequence[str],
) -> list[int]:
    """``layers`` resolved on ``model``, refused where two name the same block (a cell would run
    twice), with ``vectors`` checked against the model and ``concepts``."""
    resolved = resolve_layers(layers, model.n_layers)
    if len(set(resolved)) != len(resolved):
        raise MechintroError(
            f"layers {list(map(str, layers))} name the same layer of {model.name} more "
            f"than once (they resolve to {resolved}): give each layer once"
        )
    check_vectors_match(vectors, model, concepts)
    return resolved


def unit_scale(vectors: xr.DataArray, layer: int, strength_unit: str) -> float:
    """The length a coefficient of 1 gives: 1, or the layer's mean residual norm."""
    return float(vectors.resid_norm.sel(layer=layer)) if strength_unit == "resid_norm" else 1.0


def scaled_unit(vectors: xr.DataArray, concept: str, layer: int, scale: float) -> torch.Tensor:
    """``concept``'s vector at ``layer`` at length ``scale`` (refused where it is zero)."""
    v = unit_vector(vectors, concept, layer, "raw")
    if float(v.norm()) == 0:
        raise MechintroError(f"vector for '{concept}' at layer {layer} is zero")
    return v / v.norm() * scale


def random_direction(rng: np.random.Generator, d_model: int, scale: float) -> torch.Tensor:
    """A random direction at length ``scale`` (the random control), drawn from ``rng``."""
    noise = torch.from_numpy(rng.standard_normal(d_model)).float()
    return noise / noise.norm() * scale


def sentence_prompt(
    model: Model, msgs: list[dict[str, str]], listed: list[str]
) -> tuple[Prompt, list[list[bool]]]:
    """``msgs`` rendered open after the prefill and ending in one space (their code strips the
    end of turn and appends a space), and each listed sentence's tokens: those overlapping
    "SENTENCE t: …" (their offsets rule)."""
    text = render_chat(model.tokenizer, msgs, continue_final=True)
    if not text.endswith(" "):
        text += " "
    prompt = tokenize(model.tokenizer, text)
    spans = []
    for i, s in enumerate(listed):
        marker = f"SENTENCE {i + 1}: {s}"
        lo = text.find(marker)
        if lo < 0:
            raise MechintroError(f"'{marker}' does not occur in the rendered prompt")
        hi = lo + len(marker)
        spans.append([b > lo and a < hi for a, b in prompt.offsets])
    return prompt, spans


def condition_summary(
    keys: xr.Dataset,
    conditions: tuple[str, ...],
    cell: Callable[[np.ndarray], Mapping[str, float]],
) -> xr.Dataset:
    """Per condition that ran (of ``conditions``, in their order; the uninjected ``none`` trials
    left out) and cell of ``keys``' other variables: the metrics ``cell`` gives (``n`` an integer,
    :func:`mechintro.experiments.base.cell_summary`), and ``above_random`` where the random
    control ran (the concept's lower bound above the random control's upper bound)."""
    cond = keys["condition"].values
    levels = [c for c in conditions if (cond == c).any()]
    out = cell_summary(
        keys,
        tuple(map(str, keys.data_vars)),
        cell,
        where=cond != "none",
        ints=("n",),
        levels={"condition": levels},
    )
    if "random" in levels:
        out["above_random"] = out.lo.sel(condition="concept") > out.hi.sel(condition="random")
    return out
