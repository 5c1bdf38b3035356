"""Provenance recorded into every artifact: package versions, git commit, creation time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import Any

_PACKAGES = ("mechintro", "torch", "transformers", "nnsight", "xarray", "zarr", "numpy")


def mechintro_version() -> str:
    try:
        return importlib.metadata.version("mechintro")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def git_commit() -> str:
    """The commit of the mechintro checkout in use, with ``-dirty`` if it has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "mechintro"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def provenance_attrs() -> dict[str, str]:
    """Attributes (all strings, so zarr and netCDF both accept them) describing this software."""
    return {
        "mechintro_version": mechintro_version(),
        "git_commit": git_commit(),
        "package_versions": json.dumps(package_versions(), sort_keys=True),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }


RUN_PROVENANCE = (
    "experiment",
    "model",
    "weights_sha256",
    "config",
    "seed",
    "mechintro_version",
    "git_commit",
    "package_versions",
    "created",
)
"""The run attributes that say where a run came from: every export and figure carries them."""


def figure_metadata(ds: Any) -> dict[str, str]:
    """PNG metadata for a figure drawn from run ``ds``: the run's provenance plus the software
    that drew it (pass to ``Figure.savefig(..., metadata=...)``)."""
    source = {k: ds.attrs[k] for k in RUN_PROVENANCE if k in ds.attrs}
    return {
        "Software": f"mechintro {mechintro_version()} (git {git_commit()})",
        "Source": json.dumps(source, sort_keys=True),
    }
