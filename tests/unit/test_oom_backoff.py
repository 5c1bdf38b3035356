"""A batch that runs out of device memory is split and retried; the run equals the unsplit one.

The out-of-memory error is simulated: ``engine.run_batch`` raises ``torch.OutOfMemoryError``
(what CUDA raises) for any batch of more than ``limit`` prompts, so the runner's back-off
(:func:`mechintro.runner._backing_off`) is exercised on CPU on the real code path.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mechintro import engine, runner, runs
from mechintro.errors import MechintroError
from mechintro.prompts import Window, render_chat, tokenize


def _trials(model, n: int):
    """``n`` injected trials with prompts of different lengths (so the parts of a split batch
    are padded to different widths)."""
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    trials = []
    for i in range(n):
        text = "Trial 1: " + "word " * (i % 3) + "anything?"
        p = tokenize(
            model.tokenizer, render_chat(model.tokenizer, [{"role": "user", "content": text}])
        )
        trials.append(
            runner.Trial(
                prompt=p,
                condition="injected",
                concept="c",
                strength=1.0 + i,
                inject_layer=1,
                inject_layer_end=2,
                vector=v,
                window=Window.from_marker("Trial 1", generated=True),
            )
        )
    return trials


@pytest.fixture
def oom_above(monkeypatch):
    """Make ``engine.run_batch`` raise CUDA's out-of-memory error for batches over a size; count
    the calls that ran."""
    calls: list[int] = []

    def arm(limit: int) -> list[int]:
        real = engine.run_batch

        def run_batch(model, prompts, *args, **kwargs):
            if len(prompts) > limit:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            calls.append(len(prompts))
            return real(model, prompts, *args, **kwargs)

        monkeypatch.setattr(engine, "run_batch", run_batch)
        return calls

    return arm


MODES = {
    "logits": dict(mode="logits", answers=runner.YES_NO, record=True),
    "generate": dict(
        mode="generate", generation=runner.Generation(max_new_tokens=12, temperature=1.0)
    ),
    "greedy-resid": dict(
        mode="generate",
        generation=runner.Generation(max_new_tokens=8, temperature=0.0),
        record=True,
    ),
}


@pytest.mark.parametrize("name", list(MODES))
def test_split_batches_equal_the_unsplit_run(tiny, tmp_path, oom_above, name):
    kw = dict(config={"oom": name}, batch_size=5, seed=3, **MODES[name])
    trials = _trials(tiny, 7)
    whole = runs.open_run(runner.execute(tiny, trials, tmp_path / "whole.zarr", **kw)).load()
    calls = oom_above(2)
    split = runs.open_run(runner.execute(tiny, trials, tmp_path / "split.zarr", **kw)).load()
    # batch 0 (5 trials) → 2 + 3 → 2 + 1 + 2; batch 1 (2 trials) fits
    assert calls == [2, 1, 2, 2]
    assert split.attrs["complete"] == "true"
    for var in ("answer_logprobs", "response_ids", "response", "resid", "nonfinite"):
        if var not in whole:
            continue
        a, b = whole[var].values, split[var].values
        if a.dtype == np.float16:  # one float16 step: float32 rounding of another batch shape
            np.testing.assert_allclose(b, a, rtol=2**-10, atol=1e-5, err_msg=var)
        elif a.dtype.kind == "f":
            np.testing.assert_allclose(b, a, rtol=0, atol=1e-5, err_msg=var)
        else:
            np.testing.assert_array_equal(b, a, err_msg=var)
    assert runs.verify(tmp_path / "split.zarr").ok


def test_sampled_parts_draw_the_whole_batch_stream(tiny, oom_above):
    """Without the row offset a part would sample from its own stream: the tokens differ."""
    trials = _trials(tiny, 4)
    prompts = [t.prompt.input_ids for t in trials]
    whole = engine.run_batch(tiny, prompts, [[]] * 4, [engine.Generate(12, 1.0, seed=9)])
    part = engine.run_batch(
        tiny, prompts[2:], [[]] * 2, [engine.Generate(12, 1.0, seed=9, rows_of=(2, 4))]
    )
    alone = engine.run_batch(tiny, prompts[2:], [[]] * 2, [engine.Generate(12, 1.0, seed=9)])
    assert torch.equal(part.generated, whole.generated[2:, : part.generated.shape[1]])
    assert not torch.equal(alone.generated, whole.generated[2:, : alone.generated.shape[1]])


def test_one_trial_that_does_not_fit_is_one_line(tiny, tmp_path, oom_above):
    oom_above(0)
    with pytest.raises(MechintroError, match="trial 0 alone does not fit in the device's memory"):
        runner.execute(
            tiny, _trials(tiny, 3), tmp_path / "r.zarr", config={"oom": 0}, mode="logits",
            answers=runner.YES_NO, batch_size=3,
        )  # fmt: skip
    # nothing was committed: the store exists (it holds the inputs) but no batch is done
    assert not runs.committed_mask(tmp_path / "r.zarr").any()
