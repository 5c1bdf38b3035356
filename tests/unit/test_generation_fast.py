"""Generation that drops rows from the batch as they end (``engine.generate(prune=True)``, the
default for a local model) against nnsight's generate trace that keeps every row to the end
(``prune=False``, what a remote model runs): the same tokens, greedy and sampled, the same
recorded residuals, on six architectures, with rows ending at different steps."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from mechintro import engine
from mechintro.arch import get_module

from ..conftest import ARCHS
from .test_engine import _shared_batch


def _batch(model):
    """Six rows: a shared prefix, left padding (two shorter prompts), injections on the prompt
    only, on the prompt and every generated token, at one or two layers, and none."""
    prompts, injections = _shared_batch(model)
    vec = injections[0].vector
    prompts = [*prompts, prompts[1][7:], prompts[3][20:]]
    injections = [
        engine.Injection(vector=vec, layers=(1,), mask=injections[0].mask, generated=True),
        None,
        injections[2],
        None,
        engine.Injection(vector=-vec, layers=(0, 2), mask=injections[0].mask[7:], generated=True),
        None,
    ]
    return prompts, injections


def _ending_early(model, monkeypatch, run) -> torch.Tensor:
    """Make rows end at different steps: the end-of-sequence set becomes tokens that rows 0, 2
    and 4 produce at steps 1, 3 and 5 of ``run()`` (which keeps every row); returns the tokens
    ``run()`` gives under that set."""
    first = run()
    picks = {int(first[r, s]) for r, s in ((0, 1), (2, 3), (4, 5))}
    eos = sorted(picks | set(engine._eos_ids(model)))
    monkeypatch.setattr(model.hf.generation_config, "eos_token_id", eos)
    return run()


def _lengths(generated: torch.Tensor) -> list[int]:
    return [int((row >= 0).sum()) for row in generated]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_pruned_generation_equals_the_trace(tiny_models, monkeypatch, arch, temperature):
    model = tiny_models(arch)
    prompts, injections = _batch(model)

    def run(prune: bool = False, **kw):
        return engine.generate(
            model, prompts, injections, max_new_tokens=10, temperature=temperature, seed=7,
            prune=prune, **kw,
        )  # fmt: skip

    kept = _ending_early(model, monkeypatch, lambda: run().generated)
    lengths = _lengths(kept)
    assert min(lengths) < max(lengths)  # rows do end at different steps
    pruned = run(prune=True, record=True)
    assert torch.equal(pruned.generated, kept)
    assert torch.equal(pruned.resid, run(record=True).resid)
    # equal-length rows with the shared prefix's keys and values computed once
    n = 4
    a = engine.generate(
        model, prompts[:n], injections[:n], max_new_tokens=10, temperature=temperature, seed=7,
        prefix=50, prune=True,
    )  # fmt: skip
    b = engine.generate(
        model, prompts[:n], injections[:n], max_new_tokens=10, temperature=temperature, seed=7,
        prefix=50, prune=False,
    )  # fmt: skip
    assert torch.equal(a.generated, b.generated)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2"])
def test_pruned_patched_generation_equals_the_trace(tiny_models, monkeypatch, arch):
    model = tiny_models(arch)
    prompts, _ = _batch(model)
    g = torch.Generator().manual_seed(1)
    patches = [
        engine.Patch(torch.randn(2, model.d_model, generator=g), positions=(3, 9), layer=1),
        None,
        engine.Patch(
            torch.randn(1, model.d_model, generator=g), positions=(0,), layer=0, mode="replace"
        ),
        None,
        engine.Patch(torch.randn(1, model.d_model, generator=g), positions=(5,), layer=2),
        None,
    ]

    def run(prune: bool = False):
        return engine.patched_generate(
            model, prompts, patches, max_new_tokens=10, temperature=1.0, seed=2, prune=prune
        ).generated

    kept = _ending_early(model, monkeypatch, run)
    assert min(_lengths(kept)) < max(_lengths(kept))
    assert torch.equal(run(prune=True), kept)


def test_one_running_row_keeps_a_finished_row_beside_it(tiny, monkeypatch):
    """Down to one running row, a finished row rides along (a one-row matrix product takes
    another code path, whose rounding differs); the tokens are still the trace's."""
    prompts, injections = _batch(tiny)
    seen: list[int] = []
    handle = tiny.hf.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append(kw["input_ids"].shape[0]), with_kwargs=True
    )

    def run(prune: bool = False):
        return engine.generate(
            tiny, prompts, injections, max_new_tokens=12, temperature=1.0, seed=11, prune=prune
        ).generated

    try:
        first = run()
        last = max(range(len(prompts)), key=lambda r: _lengths(first)[r])
        # every row but the last ends within three steps: its third token and the others' first
        eos = {int(first[r, 0]) for r in range(len(prompts)) if r != last}
        eos -= set(first[last, :6].tolist())
        monkeypatch.setattr(
            tiny.hf.generation_config, "eos_token_id", sorted(eos | set(engine._eos_ids(tiny)))
        )
        kept = run()
        seen.clear()
        pruned = run(prune=True)
    finally:
        handle.remove()
    assert torch.equal(pruned, kept)
    lengths = _lengths(kept)
    assert sorted(lengths)[-2] < lengths[last]  # one row outlived the others
    assert min(seen) == 2 and seen[0] == len(prompts)
    assert seen == sorted(seen, reverse=True)  # the batch only shrinks


def test_hooks_are_removed_and_the_callers_rng_is_untouched(tiny):
    prompts, injections = _batch(tiny)
    blocks = get_module(tiny.hf, tiny.arch.layers)
    state, hooks = torch.get_rng_state(), [dict(b._forward_hooks) for b in blocks]
    engine.generate(
        tiny, prompts, injections, max_new_tokens=4, temperature=1.0, seed=5, record=True
    )
    assert torch.equal(state, torch.get_rng_state())
    assert [dict(b._forward_hooks) for b in blocks] == hooks
    with pytest.raises(engine.MechintroError, match="d_model"):
        engine.generate(
            tiny,
            prompts[:1],
            [engine.Injection(torch.zeros(3), (0,), (True,) * len(prompts[0]))],
            max_new_tokens=4,
            temperature=1.0,
            seed=5,
        )
    assert [dict(b._forward_hooks) for b in blocks] == hooks


def test_a_remote_model_runs_the_trace(tiny, monkeypatch):
    """Pruning runs plain transformers code on the client: a remote model never takes it."""

    def refuse(*_a, **_k):
        raise AssertionError("a remote model must not decode locally")

    monkeypatch.setattr(engine, "_generate_local", refuse)
    remote = dataclasses.replace(tiny, remote="local")
    prompts, injections = _batch(tiny)
    assert engine._decodes_locally(tiny) and not engine._decodes_locally(remote)
    res = engine.generate(
        remote, prompts[:2], injections[:2], max_new_tokens=3, temperature=0.0, seed=0
    )
    assert res.generated.shape == (2, 3)
