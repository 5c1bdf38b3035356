"""A sharded run: which batches shard ``index`` of ``count`` owns, and a store's shard attribute.

Part of the run store (``mechintro.runs`` re-exports the public names).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import xarray as xr

from mechintro.errors import MechintroError


def _shard_of(ds: xr.Dataset | Mapping[str, Any], path: Path) -> tuple[int, int]:
    text = (ds.attrs if isinstance(ds, xr.Dataset) else ds).get("shard")
    if not text:
        raise MechintroError(
            f"{path} is not a shard (it was run without "
            "--shard): merge only the stores of one sharded run"
        )
    try:
        index, count = (int(x) for x in str(text).split("/"))
    except ValueError:
        index = count = 0
    if not 1 <= index <= count:
        raise MechintroError(
            f"{path} has a damaged shard attribute {text!r} (expected i/N): it was altered; "
            "run that shard's command again into a new --out"
        )
    return index, count


def shard_batches(n_trials: int, batch_size: int, index: int, count: int) -> list[int]:
    """The batch indices shard ``index``/``count`` owns (see :class:`mechintro.runner.Shard`)."""
    return [b for b in range(-(-n_trials // batch_size)) if b % count == index - 1]
