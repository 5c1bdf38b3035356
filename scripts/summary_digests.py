"""Digests of every shipped run's summary: the check that a refactor changed no number.

For each run store under ``analyses/data`` (or the folders given), re-summarise it with its
experiment's ``summarize`` and print one line per run: the sha256 of the summary dataset's values
and coordinates, and the sha256 of its formatted table. Each variable and attribute of the summary
is also digested on its own, so a check tells a changed number from an added one. Run it before
and after a change and compare (``--save``/``--check``):

    python scripts/summary_digests.py --save before.json      # on the old commit
    python scripts/summary_digests.py --check before.json     # on the new one: exit 1 on a change

Across commits whose summaries gained variables on purpose, run this script with the old commit's
library (``PYTHONPATH=OLD_CHECKOUT python scripts/summary_digests.py --save before.json``) and
check with ``--allow-added``: a store passes when every variable and attribute it had is
unchanged, and the ones it gained are listed. A store the old library cannot open or summarise
is recorded as such and reported as new, not as a pass.
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
        _feed(h, f"{name}|", ds[name])
    return h.hexdigest()


def _feed(h: hashlib._Hash, head: str, v: xr.DataArray) -> None:
    """``head``, then ``v``'s dims, dtype and shape, then its values, into ``h``."""
    values = np.asarray(v.values)
    h.update(f"{head}{v.dims}|{values.dtype}|{values.shape}".encode())
    if values.dtype.kind in "OUS":
        h.update("\x1f".join(map(str, values.ravel())).encode())
    else:
        h.update(np.ascontiguousarray(values).tobytes())


def _value_digest(value: object) -> str:
    """sha256 of one variable (dims, dtype, shape, bytes) or attribute (as JSON)."""
    h = hashlib.sha256()
    if isinstance(value, xr.DataArray):
        _feed(h, "", value)
    else:
        h.update(json.dumps(_plain(value), sort_keys=True).encode())
    return h.hexdigest()


def _plain(value: object) -> object:
    """An attribute as plain JSON values, so a number digests alike whether a summary stores it
    as a numpy or a Python scalar, in a tuple or a list."""
    if isinstance(value, np.ndarray | np.generic):
        return _plain(value.tolist())
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


def _record(summary: xr.Dataset, table: str) -> dict[str, object]:
    return {
        "summary": dataset_digest(summary),
        "table": hashlib.sha256(table.encode()).hexdigest() if table else "",
        "variables": {str(k): _value_digest(summary[k]) for k in summary.variables},
        "attrs": {str(k): _value_digest(v) for k, v in summary.attrs.items()},
    }


def digests(roots: list[Path]) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for root in roots:
        for store in sorted(root.rglob("*.zarr")):
            if any(p.name.endswith(".zarr") for p in store.parents):
                continue
            try:
                ds = open_run(store)
            except MechintroError as e:  # a store newer than this library (run with an old one)
                out[str(store)] = {"summary": f"unreadable: {e}", "table": ""}
                continue
            module = EXPERIMENTS.get(ds.attrs["experiment"])
            if module is None:  # not an experiment (an oracle's answers): the run's own data
                out[str(store)] = {**_record(ds.load(), ""), "kind": "run data"}
                continue
            try:
                summary = module.summarize(ds)
            except (
                MechintroError
            ) as e:  # e.g. a calibration run: summarize refuses it, and must go on doing so
                out[str(store)] = {"summary": f"refused: {e}", "table": ""}
                continue
            out[str(store)] = _record(summary, module.format_summary(summary))
    return out


def compare(saved: dict, found: dict) -> dict[str, str]:
    """Per store of either: ``unchanged``, ``added: NAMES`` (every saved variable and attribute
    unchanged, these new), ``new`` (no summary saved: the store was missing or unreadable, or its
    experiment unknown to the saved library), ``gone`` or ``changed: NAMES``."""
    verdicts = {}
    for store in sorted(saved.keys() | found.keys()):
        old, now = saved.get(store), found.get(store)
        if old == now:
            verdicts[store] = "unchanged"
        elif now is None:
            verdicts[store] = "gone"
        elif old is None or str(old["summary"]).startswith("unreadable"):
            verdicts[store] = "new"
        elif "variables" not in old or "variables" not in now:  # a file without per-name digests
            same = all(old.get(k) == now.get(k) for k in ("summary", "table"))
            verdicts[store] = "unchanged" if same else "changed: summary"
        elif old.get("kind") != now.get("kind"):  # an experiment the saved library lacked
            verdicts[store] = "new"
        else:
            changed, added = [], []
            for kind in ("variables", "attrs"):
                for name, digest in now[kind].items():
                    if name not in old[kind]:
                        added.append(name)
                    elif old[kind][name] != digest:
                        changed.append(name)
                changed += [name for name in old[kind] if name not in now[kind]]
            verdicts[store] = (
                f"changed: {', '.join(sorted(changed))}"
                if changed
                else f"added: {', '.join(sorted(added))}"
            )
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path, default=[Path("analyses/data")])
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--save", dest="save_path", type=Path, help="write the digests to this JSON file"
    )
    group.add_argument("--check", type=Path, help="compare with a saved file; exit 1 on a change")
    parser.add_argument(
        "--allow-added",
        action="store_true",
        help="with --check: a store whose summary only gained variables or attributes passes",
    )
    args = parser.parse_args(argv)
    if args.allow_added and not args.check:
        raise MechintroError("--allow-added goes with --check: add --check SAVED.json")
    found = digests(args.roots)
    for store, d in found.items():
        print(f"{str(d['summary'])[:16]} {str(d['table'])[:16]} {store}")
    if args.save_path:
        args.save_path.write_text(json.dumps(found, indent=1) + "\n")
    if args.check:
        verdicts = compare(json.loads(args.check.read_text()), found)
        failing = {"changed", "gone", "new"} | (set() if args.allow_added else {"added"})
        counts: dict[str, int] = {}
        for store, verdict in verdicts.items():
            kind = verdict.split(":")[0]
            counts[kind] = counts.get(kind, 0) + 1
            if kind != "unchanged":
                print(f"{verdict}: {store}", file=sys.stderr)
        print(", ".join(f"{counts[k]} {k}" for k in sorted(counts)) + f" of {len(verdicts)}")
        bad = sum(counts.get(k, 0) for k in failing)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    script_main(main)
