"""The learned grader (issue 32): fitted on development labels only, deterministic, on a tiny
random model in the unit tier."""

from __future__ import annotations

import pytest

from mechintro import grading, learned_grader
from mechintro.errors import MechintroError


def _items(n: int = 24) -> list[dict]:
    out = []
    for i in range(n):
        good = i % 2 == 0
        response = "Yes yes, I detect it." if good else "zq zq zq zq ~~~ ###"
        labels = dict.fromkeys(grading.CRITERIA, False)
        labels["coherence"] = good
        labels["affirmative"] = good and i % 4 == 0
        out.append(
            {
                "id": f"t{i}",
                "response": response + " " * (i % 3),
                "question": "Do you detect an injected thought?",
                "concept": "",
                "labels": labels,
            }
        )
    return out


def test_the_development_items_share_nothing_with_the_clean_split():
    dev = learned_grader.development_items()
    clean = grading.clean_calibration_items()
    assert len(dev) == 238
    assert not {it["id"] for it in dev} & {it["id"] for it in clean}
    assert not {it["response"] for it in dev} & {it["response"] for it in clean}


def test_the_learned_grader_is_fitted_on_folds_and_deterministic(tiny):
    items = _items()
    a = learned_grader.fit(tiny, items, layers=[0, 2], folds=3)
    b = learned_grader.fit(tiny, items, layers=[0, 2], folds=3)
    assert a.layers == b.layers and set(a.layers) == set(learned_grader.FITTED)
    assert set(a.cv_kappa["coherence"]) == {0, 2}
    pa, pb = a.predict(tiny, items), b.predict(tiny, items)
    assert pa == pb and set(pa[0]) == set(learned_grader.FITTED)
    # the separable criterion is learned (in sample here: a check of the fit, not a score)
    hits = sum(p["coherence"] == it["labels"]["coherence"] for p, it in zip(pa, items, strict=True))
    assert hits >= 22
    feats = learned_grader.response_features(tiny, items[:2], [1])
    assert feats.shape == (2, 1, tiny.d_model)


def test_batched_features_equal_one_item_at_a_time(tiny):
    """Right padding and the early stop change nothing: a batch of replies of different lengths
    gives each the features it gets alone."""
    import numpy as np

    items = _items(5)
    items[1]["response"] = "Yes."
    one = learned_grader.response_features(tiny, items, [0, 1], batch=1)
    many = learned_grader.response_features(tiny, items, [0, 1], batch=5)
    assert np.allclose(one, many, atol=1e-5)
    short = learned_grader.response_features(tiny, items, [0, 1], max_tokens=3)
    assert not np.allclose(short[0], one[0])


def test_the_learned_grader_refuses_a_criterion_with_too_few_positives(tiny):
    items = _items(8)
    for it in items:
        it["labels"]["affirmative"] = it["id"] == "t0"
    with pytest.raises(MechintroError, match="cannot fit affirmative: 1 positives"):
        learned_grader.fit(tiny, items, layers=[1], folds=3)
