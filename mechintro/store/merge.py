"""``mechintro merge``: join the stores of a sharded run into one run.

Part of the run store (``mechintro.runs`` re-exports the public names).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from mechintro._fs import staged_dir, store_lock
from mechintro.errors import MechintroError
from mechintro.store.manifest import DamagedRunError, _array, _update_manifest_root, commit_region
from mechintro.store.run_store import open_run
from mechintro.store.schema import INPUT_VARS, _as_stored, readout_variables
from mechintro.store.shards import _shard_of, shard_batches
from mechintro.store.verify import verify

# Attributes that must agree between the shards of one run (the rest — creation time, commit,
# package versions — may differ between machines and are taken from shard 1).
_SHARED_ATTRS = (
    "schema_version",
    "experiment",
    "mode",
    "readouts",
    "model",
    "weights_sha256",
    "config",
    "seed",
    "batch_size",
    "record_resid",
    "swap_weights_sha256",
    "n_layers",
    "d_model",
)


_OUTPUT_VARS = ("answer_logprobs", "response_ids", "response", "nonfinite", "resid", "digest")


def merge(shards: list[str | Path], out: str | Path) -> Path:
    """Join the stores of a sharded run into one run — identical, trial for trial, to the run an
    unsharded process would have written with the same seed.

    Every shard 1..N must be given once, finished, and made with the same experiment, config,
    model, weights, seed and batch size; each batch is copied from the shard that owns it,
    digests included. ``out`` is written under a temporary name and renamed into place.
    """
    out = Path(out)
    if out.exists():
        raise MechintroError(f"{out} already exists: choose another --out or delete it")
    if not shards:
        raise MechintroError("no shards given: pass the store of every shard")
    paths = [Path(p) for p in shards]
    try:
        opened = [(p, open_run(p, committed_only=False)) for p in paths]
    except DamagedRunError as exc:
        raise MechintroError(f"merge refused: {exc}") from None
    by_index, count = _checked_shards(opened)
    first = opened[0][1]
    n_trials, batch_size = first.sizes["trial"], int(first.attrs["batch_size"])
    stores = dict(opened)  # paths are distinct: a repeated shard was refused above
    with store_lock(out), staged_dir(out) as staging:
        shutil.copytree(by_index[1], staging)
        for index, p in sorted(by_index.items()):
            if index != 1:
                _copy_shard(staging, stores[p], p, index, count, n_trials, batch_size)
        group = zarr.open_group(str(staging), mode="r+")
        if not np.asarray(_array(group, "committed")[:], dtype=bool).all():
            raise MechintroError(
                "the merged shards leave trials uncommitted: a "
                "shard is damaged; run `mechintro verify` on each"
            )
        del group.attrs["shard"]
        group.attrs["merged_from"] = json.dumps([str(by_index[i]) for i in sorted(by_index)])
        group.attrs["complete"] = "true"
        _update_manifest_root(staging)
    return out


def _checked_shards(opened: list[tuple[Path, xr.Dataset]]) -> tuple[dict[int, Path], int]:
    """Each shard's path by its index, and the shard count, once every shard is checked to be
    one of the same run, given once, finished and undamaged, and none is missing."""
    by_index: dict[int, Path] = {}
    count = None
    first_path, first = opened[0]
    for p, ds in opened:
        index, n = _shard_of(ds, p)
        count = n if count is None else count
        if n != count:
            raise MechintroError(
                f"{p} is shard {index}/{n} but {first_path} is "
                f"one of {count}: merge the shards of one run"
            )
        if index in by_index:
            raise MechintroError(f"shard {index}/{n} is given twice ({by_index[index]} and {p})")
        by_index[index] = p
        _check_shard(p, ds, index, n, first_path, first)
    assert count is not None
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    if missing:
        raise MechintroError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} "
            "missing: pass the store of every shard"
        )
    return by_index, count


def _check_shard(
    p: Path, ds: xr.Dataset, index: int, n: int, first_path: Path, first: xr.Dataset
) -> None:
    """One shard against the first: the same run, finished, verified, the same trials."""
    differs = [k for k in _SHARED_ATTRS if ds.attrs.get(k) != first.attrs.get(k)]
    if differs:
        raise MechintroError(
            f"{p} and {first_path} are not shards of one run (they differ in: {', '.join(differs)})"
        )
    if ds.attrs.get("complete") != "true":
        raise MechintroError(
            f"shard {index}/{n} ({p}) is unfinished: run its command again to finish it, then merge"
        )
    report = verify(p)  # every committed trial against its digest, every input against the manifest
    if not report.ok:
        raise MechintroError(
            f"shard {index}/{n} ({p}) is damaged ({report.problems[0]}); merge refused: "
            f"run `mechintro verify --repair {p}`, then its command again"
        )
    for name in INPUT_VARS:
        if not ds[name].equals(first[name]):
            raise MechintroError(
                f"{p} holds other trials than {first_path} "
                f"({name} differs): merge the shards of one run"
            )


def _copy_shard(
    staging: Path, ds: xr.Dataset, p: Path, index: int, count: int, n_trials: int, batch_size: int
) -> None:
    """Commit the batches shard ``index`` owns into the store being merged."""
    for b in shard_batches(n_trials, batch_size, index, count):
        region = {"trial": slice(b * batch_size, min((b + 1) * batch_size, n_trials))}
        part = ds.isel(trial=region["trial"])
        if not bool(part["committed"].all()):
            raise MechintroError(
                f"shard {index}/{count} ({p}) has uncommitted "
                f"trials in batch {b}: run its command again"
            )
        outputs = {
            v: (tuple(map(str, part[v].dims)), _as_stored(part[v]))
            for v in (*_OUTPUT_VARS, *readout_variables(ds.attrs))
            if v in part
        }
        commit_region(staging, region["trial"].start, outputs, flag="committed")
