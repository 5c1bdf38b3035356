"""The worked example of a new readout (docs/extending.md): TopTokens stores the k likeliest next
tokens, equal to a plain forward pass's, and the store expects what it declares."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mechintro import runner, runs
from mechintro.errors import MechintroError
from mechintro.experiments._top_tokens import TopTokens
from mechintro.prompts import render_chat, tokenize


def _trials(model, texts):
    return [
        runner.Trial(
            prompt=tokenize(
                model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": t}])
            ),
            condition="none",
        )
        for t in texts
    ]


def test_top_tokens_are_a_plain_forward_passs(tiny, tmp_path):
    texts = ["Hi", "Is this a longer question?", "Name a colour.", "ok"]
    trials = _trials(tiny, texts)
    out = runner.execute(tiny, trials, tmp_path / "t.zarr", config={"k": 4},
                         readouts=[TopTokens(k=4)], batch_size=3)  # fmt: skip
    ds = runs.open_run(out)
    names = [r["readout"] for r in json.loads(ds.attrs["readouts"])]
    assert names == ["top_tokens"] and "answer_logprobs" not in ds
    assert ds.top_token_ids.dims == ("trial", "rank") and ds.top_token_ids.shape == (4, 4)
    for i, t in enumerate(trials):
        with torch.no_grad():
            logits = tiny.hf(torch.tensor([t.prompt.input_ids])).logits[0, -1].float()
        want, ids = logits.log_softmax(-1).topk(4)
        np.testing.assert_array_equal(ds.top_token_ids.values[i], ids.numpy())
        np.testing.assert_allclose(ds.top_logprobs.values[i], want.numpy(), atol=1e-4)
    assert runs.verify(out).ok
    runner.execute(tiny, trials, out, config={"k": 4}, readouts=[TopTokens(k=4)], batch_size=3)
    with pytest.raises(MechintroError, match="missing variable 'top_logprobs'"):
        runs.validate(ds.drop_vars("top_logprobs"))


def test_a_bad_k_is_one_line_before_any_file(tiny, tmp_path):
    with pytest.raises(MechintroError, match="give a positive number"):
        TopTokens(k=0)
    with pytest.raises(MechintroError, match="give fewer"):
        runner.execute(tiny, _trials(tiny, ["Hi"]), tmp_path / "t.zarr", config={"k": 1},
                       readouts=[TopTokens(k=10**9)])  # fmt: skip
    assert not (tmp_path / "t.zarr").exists()
