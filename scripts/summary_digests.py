"""Digests of every shipped run's summary: the check that a refactor changed no number.

For each run store under ``analyses/data`` (or the folders given), re-summarise it with its
experiment's ``summarize`` and print one line per run: the sha256 of the summary dataset's values
and coordinates, and the sha256 of its formatted table. Run it before and after a change and
compare (``--save``/``--check``):

    python scripts/summary_digests.py --save before.json      # on the old commit
    python scripts/summary_digests.py --check before.json     # on the new one: exit 1 on a change
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from mechintro.cli import script_main
from mechintro.errors import MechintroError
from mechintro.experiments import EXPERIMENTS
from mechintro.runs import open_run


def dataset_digest(ds: xr.Dataset) -> str:
    """sha256 over every variable and coordinate of ``ds`` (name, dims, dtype, bytes), sorted."""
    h = hashlib.sha256()
    for name in sorted(map(str, ds.variables)):
        v = ds[name]
        values = np.asarray(v.values)
        h.update(f"{name}|{v.dims}|{values.dtype}|{values.shape}".encode())
        if values.dtype.kind in "OUS":
            h.update("\x1f".join(map(str, values.ravel())).encode())
        else:
            h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def digests(roots: list[Path]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for root in roots:
        for store in sorted(root.rglob("*.zarr")):
            if any(p.name.endswith(".zarr") for p in store.parents):
                continue
            ds = open_run(store)
            module = EXPERIMENTS.get(ds.attrs["experiment"])
            if module is None:  # not an experiment (an oracle's answers): the run's own data
                out[str(store)] = {"summary": dataset_digest(ds.load()), "table": ""}
                continue
            try:
                summary = module.summarize(ds)
            except (
                MechintroError
            ) as e:  # e.g. a calibration run: summarize refuses it, and must go on doing so
                out[str(store)] = {"summary": f"refused: {e}", "table": ""}
                continue
            out[str(store)] = {
                "summary": dataset_digest(summary),
                "table": hashlib.sha256(module.format_summary(summary).encode()).hexdigest(),
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("analyses/data")])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--save", dest="save_path", type=Path, help="write the digests to this JSON file"
    )
    group.add_argument("--check", type=Path, help="compare with a saved file; exit 1 on a change")
    args = parser.parse_args(argv)
    found = digests(args.roots)
    for store, d in found.items():
        print(f"{d['summary'][:16]} {d['table'][:16]} {store}")
    if args.save_path:
        args.save_path.write_text(json.dumps(found, indent=1) + "\n")
    if args.check:
        saved = json.loads(args.check.read_text())
        changed = sorted(k for k in saved.keys() | found.keys() if saved.get(k) != found.get(k))
        for k in changed:
            print(f"changed: {k}", file=sys.stderr)
        print(f"{len(found) - len(changed)} of {len(saved.keys() | found.keys())} unchanged")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    script_main(main)
