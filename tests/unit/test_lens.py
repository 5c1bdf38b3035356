"""The logit lens over the vocabulary in chunks: the same numbers as the full unembedding (the
lens as it was before chunking, written out here), for chunk sizes that do and do not divide the
vocabulary, with and without a final-logit softcap, and on a model whose unembedding is
offloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechintro import analysis as an
from mechintro.analysis.lens import word_token
from mechintro.arch import get_module, text_config
from mechintro.errors import MechintroError


def _run(model, tmp_path):
    from mechintro.experiments import detection_logits
    from mechintro.runs import open_run
    from mechintro.vectors import concept_vectors

    words = ["Dust", "Oceans", "Bread"]
    vectors = concept_vectors(model, words, baseline=["Sand", "Clay", "Rain"])
    config = detection_logits.Config(
        concepts=tuple(words), layers=("1",), strengths=(4.0,), record_resid=True, batch_size=4
    )
    detection_logits.run(config, tmp_path / "run.zarr", model=model, vectors=vectors)
    return open_run(tmp_path / "run.zarr")


def _unchunked(ds, model) -> np.ndarray:
    """The lens with the whole ``(trial, vocab)`` logits at once: log P(yes), log P(no),
    log P(concept)."""
    norm, unembed = (
        get_module(model.hf, model.arch.final_norm),
        get_module(model.hf, model.arch.unembed),
    )
    cap = getattr(text_config(model.hf.config), "final_logit_softcapping", None)
    answers = torch.tensor([int(x) for x in ds.answer_id.values])
    yes = torch.from_numpy(ds.answer_label.values == "yes")
    concept = torch.tensor([word_token(model, str(c)) if str(c) else 0 for c in ds.concept.values])
    out = []
    for layer in ds.layer.values:
        h = torch.from_numpy(ds.resid.sel(layer=layer).values[:, -1]).float()
        with torch.no_grad():
            logits = unembed(norm(h)).float()
        if cap:
            logits = torch.tanh(logits / cap) * cap
        logp = torch.log_softmax(logits, -1)
        lp_c = logp.gather(1, concept[:, None])[:, 0]
        lp_c[torch.tensor([not str(c) for c in ds.concept.values])] = float("nan")
        out.append(
            torch.stack(
                [
                    torch.logsumexp(logp[:, answers][:, yes], -1),
                    torch.logsumexp(logp[:, answers][:, ~yes], -1),
                    lp_c,
                ],
                -1,
            )
        )
    return torch.stack(out, 1).double().numpy()


@pytest.mark.parametrize("arch", ["llama", "gemma2"])  # gemma2: a final-logit softcap
def test_chunked_lens_equals_the_full_unembedding(tiny_models, arch, tmp_path):
    model = tiny_models(arch)
    ds = _run(model, tmp_path)
    ref = _unchunked(ds, model)
    assert (
        np.isfinite(ref[..., :2]).all() and np.isnan(ref[..., 2]).any()
    )  # controls have no concept
    vocab = model.d_vocab
    for chunk in (7, 64, vocab, 10 * vocab):
        lens = an.logit_lens(ds, model, chunk=chunk)
        got = np.stack(
            [np.log(lens.p_yes.values), np.log(lens.p_no.values), np.log(lens.p_concept.values)], -1
        )
        np.testing.assert_allclose(
            got, ref, atol=2e-5, rtol=0, equal_nan=True, err_msg=f"chunk {chunk}"
        )
        np.testing.assert_allclose(
            lens.logit_diff.values, ref[..., 0] - ref[..., 1], atol=4e-5, rtol=0
        )
    with pytest.raises(MechintroError, match="chunk must be at least 1"):
        an.logit_lens(ds, model, chunk=0)


def test_lens_on_a_model_with_its_unembedding_on_disk(tiny, tmp_path):
    """The final norm and the unembedding are brought in from the offload for the lens (accelerate's
    hook), and the numbers are the in-memory model's."""
    from transformers import AutoModelForCausalLM

    from mechintro.models import from_hf

    ds = _run(tiny, tmp_path)
    tiny.hf.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers": "cpu",
        "model.norm": "disk",
        "model.rotary_emb": "cpu",
        "lm_head": "disk",
    }
    hf = AutoModelForCausalLM.from_pretrained(
        tmp_path / "ckpt", device_map=device_map, dtype=torch.float32
    )
    placed = from_hf(hf, tiny.tokenizer, name="placed")
    assert placed.weights_sha256 == tiny.weights_sha256 and hf.lm_head.weight.device.type == "meta"
    a, b = an.logit_lens(ds, tiny, chunk=50), an.logit_lens(ds, placed, chunk=50)
    np.testing.assert_allclose(a.logit_diff.values, b.logit_diff.values, atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        a.p_concept.values, b.p_concept.values, atol=1e-6, rtol=0, equal_nan=True
    )
    assert hf.lm_head.weight.device.type == "meta"  # offloaded again afterwards
