"""The store's manifest: digests of every input, coordinate and metadata file taken when the run
is created, and the record of every batch's chunk files written before its commit flag; the
checks against it that opening a run runs (:func:`check_run`), derived groups
(:func:`write_group`) and the restoring of damaged inputs.

Part of the run store (``mechintro.runs`` re-exports the public names).
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
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr
import zarr
from zarr.storage import LocalStore

from mechintro._fs import store_lock
from mechintro.errors import MechintroError
from mechintro.store.shards import _shard_of, shard_batches

log = logging.getLogger("mechintro.runs")  # one logger for the run store (browse quiets it)


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


def _array(group: zarr.Group, name: str) -> zarr.Array[Any]:
    """``group[name]``, an array: zarr types a group's member as array-or-group (a cast, no
    check at run time)."""
    return cast("zarr.Array[Any]", group[name])


def _chunk_keys(
    name: str, meta: Mapping[str, Any], start: int = 0, stop: int | None = None
) -> list[str]:
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
        "inputs": {name: value_digest(_array(group, name)[...]) for name in fixed},
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


def read_manifest(path: str | Path) -> dict[str, Any] | None:
    """The store's manifest, or ``None`` if it has none (a store from before manifests) or it is
    unreadable."""
    file = Path(path) / MANIFEST_GROUP / "zarr.json"
    try:  # read directly: zarr warns (ZarrUserWarning) about a folder without its metadata
        manifest: dict[str, Any] = json.loads(
            json.loads(file.read_text())["attributes"]["manifest"]
        )
        return manifest
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


def _record_batch(
    path: Path, manifest: Mapping[str, Any], flag: str, start: int, stop: int
) -> None:
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
            ok = value_digest(_array(group, name)[...]) == digest
        except Exception:  # a truncated chunk fails to decompress; a missing array raises KeyError
            ok = False
        if ok and chunks:  # version 2: also the stored bytes, which a reader checks
            keys = _chunk_keys(name, manifest["metadata"][name])
            ok = all(_file_digest(Path(path) / k) == chunks.get(k) for k in keys)
        if not ok:
            bad.append(name)
    return bad


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
