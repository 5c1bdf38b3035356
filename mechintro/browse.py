"""A run browser: every run under a folder, with what it is, how big, whether it can be trusted,
its headline and its date — ``mechintro runs DIR`` and ``mi.list_runs(DIR)``.

The status is checked cheaply, from the store's metadata and the commit mask, never from the
trials' bytes (``mechintro verify RUN`` digests every trial):

- ``complete``: the run finished and every trial is committed;
- ``resumable``: readable, with trials still to run (the same command resumes it);
- ``damaged``: its metadata, schema or manifest cannot be read (``mechintro verify --repair``).

The headline reads only small per-trial variables: the mean yes-share P(yes)/(P(yes)+P(no)) per
condition (injected, control, ...) for a yes/no logits run, the judge's YES counts for a graded
generation run, else the number of trials. A run's own summary (``mechintro report``, the
experiment's ``summarize``) is where its result is read properly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mechintro.errors import MechintroError

STATUSES = ("complete", "resumable", "damaged")


@dataclass(frozen=True)
class RunEntry:
    """One run found by :func:`list_runs`."""

    path: str
    experiment: str
    model: str
    size_bytes: int
    status: str  # one of STATUSES
    trials: str  # "committed/total"
    headline: str
    created: str  # ISO time the run was created, "" if unknown
    problem: str = ""  # what makes a damaged run damaged

    @property
    def size(self) -> str:
        return human_size(self.size_bytes)


class RunList(list):
    """The runs :func:`list_runs` found: a list of :class:`RunEntry`, shown as a table (its ``str``,
    and its ``_repr_html_`` in Jupyter) with paths relative to ``root``."""

    def __init__(self, entries=(), root: str | Path = ".") -> None:
        super().__init__(entries)
        self.root = Path(root)

    def rows(self) -> list[dict[str, str]]:
        return [
            {
                "run": os.path.relpath(e.path, self.root) if e.path != str(self.root) else ".",
                "experiment": e.experiment,
                "model": e.model,
                "size": e.size,
                "status": e.status,
                "trials": e.trials,
                "headline": e.headline,
                "created": e.created[:16].replace("T", " "),
            }
            for e in self
        ]

    def __str__(self) -> str:
        from mechintro.tables import table

        return table(self.rows()) if self else "(no runs)"

    def _repr_html_(self) -> str:
        import html

        rows = self.rows()
        if not rows:
            return "<p>(no runs)</p>"
        head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values()) + "</tr>"
            for r in rows
        )
        return f"<table><tr>{head}</tr>{body}</table>"

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame([asdict(e) for e in self])


def human_size(n: int) -> str:
    """Bytes in binary units, as ``du -h`` counts them (``776.0 MiB``)."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def size_on_disk(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += (Path(folder) / f).stat().st_size
    return total


def _zarr_attrs(path: Path) -> dict | None:
    """The root attributes from ``zarr.json``, ``None`` if it is missing or not JSON."""
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None


def _is_run(path: Path) -> bool:
    """A folder that is (or was) a run store: its attributes name a schema version, it has a
    manifest, or it is a ``*.zarr`` whose root metadata is gone or unreadable. Other zarr stores
    (concept vectors) are not runs."""
    from mechintro.runs import MANIFEST_GROUP

    attrs = _zarr_attrs(path)
    if attrs is not None:
        return "schema_version" in attrs
    return (path / MANIFEST_GROUP).is_dir() or (path.suffix == ".zarr" and path.is_dir())


def find_runs(root: str | Path) -> list[Path]:
    """Every run store at or under ``root``, sorted by path. A run's own folders are not
    searched, nor other zarr stores (concept vectors), hidden folders or the staging folders
    ``RUN.partial-HOST-PID`` of a run being written; a link to a run counts as a run, links to
    other folders are not followed (no cycles)."""
    root = Path(root)
    if not root.is_dir():
        raise MechintroError(
            f"{root} is not a folder: give the folder holding your runs (e.g. runs/)"
        )
    if _is_run(root):
        return [root]
    found = []
    for folder, dirs, _ in os.walk(root):
        here, keep = Path(folder), []
        for d in sorted(dirs):
            if d.startswith(".") or ".partial-" in d:
                continue
            if _is_run(here / d):
                found.append(here / d)
            elif _zarr_attrs(here / d) is None:  # not another zarr store: look inside
                keep.append(d)
        dirs[:] = keep
    return sorted(found)


def headline(ds) -> str:
    """A one-line result read from small per-trial variables only (see the module docstring)."""
    n = ds.sizes["trial"]
    if n == 0:
        return "no trials yet"
    if "answer_logprobs" in ds and {"yes", "no"} <= {str(v) for v in ds.answer_label.values}:
        from mechintro.readouts import yes_no

        share = yes_no(ds).p_yes_norm.values
        conditions = np.array([str(c) for c in ds.condition.values])
        parts = [
            f"{c} {np.nanmean(share[conditions == c]):.3f}" for c in sorted(set(conditions))[:4]
        ]
        return "P(yes)/(P(yes)+P(no)): " + ", ".join(parts)
    grades = sorted(str(v) for v in ds.data_vars if str(v).startswith("grade_"))
    grades = [g for g in grades if not g.endswith("_reply")]
    if grades:
        counts = []
        for g in grades:
            values = np.asarray(ds[g].values, dtype=object)
            counts.append(f"{g.removeprefix('grade_')} {int((values == 'YES').sum())}/{n}")
        return "judged YES: " + ", ".join(counts)
    if "response" in ds:
        return f"{n} responses, not graded (mechintro grade)"
    return f"{n} trials"


@contextlib.contextmanager
def _no_incomplete_warning():
    """``open_run`` warns about an incomplete run; the listing says so in its status column."""
    logger = logging.getLogger("mechintro.runs")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def describe(path: str | Path) -> RunEntry:
    """One run's :class:`RunEntry`; a run that cannot be read is listed as damaged, with why."""
    from mechintro.runs import open_run, read_attrs, read_manifest

    path = Path(path)
    size = size_on_disk(path)
    attrs = _zarr_attrs(path) or {}

    def entry(status: str, trials: str = "?", head: str = "", problem: str = "") -> RunEntry:
        return RunEntry(
            path=str(path),
            experiment=str(attrs.get("experiment", "?")),
            model=str(attrs.get("model", "?")),
            size_bytes=size,
            status=status,
            trials=trials,
            headline=head,
            created=str(attrs.get("created", "")),
            problem=problem,
        )

    try:
        attrs = read_attrs(path)
        manifest = read_manifest(path)
        if manifest is not None:
            for name in manifest["metadata"]:
                if _zarr_attrs(path / name) is None:
                    raise MechintroError(f"metadata of {name} missing or damaged")
        elif "identity" in attrs:  # a store that had a manifest has lost it
            raise MechintroError("the store's manifest is missing or damaged")
        with _no_incomplete_warning():
            ds = open_run(path, committed_only=False)
        committed = np.asarray(ds["committed"].values, dtype=bool)
    except MechintroError as exc:
        return entry("damaged", problem=f"{exc} — run `mechintro verify {path}`")
    trials = f"{int(committed.sum())}/{committed.size}"
    with _no_incomplete_warning():
        head = headline(ds.isel(trial=np.flatnonzero(committed)))
    done = attrs.get("complete") == "true" and committed.all()
    return entry("complete" if done else "resumable", trials, head)


def list_runs(root: str | Path = "runs") -> RunList:
    """Every run under ``root`` with its experiment, model, size on disk, status (complete /
    resumable / damaged), headline result and creation date, sorted by path::

        mi.list_runs("runs")                  # a table in Jupyter; print() it in a script
        mi.list_runs("runs").to_dataframe()   # the same as a pandas DataFrame
    """
    return RunList((describe(p) for p in find_runs(root)), root=root)
