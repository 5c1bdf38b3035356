"""Windows, concept vectors (against a manual computation), layer specs, statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechintro import stimuli
from mechintro.errors import MechintroError
from mechintro.prompts import Window, render_chat, tokenize
from mechintro.stats import bootstrap_mean_ci, cluster_bootstrap_weights, paired_auc, wilson
from mechintro.vectors import (
    concept_vectors,
    load_vectors,
    pca_center_direction,
    resolve_layers,
    save_vectors,
    unit_vector,
)


def test_window_from_marker_starts_on_double_newline(tiny):
    text = render_chat(tiny.tokenizer, stimuli.injected_thoughts_messages())
    p = tokenize(tiny.tokenizer, text)
    mask = Window.from_marker(stimuli.TRIAL_MARKER).resolve(p)
    first = mask.index(True)
    assert text[p.offsets[first][0] :].startswith("\n\nTrial 1")
    assert all(mask[first:]) and not any(mask[:first])


def test_window_span_before_and_errors(tiny):
    text = render_chat(
        tiny.tokenizer, [{"role": "user", "content": "Read: The cat sat. Then answer."}]
    )
    p = tokenize(tiny.tokenizer, text)
    span = Window.span("The cat sat.").resolve(p)
    assert (
        "".join(text[a:b] for (a, b), m in zip(p.offsets, span, strict=True) if m) == "The cat sat."
    )
    before = Window.before("Then").resolve(p)
    assert not any(before[before.index(False) :])
    with pytest.raises(MechintroError, match="does not occur"):
        Window.from_marker("Trial 7").resolve(p)
    with pytest.raises(MechintroError, match="entries"):
        Window.tokens([True, False]).resolve(p)


def test_render_chat_requires_template(tiny):
    import copy

    tok = copy.deepcopy(tiny.tokenizer)
    tok.chat_template = None
    with pytest.raises(MechintroError, match="no chat template"):
        render_chat(tok, [{"role": "user", "content": "hi"}])


def test_concept_vectors_equal_manual_lindsey_recipe(tiny):
    baseline = ["Desks", "Jackets", "Sand"]
    vec = concept_vectors(tiny, ["Dust", "Oceans"], baseline=baseline)
    assert vec.dims == ("concept", "layer", "d_model") and vec.shape == (
        2,
        tiny.n_layers,
        tiny.d_model,
    )

    def act(word):
        text = render_chat(
            tiny.tokenizer, [{"role": "user", "content": f"Tell me about {word.lower()}"}]
        )
        ids = tokenize(tiny.tokenizer, text).input_ids
        with torch.no_grad():
            hs = tiny.hf(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states
        return torch.stack(
            [hs[i + 1][0, -1] for i in range(tiny.n_layers - 1)]
        )  # last is post-norm

    mean = torch.stack([act(w) for w in baseline]).mean(0)
    manual = act("Dust") - mean
    np.testing.assert_allclose(
        vec.sel(concept="Dust").values[:-1], manual.numpy(), atol=1e-4, rtol=1e-4
    )
    assert np.allclose(vec.vector_norm.values, np.linalg.norm(vec.values, axis=-1))
    rescaled = unit_vector(vec, "Dust", 1, "resid_norm")
    assert float(rescaled.norm()) == pytest.approx(float(vec.resid_norm.sel(layer=1)), rel=1e-5)


def test_vectors_roundtrip_and_mismatch(tiny, tiny_models, tmp_path):
    vec = concept_vectors(tiny, ["Dust"], baseline=["Sand", "Clay"])
    path = save_vectors(vec, tmp_path / "v.zarr")
    back = load_vectors(path, tiny)
    np.testing.assert_array_equal(back.values, vec.values)
    with pytest.raises(MechintroError, match="already exists"):
        save_vectors(vec, path)
    with pytest.raises(MechintroError, match="not on"):
        load_vectors(path, tiny_models("qwen2"))
    (tmp_path / "junk.zarr").write_text("not a store")
    with pytest.raises(MechintroError, match="not a mechintro vectors store"):
        load_vectors(tmp_path / "junk.zarr")


def test_pca_center_recovers_planted_direction():
    g = torch.Generator().manual_seed(0)
    d, pairs = 32, 40
    planted = torch.randn(d, generator=g)
    planted /= planted.norm()
    base = torch.randn(pairs, 1, d, generator=g) * 3
    scale = 1 + torch.rand(pairs, 1, 1, generator=g)
    noise = lambda: torch.randn(pairs, 1, d, generator=g) * 0.1  # noqa: E731
    pos, neg = base + scale * planted + noise(), base - scale * planted + noise()
    found = pca_center_direction(pos, neg)[0]
    assert float(found @ planted) > 0.99  # recovered, with the sign of the positives


@pytest.mark.parametrize(
    ("specs", "expected"),
    [(["0.5"], [15]), ([12, "3"], [12, 3]), (["-1"], [29]), ([0.34, "0.34"], [10])],
)
def test_resolve_layers(specs, expected):
    assert resolve_layers(specs, 30) == expected


@pytest.mark.parametrize("bad", [["30"], ["1.0"], ["abc"], ["nan"], []])
def test_resolve_layers_rejects(bad):
    with pytest.raises(MechintroError):
        resolve_layers(bad, 30)


def test_wilson_and_bootstrap():
    lo, hi = wilson(8, 10)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # textbook values
    assert all(np.isnan(x) for x in wilson(0, 0))
    mean, lo, hi = bootstrap_mean_ci(np.arange(100.0), seed=1)
    assert mean == 49.5 and lo < 49.5 < hi and 40 < lo and hi < 60
    # cluster bootstrap: one cluster with all the variance widens the interval
    values = [0.0] * 10 + [1.0] * 10
    _, lo_c, hi_c = bootstrap_mean_ci(values, clusters=["a"] * 10 + ["b"] * 10, seed=1)
    _, lo_i, hi_i = bootstrap_mean_ci(values, seed=1)
    assert hi_c - lo_c > hi_i - lo_i


def test_contrastive_and_model_contrast_vectors(tiny, tiny_models):
    from mechintro.vectors import contrastive_vector, model_contrast_vector

    same = contrastive_vector(
        tiny, ["Hi! How are you?"], ["Hi! How are you?"], name="none", chat=False
    )
    assert np.abs(same.values).max() == 0
    caps = contrastive_vector(
        tiny, ["HI! HOW ARE YOU?"], ["Hi! How are you?"], name="caps", chat=False
    )
    assert caps.dims == ("concept", "layer", "d_model") and caps.vector_norm.values.min() > 0
    assert (
        np.abs(model_contrast_vector(tiny, tiny, ["Tell me a joke"], name="self").values).max() == 0
    )
    other = tiny_models("qwen2")
    assert (
        model_contrast_vector(tiny, other, ["Tell me a joke"], name="swap").vector_norm.values.min()
        > 0
    )
    import transformers as tf

    from mechintro.models import from_hf

    narrow = tf.LlamaForCausalLM(
        tf.LlamaConfig(
            vocab_size=len(tiny.tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    with pytest.raises(MechintroError, match="does not match"):
        model_contrast_vector(
            tiny, from_hf(narrow, tiny.tokenizer, name="narrow"), ["x"], name="bad"
        )


def test_paired_auc_counts_pairs_within_a_block_only():
    # block a: mostly true, scores high; block b: mostly false, scores low. Within each block the
    # scores carry nothing (ties); pairs across blocks alone make the scores look informative.
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0], bool)
    blocks = np.array(list("aaaabbbb"))
    scores = np.array([5.0, 5, 5, 5, -5, -5, -5, -5])
    weights = cluster_bootstrap_weights(np.arange(8), 200, seed=0)
    auc, lo, hi = paired_auc(scores, y, blocks, weights)
    assert auc == 0.5 and lo == hi == 0.5
    pooled, _, _ = paired_auc(scores, y, np.zeros(8), weights)
    assert pooled == 0.75  # what one AUC over all pairs would have reported
    scores = np.where(y, 1.0, 0.0) + np.where(blocks == "a", 10, -10)
    assert paired_auc(scores, y, blocks, weights)[0] == 1.0
    assert np.isnan(paired_auc(scores, np.ones(8, bool), blocks, weights)[0])
    assert (
        cluster_bootstrap_weights(np.array(list("aabb")), 50, seed=1).sum(1).tolist() == [4.0] * 50
    )
