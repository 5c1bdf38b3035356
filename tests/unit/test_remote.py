"""Every library trace runs under nnsight's ``remote="local"``: the trace is serialised exactly as
for NDIF, installed modules are hidden, and it is deserialised and run in-process. Passing here
means the trace bodies capture nothing unpicklable, build their containers inside the trace and
bring back only saved values (docs/engineering.md, "Remote-safe traces") — and
give the same numbers as a local run.
The real client against a server: ``test_remote_server.py``."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mechintro import engine
from tests.conftest import mixed_batch

from ..conftest import ARCHS


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_and_generate_are_remote_safe(tiny_models, arch):
    model = tiny_models(arch)
    remote = dataclasses.replace(model, remote="local")
    prompts, injections, vec = mixed_batch(model)
    local = engine.forward(model, prompts, injections, answer_ids=[10, 11], record=True)
    served = engine.forward(remote, prompts, injections, answer_ids=[10, 11], record=True)
    assert torch.equal(local.answer_logprobs, served.answer_logprobs) and torch.equal(
        local.resid, served.resid
    )
    ablated = engine.forward(remote, prompts, injections, answer_ids=[10, 11], ablate={1: vec})
    assert torch.equal(
        ablated.answer_logprobs,
        engine.forward(
            model, prompts, injections, answer_ids=[10, 11], ablate={1: vec}
        ).answer_logprobs,
    )
    local = engine.generate(
        model, prompts, injections, max_new_tokens=5, temperature=1.0, seed=1, record=True
    )
    served = engine.generate(
        remote, prompts, injections, max_new_tokens=5, temperature=1.0, seed=1, record=True
    )
    assert torch.equal(local.generated, served.generated) and torch.equal(local.resid, served.resid)


def test_vector_extraction_is_remote_safe(tiny):
    remote = dataclasses.replace(tiny, remote="local")
    prompts = [[5, 6, 7, 8], [9, 10, 11], [12, 13, 14, 15, 16]]
    assert torch.equal(
        engine.last_token_resid(tiny, prompts), engine.last_token_resid(remote, prompts)
    )


def test_a_remote_model_never_takes_the_local_prefix_cache(tiny, tmp_path):
    """The shared-prefix cache runs plain transformers code on the client: a remote model must not
    use it."""
    from mechintro import runner
    from mechintro.prompts import Window, render_chat, tokenize

    remote = dataclasses.replace(tiny, remote="local")
    text = render_chat(
        tiny.tokenizer,
        [{"role": "user", "content": "A long shared introduction. " * 3 + "Trial 1: yes?"}],
    )
    trials = [
        runner.Trial(
            prompt=tokenize(tiny.tokenizer, text),
            condition="injected",
            concept="c",
            strength=2.0,
            inject_layer=1,
            inject_layer_end=2,
            vector=torch.ones(tiny.d_model),
            window=Window.from_marker("Trial 1"),
        )
    ] * 2
    engine._PREFIX_STATE.clear()
    runner.execute(
        remote, trials, tmp_path / "r.zarr", config={"t": 1}, mode="logits", answers=runner.YES_NO
    )
    assert not engine._PREFIX_STATE
    runner.execute(
        tiny, trials, tmp_path / "l.zarr", config={"t": 1}, mode="logits", answers=runner.YES_NO
    )
    assert engine._PREFIX_STATE  # the same trials run locally do take it
    with pytest.raises(AssertionError, match="prefix reuse needs a local model"):
        engine.forward(remote, [trials[0].prompt.input_ids], [None], answer_ids=[10], prefix=20)
