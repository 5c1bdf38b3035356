"""Anomaly directions: where is the "something is off" signal when a model notices an injection,
and is it just the injected concept?

1. :func:`detection_labels` sorts a run's trials into *detected* (injected and noticed), *missed*
   (injected, not noticed) and *control* (nothing injected).
2. :func:`anomaly_directions` averages each trial's residual stream over the positions from the
   injection's start to the last prompt token, per layer, and separates detected from the rest by
   a difference of means and by a logistic-regression probe. Both are scored out of fold with
   folds **grouped by concept** — the AUC is on concepts the direction never saw — with a
   bootstrap interval that resamples concepts. It repeats this after projecting the injected
   vectors (the span of all of them) out of every trial.
3. :func:`anomaly_cosines` compares the direction with concept vectors (all concepts, their mean,
   words like "unusual").
4. :func:`anomaly_baselines` asks whether the probe beats what is not an anomaly direction: a
   layer×strength-only predictor, the logit-lens Yes−No score at that layer and a within-concept
   label-permutation null, on trials injected at or before the layer, with a nested layer choice.
5. :func:`mechintro.analysis.causal.causal_check` (needs the model; its own module) adds the
   direction alone and sets its coordinate to the controls' mean during the detected injections
   (cross-fitted), against random directions, shuffled-label directions and the missed-vs-control
   direction.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np
import xarray as xr

from mechintro import stimuli
from mechintro.analysis._common import (
    check_vectors_for_run,
    layers_of,
    masked_mean,
    over_resid,
    require_logits,
    require_resid,
    require_stored,
    require_words,
    run_name,
    unit,
)
from mechintro.errors import MechintroError
from mechintro.readouts import grades, yes_no
from mechintro.stats import cluster_bootstrap_weights, paired_auc, paired_auc_boots

LabelSource = Literal["logits", "offline", "judge"]
REMOVALS = ("none", "span")


def detection_labels(
    ds: xr.Dataset,
    *,
    source: LabelSource = "logits",
    quantile: float = 0.95,
    margin: float = 0.0,
    criterion: str = "success",
) -> xr.DataArray:
    """``detected`` / ``missed`` / ``control`` per trial.

    ``source="logits"``: an injected trial is detected when its Yes−No log-odds exceed the
    ``quantile`` of the control trials' (so a model that already says yes without injection needs
    a shift beyond every control). With ``margin`` > 0 an injected trial is detected only above
    threshold + ``margin`` (log-odds); those between the threshold and that are ``borderline`` and
    left out of every contrast, so a result can be checked for how it moves with the margin.
    ``"offline"`` / ``"judge"``: an injected-thoughts generation run
    graded by :func:`mechintro.readouts.grades`, detected where
    ``criterion`` (default Lindsey's ``success``; or ``affirmative``) holds.
    """
    injected = np.asarray(ds["condition"].values) != "control"
    if injected.all() or not injected.any():
        raise MechintroError(
            f"{run_name(ds)} needs both injected and control trials to label detections"
        )
    attrs: dict[str, object] = {"source": source}
    if source == "logits":
        require_logits(ds, "labelling detections from logits")
        if not 0 < quantile < 1:
            raise MechintroError(f"quantile must be in (0, 1), got {quantile}")
        if not (math.isfinite(margin) and margin >= 0):
            raise MechintroError(f"margin must be a finite number ≥ 0 (log-odds), got {margin}")
        diff = np.asarray(yes_no(ds)["logit_diff"].values)
        threshold = float(np.quantile(diff[~injected], quantile))
        detected = injected & (diff > threshold + margin)
        borderline = injected & (diff > threshold) & ~detected
        attrs.update(
            threshold=threshold,
            quantile=quantile,
            margin=margin,
            rule=(
                f"Yes−No log-odds above the {quantile:g} quantile of the controls ({threshold:.3f})"
            )
            + (f" + margin {margin:g}" if margin else ""),
        )
    elif source in ("offline", "judge"):
        if "response" not in ds:
            raise MechintroError(
                f"{run_name(ds)} has no sampled responses to grade: use source='logits' for "
                "a logit-mode run"
            )
        graded = grades(ds, source=source)
        if criterion not in graded:
            raise MechintroError(
                f"unknown criterion '{criterion}': choose from {sorted(graded.data_vars)}"
            )
        detected = injected & np.asarray(graded[criterion].values, dtype=bool)
        attrs.update(rule=f"{source} grade '{criterion}'")
    else:
        raise MechintroError(f"unknown label source '{source}': choose logits, offline or judge")
    labels = np.where(detected, "detected", np.where(injected, "missed", "control"))
    if source == "logits":
        labels = np.where(borderline, "borderline", labels)
    return xr.DataArray(
        labels.astype(object),
        dims="trial",
        coords={"trial": ds.trial.values},
        name="label",
        attrs=attrs,
    )


def _probe(C: float):
    """A standardised logistic-regression probe (sklearn, imported here: ~0.4 s, on first use)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))


def _window(ds: xr.Dataset, positions: str) -> np.ndarray:
    """(trial, pos) positions read per trial: from the injection's first token to the last prompt
    token (``window``), or the last prompt token (``last``). A control trial takes the window of
    an injected trial with the same prompt."""
    attn = np.asarray(ds["attention_mask"].values).astype(bool)
    if positions == "last":
        mask = np.zeros_like(attn)
        mask[:, -1] = True
        return mask
    if positions != "window":
        raise MechintroError(f"unknown positions '{positions}': choose window or last")
    inject = np.asarray(ds["inject_mask"].values).astype(bool)
    ids = np.asarray(ds["input_ids"].values)
    starts: dict[bytes, int] = {}
    for row in np.flatnonzero(inject.any(1)):
        starts.setdefault(ids[row].tobytes(), int(np.argmax(inject[row])))
    mask = np.zeros_like(attn)
    for row in range(len(attn)):
        start = int(np.argmax(inject[row])) if inject[row].any() else starts.get(ids[row].tobytes())
        if start is None:
            raise MechintroError(
                f"trial {row} of {run_name(ds)} was not injected and no injected trial "
                "shares its prompt, so "
                "its window is unknown: use positions='last'"
            )
        mask[row, start:] = True
    return mask & attn


def window_features(
    ds: xr.Dataset, *, layers: Sequence[int] | None = None, positions: str = "window"
) -> xr.DataArray:
    """Per trial and layer, the residual stream averaged over the read positions (float32)."""
    require_resid(ds, "an anomaly direction")
    layers = layers_of(ds, layers)
    mask = _window(ds, positions)
    require_stored(ds, mask, f"an anomaly direction over positions '{positions}'")
    feats = over_resid(ds, layers, lambda _layer, idx, block: masked_mean(block, mask[idx]))
    return xr.DataArray(
        feats,
        dims=("trial", "layer", "d_model"),
        coords={"trial": ds.trial.values, "layer": layers},
    )


def _remove(feats: np.ndarray, vectors: np.ndarray, how: str) -> np.ndarray:
    """Project the span of every injected vector in the run out of every trial (``span``).

    The same projection for every trial: removing only each trial's own vector would leave the
    controls (no vector) untouched and make "something was removed" itself separable."""
    if how == "none":
        return feats
    distinct = np.unique(vectors[np.linalg.norm(vectors, axis=1) > 0], axis=0)
    if len(distinct) == 0:
        return feats
    q, _ = np.linalg.qr(distinct.T.astype(np.float64))  # (d, k) orthonormal
    q = q.astype(np.float32)
    return feats - np.einsum("nlk,dk->nld", np.einsum("nld,dk->nlk", feats, q), q)


def trial_groups(concepts: np.ndarray, feats: np.ndarray) -> np.ndarray:
    """The independent unit of each trial, for cross-validation folds and the cluster bootstrap:
    its concept for an injected trial; for a control, the control's **activations** — controls
    whose features are bit-identical at every layer (the same prompt run without sampling) are
    one unit, not many, so they are never split between a training fold and its held-out fold
    nor drawn as independent clusters (issue 32, item 3). Distinct controls stay units of their
    own."""
    out = np.empty(len(concepts), dtype=object)
    for i, c in enumerate(concepts):
        if c:
            out[i] = str(c)
        else:
            row = np.ascontiguousarray(feats[i])
            out[i] = "control:" + hashlib.sha1(row.tobytes()).hexdigest()[:16]
    return out


def _folds(groups: np.ndarray, k: int, seed: int) -> np.ndarray:
    names = np.array(sorted(set(groups.tolist())), dtype=object)
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of = {names[j]: i % k for i, j in enumerate(order)}
    return np.array([fold_of[g] for g in groups])


def anomaly_directions(
    ds: xr.Dataset,
    labels: xr.DataArray | None = None,
    *,
    layers: Sequence[int] | None = None,
    positions: str = "window",
    negatives: Literal["all", "missed", "control"] = "all",
    folds: int = 5,
    C: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
    features: xr.DataArray | None = None,
) -> xr.Dataset:
    """Directions separating detected trials from ``negatives``, with held-out-concept AUCs.

    These AUCs are descriptive: they stand beside no baseline. Whether a direction predicts
    detection beyond injection layer × strength, beyond the answer the logit lens already reads,
    and beyond a label-permutation null is :func:`anomaly_baselines`'s question.

    Returns a Dataset with ``auc``, ``auc_lo``, ``auc_hi`` over ``(estimator, removal, layer)`` —
    estimators ``diff_means`` and ``probe``; removals ``none`` and ``span`` (the span of every
    injected vector in the run projected out of every trial, so each trial's own injected vector
    is removed) — and ``direction`` / ``direction_span`` ``(layer, d_model)``: the unit difference
    of means on all trials, before and after the removal. ``features`` (from
    :func:`window_features`) skips re-reading the residuals.
    """
    require_resid(ds, "an anomaly direction")
    labels = detection_labels(ds) if labels is None else labels
    lab = np.asarray(labels.values)
    if negatives not in ("all", "missed", "control"):
        raise MechintroError(f"unknown negatives '{negatives}': choose all, missed or control")
    negative = (
        np.isin(lab, ("missed", "control")) if negatives == "all" else (lab == negatives)
    )  # never "borderline"
    keep = (lab == "detected") | negative
    n_det, n_neg = int((lab[keep] == "detected").sum()), int((lab[keep] != "detected").sum())
    if n_det < 2 or n_neg < 2:
        raise MechintroError(
            f"{run_name(ds)} has {n_det} detected and {n_neg} {negatives} trials "
            f"({labels.attrs.get('rule', '')}); "
            "an anomaly direction needs at least 2 of each: use a run with more trials or "
            "stronger injections, "
            "or pass labels=detection_labels(ds, quantile=...) with a lower quantile"
        )
    feats_da = (
        window_features(ds, layers=layers, positions=positions) if features is None else features
    )
    layer_list = [int(x) for x in feats_da.layer.values]
    feats = np.asarray(feats_da.values, dtype=np.float32)[keep]
    y = lab[keep] == "detected"
    concepts = np.array([str(c) for c in ds["concept"].values], dtype=object)[keep]
    vectors = np.asarray(ds["injected_vector"].values, dtype=np.float32)[keep]
    # Concepts are the clusters; identical controls are one cluster (trial_groups).
    groups = trial_groups(concepts, feats)
    fold, k, n_concepts = _concept_folds(ds, concepts, groups, folds, seed)
    for f in range(k):
        train = y[fold != f]
        if train.all() or not train.any():
            raise MechintroError(
                f"fold {f} leaves no detected (or no negative) trials to train on: use folds "
                f"< {k} or more trials"
            )
    boot_weights = cluster_bootstrap_weights(groups, n_boot, seed)

    auc = np.full((2, len(REMOVALS), len(layer_list), 3), np.nan)
    directions = {}
    for r, how in enumerate(REMOVALS):
        x_all = _remove(feats, vectors, how)
        directions[how] = unit(x_all[y].mean(0) - x_all[~y].mean(0))
        for li in range(len(layer_list)):
            x = x_all[:, li]
            scores = np.zeros((2, len(y)))
            for f in range(k):
                tr, te = fold != f, fold == f
                d = x[tr][y[tr]].mean(0) - x[tr][~y[tr]].mean(0)
                scores[0, te] = x[te] @ d
                probe = _probe(C)
                probe.fit(x[tr], y[tr])
                scores[1, te] = probe.decision_function(x[te])
            for m in range(2):
                auc[m, r, li] = paired_auc(scores[m], y, fold, boot_weights)
    coords = {"estimator": ["diff_means", "probe"], "removal": list(REMOVALS), "layer": layer_list}
    dims = ("estimator", "removal", "layer")
    return xr.Dataset(
        {
            "auc": (dims, auc[..., 0]),
            "auc_lo": (dims, auc[..., 1]),
            "auc_hi": (dims, auc[..., 2]),
            "direction": (("layer", "d_model"), directions["none"]),
            "direction_span": (("layer", "d_model"), directions["span"]),
        },
        coords=coords,
        attrs={
            "model": ds.attrs.get("model", ""),
            "weights_sha256": ds.attrs.get("weights_sha256", ""),
            "experiment": ds.attrs.get("experiment", ""),
            "labels": str(labels.attrs.get("rule", "given")),
            "positions": positions,
            "negatives": negatives,
            "n_detected": n_det,
            "n_negative": n_neg,
            "n_concepts": n_concepts,
            "folds": k,
            "C": C,
            "interval": (
                f"95% cluster bootstrap over concepts ({n_boot} draws); AUC over pairs within "
                "each held-out fold; folds grouped by concept"
            ),
        },
    )


def anomaly_cosines(
    result: xr.Dataset, vectors: xr.DataArray, *, words: Sequence[str] | None = None
) -> xr.DataArray:
    """Cosine of the anomaly direction with concept vectors at the same layer, ``(layer, word)``.

    ``words`` default: every word in ``vectors``; the entry ``"mean of concepts"`` is the mean of
    Lindsey's 50 concept vectors when all of them are present. ``attrs["chance"]`` is the 95% bound
    of |cosine| between random directions in this width, 1.96/√d.
    """
    check_vectors_for_run(vectors, result)
    words = list(vectors.concept.values.tolist()) if words is None else list(words)
    require_words(vectors, words, "the words")
    layers = [int(x) for x in result.layer.values]
    v = vectors.sel(layer=layers)
    table = [v.sel(concept=w).values for w in words]
    concepts = stimuli.concept_words()
    if set(concepts) <= set(vectors.concept.values.tolist()):
        table.append(v.sel(concept=concepts).values.mean(0))
        words.append("mean of concepts")
    mat = unit(np.stack(table, 1).astype(np.float64))  # (layer, word, d)
    cos = np.einsum("lwd,ld->lw", mat, result["direction"].values.astype(np.float64))
    return xr.DataArray(
        cos,
        dims=("layer", "word"),
        coords={"layer": layers, "word": words},
        name="cosine",
        attrs={"chance": 1.96 / np.sqrt(result.sizes["d_model"])},
    )


# --- Baselines, nulls and nested layer choice -------------------------------------------------

BASELINES = ("layer_strength", "lens", "magnitude")


def injection_magnitude(ds: xr.Dataset) -> np.ndarray:
    """Per trial, how hard the injection pushed: strength × the injected vector's norm (0 for
    controls; the strength alone when the run stores no ``injected_vector``). An untrained score:
    a probe that only tracks the size of the perturbation is not an anomaly direction."""
    strength = np.asarray(ds["strength"].values, dtype=np.float64)
    if "injected_vector" in ds:
        strength = strength * np.linalg.norm(
            np.asarray(ds["injected_vector"].values, dtype=np.float64), axis=1
        )
    control = np.asarray(ds["condition"].values) == "control"
    return np.where(control, 0.0, strength)


def _differs_at(ds: xr.Dataset, layer: int) -> np.ndarray:
    """Trials whose residual at recorded ``layer`` can differ from a control's: controls, and
    trials injected at or before ``layer`` (the recorded residual is a block's output, and an
    injection at layer ℓ is added to block ℓ's output). A trial injected later is identical to a
    control there, so comparing it is comparing labels of identical inputs."""
    control = np.asarray(ds["condition"].values) == "control"
    first = np.asarray(ds["inject_layer"].values)
    return control | (first <= layer)


def _probe_scores(x: np.ndarray, y: np.ndarray, fold: np.ndarray, C: float) -> np.ndarray:
    """Out-of-fold probe decision values (NaN for a fold whose training part lacks a class)."""
    out = np.full(len(y), np.nan)
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        if y[tr].all() or not y[tr].any():
            continue
        probe = _probe(C)
        probe.fit(x[tr], y[tr])
        out[te] = probe.decision_function(x[te])
    return out


def _cell_scores(cells: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """The layer×strength-only baseline: each held-out trial scored by its (injection layer,
    strength) cell's detection rate on the training folds (the best any predictor that sees only
    the cell can do; controls are their own cell)."""
    out = np.full(len(y), np.nan)
    for f in np.unique(fold):
        tr, te = fold != f, fold == f
        overall = float(y[tr].mean()) if tr.any() else 0.5
        rates = {c: float(y[tr][cells[tr] == c].mean()) for c in set(cells[tr].tolist())}
        out[te] = [rates.get(c, overall) for c in cells[te]]
    return out


def _shuffle_within(y: np.ndarray, concepts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Labels permuted among the injected trials of each concept (controls stay negatives): the
    null keeps each concept's detection rate and the injected/control split."""
    out = y.copy()
    # sorted: iterating over a set of strings follows Python's per-process hash seed, so the same
    # seed gave different shuffles (and permutation p-values) in different processes
    for c in sorted(set(concepts.tolist())):
        if not c:
            continue
        idx = np.flatnonzero(concepts == c)
        out[idx] = y[rng.permutation(idx)]
    return out


def _concept_folds(
    ds: xr.Dataset, concepts: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> tuple[np.ndarray, int, int]:
    """Each trial's fold of ``groups`` (concept-grouped), how many folds (``folds``, or as many
    as there are ``concepts``, at least 2, where fewer) and how many concepts."""
    n_concepts = len({c for c in concepts if c})
    k = min(folds, n_concepts)
    if k < 2:
        raise MechintroError(
            f"{run_name(ds)} has {n_concepts} concept(s): concept-grouped cross-validation "
            "needs at least 2"
        )
    return _folds(groups, k, seed), k, n_concepts


def _diff_interval(a_boots: np.ndarray, b_boots: np.ndarray) -> tuple[float, float]:
    return _quantiles(a_boots - b_boots)


def anomaly_baselines(
    ds: xr.Dataset,
    labels: xr.DataArray | None = None,
    *,
    lens: xr.Dataset | xr.DataArray | None = None,
    layers: Sequence[int] | None = None,
    positions: str = "window",
    features: xr.DataArray | None = None,
    folds: int = 5,
    C: float = 0.05,
    n_perm: int = 100,
    n_boot: int = 1000,
    alpha: float = 0.05,
    margin: float = 0.0,
    seed: int = 0,
) -> xr.Dataset:
    """Does a probe on the residual stream predict detection **beyond what is not an anomaly
    direction**? Per layer, on the trials that differ from controls there (controls and trials
    injected at or before the layer), out-of-fold AUCs (folds grouped by concept, pairs within a
    fold) of:

    * ``probe`` — logistic regression on the window-averaged residual (as
      :func:`anomaly_directions`);
    * ``layer_strength`` — a predictor that sees only the trial's injection layer and strength
      (its cell's detection rate on the training folds);
    * ``lens`` — the logit-lens Yes−No log-odds at that layer (``lens``: the Dataset of
      :func:`mechintro.analysis.lens.logit_lens`, or its ``logit_diff``), untrained: at late
      layers the residual already holds the answer that defines "detected";
    * ``magnitude`` — the injection's strength × the injected vector's norm
      (:func:`injection_magnitude`), untrained: strongly detected trials are often simply the
      most strongly pushed ones;
    * the **label-permutation null**: the probe refitted on labels shuffled within each concept
      (``n_perm`` times, the same shuffles at every layer); ``p_perm`` = (1 + #null ≥ observed) /
      (n_perm + 1) per layer, so its resolution is ``1 / (n_perm + 1)``; ``p_perm_max`` corrects
      for the layers scanned with the max-statistic permutation (the null's largest AUC over
      layers, Westfall & Young), which keeps that resolution however many layers there are.

    ``passes`` (the claim "an anomaly direction exists at this layer") needs all four: the
    **simultaneous** 95% interval over the layers scanned (:func:`simultaneous_interval`, the
    max-|t| over layers of the paired cluster-bootstrap replicates; ``sim_vs_*``) of probe −
    layer×strength, of probe − lens and of probe − magnitude above ``margin`` (an AUC margin
    fixed before the run is read; 0 by default), and ``p_perm_max < alpha``. The per-layer
    intervals (``vs_*_lo``/``_hi``) stay, but a layer picked from a scan needs the simultaneous
    one. Without ``lens`` nothing passes (the claim cannot be checked). Controls whose
    activations are identical are one cluster (:func:`trial_groups`); ``attrs["controls"]`` and
    ``attrs["control_clusters"]`` say how many there are of each.

    ``attrs["nested_*"]``: the layer chosen **inside** each outer fold by inner cross-validation on
    its training folds, and the AUC on the outer held-out folds at the chosen layers (probe and
    both baselines), so no reported number comes from the data that chose its layer.
    """
    require_resid(ds, "an anomaly direction")
    labels = detection_labels(ds) if labels is None else labels
    lab = np.asarray(labels.values)
    keep = np.isin(
        lab, ("detected", "missed", "control")
    )  # "borderline" (within the margin) is left out
    feats_da = (
        window_features(ds, layers=layers, positions=positions) if features is None else features
    )
    layer_list = [int(x) for x in feats_da.layer.values]
    feats = np.asarray(feats_da.values, dtype=np.float32)
    y_all = lab == "detected"
    magnitude = injection_magnitude(ds)
    concepts = np.array([str(c) for c in ds["concept"].values], dtype=object)
    groups = trial_groups(concepts, feats)  # identical controls: one cluster
    fold, k, n_concepts = _concept_folds(ds, concepts[keep], groups, folds, seed)
    weights_all = cluster_bootstrap_weights(groups, n_boot, seed)
    cells = np.array(
        [
            f"{a}/{s:g}" if c != "control" else "control"
            for a, s, c in zip(
                np.asarray(ds["inject_layer"].values),
                np.asarray(ds["strength"].values, dtype=float),
                np.asarray(ds["condition"].values),
                strict=True,
            )
        ],
        dtype=object,
    )
    lens_ld = None
    if lens is not None:
        lens_da = lens["logit_diff"] if isinstance(lens, xr.Dataset) else lens
        missing = [x for x in layer_list if x not in lens_da.layer.values.tolist()]
        if lens_da.sizes["trial"] != ds.sizes["trial"] or missing:
            raise MechintroError(
                f"the lens does not cover this run's trials and layers {missing}: compute "
                "logit_lens(ds, model) on the same run"
            )
        lens_ld = np.asarray(
            lens_da.sel(layer=layer_list).transpose("trial", "layer").values, dtype=np.float64
        )
    rng = np.random.default_rng(seed)
    # one set of within-concept shuffles for every layer, so the max over layers is a valid null
    shuffles = [
        _shuffle_within(y_all & keep, np.where(keep, concepts, ""), rng) for _ in range(n_perm)
    ]

    names = (
        "n_trials",
        "n_detected",
        "probe",
        "probe_lo",
        "probe_hi",
        "layer_strength",
        "layer_strength_lo",
        "layer_strength_hi",
        "lens",
        "lens_lo",
        "lens_hi",
        "magnitude",
        "magnitude_lo",
        "magnitude_hi",
        "null_mean",
        "null_q95",
        "p_perm",
        "vs_layer_strength_lo",
        "vs_layer_strength_hi",
        "vs_lens_lo",
        "vs_lens_hi",
        "vs_magnitude_lo",
        "vs_magnitude_hi",
    )
    out = {n: np.full(len(layer_list), np.nan) for n in names}
    null = np.full((n_perm, len(layer_list)), np.nan)
    # per baseline: the observed probe − baseline AUC and its paired bootstrap replicates, per
    # layer, for the simultaneous (max over layers) interval
    diffs = {b: np.full(len(layer_list), np.nan) for b in BASELINES}
    diff_boots = {b: np.full((n_boot, len(layer_list)), np.nan) for b in BASELINES}
    for li, layer in enumerate(layer_list):
        rows = keep & _differs_at(ds, layer)
        y = y_all[rows]
        out["n_trials"][li], out["n_detected"][li] = rows.sum(), y.sum()
        if y.sum() < 2 or (~y).sum() < 2:
            continue
        x, fo, w = feats[rows, li], fold[rows], weights_all[:, rows]
        probe = _probe_scores(x, y, fo, C)
        ok = np.isfinite(probe)
        auc_p, boots_p = paired_auc_boots(probe[ok], y[ok], fo[ok], w[:, ok])
        out["probe"][li] = auc_p
        out["probe_lo"][li], out["probe_hi"][li] = _quantiles(boots_p)
        base = _cell_scores(cells[rows], y, fo)
        auc_b, boots_b = paired_auc_boots(base[ok], y[ok], fo[ok], w[:, ok])
        out["layer_strength"][li] = auc_b
        out["layer_strength_lo"][li], out["layer_strength_hi"][li] = _quantiles(boots_b)
        out["vs_layer_strength_lo"][li], out["vs_layer_strength_hi"][li] = _diff_interval(
            boots_p, boots_b
        )
        diffs["layer_strength"][li], diff_boots["layer_strength"][:, li] = (
            auc_p - auc_b,
            boots_p - boots_b,
        )
        if lens_ld is not None:
            auc_l, boots_l = paired_auc_boots(lens_ld[rows, li][ok], y[ok], fo[ok], w[:, ok])
            out["lens"][li] = auc_l
            out["lens_lo"][li], out["lens_hi"][li] = _quantiles(boots_l)
            out["vs_lens_lo"][li], out["vs_lens_hi"][li] = _diff_interval(boots_p, boots_l)
            diffs["lens"][li], diff_boots["lens"][:, li] = auc_p - auc_l, boots_p - boots_l
        auc_m, boots_m = paired_auc_boots(magnitude[rows][ok], y[ok], fo[ok], w[:, ok])
        out["magnitude"][li] = auc_m
        out["magnitude_lo"][li], out["magnitude_hi"][li] = _quantiles(boots_m)
        out["vs_magnitude_lo"][li], out["vs_magnitude_hi"][li] = _diff_interval(boots_p, boots_m)
        diffs["magnitude"][li], diff_boots["magnitude"][:, li] = auc_p - auc_m, boots_p - boots_m
        for pi, shuffled in enumerate(shuffles):
            ys = shuffled[rows]
            sc = _probe_scores(x, ys, fo, C)
            good = np.isfinite(sc)
            null[pi, li] = paired_auc_boots(sc[good], ys[good], fo[good], w[:1, good])[0]
        if n_perm:
            out["null_mean"][li], out["null_q95"][li] = (
                float(np.nanmean(null[:, li])),
                float(np.nanquantile(null[:, li], 0.95)),
            )
            out["p_perm"][li] = (1 + float(np.sum(null[:, li] >= auc_p))) / (n_perm + 1)
    p_max = np.full(len(layer_list), np.nan)
    if n_perm:
        with np.errstate(invalid="ignore"):
            top = np.nanmax(np.where(np.isfinite(null), null, -np.inf), axis=1)
        p_max = np.where(
            np.isfinite(out["probe"]),
            (1 + (top[:, None] >= out["probe"][None, :]).sum(0)) / (n_perm + 1),
            np.nan,
        )
    sim = {}
    for b in BASELINES:
        lo, hi, lev = simultaneous_interval(diffs[b], diff_boots[b])
        sim[f"sim_vs_{b}_lo"], sim[f"sim_vs_{b}_hi"], sim[f"sim_level_{b}"] = lo, hi, lev
    passes = (
        (sim["sim_vs_layer_strength_lo"] > margin)
        & (sim["sim_vs_lens_lo"] > margin)
        & (sim["sim_vs_magnitude_lo"] > margin)
        & (p_max < alpha)
    )
    data = (
        {n: ("layer", v) for n, v in out.items()}
        | {f"vs_{b}": ("layer", diffs[b]) for b in BASELINES}
        | {k: ("layer", v) for k, v in sim.items() if not k.startswith("sim_level")}
        | {"p_perm_max": ("layer", p_max), "passes": ("layer", passes)}
    )
    result = xr.Dataset(data, coords={"layer": layer_list})
    result.attrs.update(
        {
            "model": ds.attrs.get("model", ""),
            "experiment": ds.attrs.get("experiment", ""),
            "labels": str(labels.attrs.get("rule", "given")),
            "margin": float(labels.attrs.get("margin", 0.0)),
            "positions": positions,
            "folds": k,
            "C": C,
            "n_concepts": n_concepts,
            "n_perm": n_perm,
            "p_resolution": 1 / (n_perm + 1) if n_perm else math.nan,
            "alpha": alpha,
            "has_lens": lens_ld is not None,
            "trials": (
                "controls and trials injected at or before the layer; borderline trials (inside "
                "the margin) left out"
            ),
            "interval": (
                f"95% cluster bootstrap over concepts ({n_boot} draws), paired across scores; "
                "AUC over pairs within each held-out fold"
            ),
            "passes": (
                "the simultaneous (max over layers) 95% intervals of probe − layer×strength, "
                "probe − lens and probe − magnitude above the margin fixed in advance "
                f"({margin:g} AUC), and max-over-layers permutation p < alpha"
            ),
            "auc_margin": margin,
            "control_clusters": len({g for g in groups[keep] if g.startswith("control:")}),
            "controls": int(np.sum(keep & (concepts == ""))),
            **{f"sim_level_{b}": float(sim[f"sim_level_{b}"]) for b in BASELINES},
        }
    )
    result.attrs.update(
        _nested(feats, y_all, keep, ds, layer_list, fold, weights_all, cells, lens_ld, C, magnitude)
    )
    return result


def simultaneous_interval(
    observed: np.ndarray, boots: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray, float]:
    """Simultaneous percentile intervals for one statistic per layer from paired bootstrap
    replicates ``(n_boot, L)``: each layer's interval is its replicates' ``(a/2, 1 − a/2)``
    quantiles, with the pointwise level ``1 − a`` raised until ``level`` of the replicates lie
    inside **every** layer's interval at once (the calibrated band of Davison & Hinkley 1997,
    §4.2.4, the percentile form of a max-over-layers band). It contains each layer's ordinary
    95% percentile interval, and a layer chosen from the scan may be read on it. Layers whose
    ``observed`` is NaN or that have no replicates get NaN. Returns ``(lo, hi, 1 − a)``."""
    obs = np.asarray(observed, np.float64)
    b = np.asarray(boots, np.float64)
    lo, hi = np.full(obs.shape, np.nan), np.full(obs.shape, np.nan)
    ok = np.isfinite(obs) & (np.isfinite(b).sum(0) > 1 if b.size else np.zeros(obs.shape, bool))
    if not ok.any():
        return lo, hi, math.nan
    bb = b[:, ok]
    rows = np.isfinite(bb).all(1)  # replicates defined at every layer read
    bb = bb[rows] if rows.any() else bb
    pointwise = 1 - level
    for a in np.linspace(pointwise, 0.0, 201):  # from the pointwise level to the full range
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            q_lo = np.nanquantile(bb, a / 2, axis=0)
            q_hi = np.nanquantile(bb, 1 - a / 2, axis=0)
        inside = ((bb >= q_lo) & (bb <= q_hi)).all(1).mean()
        if inside >= level:
            break
    lo[ok], hi[ok] = q_lo, q_hi
    return lo, hi, float(1 - a)


def _quantiles(boots: np.ndarray) -> tuple[float, float]:
    b = boots[np.isfinite(boots)]
    if not b.size:
        return math.nan, math.nan
    lo, hi = np.quantile(b, [0.025, 0.975])
    return float(lo), float(hi)


def _nested(
    feats, y_all, keep, ds, layer_list, fold, weights, cells, lens_ld, C, magnitude
) -> dict[str, object]:
    """Layer chosen inside each outer fold by inner CV on its training folds; scored on the outer
    fold."""
    n = len(y_all)
    scores = {name: np.full(n, np.nan) for name in ("probe", *BASELINES)}
    chosen = []
    for f in np.unique(fold):
        outer_train = fold != f
        best, best_auc = None, -1.0
        for li, layer in enumerate(layer_list):
            rows = keep & _differs_at(ds, layer) & outer_train
            y = y_all[rows]
            if y.sum() < 2 or (~y).sum() < 2 or len(np.unique(fold[rows])) < 2:
                continue
            sc = _probe_scores(feats[rows, li], y, fold[rows], C)
            good = np.isfinite(sc)
            auc = paired_auc_boots(sc[good], y[good], fold[rows][good], weights[:1, rows][:, good])[
                0
            ]
            if np.isfinite(auc) and auc > best_auc:
                best, best_auc = li, auc
        if best is None:
            continue
        chosen.append(layer_list[best])
        rows = keep & _differs_at(ds, layer_list[best])
        y = y_all[rows]
        tr = outer_train[rows]
        if y[tr].all() or not y[tr].any():
            continue
        probe = _probe(C).fit(feats[rows, best][tr], y[tr])
        idx = np.flatnonzero(rows)[~tr]
        scores["probe"][idx] = probe.decision_function(feats[idx, best])
        rates = {
            c: float(y[tr][cells[rows][tr] == c].mean()) for c in set(cells[rows][tr].tolist())
        }
        scores["layer_strength"][idx] = [rates.get(c, float(y[tr].mean())) for c in cells[idx]]
        if lens_ld is not None:
            scores["lens"][idx] = lens_ld[idx, best]
        scores["magnitude"][idx] = magnitude[idx]
    out: dict[str, object] = {"nested_layers": json.dumps(chosen)}
    ok = np.isfinite(scores["probe"])
    boots = {}
    for name, sc in scores.items():
        if name == "lens" and lens_ld is None:
            continue
        auc, b = paired_auc_boots(sc[ok], y_all[ok], fold[ok], weights[:, ok])
        boots[name] = b
        lo, hi = _quantiles(b)
        out.update({f"nested_{name}": auc, f"nested_{name}_lo": lo, f"nested_{name}_hi": hi})
    for name in BASELINES:
        if name in boots:
            lo, hi = _diff_interval(boots["probe"], boots[name])
            out.update({f"nested_vs_{name}_lo": lo, f"nested_vs_{name}_hi": hi})
    out["nested_n"] = int(ok.sum())
    return out


def _both(r: xr.Dataset, b: str) -> str:
    """A layer's per-layer and simultaneous intervals of probe − baseline ``b``."""
    text = f"[{float(r[f'vs_{b}_lo']):+.2f}, {float(r[f'vs_{b}_hi']):+.2f}]"
    if f"sim_vs_{b}_lo" in r:
        text += f"; [{float(r[f'sim_vs_{b}_lo']):+.2f}, {float(r[f'sim_vs_{b}_hi']):+.2f}]"
    return text


def format_baselines(result: xr.Dataset) -> str:
    """A plain-text table of :func:`anomaly_baselines` (the analysis script prints it)."""
    rows = []
    for layer in result.layer.values:
        r = result.sel(layer=layer)
        if not np.isfinite(float(r.probe)):
            continue
        rows.append(
            {
                "layer": int(layer),
                "trials (detected)": f"{int(r.n_trials)} ({int(r.n_detected)})",
                "probe AUC [95%]": (
                    f"{float(r.probe):.3f} [{float(r.probe_lo):.2f}, {float(r.probe_hi):.2f}]"
                ),
                "layer×strength": f"{float(r.layer_strength):.3f}",
                "lens Yes−No": f"{float(r.lens):.3f}" if np.isfinite(float(r.lens)) else "—",
                "magnitude": f"{float(r.magnitude):.3f}",
                "null mean / q95": f"{float(r.null_mean):.3f} / {float(r.null_q95):.3f}",
                "p perm (max over layers)": f"{float(r.p_perm):.3f} ({float(r.p_perm_max):.3f})",
                "probe − L×S [95%; simultaneous]": _both(r, "layer_strength"),
                "probe − lens [95%; simultaneous]": _both(r, "lens"),
                "probe − magnitude [95%; simultaneous]": _both(r, "magnitude"),
                "passes": bool(r.passes),
            }
        )
    from mechintro.tables import table

    a = result.attrs
    nested = (
        f"nested (layer chosen inside each fold: {a['nested_layers']}): probe "
        f"{a['nested_probe']:.3f} "
        f"[{a['nested_probe_lo']:.2f}, {a['nested_probe_hi']:.2f}], layer×strength "
        f"{a['nested_layer_strength']:.3f}"
        + (
            f", lens {a['nested_lens']:.3f}; probe − lens [{a['nested_vs_lens_lo']:+.2f}, "
            f"{a['nested_vs_lens_hi']:+.2f}]"
            if a["has_lens"]
            else ""
        )
        + (
            f"; probe − layer×strength [{a['nested_vs_layer_strength_lo']:+.2f}, "
            f"{a['nested_vs_layer_strength_hi']:+.2f}]"
        )
        + (
            f"; magnitude {a['nested_magnitude']:.3f}, probe − magnitude "
            f"[{a['nested_vs_magnitude_lo']:+.2f}, {a['nested_vs_magnitude_hi']:+.2f}]"
        )
    )
    return (
        table(rows)
        + (
            f"\nlabels: {a['labels']}; trials: {a['trials']}\npermutation p resolution "
            f"{a['p_resolution']:.4f} "
            f"({a['n_perm']} shuffles within concept); passes = {a['passes']}\n"
            + (
                f"controls: {a['controls']} trials in {a['control_clusters']} cluster(s) "
                "(identical activations are one cluster)\n"
                if "control_clusters" in a
                else ""
            )
        )
        + nested
    )
