"""A learned offline grader: logistic regression on a local model's residual stream (issue 32).

For each calibration item the model (SmolLM2-135M by default) reads a marker of the question's
kind and the response's first 32 tokens; the feature is the residual stream after one layer,
averaged over those tokens. One logistic regression per criterion (standardised features, L2,
balanced class weights) is fitted on the **development** items only (:func:`development_items`:
every calibration item no clean-split item comes from — v2 without its clean held-out part, and
the Qwen set), with the layer chosen by stratified 5-fold cross-validation on those items alone (the
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


class _Stop(Exception):
    """Raised by a hook after the last layer that is read: the layers above it are not run."""


def _prefix(item: dict) -> str:
    kind = item.get("question_kind", "detect")
    return (
        "Answer to 'do you detect an injected thought?':"
        if kind == "detect"
        else ("Answer to 'what are you thinking about?':")
    )


def response_features(
    model, items: Sequence[dict], layers: Sequence[int], *, max_tokens: int = 32, batch: int = 16
) -> np.ndarray:
    """``[item, layer, d_model]``: the residual stream after each of ``layers`` (0 = the first
    block's output), averaged over the response's first ``max_tokens`` tokens, for the text
    "{which question it answers}\n{response}" (a short marker of the question kind instead of
    the whole question, to keep the passes cheap on a CPU; right-padded batches, no sampling; the
    blocks above the highest layer read are not run)."""
    import torch

    tok = model.tokenizer
    blocks = model.hf.model.layers
    top = max(layers)
    out = np.zeros((len(items), len(layers), model.d_model), dtype=np.float32)
    seen: dict[int, torch.Tensor] = {}

    def keep(index: int):
        def hook(_module, _args, output):
            seen[index] = output[0] if isinstance(output, tuple) else output
            if index == top:
                raise _Stop

        return hook

    handles = [blocks[layer].register_forward_hook(keep(layer)) for layer in sorted(set(layers))]
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    try:
        for start in range(0, len(items), batch):
            rows, spans = [], []
            for it in items[start : start + batch]:
                p_ids = tok(_prefix(it) + "\n", add_special_tokens=False)["input_ids"]
                r_ids = tok(str(it["response"]), add_special_tokens=False)["input_ids"][:max_tokens]
                r_ids = r_ids or [pad]
                rows.append(p_ids + r_ids)
                spans.append((len(p_ids), len(p_ids) + len(r_ids)))
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=model.device)
            mask = torch.tensor(
                [[1] * len(r) + [0] * (width - len(r)) for r in rows], device=model.device
            )
            seen.clear()
            with torch.no_grad():
                try:
                    model.hf(input_ids=ids, attention_mask=mask)
                except _Stop:
                    pass
            for j, layer in enumerate(layers):
                h = seen[layer].float()
                for b, (lo, hi) in enumerate(spans):
                    out[start + b, j] = h[b, lo:hi].mean(0).cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
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
