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
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
import zarr

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
_COMPRESSOR = zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
_CHUNK_BYTES = 16 << 20


def _output_template(
    n_trials: int,
    batch_size: int,
    mode: str,
    n_answers: int,
    max_new_tokens: int,
    record: tuple[int, int, int] | None,
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
        per_trial = n_layers * n_pos * d_model * 2
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
                dtype=np.float16,
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
) -> Path:
    """Create the store for a run: inputs written, outputs allocated, nothing committed.

    ``inputs`` holds the trial coordinates and :data:`INPUT_VARS` (and the ``answer`` coordinate
    in logit mode). Written under a temporary name and renamed into place. ``resid_layers``: the
    block indices whose residual stream is stored (the ``layer`` coordinate); default every one
    of ``n_layers``.
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
    template = _output_template(n_trials, chunk, mode, n_answers, max_new_tokens, record_shape)
    ds = inputs.assign(template)
    if record:
        ds = ds.assign_coords(layer=stored_layers)
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
# metadata and of the root's, so ``verify --repair`` can restore a deleted or truncated
# ``zarr.json``; and a resumed run rewrites damaged inputs from the trials it rebuilds.

MANIFEST_GROUP = "_mechintro"


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


def _write_manifest(path: Path, *, outputs: set[str]) -> None:
    group = zarr.open_group(str(path), mode="r+")
    names = sorted(group.array_keys())
    manifest = {
        "version": 1,
        "inputs": {name: value_digest(group[name][...]) for name in names if name not in outputs},
        "metadata": {name: json.loads((path / name / "zarr.json").read_text()) for name in names},
        "root": json.loads((path / "zarr.json").read_text()),
    }
    group.create_group(MANIFEST_GROUP).attrs["manifest"] = json.dumps(manifest)


def read_manifest(path: str | Path) -> dict | None:
    """The store's manifest, or ``None`` if it has none (a store from before manifests) or it is
    unreadable."""
    try:
        return json.loads(
            zarr.open_group(str(Path(path) / MANIFEST_GROUP), mode="r").attrs["manifest"]
        )
    except Exception:  # missing, truncated or foreign: the callers say what that means
        return None


def _update_manifest_root(path: Path) -> None:
    """After a deliberate change of the root attributes (a merge), keep the manifest's copy
    current."""
    manifest = read_manifest(path)
    if manifest is not None:
        manifest["root"] = json.loads((path / "zarr.json").read_text())
        zarr.open_group(str(path / MANIFEST_GROUP), mode="r+").attrs["manifest"] = json.dumps(
            manifest
        )


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
    bad = []
    for name, digest in manifest["inputs"].items():
        try:
            ok = value_digest(group[name][...]) == digest
        except Exception:  # a truncated chunk fails to decompress; a missing array raises KeyError
            ok = False
        if not ok:
            bad.append(name)
    return bad


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
            shutil.rmtree(path / MANIFEST_GROUP, ignore_errors=True)
            shutil.copytree(fresh / MANIFEST_GROUP, path / MANIFEST_GROUP)
            _update_manifest_root(path)
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
    n = len(next(iter(outputs.values()))[1])
    region = {"trial": slice(start, start + n)}
    data = xr.Dataset({k: v for k, v in outputs.items()})
    data["digest"] = (("trial",), np.array(trial_digests(outputs), dtype=object))
    data.to_zarr(path, region=region, consolidated=False)
    # The commit flag is a separate, later write: a kill before it leaves the batch uncommitted.
    xr.Dataset({"committed": (("trial",), np.ones(n, dtype=bool))}).to_zarr(
        path, region=region, consolidated=False
    )


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
    for name, dims in expected.items():
        if name not in ds:
            raise bad(f"missing variable '{name}'")
        if ds[name].dims != dims:
            raise bad(f"variable '{name}' has dims {ds[name].dims}, expected {dims}")
    for name in TRIAL_COORDS:
        if name not in ds.coords or ds[name].dims != ("trial",):
            raise bad(f"missing trial coordinate '{name}'")
    if mode == "logits" and ("answer" not in ds.coords or "answer_label" not in ds.coords):
        raise bad("missing the 'answer' / 'answer_label' coordinates")
    if "resid" in ds and ds["resid"].dtype != np.float16:
        raise bad(f"resid is {ds['resid'].dtype}, expected float16")


def open_run(path: str | Path, *, committed_only: bool = True) -> xr.Dataset:
    """Open and validate a run, lazily (residuals stay on disk until used).

    Args:
        committed_only: keep only trials whose outputs were fully written (the default). An
            interrupted run opens with the trials it finished; resume it to add the rest.

    Returns:
        The run's :class:`xarray.Dataset` (see ``docs/schema.md``).
    """
    path = _as_path(path)
    if not path.exists():
        raise MechintroError(
            f"run {path} does not exist: check the path, or create it with `mechintro run`"
        )
    try:
        ds = xr.open_zarr(path, consolidated=False, zarr_format=3)
    except Exception as exc:  # a foreign or truncated store raises many different types
        raise MechintroError(
            f"{path} is not a readable zarr store ({type(exc).__name__}): is it a mechintro run?"
        ) from None
    validate(ds, where=str(path))
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


def _verify(path: Path, *, repair: bool) -> VerifyReport:
    from mechintro.models import OFFLINE_MODELS

    problems: list[str] = []
    notes: list[str] = []
    fix = "run `mechintro verify --repair`, then the same command again"
    again = "run the same command again to recompute them"
    manifest = read_manifest(path)
    needs_rerun = False
    # 1. Metadata: without it nothing else can be read.
    if manifest is None:
        if (path / MANIFEST_GROUP).exists() or (
            _json_ok(path / "zarr.json")
            and "identity" in json.loads((path / "zarr.json").read_text()).get("attributes", {})
        ):
            problems.append(
                "the store's manifest is missing or damaged: "
                + ("running the same command again rewrites it" if repair else fix)
            )
            needs_rerun = True
        else:
            notes.append(
                "no manifest (a store from before mechintro "
                "digested its inputs): inputs are not checked"
            )
    else:
        broken = [
            name for name in ["", *manifest["metadata"]] if not _json_ok(path / name / "zarr.json")
        ]
        if broken:
            what = (
                "metadata (zarr.json) of "
                f"{', '.join(n or 'the root' for n in broken)} missing or damaged"
            )
            if not repair:
                problems.append(f"{what}: {fix}")
                return VerifyReport(problems=problems, notes=notes)
            for name in broken:
                meta = manifest["root"] if name == "" else manifest["metadata"][name]
                if name == "":
                    meta = json.loads(json.dumps(meta))
                    meta.setdefault("attributes", {})["complete"] = "false"
                (path / name).mkdir(parents=True, exist_ok=True)
                (path / name / "zarr.json").write_text(json.dumps(meta))
            problems.append(
                f"{what}: restored from the store's manifest; "
                "run the same command again to finish it"
            )
            needs_rerun = True
    try:
        attrs = read_attrs(path)
    except MechintroError:
        if repair or manifest is None:
            raise
        raise MechintroError(f"{path}: root metadata is unreadable: {fix}") from None
    # 2. Inputs and coordinates against the manifest (zarr-level: a damaged index coordinate
    # would stop xarray from opening the store at all).
    group = zarr.open_group(str(path), mode="r+" if repair else "r")
    damaged_in = damaged_inputs(path, manifest) if manifest is not None else []
    if damaged_in:
        problems.append(
            f"input/coordinate array(s) {', '.join(damaged_in)} no longer match "
            "the manifest (a chunk is missing or damaged): "
            f"{'running the same command again rewrites them' if repair else fix}"
        )
        needs_rerun = True
    else:
        try:
            lazy = xr.open_zarr(path, consolidated=False, zarr_format=3)
        except Exception as exc:
            raise MechintroError(
                f"{path} is not a readable zarr store "
                f"({type(exc).__name__}): is it a mechintro run?"
            ) from None
        validate(lazy, where=str(path))
    # 2b. Derived groups (write_group) against the manifest's digests.
    listed = set(manifest.get("groups", {})) if manifest is not None else set()
    for name in damaged_groups(path, manifest) if manifest is not None else []:
        if repair:
            shutil.rmtree(path / name, ignore_errors=True)
        problems.append(
            f"group {name} is missing, unreadable or no longer matches the manifest: "
            + ("deleted; run the same command again to write it anew" if repair else fix)
        )
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if sub.name.startswith(("_", ".")) or sub.name in listed:
            continue
        if _json_ok(sub / "zarr.json") and (
            json.loads((sub / "zarr.json").read_text()).get("node_type") == "group"
        ):
            notes.append(
                f"group {sub.name} is not in the manifest (written before mechintro digested "
                "such groups): not checked"
            )
    # 3. Outputs, batch by batch.
    n = group["committed"].shape[0]
    batch_size = int(attrs["batch_size"])
    complete = attrs.get("complete") == "true"
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
    expected = np.ones(n, dtype=bool)
    if attrs.get("shard"):  # a shard owns some batches; the others stay uncommitted
        index, count = _shard_of(attrs, path)
        expected[:] = False
        for b in shard_batches(n, batch_size, index, count):
            expected[b * batch_size : (b + 1) * batch_size] = True
        notes.append(
            f"shard {index}/{count}: {int(expected.sum())} of the "
            f"run's {n} trials; merge the shards with `mechintro merge`"
        )
        if (committed & ~expected).any():
            problems.append(
                f"{int((committed & ~expected).sum())} trials "
                f"outside shard {index}/{count} are committed"
            )
    notes.append(f"{int(committed.sum())} of {int(expected.sum())} trials committed")
    if complete and not committed[expected].all():
        problems.append(
            f"marked complete, but {int((expected & ~committed).sum())} "
            f"trials are uncommitted: {again}"
        )
    elif not complete:
        problems.append("incomplete: run the same command again to finish it")
    spec = OFFLINE_MODELS.get(attrs["model"])
    if spec is not None and attrs["weights_sha256"] != spec.sha256:
        problems.append(
            f"weights hash {attrs['weights_sha256'][:12]}… is not the pinned hash of {spec.name}"
        )
    if not damaged_in:
        attn = np.asarray(group["attention_mask"][...], dtype=bool)
        if (np.asarray(group["inject_mask"][...], dtype=bool) & ~attn).any():
            problems.append("inject_mask marks padding positions")
    if damaged:
        msg = (
            f"{len(damaged)} batch(es) (first at trial {damaged[0]}) "
            "are unreadable or no longer match their digests"
        )
        if repair:
            for start in damaged:
                _drop_outputs(path, group, start, min(start + batch_size, n), manifest)
            problems.append(msg + ": marked uncommitted; " + again)
        else:
            problems.append(msg + ": " + fix)
    if repair and (damaged or needs_rerun):
        group.attrs["complete"] = "false"
    if unflagged:
        problems.append(
            f"{len(unflagged)} trial(s) have non-finite "
            "log-probabilities without the nonfinite flag"
        )
    flagged = (
        int((np.asarray(group["nonfinite"][...], dtype=bool) & committed).sum())
        if not damaged
        else 0
    )
    if flagged:
        notes.append(
            f"{flagged} trial(s) flagged non-finite (NaN/inf logits "
            "or float16 overflow); analyses should drop them"
        )
    stray = [p for p in path.rglob("*.partial")]
    if stray:
        notes.append(
            f"{len(stray)} leftover temporary chunk file(s) from an interrupted write (harmless)"
        )
    return VerifyReport(problems=problems, notes=notes)


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
    opened = [(p, open_run(p, committed_only=False)) for p in paths]
    by_index: dict[int, Path] = {}
    count = None
    first = opened[0][1]
    for p, ds in opened:
        index, n = _shard_of(ds, p)
        count = n if count is None else count
        if n != count:
            raise MechintroError(
                f"{p} is shard {index}/{n} but {paths[0]} is "
                f"one of {count}: merge the shards of one run"
            )
        if index in by_index:
            raise MechintroError(f"shard {index}/{n} is given twice ({by_index[index]} and {p})")
        by_index[index] = p
        differs = [k for k in _SHARED_ATTRS if ds.attrs.get(k) != first.attrs.get(k)]
        if differs:
            raise MechintroError(
                f"{p} and {paths[0]} are not shards of one "
                f"run (they differ in: {', '.join(differs)})"
            )
        if ds.attrs.get("complete") != "true":
            raise MechintroError(
                f"shard {index}/{n} ({p}) is unfinished: run "
                "its command again to finish it, then merge"
            )
        report = verify(
            p
        )  # every committed trial against its digest, every input against the manifest
        if not report.ok:
            raise MechintroError(
                f"shard {index}/{n} ({p}) is damaged ({report.problems[0]}); merge refused: "
                f"run `mechintro verify --repair {p}`, then its command again"
            )
        for name in INPUT_VARS:
            if not ds[name].equals(first[name]):
                raise MechintroError(
                    f"{p} holds other trials than {paths[0]} "
                    f"({name} differs): merge the shards of one run"
                )
    assert count is not None
    missing = sorted(set(range(1, count + 1)) - set(by_index))
    if missing:
        raise MechintroError(
            f"shard(s) {', '.join(f'{i}/{count}' for i in missing)} "
            "missing: pass the store of every shard"
        )
    n_trials, batch_size = first.sizes["trial"], int(first.attrs["batch_size"])
    stores = dict(opened)  # paths are distinct: a repeated shard was refused above
    with store_lock(out), staged_dir(out) as staging:
        shutil.copytree(by_index[1], staging)
        for index, p in sorted(by_index.items()):
            if index == 1:
                continue
            ds = stores[p]
            for b in shard_batches(n_trials, batch_size, index, count):
                region = {"trial": slice(b * batch_size, min((b + 1) * batch_size, n_trials))}
                part = ds.isel(trial=region["trial"])
                if not bool(part["committed"].all()):
                    raise MechintroError(
                        f"shard {index}/{count} ({p}) has uncommitted "
                        f"trials in batch {b}: run its command again"
                    )
                outputs = xr.Dataset(
                    {v: (part[v].dims, part[v].values) for v in _OUTPUT_VARS if v in part}
                )
                outputs.to_zarr(staging, region=region, consolidated=False)
                xr.Dataset(
                    {
                        "committed": (
                            ("trial",),
                            np.ones(region["trial"].stop - region["trial"].start, dtype=bool),
                        )
                    }
                ).to_zarr(staging, region=region, consolidated=False)
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
