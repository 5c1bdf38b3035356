"""What the experiments share: the experiment check and layer maps."""

from __future__ import annotations

import json
from collections.abc import Sequence

import xarray as xr

from mechintro.errors import MechintroError


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


def layer_map(specs: Sequence[str | int | float], layers: Sequence[int]) -> str:
    """The ``layer_map`` attribute: each layer as given (index or fraction) → block index."""
    if len(layers) != len(specs):
        raise MechintroError(
            f"layers {list(map(str, specs))} name the same layer of this model more than once "
            f"(they resolve to {list(layers)}): give each layer once"
        )
    return json.dumps({str(s): int(layer) for s, layer in zip(specs, layers, strict=True)})
