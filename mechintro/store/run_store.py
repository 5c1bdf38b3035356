"""Run datasets: create a run's store whole, commit its batches, open it.

Commit protocol. The trial grid of a run is known before the model runs, so the store is created
whole at the start — inputs written, outputs allocated but empty — under a temporary name and
renamed into place. Each batch of trials then writes its outputs into its own chunks, and only
afterwards sets ``committed`` for those trials, in a separate write. A reader (and a resumed
run) trusts only committed trials, so a kill at any moment loses at most the batch in flight,
and never leaves trials that look finished but are not.

Part of the run store (``mechintro.runs`` re-exports the public names).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
import zarr
import zarr.codecs

from mechintro._fs import staged_dir
from mechintro.errors import MechintroError
from mechintro.store.manifest import (
    DamagedRunError,
    _array,
    _CheckedStore,
    _write_manifest,
    check_run,
    commit_region,
    read_manifest,
)
from mechintro.store.schema import (
    INPUT_VARS,
    REQUIRED_ATTRS,
    SCHEMA_VERSION,
    StoredReadout,
    _decoded_resid,
    readouts_attr,
    stored_readouts,
    stored_resid_dtype,
    trial_digests,
    validate,
)

log = logging.getLogger("mechintro.runs")  # one logger for the run store (browse quiets it)


# zstd level 3, without Blosc: measured on real residuals (benchmarks/resid_storage.py,
# docs/performance.md), plain zstd finds the trials of a chunk that repeat one another (every
# position before an injection, every layer before it, in a protocol whose trials share a prompt):
# 5.4x smaller where Blosc's zstd, compressing blocks too small to see the repeat, saves 7 %;
# 1.87x against 1.35x on prompts that differ. Runs made with Blosc keep it.
_COMPRESSOR = zarr.codecs.ZstdCodec(level=3)


_CHUNK_BYTES = 16 << 20


def _output_template(
    n_trials: int,
    batch_size: int,
    readouts: Sequence[StoredReadout],
    record: tuple[int, int, int] | None,
    resid_dtype: str = "float16",
) -> dict[str, tuple[tuple[str, ...], Any]]:
    """Lazy (never computed) arrays for every output variable, chunked one batch per chunk."""
    out: dict[str, tuple[tuple[str, ...], Any]] = {
        "committed": (("trial",), dsa.zeros(n_trials, dtype=bool, chunks=batch_size)),
        "nonfinite": (("trial",), dsa.zeros(n_trials, dtype=bool, chunks=batch_size)),
        # Strings stay numpy (dask would load them anyway to pick a storage dtype); they are tiny.
        "digest": (("trial",), np.full(n_trials, "", dtype=object)),
    }
    for readout in readouts:
        for name, var in readout.variables.items():
            if name == "resid":  # allocated below, chunked by layer
                continue
            shape = (n_trials, *var.shape)
            if var.dtype == "object":
                out[name] = (var.dims, np.full(shape, var.fill, dtype=object))
            else:
                chunks = (batch_size, *var.shape)
                out[name] = (var.dims, dsa.full(shape, var.fill, dtype=var.dtype, chunks=chunks))
    if record is not None:
        n_layers, n_pos, d_model = record
        stored = stored_resid_dtype(resid_dtype)
        per_trial = n_layers * n_pos * d_model * stored.itemsize
        # Largest divisor of the batch size whose chunk stays under 16 MiB: chunks never straddle
        # two batches, so each batch's write touches only its own chunk files.
        tc = max(
            [
                c
                for c in range(1, batch_size + 1)
                if batch_size % c == 0 and c * per_trial / n_layers <= _CHUNK_BYTES
            ]
            or [1]
        )
        out["resid"] = (
            ("trial", "layer", "pos", "d_model"),
            dsa.zeros(
                (n_trials, n_layers, n_pos, d_model),
                dtype=stored,
                chunks=(tc, 1, n_pos, d_model),
            ),
        )
    return out


def create_run(
    path: str | Path,
    *,
    inputs: xr.Dataset,
    attrs: Mapping[str, str],
    batch_size: int,
    readouts: Sequence[StoredReadout],
    record: bool = False,
    n_layers: int = 0,
    resid_layers: Sequence[int] | None = None,
    resid_dtype: str = "float16",
    resid_from: int = 0,
) -> Path:
    """Create the store for a run: inputs written, outputs allocated, nothing committed.

    ``inputs`` holds the trial coordinates and :data:`INPUT_VARS` (and the coordinates the
    ``readouts`` need, e.g. ``answer``); every variable of ``readouts`` is allocated, and the
    list is kept as the ``readouts`` attribute (:func:`validate` reads it). Written under a
    temporary name and renamed into place. ``resid_layers``: the block indices whose residual
    stream is stored (the ``layer`` coordinate); default every one of ``n_layers``.
    ``resid_dtype``: float16, float32, or bfloat16 (kept as its bits in uint16, which zarr and
    numpy store without a bfloat16 type; :func:`open_run` reads it as float32). ``resid_from``:
    the first prompt position whose residual stream is stored (the earlier ones are written as
    zeros); both are recorded as attributes of ``resid``.
    """
    path = Path(path)
    n_trials = inputs.sizes["trial"]
    stored_layers = np.arange(n_layers) if resid_layers is None else np.asarray(resid_layers)
    record_shape = (
        (len(stored_layers), inputs.sizes["pos"], inputs.sizes["d_model"]) if record else None
    )
    # A batch larger than the run is the whole run: chunk by what exists (a chunk of 10**12
    # trials would be allocated whole on the first write).
    chunk = min(batch_size, n_trials)
    template = _output_template(n_trials, chunk, readouts, record_shape, resid_dtype)
    ds = inputs.assign(template)
    if record:
        ds = ds.assign_coords(layer=stored_layers)
        if resid_dtype != "float16" or resid_from:
            ds["resid"].attrs.update({"resid_dtype": resid_dtype, "resid_from": int(resid_from)})
    ds.attrs.update(attrs)
    ds.attrs.update(
        {
            "schema_version": str(SCHEMA_VERSION),
            "readouts": readouts_attr(readouts),
            "batch_size": str(batch_size),
            "complete": "false",
        }
    )
    validate(ds, where=str(path))
    encoding: dict[str, dict[str, Any]] = {
        name: {"compressors": (_COMPRESSOR,)} for name in ("resid", "injected_vector") if name in ds
    }
    encoding.update(
        {
            name: {"chunks": (min(n_trials, 4096), *ds[name].shape[1:])}
            for name in (*INPUT_VARS, "read_mask")
            if name in ds
        }
    )
    for name in template:
        if name != "resid":
            encoding.setdefault(name, {})["chunks"] = (chunk, *ds[name].shape[1:])
    with staged_dir(path) as staging:
        ds.to_zarr(
            staging, mode="w-", compute=False, zarr_format=3, consolidated=False, encoding=encoding
        )
        _write_manifest(staging, outputs=set(template))
    return path


def read_attrs(path: str | Path) -> dict[str, Any]:
    """The root attributes of the run store ``path``, checked like :func:`validate` checks them,
    without reading any array (so a run whose inputs are damaged can still be resumed and
    repaired)."""
    path = _as_path(path)
    if not path.exists():
        raise MechintroError(
            f"run {path} does not exist: check the path, or create it with `mechintro run`"
        )
    try:
        attrs = dict(zarr.open_group(str(path), mode="r", zarr_format=3).attrs)
    except Exception as exc:
        hint = (
            "run `mechintro verify --repair` on it"
            if read_manifest(path) is not None
            else "is it a mechintro run?"
        )
        raise MechintroError(
            f"{path} is not a readable zarr store ({type(exc).__name__}): {hint}"
        ) from None
    missing = [a for a in REQUIRED_ATTRS if a not in attrs]
    if missing:
        raise MechintroError(f"{path} is not a valid mechintro run: missing attributes {missing}")
    if attrs["schema_version"] != str(SCHEMA_VERSION):
        raise MechintroError(
            f"{path} is not a valid mechintro run: schema version {attrs['schema_version']}, "
            f"this mechintro reads {SCHEMA_VERSION}; use a matching mechintro version"
        )
    try:
        stored_readouts(attrs)
    except MechintroError as e:
        raise MechintroError(f"{path} is not a valid mechintro run: {e}") from None
    return attrs


def write_batch(
    path: str | Path, start: int, outputs: Mapping[str, tuple[tuple[str, ...], np.ndarray]]
) -> None:
    """Write one batch's outputs for trials ``start : start + n`` with their digests, then mark
    them committed."""
    data = dict(outputs)
    data["digest"] = (("trial",), np.array(trial_digests(outputs, tuple(outputs)), dtype=object))
    commit_region(path, start, data, flag="committed")


def mark_complete(path: str | Path) -> None:
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["complete"] = "true"


def committed_mask(path: str | Path) -> np.ndarray:
    try:
        return np.asarray(_array(zarr.open_group(str(path), mode="r"), "committed")[:], dtype=bool)
    except Exception as exc:  # a truncated chunk, missing metadata
        raise MechintroError(
            f"{path} has damaged commit flags ({type(exc).__name__}): run "
            f"`mechintro verify --repair {path}`, then the same command again"
        ) from None


# data variables up to this size are read whole on first use, without dask (see open_run)
EAGER_MAX = 256 * 2**20


def open_run(path: str | Path, *, committed_only: bool = True, check: str = "fast") -> xr.Dataset:
    """Open and validate a run, lazily (residuals stay on disk until used).

    Args:
        committed_only: keep only trials whose outputs were fully written (the default). An
            interrupted run opens with the trials it finished; resume it to add the rest.
        check: ``"fast"`` (the default) compares every array's metadata and the attributes
            that define the run with the store's manifest and checks that every committed
            chunk exists, at open; and each chunk against its digest when it is first read.
            ``"full"`` also reads every chunk at open; ``"off"`` checks nothing (what
            ``verify`` uses to look at a damaged store). A damaged store raises
            :class:`DamagedRunError`: one line naming the damage and ``mechintro verify
            --repair``.

    Returns:
        The run's :class:`xarray.Dataset` (see ``docs/schema.md``).
    """
    path = _as_path(path)
    if check not in ("fast", "full", "off"):
        raise MechintroError(f"check={check!r}: choose 'fast', 'full' or 'off'")
    if not path.exists():
        raise MechintroError(
            f"run {path} does not exist: check the path, or create it with `mechintro run`"
        )
    expected = check_run(path, full=check == "full") if check != "off" else {}
    try:
        store = _CheckedStore(path, expected) if expected else path
        ds = xr.open_zarr(store, consolidated=False, zarr_format=3)
        # the same arrays without dask, for the ones loaded now: one read per array (zarr reads
        # its chunks together) instead of a dask task, and a wait on zarr's event loop, per chunk
        eager = xr.open_zarr(store, consolidated=False, zarr_format=3, chunks=None)
    except DamagedRunError:
        raise
    except Exception as exc:  # a foreign or truncated store raises many different types
        raise MechintroError(
            f"{path} is not a readable zarr store ({type(exc).__name__}): is it a mechintro run?"
        ) from None
    validate(ds, where=str(path))
    ds = _decoded_resid(ds)
    # Coordinates are small and used for selection (`ds.where(ds.condition == ...)`): load them
    # now, so only the data variables stay lazy. String variables (digests, responses, verdicts)
    # are small too; as loaded object arrays they survive `ds.where(..., drop=True)`, which
    # cannot fill numpy's StringDType with NaN. The other data variables up to EAGER_MAX bytes
    # (answer log-probabilities, prompt ids, masks, the commit flags) stay lazy but come from the
    # dask-free view, read whole on first use; only the residual stream and larger variables keep
    # dask's chunk-by-chunk reads. Reading through dask, one task per chunk, cost 2.5 times the
    # time (a 512-trial Looking Inward run opens in 0.16 s, not 0.47 s; `sweep.summarize` of
    # SmolLM2's shipped sweep: 2.0 s → 0.4 s, profiled). ``resid_stored``, made by the decoding,
    # is in memory already.
    coords = [name for name in ds.coords if name not in ds.dims and name in eager]
    strings = [name for name, var in ds.data_vars.items() if var.dtype.kind in "OTU"]
    lazy = [
        name
        for name, var in ds.data_vars.items()
        if name not in strings and name != "resid" and name in eager and var.nbytes <= EAGER_MAX
    ]
    ds = ds.assign_coords({name: eager[name].load() for name in coords})
    ds = ds.assign({name: eager[name].load().astype(object) for name in strings})
    ds = ds.assign({name: eager[name].variable for name in lazy})
    if ds.attrs.get("complete") != "true":
        log.warning("%s is incomplete; resume it by running the same command again", path)
    if committed_only:
        committed = np.asarray(ds["committed"].values, dtype=bool)
        if not committed.all():
            ds = ds.isel(trial=np.flatnonzero(committed))
    return ds


def _as_path(path: object) -> Path:
    if not isinstance(path, (str, Path)) or not str(path):
        raise MechintroError(
            f"a run path must be a str or pathlib.Path, got {type(path).__name__} {path!r}"
        )
    return Path(path)
