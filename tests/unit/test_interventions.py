"""Interventions and readouts as objects (:func:`mechintro.engine.run_batch`): each intervention
plans its own edits, the traces apply one edit expression; the same numbers as the engine's
earlier entry points, any mix in one batch, and one-line refusals of what a batch cannot hold."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mechintro import engine
from mechintro.errors import MechintroError


def _batch(tiny):
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(5, 90, (n,), generator=g).tolist() for n in (16, 11)]
    vec, u = torch.randn(tiny.d_model, generator=g), torch.randn(tiny.d_model, generator=g)
    return prompts, vec, u


def test_interventions_and_readouts_as_objects_give_the_engine_numbers(tiny):
    """Add / Ablate / Patch with NextToken / Generate / Resid give exactly what the earlier entry
    points (forward, generate, patched_forward) give."""
    prompts, vec, u = _batch(tiny)
    add = engine.Add(vec, (1,), (False,) * 6 + (True,) * 10, strength=3.0, generated=True)
    same = engine.Injection(vector=vec * 3.0, layers=(1,), mask=add.mask, generated=True)
    ablate = engine.Ablate(u, (2,), to=0.5)
    rows = [[add, ablate], [ablate]]
    got = engine.run_batch(tiny, prompts, rows, [engine.NextToken((3, 4, 5)), engine.Resid()])
    want = engine.forward(
        tiny, prompts, [same, None], answer_ids=[3, 4, 5], record=True, ablate={2: (u, 0.5)}
    )
    assert torch.equal(got.answer_logprobs, want.answer_logprobs)
    assert torch.equal(got.resid, want.resid)
    sampled = engine.run_batch(tiny, prompts, [[add], []], [engine.Generate(4, 1.0, seed=7)])
    direct = engine.generate(tiny, prompts, [same, None], max_new_tokens=4, temperature=1.0, seed=7)
    assert torch.equal(sampled.generated, direct.generated)
    patch = engine.Patch(vec[None], (3,), layer=1, mode="norm_matched_add", coefficient=2.0)
    as_add = engine.Patch(vec[None], (3,), layer=1, mode="add", coefficient=2.0)
    got = engine.run_batch(tiny, prompts, [[patch], []], [engine.NextToken((3, 4))])
    want = engine.patched_forward(tiny, prompts, [as_add, None], answer_ids=[3, 4])
    assert torch.equal(got.answer_logprobs, want.answer_logprobs)


def test_any_mix_of_interventions_shares_a_batch(tiny):
    """An added row, a patched row and a plain one in one batch (with residuals recorded, and in
    generation) read what each reads alone; a projection applies on generated tokens too."""
    prompts, vec, u = _batch(tiny)
    prompts.append(prompts[0][:9])
    add = engine.Add(vec, (0, 2), (True,) * 16, strength=2.0, generated=True)
    patch = engine.Patch(torch.stack([vec, -vec]), (2, 5), layer=1, mode="replace")
    rows = [[add], [patch], []]
    readouts = [engine.NextToken(tuple(range(tiny.d_vocab))), engine.Resid(torch.float32)]
    together = engine.run_batch(tiny, prompts, rows, readouts)
    for i, (prompt, row) in enumerate(zip(prompts, rows, strict=True)):
        alone = engine.run_batch(tiny, [prompt], [row], readouts)
        torch.testing.assert_close(together.answer_logprobs[i], alone.answer_logprobs[0])
        n = len(prompt)
        torch.testing.assert_close(together.resid[i, :, -n:], alone.resid[0])
    greedy = [engine.Generate(5, 0.0), engine.Resid(torch.float32, last=True)]
    sampled = engine.run_batch(tiny, prompts, rows, greedy)
    torch.testing.assert_close(sampled.resid, together.resid[:, :, -1:])
    plain = engine.last_token_resid(tiny, prompts)
    torch.testing.assert_close(plain[2], together.resid[2, :, -1])  # the unedited row
    first = together.answer_logprobs.argmax(-1)
    assert torch.equal(sampled.generated[:, 0], first)
    seen = []  # the stream along u entering block 2, after block 1's projection
    unit = u / u.norm()
    block = tiny.hf.model.layers[2]
    handle = block.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0] @ unit))
    try:
        engine.run_batch(tiny, prompts[:1], [[engine.Ablate(u, (1,))]], [engine.Generate(3, 0.0)])
    finally:
        handle.remove()
    assert [len(s) for s in seen] == [16, 1, 1]  # the prompt pass, then each generated token
    assert all(float(s.abs().max()) < 1e-5 for s in seen)


def test_what_a_batch_cannot_hold_is_one_line(tiny):
    prompts, vec, u = _batch(tiny)
    add = engine.Add(vec, (1,), (False,) * 6 + (True,) * 10)
    ablate = engine.Ablate(u, (2,))
    for rows, readouts, match in (
        ([[add, add], []], [engine.NextToken((3,))], "both add at layer 1"),
        ([[ablate], []], [engine.NextToken((3,))], "whole batch"),
        ([[], []], [engine.Generate(2), engine.NextToken((3,))], "one NextToken or one"),
        ([[]], [engine.NextToken((3,))], "one list of interventions"),
        ([[engine.Ablate(u[:5], (1,))], []], [engine.NextToken((3,))], "ablation direction"),
        ([[engine.Add(vec, (9,), (True,) * 16)], []], [engine.NextToken((3,))], "layer"),
    ):
        with pytest.raises(MechintroError, match=match):
            engine.run_batch(tiny, prompts, rows, readouts)
    for edit, match in (
        (engine.Edit(add=torch.ones(3), weights=torch.ones(16)), "add of shape \\(3,\\)"),
        (engine.Edit(add=vec), "only some of add, weights"),
    ):
        broken = _Fixed({1: edit})
        with pytest.raises(MechintroError, match=f"_Fixed's edit at layer 1 .*{match}"):
            engine.run_batch(tiny, prompts, [[broken], []], [engine.NextToken((3,))])


@dataclasses.dataclass(frozen=True)
class _Fixed:
    """An intervention whose edits are given (to test what the engine does with bad ones)."""

    planned: dict

    def edits(self, model, n_tokens):
        return self.planned


def test_the_edit_function_reaches_a_server_that_has_no_mechintro(tmp_path):
    """The trace bodies call :func:`mechintro.edit.apply`; nnsight ships that module by value, so
    a server without mechintro runs it. Simulated: nnsight's ``remote="local"`` with mechintro's
    editable-install finder removed and nnsight's automatic shipping of local packages off (as
    for a pip-installed mechintro) — and, as the control, a function of another mechintro module
    is refused there."""
    root = Path(__file__).resolve().parents[2]
    script = textwrap.dedent(
        f"""
        import dataclasses, sys
        sys.path.insert(0, {str(root)!r})
        sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in getattr(
            f, "__name__", type(f).__name__)]
        import nnsight, nnsight.ndif, torch
        nnsight.ndif._PULLED_ENV = True
        from tests.conftest import build_tiny
        from mechintro import engine
        from mechintro.arch import get_module, resid_of
        m = dataclasses.replace(build_tiny("llama"), remote="local")
        vec = torch.ones(m.d_model)
        rows = [[engine.Add(vec, (1,), (True,) * 4, generated=True), engine.Ablate(vec, (2,))]]
        engine.run_batch(m, [[5, 6, 7, 8]], rows, [engine.NextToken((3,))])
        engine.run_batch(m, [[5, 6, 7, 8]], rows, [engine.Generate(2, 0.0)])
        print("edits ran")
        layers = get_module(m.lm, m.arch.layers)
        try:
            with m.lm.trace(engine._pad(m, [[5, 6]]), remote="local"):
                x = nnsight.save(resid_of(layers[0].output).sum())
        except ModuleNotFoundError:
            print("control refused")
        """
    )
    path = tmp_path / "hidden.py"
    path.write_text(script)
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert "edits ran" in done.stdout, done.stderr[-3000:]
    assert "control refused" in done.stdout, done.stderr[-3000:]


def test_a_new_intervention_is_one_class(tiny, tmp_path):
    """``Scale`` (a per-position scale, added as the worked example of docs/extending.md) gives
    what a plain PyTorch forward hook multiplying those positions gives, is a no-op at factor 1,
    runs through the runner as a Trial's intervention and is part of the run's identity."""
    from mechintro import runner, runs
    from mechintro.interventions import Scale
    from mechintro.prompts import Prompt

    prompts, _, _ = _batch(tiny)
    scale = Scale(factors=(0.0, 2.5), positions=(3, 7), layer=1)
    vocab = engine.NextToken(tuple(range(tiny.d_vocab)))
    got = engine.run_batch(tiny, prompts, [[scale], []], [vocab]).answer_logprobs

    def hook(_module, _inputs, out):
        h = out[0] if isinstance(out, tuple) else out
        h[0, 3] *= 0.0
        h[0, 7] *= 2.5

    handle = tiny.hf.model.layers[1].register_forward_hook(hook)
    try:
        ids = torch.tensor([prompts[0]])
        want = torch.log_softmax(tiny.hf(input_ids=ids).logits[0, -1].float(), -1)
    finally:
        handle.remove()
    torch.testing.assert_close(got[0], want, atol=1e-5, rtol=1e-5)
    plain = engine.run_batch(tiny, prompts, [[], []], [vocab]).answer_logprobs
    one = Scale(factors=(1.0,), positions=(2,), layer=1)
    assert torch.equal(engine.run_batch(tiny, prompts, [[one], []], [vocab]).answer_logprobs, plain)
    with pytest.raises(MechintroError, match="outside the prompt"):
        engine.run_batch(tiny, prompts, [[Scale((1.0,), (40,), 1)], []], [vocab])

    prompt = Prompt(text="", input_ids=tuple(prompts[0]), offsets=((0, 0),) * len(prompts[0]))
    trials = [runner.Trial(prompt=prompt, condition=c, interventions=x) for c, x in
              (("scaled", (scale,)), ("plain", ()))]  # fmt: skip
    out = runner.execute(tiny, trials, tmp_path / "s.zarr", config={"t": 1}, mode="logits",
                         answers=runner.YES_NO)  # fmt: skip
    ds = runs.open_run(out)
    ids = [int(i) for i in ds.answer_id.values]
    torch.testing.assert_close(torch.from_numpy(ds.answer_logprobs.values[0]), got[0, ids])
    other = [dataclasses.replace(trials[0], interventions=(Scale((0.5, 2.5), (3, 7), 1),))]
    with pytest.raises(MechintroError, match="different setup"):
        runner.execute(tiny, other + trials[1:], out, config={"t": 1}, mode="logits",
                       answers=runner.YES_NO)  # fmt: skip
