"""Invariants of the injection engine, checked against an independent plain-PyTorch
forward-hook implementation (no nnsight) on tiny random models."""

from __future__ import annotations

import pytest
import torch

from mechintro import engine
from mechintro.arch import get_module
from mechintro.prompts import Window, render_chat, tokenize

from ..conftest import ARCHS


def _prompt(model, text: str):
    return tokenize(
        model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": text}])
    )


def _vec(model, seed: int, scale: float = 3.0) -> torch.Tensor:
    return torch.randn(model.d_model, generator=torch.Generator().manual_seed(seed)) * scale


# --- the reference: plain HF forward hooks, one prompt at a time ---------------------------------


def reference_forward(model, ids, injection):
    """Next-token log-probs and per-layer residuals ``(layer, T, d)`` with plain forward hooks."""
    hf = model.hf
    layers = get_module(hf, model.arch.layers)
    handles, captured = [], {}

    def make_hook(i):
        def hook(module, args, output):
            h = output[0] if isinstance(output, tuple) else output
            if injection is not None and i in injection.layers:
                h = (
                    h
                    + torch.tensor(injection.mask, dtype=h.dtype)[None, :, None] * injection.vector
                )
            captured[i] = h
            return (h, *output[1:]) if isinstance(output, tuple) else h

        return hook

    for i, layer in enumerate(layers):
        handles.append(layer.register_forward_hook(make_hook(i)))
    try:
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([list(ids)])).logits[0, -1]
    finally:
        for h in handles:
            h.remove()
    resid = torch.stack([captured[i][0] for i in range(len(layers))])
    return torch.log_softmax(logits.float(), -1), resid


def reference_greedy(model, ids, injection, n_new):
    """Greedy decoding by full recomputation (no KV cache), injecting on the prompt mask and,
    if ``injection.generated``, on every generated position."""
    seq = list(ids)
    out = []
    for _ in range(n_new):
        mask = (
            list(injection.mask) + [injection.generated] * (len(seq) - len(ids))
            if injection
            else None
        )
        inj = (
            engine.Injection(vector=injection.vector, layers=injection.layers, mask=tuple(mask))
            if injection
            else None
        )
        logprobs, _ = reference_forward(model, seq, inj)
        nxt = int(logprobs.argmax())
        out.append(nxt)
        seq.append(nxt)
        if nxt in engine._eos_ids(model):
            break
    return out


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_recorded_residuals_equal_hf_hidden_states(tiny_models, arch):
    model = tiny_models(arch)
    p = _prompt(model, "Tell me about dust")
    ids = model.tokenizer.convert_tokens_to_ids(["Yes", "No"])
    res = engine.forward(model, [p.input_ids], [None], answer_ids=ids, record=True)
    with torch.no_grad():
        out = model.hf(input_ids=torch.tensor([p.input_ids]), output_hidden_states=True)
    # hidden_states[L + 1] is block L's output, except the last, which HF returns after the
    # final norm.
    for layer in range(model.n_layers - 1):
        assert torch.equal(res.resid[0, layer], out.hidden_states[layer + 1][0].to(torch.float16))
    # answer log-probs are the model's own (soft-capped, where the family caps) logits
    expected = torch.log_softmax(out.logits[0, -1].float(), -1)[ids]
    torch.testing.assert_close(res.answer_logprobs[0], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2"])
def test_injection_matches_plain_hook_reference(tiny_models, arch):
    model = tiny_models(arch)
    p = _prompt(model, "Ok, let's get started.\n\nTrial 1: anything?")
    inj = engine.Injection(
        vector=_vec(model, 1), layers=(1,), mask=Window.from_marker("\n\nTrial 1").resolve(p)
    )
    ids = list(range(len(model.tokenizer)))[:20]
    res = engine.forward(model, [p.input_ids], [inj], answer_ids=ids, record=True)
    ref_lp, ref_resid = reference_forward(model, p.input_ids, inj)
    torch.testing.assert_close(res.answer_logprobs[0], ref_lp[ids], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        res.resid[0].float(), ref_resid.to(torch.float16).float(), atol=1e-2, rtol=1e-3
    )


def test_strength_zero_is_bitwise_baseline(tiny):
    p = _prompt(tiny, "Do you detect an injected thought?")
    ids = [4, 5, 6]
    zero = engine.Injection(vector=_vec(tiny, 2) * 0.0, layers=(1,), mask=(True,) * len(p))
    base = engine.forward(tiny, [p.input_ids], [None], answer_ids=ids, record=True)
    z = engine.forward(tiny, [p.input_ids], [zero], answer_ids=ids, record=True)
    assert torch.equal(base.answer_logprobs, z.answer_logprobs)
    assert torch.equal(base.resid, z.resid)


def test_positions_before_window_and_layers_before_L_unchanged(tiny):
    p = _prompt(tiny, "Ok, let's get started.\n\nTrial 1: Do you detect it?")
    mask = Window.from_marker("\n\nTrial 1").resolve(p)
    first = mask.index(True)
    layer = 1
    inj = engine.Injection(vector=_vec(tiny, 3), layers=(layer,), mask=mask)
    base = engine.forward(tiny, [p.input_ids], [None], answer_ids=[4], record=True).resid[0]
    steered = engine.forward(tiny, [p.input_ids], [inj], answer_ids=[4], record=True).resid[0]
    assert torch.equal(steered[:layer], base[:layer])  # earlier layers untouched
    assert torch.equal(steered[:, :first], base[:, :first])  # earlier positions untouched (causal)
    assert not torch.equal(steered[layer, first:], base[layer, first:])  # and the window did change


def test_batched_equals_unbatched_with_left_padding(tiny):
    prompts = [
        _prompt(tiny, "short"),
        _prompt(tiny, "a much longer prompt about oceans and dust"),
        _prompt(tiny, "mid length one"),
    ]
    injections = [
        engine.Injection(vector=_vec(tiny, 4), layers=(0,), mask=(True,) * len(prompts[0])),
        None,
        engine.Injection(
            vector=_vec(tiny, 5), layers=(1, 2), mask=Window.span("length").resolve(prompts[2])
        ),
    ]
    ids = [4, 5, 6, 7]
    batched = engine.forward(
        tiny, [p.input_ids for p in prompts], injections, answer_ids=ids, record=True
    )
    width = batched.resid.shape[2]
    for i, (p, inj) in enumerate(zip(prompts, injections, strict=True)):
        single = engine.forward(tiny, [p.input_ids], [inj], answer_ids=ids, record=True)
        torch.testing.assert_close(
            batched.answer_logprobs[i], single.answer_logprobs[0], atol=1e-4, rtol=1e-4
        )
        torch.testing.assert_close(
            batched.resid[i, :, width - len(p) :].float(),
            single.resid[0].float(),
            atol=2e-2,
            rtol=1e-3,
        )
        assert not batched.resid[i, :, : width - len(p)].any()  # padding stored as zeros


def test_prompt_only_window_equals_kv_cache_protocol(tiny):
    """vgel's protocol — steer while turn 1 fills the KV cache, then run turn 2 unsteered on that
    cache — equals one forward pass with the injection masked to turn 1."""
    messages = [
        {"role": "user", "content": "Think."},
        {"role": "assistant", "content": "{ }"},
        {"role": "user", "content": "Do you detect it?"},
    ]
    text = render_chat(tiny.tokenizer, messages)
    turn1 = render_chat(tiny.tokenizer, messages[:2], continue_final=False).removesuffix(
        "<|im_start|>assistant\n"
    )
    p = tokenize(tiny.tokenizer, text)
    mask = Window.before(len(turn1)).resolve(p)
    k = sum(mask)
    vec = _vec(tiny, 6)
    single = engine.forward(
        tiny,
        [p.input_ids],
        [engine.Injection(vector=vec, layers=(1,), mask=mask)],
        answer_ids=list(range(30)),
    )
    layer = get_module(tiny.hf, tiny.arch.layers)[1]
    handle = layer.register_forward_hook(lambda m, a, o: o + vec)
    with torch.no_grad():
        try:
            cache = tiny.hf(
                input_ids=torch.tensor([p.input_ids[:k]]), use_cache=True
            ).past_key_values
        finally:
            handle.remove()
        logits = tiny.hf(input_ids=torch.tensor([p.input_ids[k:]]), past_key_values=cache).logits[
            0, -1
        ]
    torch.testing.assert_close(
        single.answer_logprobs[0], torch.log_softmax(logits, -1)[:30], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("generated", [False, True])
def test_generation_with_kv_cache_equals_recomputation(tiny, generated):
    p = _prompt(tiny, "Trial 1: Do you detect an injected thought?")
    inj = engine.Injection(
        vector=_vec(tiny, 7, 2.0),
        layers=(1,),
        mask=Window.from_marker("Trial 1").resolve(p),
        generated=generated,
    )
    res = engine.generate(tiny, [p.input_ids], [inj], max_new_tokens=8, temperature=0.0, seed=0)
    got = [t for t in res.generated[0].tolist() if t >= 0]
    assert got == reference_greedy(tiny, p.input_ids, inj, 8)


def test_generation_batched_rows_match_single_and_seed_reproduces(tiny):
    prompts = [_prompt(tiny, "Hi"), _prompt(tiny, "Tell me a long story about the sea")]
    injections = [
        engine.Injection(
            vector=_vec(tiny, 8), layers=(2,), mask=(True,) * len(prompts[0]), generated=True
        ),
        None,
    ]
    ids = [p.input_ids for p in prompts]
    greedy = engine.generate(tiny, ids, injections, max_new_tokens=6, temperature=0.0, seed=0)
    for i in range(2):
        single = engine.generate(
            tiny, [ids[i]], [injections[i]], max_new_tokens=6, temperature=0.0, seed=0
        )
        n = int((single.generated[0] >= 0).sum())
        assert torch.equal(greedy.generated[i, :n], single.generated[0, :n])
    a = engine.generate(tiny, ids, injections, max_new_tokens=6, temperature=1.0, seed=123)
    b = engine.generate(tiny, ids, injections, max_new_tokens=6, temperature=1.0, seed=123)
    assert torch.equal(a.generated, b.generated)
    state = torch.get_rng_state()
    engine.generate(tiny, ids, injections, max_new_tokens=2, temperature=1.0, seed=5)
    assert torch.equal(state, torch.get_rng_state())  # the caller's RNG is untouched


def test_last_token_resid_matches_hidden_states(tiny):
    prompts = [_prompt(tiny, "Tell me about dust"), _prompt(tiny, "Tell me about oceans and more")]
    acts = engine.last_token_resid(tiny, [p.input_ids for p in prompts])
    for i, p in enumerate(prompts):
        with torch.no_grad():
            hs = tiny.hf(
                input_ids=torch.tensor([p.input_ids]), output_hidden_states=True
            ).hidden_states
        for layer in range(tiny.n_layers - 1):
            torch.testing.assert_close(acts[i, layer], hs[layer + 1][0, -1], atol=1e-4, rtol=1e-4)


def test_wrong_vector_size_is_refused(tiny):
    from mechintro.errors import MechintroError

    p = _prompt(tiny, "hi")
    bad = engine.Injection(vector=torch.zeros(7), layers=(0,), mask=(True,) * len(p))
    with pytest.raises(MechintroError, match="d_model"):
        engine.forward(tiny, [p.input_ids], [bad], answer_ids=[4])


def _shared_batch(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(5, 100, (50,), generator=g).tolist()
    prompts = [base + torch.randint(5, 100, (10,), generator=g).tolist() for _ in range(4)]
    vec = torch.randn(model.d_model, generator=g)
    mask = (False,) * 52 + (True,) * 8
    injections = [
        engine.Injection(vector=vec, layers=(1,), mask=mask),
        None,
        engine.Injection(vector=2 * vec, layers=(0, 2), mask=mask),
        None,
    ]
    return prompts, injections


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_reuse_gives_the_same_numbers(tiny_models, arch):
    """The prefix's keys and values computed once give what a full pass gives, residuals too."""
    model = tiny_models(arch)
    prompts, injections = _shared_batch(model)
    assert engine.shared_prefix(prompts, injections) == 50
    full = engine.forward(model, prompts, injections, answer_ids=[10, 11, 12], record=True)
    for _ in range(2):  # the second call takes the prefix from the cache
        reused = engine.forward(
            model, prompts, injections, answer_ids=[10, 11, 12], record=True, prefix=50
        )
        assert torch.allclose(reused.answer_logprobs, full.answer_logprobs, atol=1e-5)
        assert reused.resid.shape == full.resid.shape
        assert (
            float((reused.resid.float() - full.resid.float()).abs().max()) <= 4e-3
        )  # float16 rounding
    unrecorded = engine.forward(model, prompts, injections, answer_ids=[10, 11, 12], prefix=30)
    assert torch.allclose(unrecorded.answer_logprobs, full.answer_logprobs, atol=1e-5)
    with pytest.raises(AssertionError, match="prefix reuse needs"):
        engine.forward(
            model, prompts, injections, answer_ids=[10], prefix=53
        )  # an injection starts at 52


def test_shared_prefix_stops_at_the_first_difference_injection_or_last_token():
    same = [[1, 2, 3, 4, 5]] * 3
    assert engine.shared_prefix(same, [None] * 3) == 4  # one token is always left to run
    assert engine.shared_prefix([[1, 2, 3, 4], [1, 2, 9, 4]], [None, None]) == 2
    assert (
        engine.shared_prefix([[1, 2, 3], [1, 2, 3, 4]], [None, None]) == 0
    )  # unequal lengths would need padding
    inj = engine.Injection(vector=torch.zeros(4), layers=(0,), mask=(False, True, True, True, True))
    assert engine.shared_prefix(same, [None, inj, None]) == 1


def test_the_prefix_cache_belongs_to_one_model(tiny_models):
    from tests.conftest import build_tiny

    a, b = tiny_models("llama"), build_tiny("llama", seed=1)
    prompts, injections = _shared_batch(a)
    for model in (a, b, a):
        reused = engine.forward(model, prompts, injections, answer_ids=[10, 11], prefix=50)
        full = engine.forward(model, prompts, injections, answer_ids=[10, 11])
        assert torch.allclose(reused.answer_logprobs, full.answer_logprobs, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_shared_prefix_reuse_in_generation_samples_the_same_tokens(tiny_models, arch):
    model = tiny_models(arch)
    prompts, injections = _shared_batch(model)
    injections[0] = engine.Injection(
        vector=injections[0].vector, layers=(1,), mask=injections[0].mask, generated=True
    )
    for temperature in (0.0, 1.0):
        full = engine.generate(
            model,
            prompts,
            injections,
            max_new_tokens=6,
            temperature=temperature,
            seed=3,
            record=True,
        )
        reused = engine.generate(
            model,
            prompts,
            injections,
            max_new_tokens=6,
            temperature=temperature,
            seed=3,
            record=True,
            prefix=50,
        )
        assert torch.equal(reused.generated, full.generated)
        assert float((reused.resid.float() - full.resid.float()).abs().max()) <= 4e-3


def test_the_deprecated_entry_points_warn_and_are_run_batch(tiny):
    """``forward``/``generate`` (and their ``patched_*`` names) warn, naming ``run_batch``, and
    return exactly what ``run_batch`` does with the same rows."""
    ids = [[5, 6, 7, 8], [9, 10, 11, 12]]
    add = engine.Add(vector=torch.ones(tiny.d_model), layers=(1,), mask=(False, True, True, True))
    with pytest.warns(DeprecationWarning, match=r"forward is deprecated: call run_batch"):
        old = engine.patched_forward(tiny, ids, [add, None], answer_ids=[1, 2])
    new = engine.run_batch(tiny, ids, [[add], []], [engine.NextToken((1, 2))])
    assert torch.equal(old.answer_logprobs, new.answer_logprobs)
    with pytest.warns(DeprecationWarning, match=r"generate is deprecated: call run_batch"):
        old = engine.generate(tiny, ids, [None, add], max_new_tokens=3, temperature=0.0, seed=0)
    greedy = engine.Generate(3, temperature=0.0, seed=0)
    assert torch.equal(old.generated, engine.run_batch(tiny, ids, [[], [add]], [greedy]).generated)
