"""Think / don't-think alignment (Lindsey 2025, experiment 4, "Intentional control").

On every token of the sentence the model writes (the run's ``read_mask``), the cosine similarity
between the residual stream and the word's concept vector at the same layer, averaged over the
sentence's tokens; the baseline is the same cosine with the concept vectors of Lindsey's 100
unrelated control words. Also the projection on the word's unit vector (the cosine's numerator
divided by the residual norm's scale, in residual units).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.analysis._common import (
    check_vectors_for_run,
    layers_of,
    over_resid,
    require_resid,
    require_stored,
    require_words,
    run_name,
    unit,
)
from mechintro.errors import MechintroError
from mechintro.stats import maxt_signflip, mean_ci


def alignment(
    ds: xr.Dataset,
    vectors: xr.DataArray,
    *,
    layers: Sequence[int] | None = None,
    baseline: Sequence[str] | None = None,
) -> xr.Dataset:
    """Per trial and layer: ``cos_word`` (with the trial's own word), ``proj_word``, and
    ``cos_baseline`` ``(trial, layer, control_word)`` with each control word, each averaged over
    the read tokens."""
    require_resid(ds, "the alignment analysis")
    check_vectors_for_run(vectors, ds)
    if "read_mask" not in ds:
        raise MechintroError(
            f"{run_name(ds)} has no read_mask (the written sentence's tokens): use an "
            "intentional-control run"
        )
    words = [str(c) for c in ds["concept"].values]
    if not all(words):
        raise MechintroError(
            f"{run_name(ds)} has trials without a word: alignment needs a word per trial"
        )
    baseline = stimuli.control_words() if baseline is None else list(baseline)
    require_words(vectors, words, "the run's words")
    require_words(vectors, baseline, "the baseline control words")
    layers = layers_of(ds, layers)
    own = sorted(set(words))
    table = own + [w for w in baseline if w not in set(own)]
    col = {w: i for i, w in enumerate(table)}
    own_col = np.array([col[w] for w in words])
    base_cols = np.array([col[w] for w in baseline])
    units = {
        layer: unit(vectors.sel(concept=table, layer=layer).values.astype(np.float32))
        for layer in layers
    }
    read = np.asarray(ds["read_mask"].values).astype(bool)
    if not read.any(1).all():
        raise MechintroError(f"{run_name(ds)} has trials with no read tokens: rerun the experiment")
    require_stored(ds, read, "the alignment analysis")

    def reduce(layer: int, idx: np.ndarray, block: np.ndarray) -> np.ndarray:
        w = read[idx].astype(np.float32)
        count = w.sum(1)[:, None]
        cos = np.einsum("npd,wd->npw", unit(block), units[layer])  # per token
        mean_cos = np.einsum("npw,np->nw", cos, w) / count
        proj = np.einsum("npd,nd->np", block, units[layer][own_col[idx]])
        mean_proj = (proj * w).sum(1, keepdims=True) / count
        own_cos = mean_cos[np.arange(len(idx)), own_col[idx]][:, None]
        return np.concatenate([own_cos, mean_proj, mean_cos[:, base_cols]], 1)

    out = over_resid(ds, layers, reduce)  # (trial, layer, 2 + n_baseline)
    return xr.Dataset(
        {
            "cos_word": (("trial", "layer"), out[..., 0]),
            "proj_word": (("trial", "layer"), out[..., 1]),
            "cos_baseline": (("trial", "layer", "control_word"), out[..., 2:]),
        },
        coords={
            "trial": ds.trial.values,
            "layer": layers,
            "control_word": baseline,
            "condition": ("trial", ds["condition"].values),
            "concept": ("trial", ds["concept"].values),
        },
        attrs={"model": ds.attrs.get("model", ""), "experiment": ds.attrs.get("experiment", "")},
    )


def alignment_summary(
    al: xr.Dataset, *, n_boot: int = 1000, n_perm: int = 10000, seed: int = 0
) -> xr.Dataset:
    """Per instruction and layer: mean ``cos_word`` with a 95% bootstrap interval across words;
    the baseline (mean cosine with the control words) with the 2.5–97.5 percentile band of the
    100 control words' means; and, where ``think`` and ``dont_think`` are both present, their
    paired difference (same sentence and word) with a bootstrap interval over pairs, and
    ``gap_p_maxt``: its p-value corrected for scanning every layer
    (:func:`mechintro.stats.maxt_signflip`), which is what a claim like "the gap is above 0 from
    layer 18 on" needs."""
    conds = list(dict.fromkeys(str(c) for c in al.condition.values))
    cond = np.array([str(c) for c in al.condition.values], dtype=object)
    word = np.array([str(c) for c in al.concept.values], dtype=object)
    n_layers = al.sizes["layer"]
    cos = al.cos_word.values
    stats = np.full((len(conds), n_layers, 3), np.nan)
    base = np.full((len(conds), n_layers, 3), np.nan)
    for i, c in enumerate(conds):
        rows = cond == c
        per_word = al.cos_baseline.values[rows].mean(0)  # (layer, control_word)
        for li in range(n_layers):
            stats[i, li] = mean_ci(cos[rows, li], word[rows], n_boot=n_boot, seed=seed)[:3]
            base[i, li] = (per_word[li].mean(), *np.quantile(per_word[li], [0.025, 0.975]))
    data = {
        "cos_word": (("condition", "layer"), stats[..., 0]),
        "cos_word_lo": (("condition", "layer"), stats[..., 1]),
        "cos_word_hi": (("condition", "layer"), stats[..., 2]),
        "baseline": (("condition", "layer"), base[..., 0]),
        "baseline_lo": (("condition", "layer"), base[..., 1]),
        "baseline_hi": (("condition", "layer"), base[..., 2]),
    }
    if {"think", "dont_think"} <= set(conds):
        t = {w: i for i, w in enumerate(word) if cond[i] == "think"}
        d = {w: i for i, w in enumerate(word) if cond[i] == "dont_think"}
        paired = [w for w in t if w in d]
        diffs = cos[[t[w] for w in paired]] - cos[[d[w] for w in paired]]  # (pair, layer)
        gap = np.array(
            [mean_ci(diffs[:, li], n_boot=n_boot, seed=seed)[:3] for li in range(n_layers)]
        )
        _, p_fwer = maxt_signflip(diffs, n_perm=n_perm, seed=seed)
        data.update(
            gap=("layer", gap[:, 0]),
            gap_lo=("layer", gap[:, 1]),
            gap_hi=("layer", gap[:, 2]),
            gap_p_maxt=("layer", p_fwer),
        )
    attrs = dict(al.attrs) | {
        "gap_correction": (
            "gap_p_maxt: two-sided sign-flip permutation of the max |t| over the "
            f"{n_layers} layers ({n_perm} flips; family-wise over layers); gap_lo/gap_hi are "
            "per-layer (uncorrected) intervals"
        )
    }
    return xr.Dataset(data, coords={"condition": conds, "layer": al.layer.values}, attrs=attrs)
