"""What the experiments share: the experiment check."""

from __future__ import annotations

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
