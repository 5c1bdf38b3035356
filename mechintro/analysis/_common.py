"""What every analysis shares: input checks and a bounded-memory pass over recorded residuals."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import xarray as xr

from mechintro.errors import MechintroError
from mechintro.progress import Progress

# Trials read at once: 64 trials × 200 positions × 1536 dims × 4 bytes ≈ 79 MB for one layer.
CHUNK_TRIALS = 64


def run_name(ds: xr.Dataset) -> str:
    return f"the {ds.attrs.get('experiment', '?')} run of {ds.attrs.get('model', '?')}"


def require_resid(ds: xr.Dataset, why: str) -> None:
    if "resid" not in ds:
        raise MechintroError(
            f"{run_name(ds)} has no recorded residuals, which {why} needs: "
            "run it again with --record-resid (or record_resid=True)"
        )


def require_stored(ds: xr.Dataset, mask: np.ndarray, what: str) -> None:
    """Refuse to read prompt positions whose residual stream the run did not store (a run made
    with ``resid_positions`` other than all keeps zeros there). ``mask``: ``(trial, pos)`` or
    ``(pos,)``, true where the analysis reads."""
    if "resid_stored" not in ds.coords:
        return
    stored = np.asarray(ds["resid_stored"].values, dtype=bool)
    reads = np.asarray(mask, dtype=bool)
    reads = reads.any(0) if reads.ndim == 2 else reads
    if (reads & ~stored).any():
        first = int(np.argmax(stored)) if stored.any() else len(stored)
        raise MechintroError(
            f"{what} reads prompt positions that {run_name(ds)} did not store (it kept "
            f"positions {first}..{len(stored) - 1} of 0..{len(stored) - 1}): read the positions "
            "it stored, or rerun it with --resid-positions all"
        )


def require_logits(ds: xr.Dataset, why: str) -> None:
    if "answer_logprobs" not in ds:
        raise MechintroError(
            f"{run_name(ds)} is a generation run without answer log-probabilities, which "
            f"{why} needs: use a logit-mode run"
        )


def check_vectors_for_run(vectors: xr.DataArray, ds: xr.Dataset) -> None:
    """Refuse vectors computed on another model (or other weights) than the run's (or than the
    analysis result's: it carries the run's attributes)."""
    if vectors.attrs.get("weights_sha256") != ds.attrs.get("weights_sha256"):
        raise MechintroError(
            f"the vectors were computed on {vectors.attrs.get('model')} (weights "
            f"{str(vectors.attrs.get('weights_sha256'))[:12]}…) but {run_name(ds)} used weights "
            f"{str(ds.attrs.get('weights_sha256'))[:12]}…: compute vectors with the run's model "
            f"(`mechintro vectors --model {ds.attrs.get('model')} ...`)"
        )
    if vectors.sizes["d_model"] != ds.sizes["d_model"]:
        raise MechintroError(
            f"vectors have d_model {vectors.sizes['d_model']} but the run has "
            f"{ds.sizes['d_model']}: compute vectors with the run's model"
        )


def require_words(vectors: xr.DataArray, words: Sequence[str], what: str) -> None:
    have = set(vectors.concept.values.tolist())
    missing = [w for w in dict.fromkeys(words) if w not in have]
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise MechintroError(
            f"the vectors lack {what} {shown}: compute them (`mechintro vectors --concepts ...`)"
        )


def layers_of(ds: xr.Dataset, layers: Sequence[int] | None) -> list[int]:
    have = [int(x) for x in ds.layer.values]
    if layers is None:
        return have
    bad = [int(x) for x in layers if int(x) not in have]
    if bad:
        raise MechintroError(
            f"layers {bad} are not in the run (it has layers {have[0]}..{have[-1]})"
        )
    return [int(x) for x in layers]


def over_resid(
    ds: xr.Dataset,
    layers: Sequence[int],
    reduce: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
    *,
    chunk: int = CHUNK_TRIALS,
    progress: Progress = None,
) -> np.ndarray:
    """``reduce(layer, trial_index, block)`` on ``block = resid[trials, layer]`` as float32
    ``(n, pos, d_model)``, ``chunk`` trials at a time, so memory stays at one block whatever the
    run's size. Returns the per-trial results stacked as ``(trial, layer, ...)``. The slow part
    of every residual-reading analysis: a progress bar over layers unless ``progress=False`` (or
    ``mechintro.progress.set_default(False)``)."""
    from mechintro.progress import steps

    resid = ds["resid"]
    n = ds.sizes["trial"]
    out: list[np.ndarray] = []
    for layer in steps(progress, "reading residuals", list(layers), "layer"):
        parts = []
        for start in range(0, n, chunk):
            idx = np.arange(start, min(start + chunk, n))
            block = np.asarray(
                resid.isel(trial=slice(start, start + chunk)).sel(layer=layer).values,
                dtype=np.float32,
            )
            parts.append(reduce(layer, idx, block))
        out.append(np.concatenate(parts, 0))
    return np.stack(out, 1)


def masked_mean(block: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over positions where ``mask`` (n, pos) is true; NaN for a trial without any."""
    w = mask.astype(np.float32)
    count = w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.einsum("npd,np->nd", block, w) / count[:, None]


def unit(v: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(v, axis=axis, keepdims=True)
    return np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
