"""Integration tier: ``injected-thoughts --preset uzaymacar`` on SmolLM2-135M equals the
independent copy of the open replications' code (``tests/replication_reference.py``) with the
issue's setting — words Dust / Oceans / Trees, layer 21, strength 8, float32, Lindsey's 100
baseline words: vectors cosine ≥ 0.99999, prompt tokens and steered start exactly, first-token
log-probs to 1e-4, greedy continuations identical, sampling inside the top-50 support; each shown
to catch a mutation (words lowercased, steering from "Trial", no top-k). The comparisons are the
unit tier's (``tests/unit/test_replication_fidelity.py``). ``scripts/replication_side_by_side.py``
runs the same comparison against A′'s own code."""

from __future__ import annotations

import dataclasses

import pytest

from mechintro import runs
from mechintro.experiments import injected_thoughts as IT
from mechintro.vectors import concept_vectors

from .. import replication_reference as A
from ..unit.test_replication_fidelity import (
    WORDS,
    caught,
    preset,
    top_k_problems,
    trial_problems,
    vector_problems,
)

pytestmark = pytest.mark.integration
LAYER, STRENGTH = 21, 8.0


@pytest.fixture(scope="module")
def listed(smollm2):
    return concept_vectors(smollm2, WORDS, lowercase=False, progress=False)


@pytest.fixture(scope="module")
def ref(smollm2):
    return A.vectors(smollm2.hf, smollm2.tokenizer, WORDS, LAYER)


def test_preset_vectors_equal_the_replications_on_smollm2(smollm2, listed, ref):
    assert vector_problems(listed, ref, LAYER) == []
    lowered = concept_vectors(smollm2, WORDS, progress=False)  # our default
    assert caught(vector_problems(lowered, ref, LAYER), "vector cosine")


def test_preset_trials_equal_the_replications_on_smollm2(smollm2, listed, ref, tmp_path):
    cfg = preset(
        concepts=WORDS,
        layers=(LAYER,),
        strengths=(STRENGTH,),
        trials=1,
        controls=1,
        temperature=0.0,
        max_new_tokens=12,
    )
    ds = runs.open_run(IT.run(cfg, tmp_path / "p", model=smollm2, vectors=listed))
    assert trial_problems(smollm2, listed, ref, cfg, n_greedy=12, ds=ds) == []
    moved = dataclasses.replace(cfg, window_start="trial")
    problems = trial_problems(smollm2, listed, ref, moved)
    assert caught(problems, "steered positions start")
    assert caught(problems, "first-token log-probs differ")


def test_preset_samples_with_top_k_50_on_smollm2(smollm2, listed, ref):
    cfg = preset(concepts=WORDS, layers=(LAYER,), strengths=(STRENGTH,), trials=1, controls=1)
    assert top_k_problems(smollm2, listed, ref, cfg, "Dust") == []
    plain = dataclasses.replace(cfg, top_k=0)
    assert caught(top_k_problems(smollm2, listed, ref, plain, "Dust"), "outside")
