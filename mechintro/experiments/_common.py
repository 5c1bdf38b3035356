"""What the experiments share: the experiment check, and the Latent Introspection code's framings,
info documents and suffix files (``latent-introspection`` and ``concept-confusion``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import xarray as xr

from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.vectors import concept_vectors, pca_center_vectors

# the nine concepts of acsresearch/latent-introspection-code's main.py, the default of both
# latent-introspection and concept-confusion
ACS_CONCEPTS: tuple[str, ...] = (
    "cats",
    "bread",
    "love",
    "fear",
    "death",
    "truth",
    "creativity",
    "programming",
    "music",
)


def require_experiment(ds: xr.Dataset, name: str) -> None:
    """Refuse to summarise another experiment's run (its variables differ: the result would be
    a traceback or a table of NaN). Datasets without an ``experiment`` attribute pass."""
    made_by = ds.attrs.get("experiment")
    if made_by is not None and made_by != name:
        module = made_by.replace("-", "_")
        raise MechintroError(
            f"this is a {made_by} run, not {name}: summarise it with "
            f"mechintro.experiments.{module}.summarize"
        )


Intervention = Literal["inject", "inject-inaccurate", "finetune", "salient", "echo"]
"""The code's framings of turn 1 (the keys of :data:`INTERVENTIONS`)."""

INFO = {
    "none": None,
    "introspect": "INFO_INTROSPECT",
    "lorem": "INFO_LOREM",
    "poetic": "INFO_POETIC",
    "introspect_inaccurate": "INFO_INTROSPECT",
}
# The code's Intervention objects (main.py): stimulus keys of turn-1 prefix, turn-1 suffix,
# turn-2 prefix, turn-2 suffix.
INTERVENTIONS: dict[str, tuple[str, str, str, str]] = {
    "inject": (
        "PREFIX_INJECTION",
        "SUFFIX_INJECTION",
        "TURN_2_PREFIX_INJECTION",
        "TURN_2_SUFFIX_INJECTION",
    ),
    "inject-inaccurate": (
        "PREFIX_INJECTION",
        "SUFFIX_INJECTION_INACCURATE_LOCATION",
        "TURN_2_PREFIX_INJECTION",
        "TURN_2_SUFFIX_INJECTION",
    ),
    "finetune": (
        "PREFIX_FINETUNE",
        "SUFFIX_FINETUNE",
        "TURN_2_PREFIX_FINETUNE",
        "TURN_2_SUFFIX_FINETUNE",
    ),
    "salient": (
        "PREFIX_SALIENT",
        "SUFFIX_SALIENT",
        "TURN_2_PREFIX_SALIENT",
        "TURN_2_SUFFIX_SALIENT",
    ),
    "echo": ("PREFIX_ECHO", "SUFFIX_ECHO", "TURN_2_PREFIX_ECHO", "TURN_2_SUFFIX_ECHO"),
}


def first_turn(li: dict[str, str], intervention: str, info: str) -> str:
    """The code's first user turn: the framing's prefix, the info document (if any) and the
    framing's suffix (``li``: :func:`mechintro.stimuli.latent_introspection`)."""
    prefix, suffix, _, _ = INTERVENTIONS[intervention]
    parts = [li[prefix]] + ([li[INFO[info]]] if INFO[info] else []) + [li[suffix]]
    return "\n\n".join(parts)


def load_suffixes(path: str) -> list[str]:
    """PCA-center suffixes from a JSON file: a list of strings, or ``{"suffixes": [...]}``."""
    p = Path(path)
    if not p.is_file():
        raise MechintroError(f"suffixes_file {path} is not a file: give a JSON list of strings")
    try:
        data = json.loads(p.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MechintroError(
            f"suffixes_file {path} is not JSON: give a JSON list of strings"
        ) from None
    if isinstance(data, dict):
        data = data.get("suffixes")
    if not isinstance(data, list) or len(data) < 2 or not all(isinstance(x, str) for x in data):
        raise MechintroError(
            f"suffixes_file {path} is not a list of at least 2 strings: give a JSON list of strings"
        )
    return data


def code_vectors(
    model: Model,
    concepts: tuple[str, ...],
    *,
    method: str,
    suffixes_file: str,
    system: str | None,
    lowercase: bool,
) -> xr.DataArray:
    """The Latent Introspection code's vectors: PCA-center (with the suffixes of
    ``suffixes_file`` if given, under the system message ``system``) or, with ``method``
    ``lindsey``, Lindsey's."""
    if method == "pca_center":
        suffixes = load_suffixes(suffixes_file) if suffixes_file else None
        return pca_center_vectors(model, list(concepts), suffixes=suffixes, system=system)
    return concept_vectors(model, list(concepts), lowercase=lowercase)
