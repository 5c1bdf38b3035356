"""Run datasets: every trial, with its full residual stream, in one labelled zarr store.

Why zarr (v3): it stores float16 natively (the netCDF4 engine rejects it; h5netcdf's float16
breaks netCDF-C readers), reads fastest, opens lazily through dask, and writes each chunk as its
own file through a temporary name and an atomic rename, so a crash never corrupts the store
(measurements in docs/engineering.md).

Commit protocol. The trial grid of a run is known before the model runs, so the store is created
whole at the start — inputs written, outputs allocated but empty — under a temporary name and
renamed into place. Each batch of trials then writes its outputs into its own chunks, and only
afterwards sets ``committed`` for those trials, in a separate write. A reader (and a resumed
run) trusts only committed trials, so a kill at any moment loses at most the batch in flight,
and never leaves trials that look finished but are not.

The schema is documented in ``docs/schema.md``; :func:`validate` runs on write and on read.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
import zarr
from zarr.storage import LocalStore

from mechintro._fs import staged_dir, store_lock
from mechintro.errors import MechintroError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TRIAL_COORDS = ("concept", "condition", "strength", "inject_layer", "inject_layer_end")
INPUT_VARS = ("input_ids", "attention_mask", "inject_mask", "injected_vector")
REQUIRED_ATTRS = (
    "schema_version",
    "mode",
    "model",
    "weights_sha256",
    "mechintro_version",
    "git_commit",
    "config",
    "package_versions",
    "batch_size",
)
MODES = ("logits", "generate", "resid")  # resid: residual streams are the only readout
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
    mode: str,
    n_answers: int,
    max_new_tokens: int,
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
    if mode == "logits":
        out["answer_logprobs"] = (
            ("trial", "answer"),
            dsa.full(
                (n_trials, n_answers), np.nan, dtype=np.float32, chunks=(batch_size, n_answers)
            ),
        )
    elif mode == "generate":
        out["response_ids"] = (
            ("trial", "new_token"),
            dsa.full(
                (n_trials, max_new_tokens), -1, dtype=np.int32, chunks=(batch_size, max_new_tokens)
            ),
        )
        out["response"] = (("trial",), np.full(n_trials, "", dtype=object))
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
    mode: str,
    max_new_tokens: int = 0,
    record: bool = False,
    n_layers: int = 0,
    resid_layers: Sequence[int] | None = None,
    resid_dtype: str = "float16",
    resid_from: int = 0,
) -> Path:
    """Create the store for a run: inputs written, outputs allocated, nothing committed.

    ``inputs`` holds the trial coordinates and :data:`INPUT_VARS` (and the ``answer`` coordinate
    in logit mode). Written under a temporary name and renamed into place. ``resid_layers``: the
    block indices whose residual stream is stored (the ``layer`` coordinate); default every one
    of ``n_layers``. ``resid_dtype``: float16, float32, or bfloat16 (kept as its bits in
    uint16, which zarr and numpy store without a bfloat16 type; :func:`open_run` reads it as
    float32). ``resid_from``: the first prompt position whose residual stream is stored (the
    earlier ones are written as zeros); both are recorded as attributes of ``resid``.
    """
    path = Path(path)
    n_trials = inputs.sizes["trial"]
    n_answers = inputs.sizes.get("answer", 0)
    stored_layers = np.arange(n_layers) if resid_layers is None else np.asarray(resid_layers)
    record_shape = (
        (len(stored_layers), inputs.sizes["pos"], inputs.sizes["d_model"]) if record else None
    )
    # A batch larger than the run is the whole run: chunk by what exists (a chunk of 10**12
    # trials would be allocated whole on the first write).
    chunk = min(batch_size, n_trials)
    template = _output_template(
        n_trials, chunk, mode, n_answers, max_new_tokens, record_shape, resid_dtype
    )
    ds = inputs.assign(template)
    if record:
        ds = ds.assign_coords(layer=stored_layers)
        if resid_dtype != "float16" or resid_from:
            ds["resid"].attrs.update({"resid_dtype": resid_dtype, "resid_from": int(resid_from)})
    ds.attrs.update(attrs)
    ds.attrs.update(
        {
            "schema_version": str(SCHEMA_VERSION),
            "mode": mode,
            "batch_size": str(batch_size),
            "complete": "false",
        }
    )
    validate(ds, where=str(path))
    encoding = {
        name: {"compressors": (_COMPRESSOR,)} for name in ("resid", "injected_vector") if name in ds
    }
    encoding.update(
        {
            name: {"chunks": (min(n_trials, 4096), *ds[name].shape[1:])}
            for name in (*INPUT_VARS, "read_mask")
            if name in ds
        }
    )
    for name in ("committed", "nonfinite", "digest", "answer_logprobs", "response_ids", "response"):
        if name in ds:
            encoding.setdefault(name, {})["chunks"] = (chunk, *ds[name].shape[1:])
    with staged_dir(path) as staging:
        ds.to_zarr(
            staging, mode="w-", compute=False, zarr_format=3, consolidated=False, encoding=encoding
        )
        _write_manifest(staging, outputs=set(template))
    return path


# --- The store's manifest: digests of every input and coordinate, and a copy of all metadata ---
#
# Per-trial digests cover the outputs. Everything else in a store — inputs and coordinates — is
# fixed when the store is created, so its values are digested then, into the zarr group
# ``_mechintro`` (xarray does not read sub-groups). It also keeps a copy of every array's
# metadata and of the root's, so ``verify`` can tell an edited ``zarr.json`` (a ``scale_factor``
# added, a ``fill_value`` changed) and ``verify --repair`` can restore it; and a resumed run
# rewrites damaged inputs from the trials it rebuilds.
#
# Version 2 adds the sha256 of every chunk file: of the inputs' in the manifest (``chunks``), and
# of each committed batch's outputs in a record written with the batch, before its commit flag
# (``_mechintro/<flag>/<first trial>.json``; ``flags`` names the arrays each commit flag covers:
# ``committed`` the run's outputs, ``graded`` the verdicts of ``mechintro grade``). A reader checks
# each chunk it reads against them (:class:`_CheckedStore`), so a flipped, missing or rewritten
# chunk is refused, never returned as data.

MANIFEST_GROUP = "_mechintro"
MANIFEST_VERSION = 2
# A manifest group whose own metadata is lost makes zarr warn while listing the store, before
# `verify` can say so in its own line (which names the fix).
warnings.filterwarnings(
    "ignore", message=f"Object at {MANIFEST_GROUP} is not recognized", category=UserWarning
)
# Root attributes that change after the store is created (the run's progress, the last grading);
# every other root attribute defines the run and must equal the manifest's copy.
_MUTABLE_ROOT = ("complete", "grading_complete")


class DamagedRunError(MechintroError):
    """A store's metadata or a committed chunk no longer matches its manifest."""


def value_digest(values: Any) -> str:
    """sha256 of an array's shape and values (strings by their text, numbers by dtype and bytes)."""
    a = np.asarray(values)
    h = hashlib.sha256(str(a.shape).encode())
    if a.dtype.kind in "OTUS":
        h.update("\x1f".join(str(x) for x in a.ravel().tolist()).encode("utf-8", "surrogatepass"))
    else:
        h.update(a.dtype.str.encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _chunk_keys(name: str, meta: Mapping[str, Any], start: int = 0, stop: int | None = None):
    """The store keys of the chunks of array ``name`` (metadata ``meta``) that hold trials
    ``start:stop`` along the first dimension (every chunk without ``stop``)."""
    shape = list(meta["shape"])
    chunks = list(meta["chunk_grid"]["configuration"]["chunk_shape"])
    sep = meta.get("chunk_key_encoding", {}).get("configuration", {}).get("separator", "/")
    if not shape:
        return [f"{name}/c"]
    stop = shape[0] if stop is None else min(stop, shape[0])
    first = range(start // chunks[0], -(-stop // chunks[0]))
    rest = [range(-(-n // c)) for n, c in zip(shape[1:], chunks[1:], strict=True)]
    return [
        f"{name}/c{sep}" + sep.join(map(str, index)) for index in itertools.product(first, *rest)
    ]


def _file_digest(file: Path) -> str | None:
    """sha256 of a chunk file's bytes; ``None`` for a chunk that is not written (zarr skips
    chunks holding only the fill value: they read as it)."""
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _write_manifest(path: Path, *, outputs: set[str]) -> None:
    group = zarr.open_group(str(path), mode="r+")
    names = sorted(group.array_keys())
    metadata = {name: json.loads((path / name / "zarr.json").read_text()) for name in names}
    fixed = [name for name in names if name not in outputs]
    manifest = {
        "version": MANIFEST_VERSION,
        "inputs": {name: value_digest(group[name][...]) for name in fixed},
        "chunks": {
            key: _file_digest(path / key)
            for name in fixed
            for key in _chunk_keys(name, metadata[name])
        },
        "flags": {"committed": sorted(outputs - {"committed"})},
        "metadata": metadata,
        "root": json.loads((path / "zarr.json").read_text()),
    }
    group.create_group(MANIFEST_GROUP).attrs["manifest"] = json.dumps(manifest)


def read_manifest(path: str | Path) -> dict | None:
    """The store's manifest, or ``None`` if it has none (a store from before manifests) or it is
    unreadable."""
    file = Path(path) / MANIFEST_GROUP / "zarr.json"
    try:  # read directly: zarr warns (ZarrUserWarning) about a folder without its metadata
        return json.loads(json.loads(file.read_text())["attributes"]["manifest"])
    except Exception:  # missing, truncated or foreign: the callers say what that means
        return None


def _save_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    zarr.open_group(str(path / MANIFEST_GROUP), mode="r+").attrs["manifest"] = json.dumps(manifest)


def _update_manifest_root(path: Path) -> None:
    """After a deliberate change of the root attributes (a merge), keep the manifest's copy
    current."""
    manifest = read_manifest(path)
    if manifest is not None:
        manifest["root"] = json.loads((path / "zarr.json").read_text())
        _save_manifest(path, manifest)


def register_arrays(path: str | Path, names: list[str], *, flag: str) -> None:
    """Record in the manifest arrays added to a finished run (``mechintro grade``'s verdicts):
    their metadata, and that the commit flag ``flag`` (itself among ``names``) covers the others,
    so :func:`commit_region` records their chunks' digests. Earlier records of ``flag`` are
    dropped (its arrays were just created anew). A store without a version-2 manifest is left as
    it is. Call it holding the store's lock."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None or "flags" not in manifest:
        return
    for name in names:
        manifest["metadata"][name] = json.loads((path / name / "zarr.json").read_text())
    covered = set(manifest["flags"].get(flag, [])) | {n for n in names if n != flag}
    manifest["flags"][flag] = sorted(covered)
    manifest["root"] = json.loads((path / "zarr.json").read_text())  # written with the arrays
    shutil.rmtree(path / MANIFEST_GROUP / flag, ignore_errors=True)
    _save_manifest(path, manifest)


def set_root_attrs(path: str | Path, attrs: Mapping[str, str]) -> None:
    """Set root attributes of a run (``mechintro grade``'s judge identities): the manifest's copy
    first, then the store's, so an edit of them later is told from this deliberate change. Call
    it holding the store's lock."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is not None:
        manifest["root"].setdefault("attributes", {}).update(attrs)
        _save_manifest(path, manifest)
    zarr.open_group(str(path), mode="r+").attrs.update(dict(attrs))


def _record_file(path: Path, flag: str, start: int) -> Path:
    return path / MANIFEST_GROUP / flag / f"{start}.json"


def _record_batch(path: Path, manifest: Mapping[str, Any], flag: str, start: int, stop: int):
    """Write the digests of every chunk of ``flag``'s arrays for trials ``start:stop``, as stored
    now (atomically: a temporary file renamed into place)."""
    record = {
        key: _file_digest(path / key)
        for name in manifest["flags"][flag]
        if name in manifest["metadata"]
        for key in _chunk_keys(name, manifest["metadata"][name], start, stop)
    }
    file = _record_file(path, flag, start)
    file.parent.mkdir(exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, file)


def commit_region(
    path: str | Path,
    start: int,
    data: Mapping[str, tuple[tuple[str, ...], np.ndarray]],
    *,
    flag: str = "committed",
) -> None:
    """Write ``data`` for trials ``start : start + n``, record its chunks' digests (a version-2
    manifest), then set the commit flag ``flag`` for those trials, in a separate, last write: a
    kill before it leaves the trials uncommitted."""
    path = Path(path)
    n = len(next(iter(data.values()))[1])
    region = {"trial": slice(start, start + n)}
    xr.Dataset(dict(data)).to_zarr(path, region=region, consolidated=False)
    manifest = read_manifest(path)
    if manifest is not None and flag in manifest.get("flags", {}):
        _record_batch(path, manifest, flag, start, start + n)
    if flag == "committed" and _root_attr(path, "grading_complete") == "true":
        # Trials committed after a grading are ungraded: the grading is not complete any more
        # (`mechintro grade` resumes and grades them).
        zarr.open_group(str(path), mode="r+").attrs["grading_complete"] = "false"
    xr.Dataset({flag: (("trial",), np.ones(n, dtype=bool))}).to_zarr(
        path, region=region, consolidated=False
    )
    if manifest is not None and flag in manifest.get("flags", {}) and flag in manifest["metadata"]:
        # The flag's own chunks too (a kill before this leaves them unrecorded, not damaged).
        file = _record_file(path, flag, start)
        record = json.loads(file.read_text())
        record.update(
            {
                k: _file_digest(path / k)
                for k in _chunk_keys(flag, manifest["metadata"][flag], start, start + n)
            }
        )
        tmp = file.with_name(f".{file.name}.{os.getpid()}")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, file)


def _json_ok(file: Path) -> bool:
    try:
        json.loads(file.read_text())
    except (OSError, ValueError):
        return False
    return True


def damaged_inputs(path: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """Input and coordinate arrays whose stored values no longer match the manifest (a chunk
    deleted, truncated or altered)."""
    group = zarr.open_group(str(path), mode="r")
    chunks = manifest.get("chunks", {})
    bad = []
    for name, digest in manifest["inputs"].items():
        try:
            ok = value_digest(group[name][...]) == digest
        except Exception:  # a truncated chunk fails to decompress; a missing array raises KeyError
            ok = False
        if ok and chunks:  # version 2: also the stored bytes, which a reader checks
            keys = _chunk_keys(name, manifest["metadata"][name])
            ok = all(_file_digest(Path(path) / k) == chunks.get(k) for k in keys)
        if not ok:
            bad.append(name)
    return bad


# --- What a reader checks: metadata against the manifest, chunks against their digests ---------


def _metadata_problems(path: Path, manifest: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(arrays whose ``zarr.json`` is missing, unparseable or differs from the manifest's copy;
    root attributes that define the run and differ from the manifest's copy)."""
    arrays = []
    for name, meta in manifest["metadata"].items():
        try:
            same = json.loads((path / name / "zarr.json").read_text()) == meta
        except (OSError, ValueError):
            same = False
        if not same:
            arrays.append(name)
    try:
        root = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return arrays, ["(the root metadata is missing or damaged)"]
    stored = root.get("attributes", {}) if isinstance(root, dict) else {}
    kept = manifest["root"].get("attributes", {})
    keys = set(stored) | set(kept)
    attrs = sorted(
        k
        for k in keys
        if (k not in _MUTABLE_ROOT and stored.get(k) != kept.get(k))
        or (k in _MUTABLE_ROOT and stored.get(k, "false") not in ("true", "false"))
    )
    other = {k: v for k, v in manifest["root"].items() if k != "attributes"}
    if {k: v for k, v in root.items() if k != "attributes"} != other:
        attrs.append("(root metadata other than attributes)")
    return arrays, attrs


def _unlisted_arrays(path: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Arrays of the store that its manifest does not know."""
    out = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and p.name != MANIFEST_GROUP):
        if sub.name not in manifest["metadata"] and _json_ok(sub / "zarr.json"):
            if json.loads((sub / "zarr.json").read_text()).get("node_type") == "array":
                out.append(sub.name)
    return out


def _root_attr(path: Path, key: str) -> Any:
    try:
        return json.loads((path / "zarr.json").read_text())["attributes"].get(key)
    except Exception:
        return None


def _n_trials(path: Path) -> int:
    try:
        return int(json.loads((path / "committed" / "zarr.json").read_text())["shape"][0])
    except Exception:
        return 0


def _batch_size(path: Path, n: int) -> int:
    try:
        size = int(json.loads((path / "zarr.json").read_text())["attributes"]["batch_size"])
    except Exception:
        size = n
    return max(1, min(size, n)) if n else 1


@dataclass(frozen=True)
class _Expected:
    """What the manifest fixes about one chunk: its digest (``None``: not written) and where it
    belongs (``batch``: the first trial of its batch, ``None`` for an input)."""

    digest: str | None
    name: str
    batch: int | None
    flag: str | None


def _expected_chunks(
    path: Path, manifest: Mapping[str, Any]
) -> tuple[dict[str, _Expected], list[tuple[str, int, int, str]]]:
    """Every chunk the manifest fixes (inputs, and the committed batches of each commit flag),
    and the flagged batches that have no record ``(flag, start, stop)``."""
    expected: dict[str, _Expected] = {}
    for key, digest in manifest.get("chunks", {}).items():
        expected[key] = _Expected(digest, key.split("/", 1)[0], None, None)
    unrecorded = []
    for flag in manifest.get("flags", {}):
        try:
            flags = np.asarray(zarr.open_array(str(path / flag), mode="r")[...], dtype=bool)
        except Exception:
            if flag == "committed":
                raise
            if flag in manifest["metadata"]:  # recorded, so it existed: every batch is suspect
                n = _n_trials(path)
                size = _batch_size(path, n)
                unrecorded += [
                    (flag, start, min(start + size, n), f"has unreadable {flag} flags")
                    for start in range(0, n, size)
                ]
            continue  # otherwise a grading flag that does not exist (yet): nothing graded
        n = flags.size
        size = _batch_size(path, n)
        for start, stop in _unflagged_but_done(path, flag, flags, size):
            unrecorded.append((flag, start, stop, f"is not {flag}, but the run says it is"))
        for start in range(0, n, size):
            stop = min(start + size, n)
            if not flags[start:stop].any():
                continue
            try:
                record = json.loads(_record_file(path, flag, start).read_text())
            except (OSError, ValueError):
                unrecorded.append((flag, start, stop, f"is {flag} but has no digest record"))
                continue
            for key, digest in record.items():
                expected[key] = _Expected(digest, key.split("/", 1)[0], start, flag)
    return expected, unrecorded


def _unflagged_but_done(
    path: Path, flag: str, flags: np.ndarray, size: int
) -> list[tuple[int, int]]:
    """Batches whose flag is unset although the root says every one is set (``complete``, or
    ``grading_complete`` for the verdicts of every committed trial)."""
    try:
        attrs = json.loads((path / "zarr.json").read_text())["attributes"]
    except Exception:
        return []
    n = flags.size
    if flag == "committed" and attrs.get("complete") == "true":
        want = np.ones(n, dtype=bool)
        if attrs.get("shard"):
            try:
                index, count = _shard_of(attrs, path)
            except MechintroError:
                return []
            want[:] = False
            for b in shard_batches(n, size, index, count):
                want[b * size : (b + 1) * size] = True
    elif flag == "graded" and attrs.get("grading_complete") == "true":
        try:
            want = np.asarray(zarr.open_array(str(path / "committed"), mode="r")[...], dtype=bool)
        except Exception:
            return []
    else:
        return []
    return [
        (start, min(start + size, n))
        for start in range(0, n, size)
        if (want[start : start + size] & ~flags[start : start + size]).any()
    ]


def _describe(path: Path, e: _Expected, key: str, n: int) -> str:
    fix = f"run `mechintro verify --repair {path}`, then the same command again"
    if e.flag == "graded":
        fix = f"run `mechintro verify --repair {path}`, then `mechintro grade` again"
    what = "is missing" if e.digest is not None else "was written where none was committed"
    if e.batch is None:
        where = f"input {e.name}"
    else:
        size = _batch_size(path, n)
        last = min(e.batch + size, n) - 1
        trials = f"trial {last}" if last == e.batch else f"trials {e.batch}–{last}"
        where = f"batch {e.batch // size} ({trials}) of {e.name}"
    return f"{path} is damaged: {where}: chunk {key} {what}; {fix}"


class _CheckedStore(LocalStore):
    """A read-only :class:`zarr.storage.LocalStore` that checks every chunk it reads against the
    digest the manifest fixes for it, and refuses one that differs or is missing."""

    def __init__(self, root: Path, expected: Mapping[str, _Expected]) -> None:
        super().__init__(root, read_only=True)
        self._expected, self._run = expected, root
        self._n = _n_trials(root)

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        buf = await super().get(key, prototype, byte_range)
        e = self._expected.get(key)
        if e is not None and byte_range is None:
            got = None if buf is None else hashlib.sha256(buf.to_bytes()).hexdigest()
            if got != e.digest:
                message = _describe(self._run, e, key, self._n)
                if got is not None and e.digest is not None:
                    message = message.replace(" is missing;", " does not match its digest;")
                raise DamagedRunError(message)
        return buf


def check_metadata(path: str | Path) -> None:
    """Refuse (:class:`DamagedRunError`) a store whose arrays' metadata differs from its manifest:
    a writer would encode new values with the edited metadata (a ``scale_factor``), and their
    digests would vouch for them. Run before resuming a run into it."""
    path = Path(path)
    manifest = read_manifest(path)
    if manifest is None or not _json_ok(path / "zarr.json"):
        return  # no manifest to compare with; an unreadable root is refused by the resume check
    arrays, _ = _metadata_problems(path, manifest)
    if arrays:
        raise DamagedRunError(
            f"{path} is damaged: the metadata (zarr.json) of {', '.join(arrays)} is missing or "
            f"differs from the manifest's copy; run `mechintro verify --repair {path}`, then the "
            "same command again"
        )


def check_run(path: str | Path, *, full: bool = False) -> dict[str, _Expected]:
    """Check a run's metadata against its manifest, and that each committed batch's chunks exist
    (with ``full``, also their contents), raising :class:`DamagedRunError` — one line naming the
    damage and `mechintro verify --repair` — on the first that does not. Returns the chunks the
    manifest fixes (empty for a store without a version-2 manifest), for reads to check.

    ``mechintro info`` and ``report`` (through :func:`open_run`) call it; a caller that shows a
    run's values can too, to say "damaged" instead of showing them.
    """
    path = Path(path)
    manifest = read_manifest(path)
    fix = f"run `mechintro verify --repair {path}`"
    if manifest is None:
        if (path / MANIFEST_GROUP).exists():
            raise DamagedRunError(f"{path} is damaged: its manifest is unreadable; {fix}")
        return {}
    if not _json_ok(path / "zarr.json"):
        raise DamagedRunError(
            f"{path} is not a readable zarr store (its root metadata is missing or damaged): {fix}"
        )
    arrays, attrs = _metadata_problems(path, manifest)
    if arrays:
        raise DamagedRunError(
            f"{path} is damaged: the metadata (zarr.json) of {', '.join(arrays)} is missing or "
            f"differs from the manifest's copy; {fix}"
        )
    if attrs:
        raise DamagedRunError(
            f"{path} is damaged: root attribute(s) {', '.join(attrs)} differ from the manifest's "
            f"copy (edited after the run was stored); {fix}"
        )
    if "flags" not in manifest:
        return {}
    unlisted = _unlisted_arrays(path, manifest)
    if unlisted:
        raise DamagedRunError(
            f"{path} is damaged: array(s) {', '.join(unlisted)} are not in the manifest; {fix}"
        )
    try:
        expected, unrecorded = _expected_chunks(path, manifest)
    except Exception as exc:
        raise DamagedRunError(
            f"{path} is damaged: its commit flags are unreadable ({type(exc).__name__}); {fix}"
        ) from None
    n = _n_trials(path)
    if unrecorded:
        flag, start, stop, why = unrecorded[0]
        again = "`mechintro grade`" if flag == "graded" else "the same command"
        raise DamagedRunError(
            f"{path} is damaged: the batch of trials {start}–{stop - 1} {why}"
            f"{f' (and {len(unrecorded) - 1} more)' if len(unrecorded) > 1 else ''}; {fix}, "
            f"then {again} again"
        )
    for key, e in expected.items():
        if full:
            bad = _file_digest(path / key) != e.digest
        else:
            bad = (e.digest is not None) != os.path.isfile(path / key)
        if bad:
            message = _describe(path, e, key, n)
            if full and e.digest is not None and (path / key).is_file():
                message = message.replace(" is missing;", " does not match its digest;")
            raise DamagedRunError(message)
    return expected


# --- Derived groups: arrays computed from a finished run, committed whole -----------------------
#
# Some readouts do not fit the per-trial output arrays: self-prediction's residual at each
# hypothetical prompt's last token is computed after the trials, by a second forward pass, for some
# of the trials only. Such an array is stored as a zarr group inside the run: written under a
# temporary name and renamed into place (whole or not at all), under the store's lock, with the
# digest of every variable in the manifest (``manifest["groups"]``) first, so :func:`verify`
# checks it like the inputs, and ``verify --repair`` deletes a damaged one for the run's command
# to write again.


def group_digests(ds: xr.Dataset) -> dict[str, str]:
    """:func:`value_digest` of every variable and coordinate of ``ds``, by name."""
    return {str(name): value_digest(ds[name].values) for name in sorted(map(str, ds.variables))}


def write_group(path: str | Path, name: str, ds: xr.Dataset) -> None:
    """Store ``ds`` as the group ``name`` of the run ``path``: recorded in the manifest, then
    written to a scratch group and renamed into place, so the group exists whole or not at all and
    :func:`verify` can tell a damaged or missing one.

    Example (what ``self-prediction`` does with ``record_resid``)::

        write_group(out, "hypothetical_resid", xr.Dataset({"resid": (dims, values)}, coords))
        xr.open_zarr(out / "hypothetical_resid", consolidated=False)["resid"]
    """
    path = Path(path)
    if not name or name.startswith((".", "_")) or "/" in name or name in ds.variables:
        raise AssertionError(f"not a group name: {name!r}")
    with store_lock(path):
        manifest = read_manifest(path)
        if manifest is not None:
            manifest.setdefault("groups", {})[name] = group_digests(ds)
            zarr.open_group(str(path / MANIFEST_GROUP), mode="r+").attrs["manifest"] = json.dumps(
                manifest
            )
        scratch = path / f".{name}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)
        ds.to_zarr(scratch, zarr_format=3, consolidated=False)
        shutil.rmtree(path / name, ignore_errors=True)
        scratch.rename(path / name)


def drop_group(path: str | Path, name: str) -> None:
    """Remove the derived group ``name`` from the run ``path``, and its digests from the manifest
    (a copy shipped without its residuals still verifies)."""
    path = Path(path)
    with store_lock(path):
        manifest = read_manifest(path)
        if manifest is not None and name in manifest.get("groups", {}):
            del manifest["groups"][name]
            zarr.open_group(str(path / MANIFEST_GROUP), mode="r+").attrs["manifest"] = json.dumps(
                manifest
            )
        shutil.rmtree(path / name, ignore_errors=True)


def damaged_groups(path: str | Path, manifest: Mapping[str, Any]) -> list[str]:
    """Derived groups the manifest lists that are missing, unreadable or no longer match their
    digests."""
    bad = []
    for name, digests in manifest.get("groups", {}).items():
        try:
            ok = group_digests(xr.open_zarr(Path(path) / name, consolidated=False)) == digests
        except Exception:  # missing, or a chunk fails to decompress
            ok = False
        if not ok:
            bad.append(name)
    return bad


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
    return attrs


def restore_inputs(path: str | Path, make_fresh: Any) -> list[str]:
    """Rewrite the input and coordinate arrays of ``path`` that no longer match its manifest.

    ``make_fresh(p)`` creates at ``p`` the store this run's command creates (inputs written,
    nothing computed). The fresh inputs must digest exactly like the manifest says the stored
    ones did — otherwise the command makes other trials, and this refuses. A store without a
    manifest gets one. Returns the names rewritten. Call it holding the store's lock.
    """
    path = Path(path)
    manifest = read_manifest(path)
    damaged = damaged_inputs(path, manifest) if manifest is not None else None
    if damaged == []:
        return []
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=path.name + ".restore-") as tmp:
        fresh = Path(tmp) / "fresh.zarr"
        make_fresh(fresh)
        fresh_manifest = read_manifest(fresh)
        assert fresh_manifest is not None
        if manifest is not None:
            differ = sorted(
                n
                for n in manifest["inputs"]
                if fresh_manifest["inputs"].get(n) != manifest["inputs"][n]
            )
            if differ:
                raise MechintroError(
                    f"{path} holds other trials than this command makes "
                    f"(differs in: {', '.join(differ)}): rerun with the "
                    "original arguments, or choose another --out"
                )
            names = damaged or []
        else:  # no manifest: the identity check passed, so any difference is damage
            names = damaged_inputs(path, fresh_manifest)
        for name in names:
            shutil.rmtree(path / name, ignore_errors=True)
            shutil.copytree(fresh / name, path / name)
        if manifest is None:
            # The committed batches of a store from before manifests have no digest records:
            # the manifest it gets covers its inputs and metadata only.
            fresh_manifest.pop("flags", None)
            shutil.rmtree(path / MANIFEST_GROUP, ignore_errors=True)
            shutil.copytree(fresh / MANIFEST_GROUP, path / MANIFEST_GROUP)
            _save_manifest(path, fresh_manifest)
            _update_manifest_root(path)
        elif "chunks" in manifest:  # the rewritten arrays' chunks are the fresh store's
            for name in names:
                for key in _chunk_keys(name, manifest["metadata"][name]):
                    manifest["chunks"][key] = fresh_manifest["chunks"].get(key)
            _save_manifest(path, manifest)
    if names:
        log.warning(
            "%s: rewrote damaged input array(s) %s from the trials of this command",
            path,
            ", ".join(names),
        )
    return names


DIGESTED = ("answer_logprobs", "response_ids", "response", "nonfinite", "resid")


def trial_digests(
    outputs: Mapping[str, tuple[tuple[str, ...], np.ndarray]] | xr.Dataset,
) -> list[str]:
    """sha256 per trial over the trial's output values (the variables in :data:`DIGESTED`), so
    ``verify`` can tell a stored trial from one that was altered or half-written."""
    arrays = {}
    for name in DIGESTED:
        if name in outputs:
            value = outputs[name]
            arrays[name] = np.asarray(value[1] if isinstance(value, tuple) else value.values)
    n = len(next(iter(arrays.values())))
    digests = []
    for i in range(n):
        h = hashlib.sha256()
        for name in sorted(arrays):
            row = np.asarray(arrays[name][i])
            h.update(name.encode())
            h.update(
                str(row).encode("utf-8")
                if row.dtype.kind in "OUTS"
                else np.ascontiguousarray(row).tobytes()
            )
        digests.append(h.hexdigest())
    return digests


def write_batch(
    path: str | Path, start: int, outputs: Mapping[str, tuple[tuple[str, ...], np.ndarray]]
) -> None:
    """Write one batch's outputs for trials ``start : start + n`` with their digests, then mark
    them committed."""
    data = dict(outputs)
    data["digest"] = (("trial",), np.array(trial_digests(outputs), dtype=object))
    commit_region(path, start, data, flag="committed")


def mark_complete(path: str | Path) -> None:
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["complete"] = "true"


def committed_mask(path: str | Path) -> np.ndarray:
    try:
        return np.asarray(zarr.open_group(str(path), mode="r")["committed"][:], dtype=bool)
    except Exception as exc:  # a truncated chunk, missing metadata
        raise MechintroError(
            f"{path} has damaged commit flags ({type(exc).__name__}): run "
            f"`mechintro verify --repair {path}`, then the same command again"
        ) from None


def validate(ds: xr.Dataset, *, where: str = "dataset") -> None:
    """Check ``ds`` against the run schema; a :class:`MechintroError` names what is wrong."""

    def bad(what: str) -> MechintroError:
        return MechintroError(f"{where} is not a valid mechintro run: {what}")

    mode = _validated_attrs(ds, bad)
    for name, dims in _expected_dims(ds, mode).items():
        if name not in ds:
            raise bad(f"missing variable '{name}'")
        if ds[name].dims != dims:
            raise bad(f"variable '{name}' has dims {ds[name].dims}, expected {dims}")
    for name in TRIAL_COORDS:
        if name not in ds.coords or ds[name].dims != ("trial",):
            raise bad(f"missing trial coordinate '{name}'")
    if mode == "logits" and ("answer" not in ds.coords or "answer_label" not in ds.coords):
        raise bad("missing the 'answer' / 'answer_label' coordinates")
    if "resid" in ds:
        _resid_storage(ds["resid"], bad)


def _validated_attrs(ds: xr.Dataset, bad: Callable[[str], MechintroError]) -> str:
    """The run's root attributes against the schema; its mode."""
    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise bad(f"missing attributes {missing}")
    if ds.attrs["schema_version"] != str(SCHEMA_VERSION):
        raise bad(
            f"schema version {ds.attrs['schema_version']}, this mechintro "
            f"reads {SCHEMA_VERSION}; use a matching mechintro version"
        )
    mode = ds.attrs["mode"]
    if mode not in MODES:
        raise bad(f"unknown mode '{mode}'")
    try:
        config = json.loads(ds.attrs["config"])
    except (json.JSONDecodeError, TypeError):
        raise bad("the config attribute is not JSON") from None
    if not isinstance(config, dict):
        raise bad("the config attribute is not a JSON object")
    if not str(ds.attrs["batch_size"]).isdigit() or int(ds.attrs["batch_size"]) < 1:
        raise bad(f"batch_size attribute {ds.attrs['batch_size']!r} is not a positive integer")
    return str(mode)


def _expected_dims(ds: xr.Dataset, mode: str) -> dict[str, tuple[str, ...]]:
    """Every variable a run of ``mode`` must hold, with its dims."""
    expected = {
        "input_ids": ("trial", "pos"),
        "attention_mask": ("trial", "pos"),
        "inject_mask": ("trial", "pos"),
        "injected_vector": ("trial", "d_model"),
        "committed": ("trial",),
        "nonfinite": ("trial",),
        "digest": ("trial",),
    }
    if mode == "logits":
        expected["answer_logprobs"] = ("trial", "answer")
    elif mode == "generate":
        expected["response"] = ("trial",)
        expected["response_ids"] = ("trial", "new_token")
    if "resid" in ds or mode == "resid":
        expected["resid"] = ("trial", "layer", "pos", "d_model")
    return expected


# How each ``resid_dtype`` is kept on disk: bfloat16 as its 16 bits (numpy and zarr have no
# bfloat16; ml_dtypes is not a dependency), read back as float32 — exact, bfloat16 being the
# upper half of a float32.
_STORED = {"float16": np.float16, "float32": np.float32, "bfloat16": np.uint16}


def stored_resid_dtype(resid_dtype: str) -> np.dtype:
    """The numpy dtype a run's ``resid`` array holds on disk for ``resid_dtype``."""
    if resid_dtype not in _STORED:
        raise MechintroError(
            f"resid_dtype {resid_dtype!r} is not one of {', '.join(_STORED)}: choose one of them"
        )
    return np.dtype(_STORED[resid_dtype])


def _resid_storage(resid: xr.DataArray, bad: Any) -> tuple[str, int]:
    """The stored residuals' dtype and first stored position, from ``resid``'s attributes (a run
    made before they existed: float16, every position), checked against the array."""
    dtype = resid.attrs.get("resid_dtype", "float16")
    start = resid.attrs.get("resid_from", 0)
    if dtype not in _STORED or resid.dtype != _STORED[dtype]:
        raise bad(f"resid is {resid.dtype} with resid_dtype {dtype!r}, which do not match")
    if not isinstance(start, int) or not 0 <= start < max(resid.sizes.get("pos", 1), 1):
        raise bad(f"resid's resid_from attribute {start!r} is not a position of the run")
    return dtype, start


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values kept as their 16 bits (uint16) → float32, exactly."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def _as_stored(var: xr.DataArray) -> np.ndarray:
    """A variable's values as its array holds them on disk: bfloat16 residuals, which
    :func:`open_run` reads as float32, back to their 16 bits (exact: each is a bfloat16)."""
    values = np.asarray(var.values)
    if var.attrs.get("resid_dtype") == "bfloat16":
        return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(
            np.uint16
        )
    return values


def _decoded_resid(ds: xr.Dataset) -> xr.Dataset:
    """``resid`` as analyses read it: bfloat16 bits as float32 (lazily, chunk by chunk), and the
    coordinate ``resid_stored`` (pos, bool) naming the positions that hold stored values (the
    others are zeros; a run made with ``resid_positions`` other than all)."""
    if "resid" not in ds:
        return ds
    resid = ds["resid"]
    dtype, start = _resid_storage(resid, MechintroError)
    if dtype == "bfloat16":
        data = resid.data.map_blocks(bfloat16_bits_to_float32, dtype=np.float32)
        ds = ds.assign(resid=(resid.dims, data, resid.attrs))
    stored = np.arange(ds.sizes["pos"]) >= start
    return ds.assign_coords(resid_stored=("pos", stored))


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
    except DamagedRunError:
        raise
    except Exception as exc:  # a foreign or truncated store raises many different types
        raise MechintroError(
            f"{path} is not a readable zarr store ({type(exc).__name__}): is it a mechintro run?"
        ) from None
    validate(ds, where=str(path))
    ds = _decoded_resid(ds)
    # Coordinates are small and used for selection (`ds.where(ds.condition == ...)`): load them
    # now, so only the data variables stay lazy.
    ds = ds.assign_coords({name: ds[name].compute() for name in ds.coords if name not in ds.dims})
    # String variables (digests, responses, verdicts) are small; as loaded object arrays they
    # survive `ds.where(..., drop=True)`, which cannot fill numpy's StringDType with NaN.
    strings = [name for name, var in ds.data_vars.items() if var.dtype.kind in "OTU"]
    ds = ds.assign({name: ds[name].astype(object).compute() for name in strings})
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


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found: ``problems`` make a run untrustworthy; ``notes`` are facts."""

    problems: list[str]
    notes: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(path: str | Path, *, repair: bool = False) -> VerifyReport:
    """Check a run: metadata, schema, trial counts, every input and coordinate against the
    store's manifest, every committed trial's outputs against its digest, the weights hash and
    the non-finite flags. Damage is reported, never raised.

    With ``repair`` (holding the store's lock): metadata files that are missing or truncated are
    restored from the manifest's copy; batches whose outputs are unreadable or no longer match
    their digests lose their output chunks, which makes them uncommitted; the run is marked
    incomplete. Running the same command again then recomputes exactly those batches and
    rewrites damaged inputs from the trials it rebuilds. Repair never deletes a committed trial
    that verifies.
    """
    path = _as_path(path)
    if not path.exists():
        raise MechintroError(
            f"run {path} does not exist: check the path, or create it with `mechintro run`"
        )
    if not repair:
        return _verify(path, repair=False)
    with store_lock(path):
        return _verify(path, repair=True)


_FIX = "run `mechintro verify --repair`, then the same command again"
_AGAIN = "run the same command again to recompute them"


@dataclass
class _Check:
    """What the checks of one :func:`verify` call share: the store, whether to repair, its
    manifest, and the problems and notes found so far."""

    path: Path
    repair: bool
    manifest: dict | None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    needs_rerun: bool = False

    def report(self) -> VerifyReport:
        return VerifyReport(problems=self.problems, notes=self.notes)


def _verify(path: Path, *, repair: bool) -> VerifyReport:
    c = _Check(path, repair, read_manifest(path))
    # 1. Metadata: without it nothing else can be read.
    if c.manifest is None:
        _check_no_manifest(c)
    elif not _check_metadata(c, c.manifest):
        return c.report()  # the rest would be checked against an altered definition
    attrs = _checked_attrs(c)
    # 2. Inputs and coordinates against the manifest.
    group = zarr.open_group(str(path), mode="r+" if repair else "r")
    damaged_in = _check_inputs(c)
    _check_groups(c)
    # 3. Outputs, batch by batch, then every chunk of each flagged batch.
    n = group["committed"].shape[0]
    batch_size = int(attrs["batch_size"])
    committed, damaged, unflagged = _check_outputs(group, n, batch_size)
    damaged_grades = _check_chunks(c, damaged)
    _report_damaged_grades(c, group, damaged_grades, batch_size, n)
    _check_committed(c, attrs, committed, n, batch_size)
    _check_weights(c, attrs)
    if not damaged_in:
        _check_inject_mask(c, group)
    _report_damaged(c, group, damaged, batch_size, n)
    if repair and (damaged or c.needs_rerun):
        group.attrs["complete"] = "false"
    _check_nonfinite(c, group, committed, unflagged, damaged)
    stray = list(path.rglob("*.partial"))
    if stray:
        c.notes.append(
            f"{len(stray)} leftover temporary chunk file(s) from an interrupted write (harmless)"
        )
    return c.report()


def _check_no_manifest(c: _Check) -> None:
    """A store without a manifest: damaged if it should have one, else one from before them."""
    path = c.path
    if (path / MANIFEST_GROUP).exists() or (
        _json_ok(path / "zarr.json")
        and "identity" in json.loads((path / "zarr.json").read_text()).get("attributes", {})
    ):
        c.problems.append(
            "the store's manifest is missing or damaged: "
            + ("running the same command again rewrites it" if c.repair else _FIX)
        )
        c.needs_rerun = True
    else:
        c.notes.append(
            "no manifest (a store from before mechintro "
            "digested its inputs): inputs are not checked"
        )


def _check_metadata(c: _Check, manifest: Mapping[str, Any]) -> bool:
    """Every metadata file and the root attributes against the manifest's copies, then arrays
    the manifest does not list. False when the remaining checks cannot go on (not repairing)."""
    edited, root_attrs = _metadata_problems(c.path, manifest)
    broken = ([""] if not _json_ok(c.path / "zarr.json") else []) + edited
    if broken:
        if not _restore_metadata(c, manifest, broken):
            return False
    elif root_attrs and not _restore_root_attrs(c, manifest, root_attrs):
        return False
    _check_unlisted(c, manifest)
    return True


def _restore_metadata(c: _Check, manifest: Mapping[str, Any], broken: list[str]) -> bool:
    what = (
        "metadata (zarr.json) of "
        f"{', '.join(n or 'the root' for n in broken)} missing, damaged or edited "
        "(not the manifest's copy)"
    )
    if not c.repair:
        c.problems.append(f"{what}: {_FIX}")
        return False
    for name in broken:
        meta = manifest["root"] if name == "" else manifest["metadata"][name]
        if name == "":
            meta = json.loads(json.dumps(meta))
            meta.setdefault("attributes", {})["complete"] = "false"
        (c.path / name).mkdir(parents=True, exist_ok=True)
        (c.path / name / "zarr.json").write_text(json.dumps(meta))
    c.problems.append(
        f"{what}: restored from the store's manifest; run the same command again to finish it"
    )
    c.needs_rerun = True
    return True


def _restore_root_attrs(c: _Check, manifest: Mapping[str, Any], root_attrs: list[str]) -> bool:
    what = (
        f"root attribute(s) {', '.join(root_attrs)} differ from the manifest's copy "
        "(edited after the run was stored)"
    )
    if not c.repair:
        c.problems.append(f"{what}: {_FIX}")
        return False
    current = json.loads((c.path / "zarr.json").read_text()).get("attributes", {})
    root = json.loads(json.dumps(manifest["root"]))
    root.setdefault("attributes", {}).update(
        {k: v for k, v in current.items() if k in _MUTABLE_ROOT and v in ("true", "false")}
    )
    (c.path / "zarr.json").write_text(json.dumps(root))
    c.problems.append(f"{what}: restored from the manifest")
    return True


def _check_unlisted(c: _Check, manifest: Mapping[str, Any]) -> None:
    unlisted = _unlisted_arrays(c.path, manifest)
    if unlisted and "flags" in manifest:
        if c.repair:
            for name in unlisted:
                shutil.rmtree(c.path / name)
        c.problems.append(
            f"array(s) {', '.join(unlisted)} are not in the manifest (not written by "
            "mechintro, or by a command that was stopped before it recorded them): "
            + ("deleted" if c.repair else "run `mechintro verify --repair` to delete them")
        )
    elif unlisted:
        c.notes.append(
            f"array(s) {', '.join(unlisted)} are not in the manifest (written before "
            "mechintro recorded such arrays): not checked"
        )


def _checked_attrs(c: _Check) -> dict[str, Any]:
    try:
        return read_attrs(c.path)
    except MechintroError:
        if c.repair or c.manifest is None:
            raise
        raise MechintroError(f"{c.path}: root metadata is unreadable: {_FIX}") from None


def _check_inputs(c: _Check) -> list[str]:
    """Inputs and coordinates against the manifest (zarr-level: a damaged index coordinate
    would stop xarray from opening the store at all); then the schema. The damaged names."""
    damaged_in = damaged_inputs(c.path, c.manifest) if c.manifest is not None else []
    if damaged_in:
        c.problems.append(
            f"input/coordinate array(s) {', '.join(damaged_in)} no longer match "
            "the manifest (a chunk is missing or damaged): "
            f"{'running the same command again rewrites them' if c.repair else _FIX}"
        )
        c.needs_rerun = True
        return damaged_in
    try:
        lazy = xr.open_zarr(c.path, consolidated=False, zarr_format=3)
    except Exception as exc:
        raise MechintroError(
            f"{c.path} is not a readable zarr store ({type(exc).__name__}): is it a mechintro run?"
        ) from None
    validate(lazy, where=str(c.path))
    return damaged_in


def _check_groups(c: _Check) -> None:
    """Derived groups (write_group) against the manifest's digests; unlisted groups noted."""
    manifest = c.manifest
    listed = set(manifest.get("groups", {})) if manifest is not None else set()
    for name in damaged_groups(c.path, manifest) if manifest is not None else []:
        if c.repair:
            shutil.rmtree(c.path / name, ignore_errors=True)
        c.problems.append(
            f"group {name} is missing, unreadable or no longer matches the manifest: "
            + ("deleted; run the same command again to write it anew" if c.repair else _FIX)
        )
    for sub in sorted(p for p in c.path.iterdir() if p.is_dir()):
        if sub.name.startswith(("_", ".")) or sub.name in listed:
            continue
        if _json_ok(sub / "zarr.json") and (
            json.loads((sub / "zarr.json").read_text()).get("node_type") == "group"
        ):
            c.notes.append(
                f"group {sub.name} is not in the manifest (written before mechintro digested "
                "such groups): not checked"
            )


def _check_outputs(
    group: zarr.Group, n: int, batch_size: int
) -> tuple[np.ndarray, list[int], list[int]]:
    """Each batch's committed outputs against their digests: the commit flags, the first trial
    of every damaged batch, and the trials with non-finite log-probabilities but no flag."""
    committed = np.zeros(n, dtype=bool)
    digested = [name for name in DIGESTED if name in group]
    damaged: list[int] = []
    unflagged: list[int] = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        try:
            flags = np.asarray(group["committed"][start:stop], dtype=bool)
        except Exception:  # the commit flags themselves are unreadable
            damaged.append(start)
            continue
        committed[start:stop] = flags
        rows = np.flatnonzero(flags)
        if rows.size == 0:
            continue
        try:
            outputs = {name: ((), np.asarray(group[name][start:stop])) for name in digested}
            stored = [str(x) for x in np.asarray(group["digest"][start:stop]).tolist()]
        except Exception:  # a truncated chunk fails to decompress
            damaged.append(start)
            continue
        recomputed = trial_digests(outputs)
        if any(stored[i] != recomputed[i] for i in rows):
            damaged.append(start)
        elif "answer_logprobs" in outputs:
            bad = ~np.isfinite(outputs["answer_logprobs"][1]).all(1) & ~outputs["nonfinite"][
                1
            ].astype(bool)
            unflagged += [start + int(i) for i in rows if bad[i]]
    return committed, damaged, unflagged


def _check_chunks(c: _Check, damaged: list[int]) -> list[int]:
    """Every chunk of each flagged batch against the record written before its flag: adds the
    damaged output batches to ``damaged`` (kept sorted) and returns the damaged graded ones."""
    damaged_grades: list[int] = []
    manifest = c.manifest
    if manifest is None or "flags" not in manifest:
        return damaged_grades
    try:
        chunks, unrecorded = _expected_chunks(c.path, manifest)
    except Exception:  # the commit flags are unreadable: the output check reported them
        chunks, unrecorded = {}, []
    bad_batches = {(flag, start) for flag, start, _, _ in unrecorded}
    for key, e in chunks.items():
        if e.batch is not None and _file_digest(c.path / key) != e.digest:
            bad_batches.add((e.flag, e.batch))
    for flag, start in sorted(bad_batches, key=lambda fs: (str(fs[0]), fs[1])):
        target = damaged if flag == "committed" else damaged_grades
        if start not in target:
            target.append(start)
    damaged.sort()
    return damaged_grades


def _report_damaged_grades(
    c: _Check, group: zarr.Group, damaged_grades: list[int], batch_size: int, n: int
) -> None:
    if not damaged_grades:
        return
    msg = (
        f"{len(damaged_grades)} graded batch(es) (first at trial {damaged_grades[0]}) have "
        "verdicts that are missing, unreadable or no longer match their digests"
    )
    if not c.repair:
        c.problems.append(msg + ": run `mechintro verify --repair`, then `mechintro grade` again")
        return
    assert c.manifest is not None  # graded batches are known only from the manifest
    for start in damaged_grades:
        _drop_flagged(c.path, c.manifest, "graded", start, min(start + batch_size, n))
    group.attrs["grading_complete"] = "false"
    c.problems.append(msg + ": marked ungraded; run `mechintro grade` again to grade them")


def _check_committed(
    c: _Check, attrs: Mapping[str, Any], committed: np.ndarray, n: int, batch_size: int
) -> None:
    """The committed trials against those the run (or the shard) owns and its complete flag."""
    expected = np.ones(n, dtype=bool)
    if attrs.get("shard"):  # a shard owns some batches; the others stay uncommitted
        index, count = _shard_of(attrs, c.path)
        expected[:] = False
        for b in shard_batches(n, batch_size, index, count):
            expected[b * batch_size : (b + 1) * batch_size] = True
        c.notes.append(
            f"shard {index}/{count}: {int(expected.sum())} of the "
            f"run's {n} trials; merge the shards with `mechintro merge`"
        )
        if (committed & ~expected).any():
            c.problems.append(
                f"{int((committed & ~expected).sum())} trials "
                f"outside shard {index}/{count} are committed"
            )
    c.notes.append(f"{int(committed.sum())} of {int(expected.sum())} trials committed")
    complete = attrs.get("complete") == "true"
    if complete and not committed[expected].all():
        c.problems.append(
            f"marked complete, but {int((expected & ~committed).sum())} "
            f"trials are uncommitted: {_AGAIN}"
        )
    elif not complete:
        c.problems.append("incomplete: run the same command again to finish it")


def _check_weights(c: _Check, attrs: Mapping[str, Any]) -> None:
    from mechintro.models import OFFLINE_MODELS

    spec = OFFLINE_MODELS.get(attrs["model"])
    if spec is not None and attrs["weights_sha256"] != spec.sha256:
        c.problems.append(
            f"weights hash {attrs['weights_sha256'][:12]}… is not the pinned hash of {spec.name}"
        )


def _check_inject_mask(c: _Check, group: zarr.Group) -> None:
    attn = np.asarray(group["attention_mask"][...], dtype=bool)
    if (np.asarray(group["inject_mask"][...], dtype=bool) & ~attn).any():
        c.problems.append("inject_mask marks padding positions")


def _report_damaged(
    c: _Check, group: zarr.Group, damaged: list[int], batch_size: int, n: int
) -> None:
    if not damaged:
        return
    msg = (
        f"{len(damaged)} batch(es) (first at trial {damaged[0]}) "
        "are unreadable or no longer match their digests"
    )
    if not c.repair:
        c.problems.append(msg + ": " + _FIX)
        return
    manifest = c.manifest
    for start in damaged:
        _drop_outputs(c.path, group, start, min(start + batch_size, n), manifest)
        if manifest is not None and "graded" in manifest.get("flags", {}):
            _drop_flagged(c.path, manifest, "graded", start, min(start + batch_size, n))
            group.attrs["grading_complete"] = "false"
    c.problems.append(msg + ": marked uncommitted; " + _AGAIN)


def _check_nonfinite(
    c: _Check, group: zarr.Group, committed: np.ndarray, unflagged: list[int], damaged: list[int]
) -> None:
    if unflagged:
        c.problems.append(
            f"{len(unflagged)} trial(s) have non-finite "
            "log-probabilities without the nonfinite flag"
        )
    flagged = (
        int((np.asarray(group["nonfinite"][...], dtype=bool) & committed).sum())
        if not damaged
        else 0
    )
    if flagged:
        c.notes.append(
            f"{flagged} trial(s) flagged non-finite (NaN/inf logits "
            "or float16 overflow); analyses should drop them"
        )


# Arrays written per batch (and the grading's commit flags, so a recomputed batch is graded again).
_BATCH_OUTPUTS = (
    "committed",
    "nonfinite",
    "digest",
    "answer_logprobs",
    "response_ids",
    "response",
    "resid",
    "graded",
)


def _drop_outputs(
    path: Path, group: zarr.Group, start: int, stop: int, manifest: Mapping[str, Any] | None
) -> None:
    """Delete the chunk files of every output array for trials ``start:stop`` (one batch: chunks
    never straddle batches), so they read as unwritten and uncommitted, and a rerun writes them
    whole instead of merging into a damaged chunk."""
    for name in group.array_keys():
        if name not in _BATCH_OUTPUTS:
            continue
        array = group[name]
        size = array.chunks[0]
        for index in range(start // size, (stop - 1) // size + 1):
            target = path / name / "c" / str(index)
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    for flag in ("committed", "graded"):
        _record_file(path, flag, start).unlink(missing_ok=True)


def _drop_flagged(
    path: Path, manifest: Mapping[str, Any], flag: str, start: int, stop: int
) -> None:
    """Delete the chunks of the arrays the commit flag ``flag`` covers, of the flag itself and
    its record, for trials ``start:stop``: they read as never written."""
    for name in [*manifest["flags"][flag], flag]:
        meta = manifest["metadata"].get(name)
        if meta is None:
            continue
        for key in _chunk_keys(name, meta, start, stop):
            (path / key).unlink(missing_ok=True)
    _record_file(path, flag, start).unlink(missing_ok=True)


# Attributes that must agree between the shards of one run (the rest — creation time, commit,
# package versions — may differ between machines and are taken from shard 1).
_SHARED_ATTRS = (
    "schema_version",
    "experiment",
    "mode",
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
        if not np.asarray(group["committed"][:], dtype=bool).all():
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
        outputs = {v: (part[v].dims, _as_stored(part[v])) for v in _OUTPUT_VARS if v in part}
        commit_region(staging, region["trial"].start, outputs, flag="committed")
