"""Interventions and readouts as objects (:func:`mechintro.engine.run_batch`): the same numbers
as the engine's passes, and one-line refusals of what a batch cannot combine."""

from __future__ import annotations

import pytest
import torch

from mechintro import engine


def test_interventions_and_readouts_as_objects_give_the_engine_numbers(tiny):
    """run_batch is a dispatcher: Add / Ablate / Patch with NextToken / Generate / Resid give
    exactly what forward, generate and the patched passes give, and refuse what they cannot."""
    from mechintro.errors import MechintroError

    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(5, 90, (n,), generator=g).tolist() for n in (16, 11)]
    vec, u = torch.randn(tiny.d_model, generator=g), torch.randn(tiny.d_model, generator=g)
    add = engine.Add(vec, (1,), (False,) * 6 + (True,) * 10, strength=3.0, generated=True)
    ablate = engine.Ablate(u, (2,), to=0.5)
    rows = [[add, ablate], [ablate]]
    got = engine.run_batch(tiny, prompts, rows, [engine.NextToken((3, 4, 5)), engine.Resid()])
    want = engine.forward(
        tiny, prompts, [add.injection(), None], answer_ids=[3, 4, 5], record=True,
        ablate={2: (u, 0.5)},
    )  # fmt: skip
    assert torch.equal(got.answer_logprobs, want.answer_logprobs)
    assert torch.equal(got.resid, want.resid)
    sampled = engine.run_batch(tiny, prompts, [[add], []], [engine.Generate(4, 1.0, seed=7)])
    direct = engine.generate(
        tiny, prompts, [add.injection(), None], max_new_tokens=4, temperature=1.0, seed=7
    )
    assert torch.equal(sampled.generated, direct.generated)
    patch = engine.Patch(vec[None], (3,), layer=1, mode="norm_matched_add", coefficient=2.0)
    same = engine.Patch(vec[None], (3,), layer=1, mode="add", coefficient=2.0)
    got = engine.run_batch(tiny, prompts, [[patch], []], [engine.NextToken((3, 4))])
    want = engine.patched_forward(tiny, prompts, [same, None], answer_ids=[3, 4])
    assert torch.equal(got.answer_logprobs, want.answer_logprobs)
    for rows, readouts, match in (
        ([[add, add], []], [engine.NextToken((3,))], "at most one Add"),
        ([[ablate], []], [engine.NextToken((3,))], "whole batch"),
        ([[patch], [add]], [engine.NextToken((3,))], "patched batch"),
        ([[ablate], [ablate]], [engine.Generate(2)], "logit mode only"),
        ([[], []], [engine.Generate(2), engine.NextToken((3,))], "one NextToken or one"),
    ):
        with pytest.raises(MechintroError, match=match):
            engine.run_batch(tiny, prompts, rows, readouts)
