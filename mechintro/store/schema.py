"""The run schema: the attributes, variables and dims every run holds (:func:`validate`, on write
and on read), how residual streams are kept on disk, and the per-trial output digests.

Part of the run store (``mechintro.runs`` re-exports the public names); documented in
``docs/schema.md``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from mechintro.errors import MechintroError

SCHEMA_VERSION = 1


TRIAL_COORDS = ("concept", "condition", "strength", "inject_layer", "inject_layer_end")


INPUT_VARS = ("input_ids", "attention_mask", "inject_mask", "injected_vector")


REQUIRED_ATTRS = (
    "schema_version",
    "model",
    "weights_sha256",
    "mechintro_version",
    "git_commit",
    "config",
    "package_versions",
    "batch_size",
)


@dataclass(frozen=True)
class Variable:
    """One output variable a readout stores: its dims (the first is ``trial``), the extents of
    the others (``shape``), its numpy dtype (``object`` for text) and the value of a trial not
    yet written. ``text_bytes``: for text, about how many bytes a trial's value takes (the
    free-space check's estimate)."""

    dims: tuple[str, ...]
    dtype: str
    fill: float | int | str | bool
    shape: tuple[int, ...] = ()
    text_bytes: int = 0

    def raw_bytes(self) -> int:
        """Bytes per trial, uncompressed."""
        if self.dtype == "object":
            return self.text_bytes
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
class StoredReadout:
    """What one readout stores: its name, its variables and the coordinates they need (written
    with the inputs). A run's list of them is its ``readouts`` attribute (:func:`readouts_attr`),
    from which :func:`validate` derives the variables to expect."""

    name: str
    variables: Mapping[str, Variable]
    coords: tuple[str, ...] = ()

    def described(self) -> dict[str, Any]:
        """The JSON form kept in the run's ``readouts`` attribute (dims, not extents)."""
        return {
            "readout": self.name,
            "variables": {k: list(v.dims) for k, v in self.variables.items()},
            "coords": list(self.coords),
        }


def readouts_attr(readouts: Sequence[StoredReadout]) -> str:
    """The ``readouts`` attribute of a run that stores ``readouts``."""
    return json.dumps([r.described() for r in readouts], sort_keys=True)


# Runs made before the readouts were stored name one of three modes instead; what each held.
# `record_resid` "true" (or mode "resid") adds the residual stream.
_RESID = {
    "readout": "resid",
    "variables": {"resid": ["trial", "layer", "pos", "d_model"]},
    "coords": [],
}
LEGACY_MODES: dict[str, list[dict[str, Any]]] = {
    "logits": [
        {
            "readout": "next_token",
            "variables": {"answer_logprobs": ["trial", "answer"]},
            "coords": ["answer", "answer_label"],
        }
    ],
    "generate": [
        {
            "readout": "generate",
            "variables": {"response_ids": ["trial", "new_token"], "response": ["trial"]},
            "coords": [],
        }
    ],
    "resid": [],
}


def stored_readouts(attrs: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A run's readouts as its attributes describe them: the ``readouts`` attribute, or for a
    run made before it existed, what its ``mode`` held (:data:`LEGACY_MODES`). Raises
    :class:`MechintroError` when neither is readable."""
    if "readouts" in attrs:
        try:
            described = json.loads(attrs["readouts"])
        except (json.JSONDecodeError, TypeError):
            raise MechintroError("the readouts attribute is not JSON") from None
        if not isinstance(described, list) or not all(
            isinstance(r, dict)
            and isinstance(r.get("readout"), str)
            and isinstance(r.get("variables"), dict)
            and isinstance(r.get("coords"), list)
            for r in described
        ):
            raise MechintroError("the readouts attribute is not a list of readouts")
        return described
    mode = attrs.get("mode")
    if mode is None:
        raise MechintroError("missing attribute 'readouts' (or, made before it, 'mode')")
    if mode not in LEGACY_MODES:
        raise MechintroError(f"unknown mode '{mode}'")
    recorded = mode == "resid" or str(attrs.get("record_resid", "")).lower() == "true"
    return [*LEGACY_MODES[mode], *([_RESID] if recorded else [])]


def readout_variables(attrs: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """Every output variable the run's readouts store, with its dims."""
    return {
        name: tuple(dims)
        for readout in stored_readouts(attrs)
        for name, dims in readout["variables"].items()
    }


# Digested in every run that holds them; a run's other readout variables are digested too.
DIGESTED = ("answer_logprobs", "response_ids", "response", "nonfinite", "resid")


def trial_digests(
    outputs: Mapping[str, tuple[tuple[str, ...], np.ndarray]] | xr.Dataset,
    names: Sequence[str] = DIGESTED,
) -> list[str]:
    """sha256 per trial over the trial's output values (the variables in ``names``, by default
    :data:`DIGESTED`; a run passes its readouts' variables too), so ``verify`` can tell a stored
    trial from one that was altered or half-written."""
    arrays = {}
    for name in dict.fromkeys([*DIGESTED, *names]):
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


def validate(ds: xr.Dataset, *, where: str = "dataset") -> None:
    """Check ``ds`` against the run schema; a :class:`MechintroError` names what is wrong."""

    def bad(what: str) -> MechintroError:
        return MechintroError(f"{where} is not a valid mechintro run: {what}")

    readouts = _validated_attrs(ds, bad)
    for name, dims in _expected_dims(ds, readouts).items():
        if name not in ds:
            raise bad(f"missing variable '{name}'")
        if ds[name].dims != dims:
            raise bad(f"variable '{name}' has dims {ds[name].dims}, expected {dims}")
    for name in TRIAL_COORDS:
        if name not in ds.coords or ds[name].dims != ("trial",):
            raise bad(f"missing trial coordinate '{name}'")
    for readout in readouts:
        if missing := [c for c in readout["coords"] if c not in ds.coords]:
            raise bad(f"missing the {' / '.join(map(repr, missing))} coordinates")
    if "resid" in ds:
        _resid_storage(ds["resid"], bad)


def _validated_attrs(ds: xr.Dataset, bad: Callable[[str], MechintroError]) -> list[dict[str, Any]]:
    """The run's root attributes against the schema; its readouts (:func:`stored_readouts`)."""
    missing = [a for a in REQUIRED_ATTRS if a not in ds.attrs]
    if missing:
        raise bad(f"missing attributes {missing}")
    if ds.attrs["schema_version"] != str(SCHEMA_VERSION):
        raise bad(
            f"schema version {ds.attrs['schema_version']}, this mechintro "
            f"reads {SCHEMA_VERSION}; use a matching mechintro version"
        )
    try:
        readouts = stored_readouts(ds.attrs)
    except MechintroError as e:
        raise bad(str(e)) from None
    try:
        config = json.loads(ds.attrs["config"])
    except (json.JSONDecodeError, TypeError):
        raise bad("the config attribute is not JSON") from None
    if not isinstance(config, dict):
        raise bad("the config attribute is not a JSON object")
    if not str(ds.attrs["batch_size"]).isdigit() or int(ds.attrs["batch_size"]) < 1:
        raise bad(f"batch_size attribute {ds.attrs['batch_size']!r} is not a positive integer")
    return readouts


def _expected_dims(
    ds: xr.Dataset, readouts: Sequence[Mapping[str, Any]]
) -> dict[str, tuple[str, ...]]:
    """Every variable a run with these ``readouts`` must hold, with its dims."""
    expected = {
        "input_ids": ("trial", "pos"),
        "attention_mask": ("trial", "pos"),
        "inject_mask": ("trial", "pos"),
        "injected_vector": ("trial", "d_model"),
        "committed": ("trial",),
        "nonfinite": ("trial",),
        "digest": ("trial",),
    }
    for readout in readouts:
        expected |= {name: tuple(dims) for name, dims in readout["variables"].items()}
    if "resid" in ds:
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
