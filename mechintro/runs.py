"""Run datasets: every trial, with its full residual stream, in one labelled zarr store.

The run store's public names, from the modules that hold them, one job each (``mechintro/store/``):
:mod:`~mechintro.store.schema` (the schema, :func:`validate`), :mod:`~mechintro.store.manifest`
(digests and batch records), :mod:`~mechintro.store.run_store` (create, commit, open; the commit
protocol), :mod:`~mechintro.store.verify` (:func:`verify`, one function per check),
:mod:`~mechintro.store.merge` (:func:`merge`) and :mod:`~mechintro.store.shards`. Import them
from here: callers, and tests that patch ``runs.write_batch``, use this module.

Why zarr (v3): it stores float16 natively (the netCDF4 engine rejects it; h5netcdf's float16
breaks netCDF-C readers), reads fastest, opens lazily through dask, and writes each chunk as its
own file through a temporary name and an atomic rename, so a crash never corrupts the store
(measurements in docs/engineering.md). The schema is documented in ``docs/schema.md``.
"""

from __future__ import annotations

from mechintro.store.manifest import (
    MANIFEST_GROUP,
    MANIFEST_VERSION,
    DamagedRunError,
    check_metadata,
    check_run,
    commit_region,
    damaged_groups,
    damaged_inputs,
    drop_group,
    group_digests,
    read_manifest,
    register_arrays,
    restore_inputs,
    set_root_attrs,
    value_digest,
    write_group,
)
from mechintro.store.merge import merge
from mechintro.store.run_store import _COMPRESSOR as _COMPRESSOR  # test_resid_codec reads it
from mechintro.store.run_store import (
    committed_mask,
    create_run,
    mark_complete,
    open_run,
    read_attrs,
    write_batch,
)
from mechintro.store.schema import (
    DIGESTED,
    INPUT_VARS,
    LEGACY_MODES,
    REQUIRED_ATTRS,
    SCHEMA_VERSION,
    TRIAL_COORDS,
    StoredReadout,
    Variable,
    bfloat16_bits_to_float32,
    readout_variables,
    stored_readouts,
    stored_resid_dtype,
    trial_digests,
    validate,
)
from mechintro.store.shards import shard_batches
from mechintro.store.verify import VerifyReport, verify

__all__ = [
    "DIGESTED",
    "INPUT_VARS",
    "LEGACY_MODES",
    "MANIFEST_GROUP",
    "MANIFEST_VERSION",
    "REQUIRED_ATTRS",
    "SCHEMA_VERSION",
    "TRIAL_COORDS",
    "DamagedRunError",
    "StoredReadout",
    "Variable",
    "VerifyReport",
    "bfloat16_bits_to_float32",
    "check_metadata",
    "check_run",
    "commit_region",
    "committed_mask",
    "create_run",
    "damaged_groups",
    "damaged_inputs",
    "drop_group",
    "group_digests",
    "mark_complete",
    "merge",
    "open_run",
    "read_attrs",
    "read_manifest",
    "readout_variables",
    "register_arrays",
    "restore_inputs",
    "set_root_attrs",
    "shard_batches",
    "stored_readouts",
    "stored_resid_dtype",
    "trial_digests",
    "validate",
    "value_digest",
    "verify",
    "write_batch",
    "write_group",
]
