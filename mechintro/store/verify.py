"""``mechintro verify``: check a run against its manifest and digests, one function per check,
and repair what can be recomputed.

Part of the run store (``mechintro.runs`` re-exports the public names).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from mechintro._fs import store_lock
from mechintro.errors import MechintroError
from mechintro.store.manifest import (
    _MUTABLE_ROOT,
    MANIFEST_GROUP,
    _array,
    _chunk_keys,
    _expected_chunks,
    _file_digest,
    _json_ok,
    _metadata_problems,
    _record_file,
    _unlisted_arrays,
    damaged_groups,
    damaged_inputs,
    read_manifest,
)
from mechintro.store.run_store import _as_path, read_attrs
from mechintro.store.schema import DIGESTED, readout_variables, trial_digests, validate
from mechintro.store.shards import _shard_of, shard_batches


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
    manifest: dict[str, Any] | None
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
    n = _array(group, "committed").shape[0]
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


def _readout_names(group: zarr.Group) -> list[str]:
    """The output variables the run's readouts store (none where its attributes are damaged:
    the attribute checks report that)."""
    try:
        return list(readout_variables(dict(group.attrs)))
    except MechintroError:
        return []


def _check_outputs(
    group: zarr.Group, n: int, batch_size: int
) -> tuple[np.ndarray, list[int], list[int]]:
    """Each batch's committed outputs against their digests: the commit flags, the first trial
    of every damaged batch, and the trials with non-finite log-probabilities but no flag."""
    committed = np.zeros(n, dtype=bool)
    names = [*DIGESTED, *_readout_names(group)]
    digested = [name for name in dict.fromkeys(names) if name in group]
    damaged: list[int] = []
    unflagged: list[int] = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        try:
            flags = np.asarray(_array(group, "committed")[start:stop], dtype=bool)
        except Exception:  # the commit flags themselves are unreadable
            damaged.append(start)
            continue
        committed[start:stop] = flags
        rows = np.flatnonzero(flags)
        if rows.size == 0:
            continue
        try:
            outputs = {name: ((), np.asarray(_array(group, name)[start:stop])) for name in digested}
            stored = [str(x) for x in np.asarray(_array(group, "digest")[start:stop]).tolist()]
        except Exception:  # a truncated chunk fails to decompress
            damaged.append(start)
            continue
        recomputed = trial_digests(outputs, digested)
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
    bad_batches: set[tuple[str | None, int]] = {(flag, start) for flag, start, _, _ in unrecorded}
    for key, e in chunks.items():
        if e.batch is not None and _file_digest(c.path / key) != e.digest:
            bad_batches.add((e.flag, e.batch))
    for flag, start in sorted(bad_batches, key=lambda fs: (str(fs[0]), fs[1])):
        target = damaged if flag == "committed" else damaged_grades
        if start not in target:
            target.append(start)
    damaged.sort()
    return damaged_grades


def _report_batches(
    c: _Check,
    starts: list[int],
    msg: str,
    fix: str,
    repaired: str,
    drop: Callable[[int, int], None],
    batch_size: int,
    n: int,
) -> None:
    """Report the batches starting at ``starts`` (``msg``) with ``fix``, or under ``--repair``
    ``drop`` each (its trials ``start .. stop``) and report ``repaired``."""
    if not c.repair:
        c.problems.append(f"{msg}: {fix}")
        return
    for start in starts:
        drop(start, min(start + batch_size, n))
    c.problems.append(f"{msg}: {repaired}")


def _report_damaged_grades(
    c: _Check, group: zarr.Group, damaged_grades: list[int], batch_size: int, n: int
) -> None:
    if not damaged_grades:
        return

    def ungrade(start: int, stop: int) -> None:
        assert c.manifest is not None  # graded batches are known only from the manifest
        _drop_flagged(c.path, c.manifest, "graded", start, stop)
        group.attrs["grading_complete"] = "false"

    msg = (
        f"{len(damaged_grades)} graded batch(es) (first at trial {damaged_grades[0]}) have "
        "verdicts that are missing, unreadable or no longer match their digests"
    )
    fix = "run `mechintro verify --repair`, then `mechintro grade` again"
    done = "marked ungraded; run `mechintro grade` again to grade them"
    _report_batches(c, damaged_grades, msg, fix, done, ungrade, batch_size, n)


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
    attn = np.asarray(_array(group, "attention_mask")[...], dtype=bool)
    if (np.asarray(_array(group, "inject_mask")[...], dtype=bool) & ~attn).any():
        c.problems.append("inject_mask marks padding positions")


def _report_damaged(
    c: _Check, group: zarr.Group, damaged: list[int], batch_size: int, n: int
) -> None:
    if not damaged:
        return
    manifest = c.manifest

    def uncommit(start: int, stop: int) -> None:
        _drop_outputs(c.path, group, start, stop, manifest)
        if manifest is not None and "graded" in manifest.get("flags", {}):
            _drop_flagged(c.path, manifest, "graded", start, stop)
            group.attrs["grading_complete"] = "false"

    msg = (
        f"{len(damaged)} batch(es) (first at trial {damaged[0]}) "
        "are unreadable or no longer match their digests"
    )
    _report_batches(c, damaged, msg, _FIX, "marked uncommitted; " + _AGAIN, uncommit, batch_size, n)


def _check_nonfinite(
    c: _Check, group: zarr.Group, committed: np.ndarray, unflagged: list[int], damaged: list[int]
) -> None:
    if unflagged:
        c.problems.append(
            f"{len(unflagged)} trial(s) have non-finite "
            "log-probabilities without the nonfinite flag"
        )
    flagged = (
        int((np.asarray(_array(group, "nonfinite")[...], dtype=bool) & committed).sum())
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
    outputs = {*_BATCH_OUTPUTS, *_readout_names(group)}
    for name in group.array_keys():
        if name not in outputs:
            continue
        size = _array(group, name).chunks[0]
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
