"""How ``runs.open_run`` loads a store's small arrays: one synchronous dask pass (the store's way
since 2026-12-07) against the earlier one threaded compute per array. Both must give identical
datasets; prints the CPU seconds of each over every shipped store.

    python benchmarks/open_run_pass.py [--glob 'analyses/data/*/*.zarr']
"""

from __future__ import annotations

import argparse
import glob
import time

import numpy as np
import xarray as xr

from mechintro import runs
from mechintro.cli import script_main
from mechintro.store import run_store as rs


def per_array(path: str) -> xr.Dataset:
    """The earlier path: the same checks, then one dask compute per coordinate and string."""
    where = rs._as_path(path)
    ds = xr.open_zarr(
        rs._CheckedStore(where, rs.check_run(where, full=False)), consolidated=False, zarr_format=3
    )
    rs.validate(ds, where=str(where))
    ds = rs._decoded_resid(ds)
    ds = ds.assign_coords({n: ds[n].compute() for n in ds.coords if n not in ds.dims})
    strings = [n for n, v in ds.data_vars.items() if v.dtype.kind in "OTU"]
    ds = ds.assign({n: ds[n].astype(object).compute() for n in strings})
    committed = np.asarray(ds["committed"].values, dtype=bool)
    return ds if committed.all() else ds.isel(trial=np.flatnonzero(committed))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--glob", default="analyses/data/*/*.zarr")
    args = p.parse_args()
    paths = sorted(glob.glob(args.glob))
    cpu = {"per array": 0.0, "one pass": 0.0}
    for path in paths:
        start = time.process_time()
        old = per_array(path)
        cpu["per array"] += time.process_time() - start
        start = time.process_time()
        new = runs.open_run(path)
        cpu["one pass"] += time.process_time() - start
        xr.testing.assert_identical(old, new)
    print(
        f"{len(paths)} stores, identical; CPU s: per array {cpu['per array']:.2f}, "
        f"one pass {cpu['one pass']:.2f} (ratio {cpu['one pass'] / cpu['per array']:.2f})"
    )
    return 0


if __name__ == "__main__":
    script_main(main)
