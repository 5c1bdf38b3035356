"""Is an injection legible in the activations beyond "this activation was moved"?

``scripts/oracle_compare.py`` asks whether a reader outside the model (a linear probe, an
oracle) finds an injected concept that the model's self-report misses. Read naively that is
true by construction: at the injection layer, on a token inside the injection window, the
residual *is* the control's residual plus ``strength × vector``, and when every control trial
shares one prompt, every control activation is the same point. Any rule "differs from the control
activation" then separates the two classes perfectly, and a probe that does so shows nothing
more. This module makes the comparison one that can fail:

* :func:`vary_prompts` gives every trial, injected or control, a "Trial k" prompt with ``k``
  drawn from the same range for both conditions, so control activations differ from each other
  and the prompt says nothing about the condition;
* :func:`groups` and :func:`folds`: cross-validation folds grouped by concept (an injected
  trial's concept; a control's prompt), so no concept and no identical control activation is
  on both sides of a fold;
* :func:`trivial_scores`: the baseline a probe must beat, "distance to the nearest control
  activation of another prompt", flagged above every other control's distance;
  :func:`differs_from_own_control`: whether a trial's activation differs from its own prompt's
  control activation at all (by construction, inside the window);
* :func:`detect`: the probe and that baseline on the same folds, with AUCs and a paired test.

The readout layer is the caller's: reading after the injection window is impossible in Lindsey's
injected-thoughts trial (the window runs from "Trial 1" through every generated token), so the
script reads at a later layer than the injection as well as at the injection layer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from mechintro.errors import MechintroError


def vary_prompts(trials: list, model, config, *, variants: int, seed: int) -> list:
    """``trials`` (of :func:`mechintro.experiments.injected_thoughts.build_trials`) with each
    trial's prompt replaced by "Trial k" (its question label too), ``k`` uniform in
    ``1..variants`` and drawn independently of the condition (seeded)."""
    from mechintro.experiments import injected_thoughts as it

    if variants < 2:
        raise MechintroError(
            "--prompt-variants must be at least 2 (1 is the identical-control design)"
        )
    rng = np.random.default_rng(seed)
    cache: dict[int, tuple] = {}
    out = []
    for trial in trials:
        k = int(rng.integers(1, variants + 1))
        if k not in cache:
            prompt, window = it.prompt_and_window(
                model,
                config.question,
                system=config.system_message,
                number=k,
                window_start=config.window_start,
                text=it.question_text(config, k),
            )
            cache[k] = (prompt, window, it.question_text(config, k))
        prompt, window, text = cache[k]
        labels = {**trial.labels, "question": text, "prompt_variant": k}
        out.append(dataclasses.replace(trial, prompt=prompt, window=window, labels=labels))
    return out


def groups(concepts: Sequence[str], prompts: Sequence[object], injected: np.ndarray) -> np.ndarray:
    """Cross-validation groups: an injected trial's concept, a control's prompt (controls with
    the same prompt have the same activation and must stay together)."""
    return np.array(
        [
            f"concept:{c}" if inj else f"control-prompt:{p}"
            for c, p, inj in zip(concepts, prompts, injected, strict=True)
        ]
    )


def folds(
    y: np.ndarray, group: np.ndarray, n_splits: int = 5
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped folds (sklearn's GroupKFold): no group in both a fold's train and test part.
    Refuses when either class has fewer than two groups (no fold could train on it)."""
    from sklearn.model_selection import GroupKFold

    per_class = [len(set(group[y == c])) for c in (0, 1)]
    if min(per_class) < 2:
        raise MechintroError(
            f"grouped cross-validation needs at least 2 groups per class, got {per_class} "
            "(injected concepts, control prompts): add concepts or --prompt-variants"
        )
    k = min(n_splits, len(set(group)))
    return list(GroupKFold(k).split(np.zeros(len(y)), y, group))


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.sqrt(d.min(1))


def trivial_scores(
    x: np.ndarray, y: np.ndarray, prompts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The "differs from the control activations" detector (nothing is fitted but a threshold).

    Score: a trial's distance to the nearest control activation of *another* prompt (the same
    rule for both classes, so no trial is compared with its own prompt's control). Flag: the
    score exceeds the score of every control of another prompt (again the same rule for both
    classes: no control sets its own threshold). Returns ``(scores, flagged)``."""
    ctl = np.flatnonzero(y == 0)
    scores = np.array(
        [_nearest(x[[i]], x[ctl[prompts[ctl] != prompts[i]]])[0] for i in range(len(x))]
    )
    flagged = np.array(
        [scores[i] > scores[ctl[prompts[ctl] != prompts[i]]].max() for i in range(len(x))]
    )
    return scores, flagged


def differs_from_own_control(x: np.ndarray, y: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Per trial: does its activation differ from a control activation of the *same* prompt
    (another control trial; NaN when its prompt has none)? At the injection layer, on a token in
    the window, every injected trial does by construction."""
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        same = np.flatnonzero((y == 0) & (prompts == prompts[i]) & (np.arange(len(x)) != i))
        if len(same):
            out[i] = float(_nearest(x[[i]], x[same])[0] > 1e-6 * np.linalg.norm(x[i]))
    return out


def probe_scores(
    x: np.ndarray, y: np.ndarray, split: Sequence[tuple[np.ndarray, np.ndarray]]
) -> np.ndarray:
    """Cross-validated P(injected) of a logistic-regression probe (standardised, C = 0.1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.zeros(len(x))
    for train, test in split:
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        probe.fit(x[train], y[train])
        out[test] = probe.predict_proba(x[test])[:, 1]
    return out


def detect(
    x: np.ndarray, y: np.ndarray, group: np.ndarray, prompts: np.ndarray, *, seed: int = 0
) -> dict:
    """The probe and the trivial detector on the same grouped folds: per reader the flags
    (``probe``: P > 0.5) and scores, their AUCs, and the probe against the trivial detector
    trial by trial (:func:`mechintro.oracle.train.paired_tests` on correct classification,
    clustered by :func:`groups`)."""
    from sklearn.metrics import roc_auc_score

    from mechintro.oracle.train import paired_tests

    split = folds(y, group)
    p = probe_scores(x, y, split)
    d, flagged = trivial_scores(x, y, np.asarray(prompts))
    out = {
        "probe": {"flags": p > 0.5, "scores": p, "auc": float(roc_auc_score(y, p))},
        "trivial": {"flags": flagged, "scores": d, "auc": float(roc_auc_score(y, d))},
        "folds": len(split),
    }
    out["probe_vs_trivial"] = paired_tests(
        (p > 0.5) == (y == 1), flagged == (y == 1), group.tolist(), seed=seed
    )
    return out
