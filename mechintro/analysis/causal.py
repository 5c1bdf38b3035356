"""The causal check of an anomaly direction (needs the model): is the direction that separates
detected from missed and control trials (:func:`mechintro.analysis.anomaly.anomaly_directions`)
causal for the yes answer, beyond directions that are not it?

It adds the direction alone on the control prompts, and sets its coordinate to the controls' mean
during the detected injections (cross-fitted), against random directions, directions fitted on
shuffled labels and the missed-vs-control direction. This is one of the two analyses that run the
model (the other is the logit lens, :mod:`mechintro.analysis.lens`): it re-runs trials through
:mod:`mechintro.engine`, so importing it loads torch and nnsight. ``mechintro.analysis`` imports
it only when :func:`causal_check` is first used (``tests/unit/test_architecture.py`` holds that).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import xarray as xr

from mechintro import engine
from mechintro.analysis._common import require_logits, run_name, unit
from mechintro.analysis.anomaly import _shuffle_within, _window, window_features
from mechintro.errors import MechintroError
from mechintro.models import Model
from mechintro.readouts import yes_no


def _trials_of(ds: xr.Dataset, rows: np.ndarray) -> tuple[list[list[int]], list[engine.Add | None]]:
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
            injections.append(
                engine.Add(
                    vector=torch.from_numpy(vec[r] * strength[r]),
                    layers=tuple(range(int(first[r]), int(end[r]))),
                    mask=tuple(inject[r][attn[r]].tolist()),
                )
            )
        else:
            injections.append(None)
    return prompts, injections


def _logit_diff(
    model: Model, ds: xr.Dataset, prompts, injections, *, ablate=(), batch_size: int
) -> np.ndarray:
    """The yes-minus-no log-odds of each prompt with its injection (or none) and the
    :class:`~mechintro.engine.Ablate` interventions ``ablate`` (every prompt's)."""
    answer_ids = [int(x) for x in ds["answer_id"].values]
    yes = np.asarray(ds["answer_label"].values) == "yes"
    rows = [[*([] if inj is None else [inj]), *ablate] for inj in injections]
    out = []
    for s in range(0, len(prompts), batch_size):
        res = engine.run_batch(
            model,
            prompts[s : s + batch_size],
            rows[s : s + batch_size],
            [engine.NextToken(tuple(answer_ids))],
        )
        lp = res.answer_logprobs.double().numpy()
        out.append(np.logaddexp.reduce(lp[:, yes], 1) - np.logaddexp.reduce(lp[:, ~yes], 1))
    return np.concatenate(out)


def _diff_means(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return unit((x[y].mean(0) - x[~y].mean(0)).astype(np.float32))


def _perm_p(effect: float, null: np.ndarray) -> float:
    """(1 + #null ≥ effect) / (n + 1): a permutation p-value whose resolution is 1/(n + 1)."""
    null = null[np.isfinite(null)]
    return (1 + float(np.sum(null >= effect))) / (len(null) + 1) if len(null) else math.nan


def causal_check(
    model: Model,
    ds: xr.Dataset,
    result: xr.Dataset,
    labels: xr.DataArray,
    *,
    layer: int,
    scale: float | None = None,
    n_random: int = 1000,
    n_random_ablate: int = 100,
    n_shuffled: int = 20,
    max_trials: int = 32,
    batch_size: int = 16,
    seed: int = 0,
) -> xr.Dataset:
    """Is the anomaly direction at ``layer`` causal for the yes answer, beyond directions that
    are not it?

    Directions (difference of means of the window-averaged residual at ``layer``):

    * ``anomaly`` — detected vs the rest. For the ablation it is **cross-fitted**: the concepts
      are split in two halves, and a detected trial is ablated with the direction fitted on the
      other half's trials (plus every control), never on itself.
    * nulls: ``missed_vs_control`` (what injecting does without detection), ``n_shuffled``
      directions fitted on labels shuffled within concept, and random unit directions
      (``n_random`` for adding, ``n_random_ablate`` for ablating).

    Tests:

    * **add**: ``scale × direction`` added at ``layer`` on the control prompts' injection window;
      the shift in Yes−No log-odds. ``scale`` default: the median norm of the detected injections.
    * **ablate**: up to ``max_trials`` detected trials re-run as recorded, then with the
      coordinate along the direction set, at ``layer`` and every later layer, to the **controls'
      mean coordinate** at that layer (not to 0, which is far from where any trial sits); the drop
      in log-odds.

    ``attrs`` hold one-sided permutation p-values against each null family,
    ``(1 + #null ≥ observed) / (n + 1)``, so their resolution is ``1/(n + 1)`` (stated beside
    them as ``p_resolution_*``).
    """
    require_logits(ds, "the causal check")
    if ds.attrs.get("weights_sha256") != model.weights_sha256:
        raise MechintroError(
            f"{run_name(ds)} was made with other weights than {model.name}: load the run's model"
        )
    if layer not in result.layer.values.tolist():
        raise MechintroError(
            f"layer {layer} has no anomaly direction (layers "
            f"{result.layer.values.tolist()}): pick one of those"
        )
    lab = np.asarray(labels.values)
    rng = np.random.default_rng(seed)
    detected_all = np.flatnonzero(lab == "detected")
    detected = (
        detected_all[rng.permutation(len(detected_all))[:max_trials]]
        if len(detected_all) > max_trials
        else detected_all
    )
    detected = np.sort(detected)
    controls = np.flatnonzero(lab == "control")
    if not len(detected) or not len(controls):
        raise MechintroError(
            f"{run_name(ds)} needs detected and control trials for the causal check"
        )
    later = list(range(layer, model.n_layers))
    feats = np.asarray(
        window_features(ds, layers=later).values, dtype=np.float32
    )  # (trial, later layer, d)
    x = feats[:, 0]
    keep = np.isin(lab, ("detected", "missed", "control"))
    y = lab == "detected"
    concepts = np.array([str(c) for c in ds["concept"].values], dtype=object)
    direction = _diff_means(x[keep], y[keep])
    missed_dir = _diff_means(
        x[np.isin(lab, ("missed", "control"))],
        (lab == "missed")[np.isin(lab, ("missed", "control"))],
    )
    shuffled_dirs = []
    for _ in range(n_shuffled):
        ys = _shuffle_within(y & keep, np.where(keep, concepts, ""), rng)
        shuffled_dirs.append(_diff_means(x[keep], ys[keep]))
    # cross-fitting: each detected trial's direction is fitted on the other half of the concepts
    names = sorted({c for c in concepts[keep] if c})
    half_a = set(rng.permutation(np.array(names, dtype=object))[: len(names) // 2].tolist())
    in_a = np.array([c in half_a for c in concepts])
    is_control = lab == "control"
    fit_a, fit_b = keep & (in_a | is_control), keep & (~in_a | is_control)
    dir_from_a, dir_from_b = _diff_means(x[fit_a], y[fit_a]), _diff_means(x[fit_b], y[fit_b])
    d = direction.size
    randoms_add = unit(rng.standard_normal((n_random, d)).astype(np.float32))
    randoms_abl = randoms_add[:n_random_ablate]

    vec = np.asarray(ds["injected_vector"].values, dtype=np.float32)
    norms = (
        np.linalg.norm(vec[detected], axis=1)
        * np.asarray(ds["strength"].values, dtype=np.float32)[detected]
    )
    scale = float(np.median(norms)) if scale is None else float(scale)

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
    add_dirs = np.concatenate(
        [direction[None], missed_dir[None], np.asarray(shuffled_dirs).reshape(-1, d), randoms_add]
    )
    flat_prompts, flat_inj = [], []
    for dvec in add_dirs:
        for k, r in enumerate(rows):
            flat_prompts.append(prompts[k])
            flat_inj.append(
                engine.Add(
                    vector=torch.from_numpy(scale * dvec),
                    layers=(layer,),
                    mask=tuple(window[r][attn[r]].tolist()),
                )
            )
    added = (
        _logit_diff(model, ds, flat_prompts, flat_inj, batch_size=batch_size).reshape(
            len(add_dirs), len(rows)
        )
        - base[None]
    )

    # ablate: coordinate set to the controls' mean at each layer from `layer` on
    prompts, injections = _trials_of(ds, detected)
    recorded = _logit_diff(model, ds, prompts, injections, batch_size=batch_size)
    ctl_mean = feats[controls].mean(0)  # (later layer, d)

    def ablate_with(dvec_per_trial: np.ndarray) -> np.ndarray:
        out = np.empty(len(detected))
        _, group = np.unique(dvec_per_trial, axis=0, return_inverse=True)
        for g in np.unique(group):  # one batched pass per distinct direction
            idx = np.flatnonzero(group == g)
            dv = dvec_per_trial[idx[0]]
            spec = [
                engine.Ablate(torch.from_numpy(dv), (lay,), float(ctl_mean[j] @ dv))
                for j, lay in enumerate(later)
            ]
            out[idx] = _logit_diff(
                model,
                ds,
                [prompts[t] for t in idx],
                [injections[t] for t in idx],
                ablate=spec,
                batch_size=batch_size,
            )
        return out

    cross = np.stack([dir_from_b if in_a[r] else dir_from_a for r in detected])
    abl_dirs = [cross] + [
        np.repeat(v[None], len(detected), 0) for v in [missed_dir, *shuffled_dirs, *randoms_abl]
    ]
    ablated = np.stack([ablate_with(dv) for dv in abl_dirs])  # (direction, trial)

    kinds = ["anomaly", "missed_vs_control"] + [f"shuffled {i}" for i in range(n_shuffled)]
    add_kinds = kinds + [f"random {i}" for i in range(n_random)]
    abl_kinds = kinds + [f"random {i}" for i in range(n_random_ablate)]
    add_mean = added.mean(1)
    drop = (recorded[None] - ablated).mean(1)  # how much each ablation lowers the log-odds
    sl = slice(2, 2 + n_shuffled)
    threshold = float(labels.attrs.get("threshold", np.nan))
    attrs = {
        "layer": layer,
        "scale": scale,
        "threshold": threshold,
        "ablated_layers": f"{layer}..{model.n_layers - 1}",
        "model": model.name,
        "ablation": (
            "coordinate set to the controls' mean (window average) at each layer from `layer` on"
        ),
        "cross_fit": (
            "ablation direction for a trial fitted on the other half of the concepts (and all "
            "controls)"
        ),
        "add_shift_anomaly": float(add_mean[0]),
        "add_shift_missed_vs_control": float(add_mean[1]),
        "add_p_random": _perm_p(add_mean[0], add_mean[2 + n_shuffled :]),
        "p_resolution_add_random": 1 / (n_random + 1),
        "add_p_shuffled": _perm_p(add_mean[0], add_mean[sl]),
        "p_resolution_shuffled": 1 / (n_shuffled + 1),
        "add_beats_missed_vs_control": bool(add_mean[0] > add_mean[1]),
        "ablate_drop_anomaly": float(drop[0]),
        "ablate_drop_missed_vs_control": float(drop[1]),
        "ablate_p_random": _perm_p(drop[0], drop[2 + n_shuffled :]),
        "p_resolution_ablate_random": 1 / (n_random_ablate + 1),
        "ablate_p_shuffled": _perm_p(drop[0], drop[sl]),
        "ablate_share_detected_anomaly": float(np.mean(ablated[0] > threshold)),
        "n_trials": len(detected),
    }
    return xr.Dataset(
        {
            "add_shift": (("add_direction", "prompt"), added),
            "ablate_logit_diff": (("direction", "trial"), ablated),
            "recorded_logit_diff": ("trial", recorded),
            "stored_logit_diff": (
                "trial",
                np.asarray(yes_no(ds.isel(trial=detected))["logit_diff"].values),
            ),
            "ablate_detected": (("direction", "trial"), ablated > threshold),
        },
        coords={
            "add_direction": add_kinds,
            "direction": abl_kinds,
            "trial": ds.trial.values[detected],
            "prompt": np.arange(len(rows)),
        },
        attrs=attrs,
    )
