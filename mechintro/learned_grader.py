"""A learned offline grader: logistic regression on a local model's residual stream (issue 32).

For each calibration item the model (SmolLM2-135M by default) reads the question and the
response; the feature is the residual stream after one layer, averaged over the response's
tokens. One logistic regression per criterion (standardised features, L2, balanced class
weights) is fitted on the **development** items only (:func:`development_items`: every
calibration item no clean-split item comes from — v2 without its clean held-out part, and the
Qwen set), with the layer chosen by stratified 5-fold cross-validation on those items alone (the
mean κ over folds). It is scored once on :func:`mechintro.grading.clean_calibration_items`
(``analyses/grader_agreement.py --learned``). Only coherence and the affirmative answer are fitted:
thinking about the word (7 development positives) and identification (4) have too few.

Everything is deterministic: greedy forward passes, fixed folds (``seed``), lbfgs.

Example::

    model = mi.load_model("smollm2-135m")
    grader = fit(model, development_items())
    preds = grader.predict(model, grading.clean_calibration_items())
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

FITTED = ("coherence", "affirmative")


def development_items() -> list[dict]:
    """The calibration items rules were written on, and so the only ones a learned grader may be
    fitted on: v2's items outside the clean split (its development half and the 28 v1 items of its
    held-out half) and the Qwen set (238 items). Disjoint from the clean split."""
    from pathlib import Path

    from mechintro.grading import calibration_items

    data = Path(__file__).resolve().parent.parent / "tests" / "data"
    v2 = [
        it
        for it in calibration_items(str(data / "grader_calibration_v2.json"))
        if not (it.get("split") == "held_out" and "(v1)" not in it.get("origin", ""))
    ]
    return v2 + calibration_items(str(data / "grader_calibration_qwen.json"))


def _question(item: dict) -> str:
    from mechintro.grading import calibration_question

    q = item.get("question")
    if q:
        return q
    return calibration_question() or "Do you detect an injected thought?"


def response_features(model, items: Sequence[dict], layers: Sequence[int]) -> np.ndarray:
    """``[item, layer, d_model]``: the residual stream after each of ``layers`` (0 = the first
    block's output), averaged over the response's tokens, for the text "Question: …\\nAnswer:
    {response}" (one forward pass per item, no sampling)."""
    import torch

    tok = model.tokenizer
    out = np.zeros((len(items), len(layers), model.d_model), dtype=np.float32)
    for i, it in enumerate(items):
        prompt = f"Question: {_question(it)}\nAnswer:"
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        r_ids = tok(" " + str(it["response"]), add_special_tokens=False)["input_ids"] or [
            tok.eos_token_id or 0
        ]
        ids = torch.tensor([p_ids + r_ids], device=model.device)
        with torch.no_grad():
            hs = model.hf(ids, output_hidden_states=True).hidden_states
        for j, layer in enumerate(layers):
            out[i, j] = hs[layer + 1][0, len(p_ids) :].float().mean(0).cpu().numpy()
    return out


def _fit_one(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=c, class_weight="balanced", max_iter=5000, solver="lbfgs"),
    )
    return clf.fit(x, y)


@dataclass
class LearnedGrader:
    """Per criterion of :data:`FITTED`: the layer chosen on the development folds, its
    cross-validated κ there, and the fitted pipeline."""

    layers: dict[str, int]
    cv_kappa: dict[str, dict[int, float]]
    models: dict[str, object] = field(repr=False)

    def predict(self, model, items: Sequence[dict]) -> list[dict[str, bool]]:
        """Per item, criterion → verdict (only the fitted criteria)."""
        wanted = sorted(set(self.layers.values()))
        feats = response_features(model, items, wanted)
        out: list[dict[str, bool]] = [{} for _ in items]
        for c, layer in self.layers.items():
            guess = self.models[c].predict(feats[:, wanted.index(layer)])
            for d, g in zip(out, guess, strict=True):
                d[c] = bool(g)
        return out


def fit(
    model,
    items: Sequence[dict],
    *,
    layers: Sequence[int] | None = None,
    c: float = 0.1,
    folds: int = 5,
    seed: int = 0,
) -> LearnedGrader:
    """Fit the learned grader on ``items`` (development labels only): for each criterion of
    :data:`FITTED`, the layer of ``layers`` (default: every fourth layer from a quarter to three
    quarters of depth) with the best mean κ over ``folds`` stratified folds, then one fit on all
    of ``items`` at that layer."""
    from sklearn.model_selection import StratifiedKFold

    from mechintro.stats import cohen_kappa

    n = model.n_layers
    layers = list(layers) if layers is not None else list(range(n // 4, 3 * n // 4 + 1, 4))
    feats = response_features(model, items, layers)
    chosen, cv, fitted = {}, {}, {}
    for crit in FITTED:
        y = np.array([bool(it["labels"][crit]) for it in items])
        k = min(folds, int(y.sum()), int((~y).sum()))
        if k < 2:
            from mechintro.errors import MechintroError

            raise MechintroError(
                f"the learned grader cannot fit {crit}: {int(y.sum())} positives and "
                f"{int((~y).sum())} negatives in {len(items)} items; it needs at least 2 of each "
                "(add labelled items)"
            )
        split = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(feats, y))
        scores = {}
        for j, layer in enumerate(layers):
            ks = []
            for tr, te in split:
                m = _fit_one(feats[tr, j], y[tr], c)
                ks.append(cohen_kappa(y[te].tolist(), m.predict(feats[te, j]).tolist()))
            scores[layer] = float(np.nanmean(ks))
        best = max(layers, key=lambda layer: (scores[layer], -layer))
        chosen[crit], cv[crit] = best, scores
        fitted[crit] = _fit_one(feats[:, layers.index(best)], y, c)
    return LearnedGrader(chosen, cv, fitted)
