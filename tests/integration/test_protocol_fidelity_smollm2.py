"""Integration tier: every experiment on SmolLM2-135M (its real chat template, with the default
system prompt it inserts when none is sent) equals the independent plain-PyTorch copy of its
protocol (``tests/protocol_reference.py``), on the smallest grids: prompt tokens and steered
positions exactly, log-probabilities to 1e-4, greedy tokens exactly, residuals to float16
rounding; one mutation (the injection window's start) is shown caught here too. The comparisons
are the unit tier's (``tests/unit/test_protocol_fidelity.py``, where
each one is also shown to catch a changed prompt, position or recipe detail)."""

from __future__ import annotations

import numpy as np
import pytest

from mechintro import runs, stimuli
from mechintro.experiments import (
    detection_logits,
    injected_thoughts,
    intentional_control,
    localisation,
    patchscope,
    prefill,
    sweep,
    thoughts_vs_text,
)
from mechintro.vectors import concept_vectors

from .. import protocol_reference as R
from ..unit.test_protocol_fidelity import (
    caught,
    detection_problems,
    injected_problems,
    intentional_problems,
    localisation_problems,
    patchscope_problems,
    prefill_problems,
    steering_matters,
    sweep_problems,
    thoughts_problems,
)

pytestmark = pytest.mark.integration
CONCEPTS = ("Dust", "Oceans", "Bread")


@pytest.fixture(scope="module")
def vectors(smollm2):
    return concept_vectors(smollm2, CONCEPTS, progress=False)


def test_lindsey_vectors_equal_the_reference_on_smollm2(smollm2, vectors):
    ref, resid_norm = R.lindsey_vectors(smollm2.hf, smollm2.tokenizer, CONCEPTS)
    for c in CONCEPTS:
        got = vectors.sel(concept=c).values
        scale = np.abs(ref[c].numpy()).max(-1, keepdims=True)
        assert np.abs(got - ref[c].numpy()).max() <= 1e-4 * scale.max()
    np.testing.assert_allclose(vectors.resid_norm.values, resid_norm.numpy(), rtol=1e-4)


def test_logit_protocols_equal_the_reference_on_smollm2(smollm2, vectors, tmp_path, monkeypatch):
    m = smollm2
    cfg = detection_logits.Config(concepts=CONCEPTS, layers=(15,), strengths=(4.0,))
    ds = runs.open_run(detection_logits.run(cfg, tmp_path / "d", model=m, vectors=vectors))
    assert detection_problems(m, vectors, ds) == []
    assert steering_matters(ds, m.hf, ds.condition.values == "injected")
    # caught with SmolLM2's tokenizer too: the injection from "Trial 1", not the "\n\n" before it
    monkeypatch.setattr(stimuli, "TRIAL_MARKER", "Trial 1")
    ds = runs.open_run(detection_logits.run(cfg, tmp_path / "dm", model=m, vectors=vectors))
    assert caught(detection_problems(m, vectors, ds), "steered positions")
    monkeypatch.undo()

    cfg = sweep.Config(layers=(15,), strengths=(4.0,), control_questions=(R.GODET_CONTROL,))
    ds = runs.open_run(sweep.run(cfg, tmp_path / "s", model=m))
    assert sweep_problems(m, ds) == []
    assert steering_matters(ds, m.hf, ds.condition.values == "steered")

    cfg = localisation.Config(concepts=CONCEPTS, layers=(20,), strengths=(8.0,), trials=1)
    ds = runs.open_run(localisation.run(cfg, tmp_path / "l", model=m, vectors=vectors))
    assert localisation_problems(m, vectors, cfg, ds) == []
    assert steering_matters(ds, m.hf, ds.condition.values == "injected")

    cfg = prefill.Config(
        concepts=CONCEPTS, pairs=1, layers=(15,), strengths=(8.0,), readout="logits"
    )
    ds = runs.open_run(prefill.run(cfg, tmp_path / "pl", model=m, vectors=vectors))
    assert prefill_problems(m, vectors, cfg, ds) == []


def test_generation_protocols_equal_the_reference_on_smollm2(smollm2, vectors, tmp_path):
    m = smollm2
    cfg = injected_thoughts.Config(
        concepts=CONCEPTS,
        layers=(15,),
        strengths=(8.0,),
        trials=2,
        controls=1,
        temperature=0.0,
        max_new_tokens=8,
    )
    ds = runs.open_run(injected_thoughts.run(cfg, tmp_path / "i", model=m, vectors=vectors))
    assert injected_problems(m, vectors, cfg, ds) == []
    assert steering_matters(ds, m.hf, ds.condition.values == "injected")

    cfg = thoughts_vs_text.Config(
        concepts=CONCEPTS, pairs=1, layers=(15,), strengths=(8.0,), temperature=0.0
    )
    ds = runs.open_run(thoughts_vs_text.run(cfg, tmp_path / "t", model=m, vectors=vectors))
    assert thoughts_problems(m, vectors, ds) == []

    cfg = prefill.Config(
        concepts=CONCEPTS,
        pairs=1,
        layers=(15,),
        strengths=(8.0,),
        temperature=0.0,
        max_new_tokens=8,
    )
    ds = runs.open_run(prefill.run(cfg, tmp_path / "p", model=m, vectors=vectors))
    assert prefill_problems(m, vectors, cfg, ds) == []

    cfg = patchscope.Config(concepts=CONCEPTS[:2], layers=(15,), strengths=(1.0,))
    ds = runs.open_run(patchscope.run(cfg, tmp_path / "ps", model=m, vectors=vectors))
    assert patchscope_problems(m, vectors, cfg, ds) == []


def test_intentional_control_equals_the_reference_on_smollm2(smollm2, tmp_path):
    cfg = intentional_control.Config(concepts=CONCEPTS, pairs=1)
    ds = runs.open_run(intentional_control.run(cfg, tmp_path / "c", model=smollm2))
    assert intentional_problems(smollm2, ds) == []
