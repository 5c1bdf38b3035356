"""Activation Oracles: the patch intervention against a plain forward-hook implementation (no
nnsight), oracle prompts, training (kill and resume), asking and the stored answers."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mechintro import engine
from mechintro.arch import get_module

from ..conftest import ARCHS


def reference_patched_logprobs(model, ids, patch):
    """Next-token log-probs of one unpadded prompt with the patch applied by a plain forward hook."""
    block = get_module(model.hf, model.arch.layers)[patch.layer]

    def hook(module, args, output):
        h = output[0] if isinstance(output, tuple) else output
        h = h.clone()
        for k, p in enumerate(patch.positions):
            v = patch.vectors[k].to(h.dtype)
            if patch.mode == "replace":
                h[0, p] = v
            else:
                h[0, p] = h[0, p] + h[0, p].norm() * v / v.norm() * patch.coefficient
        return (h, *output[1:]) if isinstance(output, tuple) else h

    handle = block.register_forward_hook(hook)
    try:
        with torch.no_grad():
            logits = model.hf(input_ids=torch.tensor([list(ids)])).logits[0, -1].float()
    finally:
        handle.remove()
    return torch.log_softmax(logits, -1)  # soft-capping families cap inside forward


def _patch_batch(model):
    g = torch.Generator().manual_seed(3)
    prompts = [torch.randint(5, 100, (n,), generator=g).tolist() for n in (18, 11, 15)]
    vecs = torch.randn(4, model.d_model, generator=g) * 5
    patches = [engine.Patch(vectors=vecs[:3], positions=(2, 3, 4), layer=1, mode="add", coefficient=1.0),
               None,
               engine.Patch(vectors=vecs[3:], positions=(7,), layer=0, mode="replace")]
    return prompts, patches


@pytest.mark.parametrize("arch", ARCHS)
def test_patch_equals_plain_hook_batched_and_remote(tiny_models, arch):
    model = tiny_models(arch)
    prompts, patches = _patch_batch(model)
    vocab = list(range(model.d_vocab))
    local = engine.patched_forward(model, prompts, patches, answer_ids=vocab)
    for row, (ids, patch) in enumerate(zip(prompts, patches, strict=True)):
        if patch is None:
            with torch.no_grad():
                ref = torch.log_softmax(model.hf(input_ids=torch.tensor([ids])).logits[0, -1].float(), -1)
        else:
            ref = reference_patched_logprobs(model, ids, patch)
        assert (local.answer_logprobs[row] - ref).abs().max() <= 1e-5
    served = engine.patched_forward(dataclasses.replace(model, remote="local"), prompts, patches, answer_ids=vocab)
    assert (served.answer_logprobs - local.answer_logprobs).abs().max() <= 1e-5
    # the patch changes the output (a test that could not fail would prove nothing)
    plain = engine.patched_forward(model, prompts, [None] * 3, answer_ids=vocab)
    assert (plain.answer_logprobs[0] - local.answer_logprobs[0]).abs().max() > 1e-3
    assert torch.equal(plain.answer_logprobs[1], local.answer_logprobs[1])


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_patched_generation_is_greedy_reference_and_remote_safe(tiny_models, arch):
    model = tiny_models(arch)
    prompts, patches = _patch_batch(model)
    out = engine.patched_generate(model, prompts, patches, max_new_tokens=4, temperature=0.0, seed=0)
    served = engine.patched_generate(dataclasses.replace(model, remote="local"), prompts, patches, max_new_tokens=4, temperature=0.0, seed=0)
    assert torch.equal(out.generated, served.generated)
    first = engine.patched_forward(model, prompts, patches, answer_ids=list(range(model.d_vocab))).answer_logprobs.argmax(-1)
    assert torch.equal(out.generated[:, 0], first)


def test_patch_refuses_bad_positions_and_sizes(tiny):
    from mechintro.errors import MechintroError

    with pytest.raises(MechintroError, match="outside the prompt"):
        engine.patched_forward(tiny, [[5, 6, 7]], [engine.Patch(torch.ones(1, tiny.d_model), (3,))], answer_ids=[1])
    with pytest.raises(MechintroError, match="vector per position"):
        engine.patched_forward(tiny, [[5, 6, 7]], [engine.Patch(torch.ones(2, tiny.d_model + 1), (0, 1))], answer_ids=[1])
