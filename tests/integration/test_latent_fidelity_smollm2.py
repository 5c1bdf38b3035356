"""Integration tier: ``latent-introspection`` on SmolLM2 equals the independent copy of the
authors' procedure (``tests/latent_reference.py``) with their defaults: empty system message,
layers 9–19, strength 20, system template tokens steered. The full side-by-side with the authors'
own code (582 suffixes, their repeng) is in docs/results.md; here 32 of their suffixes keep the
tier fast, which tests the same recipe."""

from __future__ import annotations

import numpy as np
import pytest

from mechintro import runs, stimuli
from mechintro.experiments import latent_introspection as LI
from mechintro.vectors import pca_center_vectors

from ..latent_reference import authors_conversation, logit_diff, pca_center

pytestmark = pytest.mark.integration
LAYERS = list(range(9, 20))


def test_latent_introspection_equals_the_authors_procedure_on_smollm2(smollm2, tmp_path):
    suffixes = stimuli.latent_introspection_suffixes()[:32]
    ref_vecs = pca_center(smollm2.hf, smollm2.tokenizer, "cats", suffixes, LAYERS)
    ours = pca_center_vectors(smollm2, ["cats"], suffixes=suffixes)
    for layer in LAYERS:
        v = ours.sel(concept="cats", layer=layer).values
        assert float(v @ ref_vecs[layer]) > 0.9999
    li = stimuli.latent_introspection()
    yes = smollm2.tokenizer.encode(" yes", add_special_tokens=False)[0]
    results = {}
    for variant, info in (("none", None), ("introspect", li["INFO_INTROSPECT"])):
        base, expr = logit_diff(
            smollm2.hf, smollm2.tokenizer, authors_conversation(li, info), LAYERS, ref_vecs, 20.0
        )
        results[variant] = (float(base[yes]), float(expr[yes]))

    def ours_run(name, variants=("none", "introspect"), **over):
        cfg = LI.Config(
            concepts=("cats",),
            variants=variants,
            control_questions=False,
            strengths=(20.0,),
            layer_start=9,
            layer_end=20,
            **over,
        )
        LI.run(cfg, tmp_path / name, model=smollm2, vectors=ours)
        ds = runs.open_run(tmp_path / name)
        p = np.exp(ds.answer_logprobs.sel(answer=" yes").values.astype(float))
        return {
            v: (
                float(p[(ds.variant.values == v) & (ds.condition.values == "unsteered")][0]),
                float(p[(ds.variant.values == v) & (ds.condition.values == "steered")][0]),
            )
            for v in variants
        }

    got = ours_run("default.zarr")
    for v, (ref_base, ref_steered) in results.items():
        assert got[v][0] == pytest.approx(ref_base, abs=1e-5)
        assert got[v][1] == pytest.approx(ref_steered, abs=1e-4)
    # the mutation the test catches: the former window (system template tokens unsteered), on the
    # short variant alone (P(yes) moves by 0.007 there; the info-document variant's forward costs
    # six times as much and adds nothing to the check)
    mutated = ours_run("nosys.zarr", variants=("none",), steer_system=False)
    assert abs(mutated["none"][1] - results["none"][1]) > 1e-3
