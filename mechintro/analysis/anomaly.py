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
4. :func:`causal_check` (needs the model) adds the direction alone and projects it out during
   the detected injections, each against random directions of the same size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import xarray as xr
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mechintro import engine, stimuli
from mechintro.analysis._common import (
    check_vectors_for_run,
    layers_of,
    masked_mean,
    over_resid,
    require_logits,
    require_resid,
    require_words,
    run_name,
    unit,
)
from mechintro.errors import MechintroError
from mechintro.experiments._common import yes_no
from mechintro.models import Model
from mechintro.stats import cluster_bootstrap_weights, paired_auc

LabelSource = Literal["logits", "offline", "judge"]
REMOVALS = ("none", "span")


def detection_labels(
    ds: xr.Dataset,
    *,
    source: LabelSource = "logits",
    quantile: float = 0.95,
    criterion: str = "success",
) -> xr.DataArray:
    """``detected`` / ``missed`` / ``control`` per trial.

    ``source="logits"``: an injected trial is detected when its Yes−No log-odds exceed the
    ``quantile`` of the control trials' (so a model that already says yes without injection needs
    a shift beyond every control). ``"offline"`` / ``"judge"``: an injected-thoughts generation run
    graded by :func:`mechintro.experiments.injected_thoughts.grades`, detected where
    ``criterion`` (default Lindsey's ``success``; or ``affirmative``) holds.
    """
    injected = np.asarray(ds["condition"].values) != "control"
    if injected.all() or not injected.any():
        raise MechintroError(f"{run_name(ds)} needs both injected and control trials to label detections")
    attrs: dict[str, object] = {"source": source}
    if source == "logits":
        require_logits(ds, "labelling detections from logits")
        if not 0 < quantile < 1:
            raise MechintroError(f"quantile must be in (0, 1), got {quantile}")
        diff = np.asarray(yes_no(ds)["logit_diff"].values)
        threshold = float(np.quantile(diff[~injected], quantile))
        detected = injected & (diff > threshold)
        attrs.update(threshold=threshold, quantile=quantile, rule=f"Yes−No log-odds above the {quantile:g} quantile of the controls ({threshold:.3f})")
    elif source in ("offline", "judge"):
        if "response" not in ds:
            raise MechintroError(f"{run_name(ds)} has no sampled responses to grade: use source='logits' for a logit-mode run")
        from mechintro.experiments import injected_thoughts

        graded = injected_thoughts.grades(ds, source=source)
        if criterion not in graded:
            raise MechintroError(f"unknown criterion '{criterion}': choose from {sorted(graded.data_vars)}")
        detected = injected & np.asarray(graded[criterion].values, dtype=bool)
        attrs.update(rule=f"{source} grade '{criterion}'")
    else:
        raise MechintroError(f"unknown label source '{source}': choose logits, offline or judge")
    labels = np.where(detected, "detected", np.where(injected, "missed", "control"))
    return xr.DataArray(labels.astype(object), dims="trial", coords={"trial": ds.trial.values}, name="label", attrs=attrs)


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
                f"trial {row} of {run_name(ds)} was not injected and no injected trial shares its prompt, so "
                "its window is unknown: use positions='last'"
            )
        mask[row, start:] = True
    return mask & attn


def window_features(ds: xr.Dataset, *, layers: Sequence[int] | None = None, positions: str = "window") -> xr.DataArray:
    """Per trial and layer, the residual stream averaged over the read positions (float32)."""
    require_resid(ds, "an anomaly direction")
    layers = layers_of(ds, layers)
    mask = _window(ds, positions)
    feats = over_resid(ds, layers, lambda _layer, idx, block: masked_mean(block, mask[idx]))
    return xr.DataArray(feats, dims=("trial", "layer", "d_model"), coords={"trial": ds.trial.values, "layer": layers})


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

    Returns a Dataset with ``auc``, ``auc_lo``, ``auc_hi`` over ``(estimator, removal, layer)`` —
    estimators ``diff_means`` and ``probe``; removals ``none`` and ``span`` (the span of every
    injected vector in the run projected out of every trial, so each trial's own injected vector
    is removed) — and ``direction`` / ``direction_span`` ``(layer, d_model)``: the unit difference
    of means on all trials, before and after the removal. ``features`` (from :func:`window_features`)
    skips re-reading the residuals.
    """
    require_resid(ds, "an anomaly direction")
    labels = detection_labels(ds) if labels is None else labels
    lab = np.asarray(labels.values)
    if negatives not in ("all", "missed", "control"):
        raise MechintroError(f"unknown negatives '{negatives}': choose all, missed or control")
    keep = (lab == "detected") | ((lab != "detected") if negatives == "all" else (lab == negatives))
    n_det, n_neg = int((lab[keep] == "detected").sum()), int((lab[keep] != "detected").sum())
    if n_det < 2 or n_neg < 2:
        raise MechintroError(
            f"{run_name(ds)} has {n_det} detected and {n_neg} {negatives} trials ({labels.attrs.get('rule', '')}); "
            "an anomaly direction needs at least 2 of each: use a run with more trials or stronger injections, "
            "or pass labels=detection_labels(ds, quantile=...) with a lower quantile"
        )
    feats_da = window_features(ds, layers=layers, positions=positions) if features is None else features
    layer_list = [int(x) for x in feats_da.layer.values]
    feats = np.asarray(feats_da.values, dtype=np.float32)[keep]
    y = lab[keep] == "detected"
    concepts = np.array([str(c) for c in ds["concept"].values], dtype=object)[keep]
    vectors = np.asarray(ds["injected_vector"].values, dtype=np.float32)[keep]
    # Concepts are the clusters; a control (no concept) is a cluster of its own.
    groups = np.array([c if c else f"control#{i}" for i, c in enumerate(concepts)], dtype=object)
    n_concepts = len({c for c in concepts if c})
    k = min(folds, n_concepts)
    if k < 2:
        raise MechintroError(f"{run_name(ds)} has {n_concepts} concept(s): concept-grouped cross-validation needs at least 2")
    fold = _folds(groups, k, seed)
    for f in range(k):
        train = y[fold != f]
        if train.all() or not train.any():
            raise MechintroError(f"fold {f} leaves no detected (or no negative) trials to train on: use folds < {k} or more trials")
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
                probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
                probe.fit(x[tr], y[tr])
                scores[1, te] = probe.decision_function(x[te])
            for m in range(2):
                auc[m, r, li] = paired_auc(scores[m], y, fold, boot_weights)
    coords = {"estimator": ["diff_means", "probe"], "removal": list(REMOVALS), "layer": layer_list}
    dims = ("estimator", "removal", "layer")
    return xr.Dataset(
        {
            "auc": (dims, auc[..., 0]), "auc_lo": (dims, auc[..., 1]), "auc_hi": (dims, auc[..., 2]),
            "direction": (("layer", "d_model"), directions["none"]),
            "direction_span": (("layer", "d_model"), directions["span"]),
        },
        coords=coords,
        attrs={
            "model": ds.attrs.get("model", ""), "weights_sha256": ds.attrs.get("weights_sha256", ""),
            "experiment": ds.attrs.get("experiment", ""), "labels": str(labels.attrs.get("rule", "given")),
            "positions": positions, "negatives": negatives, "n_detected": n_det, "n_negative": n_neg,
            "n_concepts": n_concepts, "folds": k, "C": C,
            "interval": f"95% cluster bootstrap over concepts ({n_boot} draws); AUC over pairs within each held-out fold; folds grouped by concept",
        },
    )


def anomaly_cosines(result: xr.Dataset, vectors: xr.DataArray, *, words: Sequence[str] | None = None) -> xr.DataArray:
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
    return xr.DataArray(cos, dims=("layer", "word"), coords={"layer": layers, "word": words}, name="cosine",
                        attrs={"chance": 1.96 / np.sqrt(result.sizes["d_model"])})


def _trials_of(ds: xr.Dataset, rows: np.ndarray) -> tuple[list[list[int]], list[engine.Injection | None]]:
    """Rebuild rows' prompts and injections from what the run stored."""
    ids = np.asarray(ds["input_ids"].values)
    attn = np.asarray(ds["attention_mask"].values).astype(bool)
    inject = np.asarray(ds["inject_mask"].values).astype(bool)
    vec = np.asarray(ds["injected_vector"].values, dtype=np.float32)
    strength = np.asarray(ds["strength"].values, dtype=np.float32)
    first, end = np.asarray(ds["inject_layer"].values), np.asarray(ds["inject_layer_end"].values)
    prompts, injections = [], []
    for r in rows:
        prompts.append(ids[r][attn[r]].tolist())
        if inject[r].any():
            injections.append(engine.Injection(
                vector=torch.from_numpy(vec[r] * strength[r]), layers=tuple(range(int(first[r]), int(end[r]))),
                mask=tuple(inject[r][attn[r]].tolist())))
        else:
            injections.append(None)
    return prompts, injections


def _logit_diff(model: Model, ds: xr.Dataset, prompts, injections, *, ablate=None, batch_size: int) -> np.ndarray:
    answer_ids = [int(x) for x in ds["answer_id"].values]
    yes = np.asarray(ds["answer_label"].values) == "yes"
    out = []
    for s in range(0, len(prompts), batch_size):
        res = engine.forward(model, prompts[s:s + batch_size], injections[s:s + batch_size], answer_ids=answer_ids, ablate=ablate)
        lp = res.answer_logprobs.double().numpy()
        out.append(np.logaddexp.reduce(lp[:, yes], 1) - np.logaddexp.reduce(lp[:, ~yes], 1))
    return np.concatenate(out)


def causal_check(
    model: Model,
    ds: xr.Dataset,
    result: xr.Dataset,
    labels: xr.DataArray,
    *,
    layer: int,
    scale: float | None = None,
    n_random: int = 8,
    max_trials: int = 32,
    batch_size: int = 16,
    seed: int = 0,
) -> xr.Dataset:
    """Is the anomaly direction at ``layer`` causal for the yes answer?

    * **add**: the control prompts with ``scale × direction`` added at ``layer`` on the injection
      window — the shift in Yes−No log-odds, against ``n_random`` random unit directions at the
      same scale. ``scale`` default: the median norm (strength × ‖vector‖) of the detected
      injections.
    * **ablate**: up to ``max_trials`` detected trials re-run as recorded, then with the direction
      projected out of the residual stream at ``layer`` and every later layer (all positions) —
      the drop in log-odds and in the detection rate (the labels' threshold), against the same
      number of random directions.
    """
    require_logits(ds, "the causal check")
    if ds.attrs.get("weights_sha256") != model.weights_sha256:
        raise MechintroError(f"{run_name(ds)} was made with other weights than {model.name}: load the run's model")
    if layer not in result.layer.values.tolist():
        raise MechintroError(f"layer {layer} has no anomaly direction (layers {result.layer.values.tolist()}): pick one of those")
    lab = np.asarray(labels.values)
    detected = np.flatnonzero(lab == "detected")[:max_trials]
    controls = np.flatnonzero(lab == "control")
    if not len(detected) or not len(controls):
        raise MechintroError(f"{run_name(ds)} needs detected and control trials for the causal check")
    direction = result["direction"].sel(layer=layer).values.astype(np.float32)
    vec = np.asarray(ds["injected_vector"].values, dtype=np.float32)
    norms = np.linalg.norm(vec[detected], axis=1) * np.asarray(ds["strength"].values, dtype=np.float32)[detected]
    scale = float(np.median(norms)) if scale is None else float(scale)
    rng = np.random.default_rng(seed)
    randoms = unit(rng.standard_normal((n_random, direction.size)).astype(np.float32))
    dirs = np.concatenate([direction[None], randoms])  # row 0: the anomaly direction

    # add: unique control prompts, each with the window of an injected trial with the same prompt
    window = _window(ds, "window")
    ids = np.asarray(ds["input_ids"].values)
    seen: dict[bytes, int] = {}
    for r in controls:
        seen.setdefault(ids[r].tobytes(), int(r))
    rows = np.array(list(seen.values()))
    prompts, _ = _trials_of(ds, rows)
    attn = np.asarray(ds["attention_mask"].values).astype(bool)
    base = _logit_diff(model, ds, prompts, [None] * len(rows), batch_size=batch_size)
    added = np.stack([
        _logit_diff(model, ds, prompts, [engine.Injection(vector=torch.from_numpy(scale * d), layers=(layer,), mask=tuple(window[r][attn[r]].tolist())) for r in rows], batch_size=batch_size) - base
        for d in dirs
    ])  # (direction, prompt)

    # ablate: the detected trials as recorded, then with each direction projected out from `layer` on
    prompts, injections = _trials_of(ds, detected)
    recorded = _logit_diff(model, ds, prompts, injections, batch_size=batch_size)
    later = range(layer, model.n_layers)
    ablated = np.stack([
        _logit_diff(model, ds, prompts, injections, ablate={i: torch.from_numpy(d) for i in later}, batch_size=batch_size)
        for d in dirs
    ])  # (direction, trial)
    threshold = float(labels.attrs.get("threshold", np.nan))
    kinds = ["anomaly"] + [f"random {i}" for i in range(n_random)]
    return xr.Dataset(
        {
            "add_shift": (("direction", "prompt"), added),
            "ablate_logit_diff": (("direction", "trial"), ablated),
            "recorded_logit_diff": ("trial", recorded),
            "stored_logit_diff": ("trial", np.asarray(yes_no(ds.isel(trial=detected))["logit_diff"].values)),
            "ablate_detected": (("direction", "trial"), ablated > threshold),
        },
        coords={"direction": kinds, "trial": ds.trial.values[detected], "prompt": np.arange(len(rows))},
        attrs={"layer": layer, "scale": scale, "threshold": threshold, "ablated_layers": f"{layer}..{model.n_layers - 1}",
               "model": model.name},
    )
