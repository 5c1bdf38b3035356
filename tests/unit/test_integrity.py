"""Non-finite values are flagged per trial; generation runs reproduce; verify catches damage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr

from mechintro import runner, runs
from mechintro.cli import main
from mechintro.prompts import Window, render_chat, tokenize


def _trials(model, strengths):
    p = tokenize(
        model.tokenizer,
        render_chat(model.tokenizer, [{"role": "user", "content": "Trial 1: anything?"}]),
    )
    v = torch.randn(model.d_model, generator=torch.Generator().manual_seed(0))
    return [
        runner.Trial(
            prompt=p,
            condition="injected",
            concept="c",
            strength=s,
            inject_layer=1,
            inject_layer_end=2,
            vector=v,
            window=Window.from_marker("Trial 1", generated=True),
        )
        for s in strengths
    ]


def test_extreme_strength_is_flagged_not_a_crash(tiny, tmp_path):
    out = runner.execute(
        tiny,
        _trials(tiny, [1.0, 1e6, 2.0]),
        tmp_path / "r.zarr",
        config={"t": 1},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=3,
        record=True,
    )
    ds = runs.open_run(out)
    assert ds.sizes["trial"] == 3 and ds.attrs["complete"] == "true"
    assert ds.nonfinite.values.tolist() == [False, True, False]  # float16 overflow of the residual
    report = runs.verify(out)
    assert report.ok and any("flagged non-finite" in n for n in report.notes)


def test_generation_same_seed_same_text(tiny, tmp_path):
    kw = dict(
        config={"t": 2},
        mode="generate",
        generation=runner.Generation(max_new_tokens=10, temperature=1.0),
        batch_size=2,
        seed=3,
    )
    trials = _trials(tiny, [0.0, 4.0, 8.0])
    a = runs.open_run(runner.execute(tiny, trials, tmp_path / "a.zarr", **kw)).load()
    b = runs.open_run(runner.execute(tiny, trials, tmp_path / "b.zarr", **kw)).load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.response.values.tolist() == b.response.values.tolist() and any(
        len(r) for r in a.response.values
    )
    c = runs.open_run(
        runner.execute(tiny, trials, tmp_path / "c.zarr", **(kw | {"seed": 4}))
    ).load()
    assert not np.array_equal(a.response_ids.values, c.response_ids.values)


def test_verify_detects_and_repairs_damage(tiny, tmp_path, capsys):
    out = runner.execute(
        tiny,
        _trials(tiny, [1.0, 2.0, 3.0, 4.0]),
        tmp_path / "r.zarr",
        config={"t": 3},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=2,
        record=True,
    )
    assert main(["verify", str(out)]) == 0
    # damage one committed trial's stored log-probabilities behind mechintro's back
    xr.Dataset(
        {"answer_logprobs": (("trial", "answer"), np.zeros((2, 4), dtype=np.float32))}
    ).to_zarr(out, region={"trial": slice(2, 4)}, consolidated=False)
    assert main(["verify", str(out)]) == 1
    assert "no longer match their digests" in capsys.readouterr().out
    assert main(["verify", "--repair", str(out)]) == 1
    assert runs.committed_mask(out).tolist() == [True, True, False, False]
    runner.execute(
        tiny,
        _trials(tiny, [1.0, 2.0, 3.0, 4.0]),
        out,
        config={"t": 3},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=2,
        record=True,
    )  # the same command recomputes them
    assert main(["verify", str(out)]) == 0


def test_resume_with_recording_switched_is_refused(tiny, tmp_path):
    import pytest

    from mechintro.errors import MechintroError

    kw = dict(config={"t": 4}, mode="logits", answers=runner.YES_NO, batch_size=2)
    out = runner.execute(tiny, _trials(tiny, [1.0, 2.0]), tmp_path / "r.zarr", record=False, **kw)
    with pytest.raises(MechintroError, match="differs in: record_resid"):
        runner.execute(tiny, _trials(tiny, [1.0, 2.0]), out, record=True, **kw)


# --- Randomized corruption: delete or truncate any file of any variable; verify sees it, ---------
# --- repair + rerun restores it ------------------------------------------------------------------

import os  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

# CI draws 2 per mode; the acceptance check is MECHINTRO_CORRUPTION_DRAWS=50.
CORRUPTION_DRAWS = int(os.environ.get("MECHINTRO_CORRUPTION_DRAWS", "2"))


def _corruption_run(model, out, mode):
    gen = runner.Generation(max_new_tokens=4, temperature=1.0) if mode == "generate" else None
    return runner.execute(
        model,
        _trials(model, [1.0, 2.0, 3.0, 4.0, 5.0]),
        out,
        config={"t": "corrupt"},
        mode=mode,
        answers=runner.YES_NO if mode == "logits" else None,
        generation=gen,
        batch_size=2,
        record=True,
        seed=1,
    )


def _store_files(root: Path) -> list[Path]:
    """Every chunk and metadata file of every array, and the root metadata (the manifest's own
    group excluded: it is what repair restores from)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and runs.MANIFEST_GROUP not in p.parts)


@pytest.mark.parametrize("mode", ["logits", "generate"])
def test_random_corruption_is_reported_and_repaired(tiny, tmp_path, mode):
    reference = _corruption_run(tiny, tmp_path / "reference.zarr", mode)
    expected = runs.open_run(reference).load()
    files = _store_files(reference)
    rng = random.Random(f"corruption-{mode}")
    for draw in range(CORRUPTION_DRAWS):
        out = tmp_path / f"draw{draw}.zarr"
        shutil.copytree(reference, out)
        victim = out / rng.choice(files).relative_to(reference)
        how = rng.choice(["delete", "truncate"])
        if how == "delete":
            victim.unlink()
        else:
            data = victim.read_bytes()
            victim.write_bytes(data[: rng.randrange(len(data))])
        where = f"draw {draw}: {how} {victim.relative_to(out)}"
        assert not runs.verify(out).ok, where
        runs.verify(out, repair=True)
        _corruption_run(tiny, out, mode)
        assert runs.verify(out).ok, where
        xr.testing.assert_identical(runs.open_run(out).load(), expected)
        shutil.rmtree(out)


# --- Item 1: a resume never mixes settings -------------------------------------------------------


def _identity_run(model, out, trials=None):
    return runner.execute(
        model,
        trials or _trials(model, [1.0, 2.0, 3.0]),
        out,
        config={"t": "identity"},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=2,
    )


def _interrupted(model, out, monkeypatch):
    """A run stopped after its first batch."""
    real = runs.write_batch
    calls = []

    def once(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "write_batch", once)
    with pytest.raises(KeyboardInterrupt):
        _identity_run(model, out)
    monkeypatch.setattr(runs, "write_batch", real)
    assert runs.committed_mask(out).tolist() == [True, True, False]


def test_resume_in_another_dtype_is_refused(tiny, tmp_path, monkeypatch):
    from mechintro.errors import MechintroError
    from mechintro.models import from_hf

    out = tmp_path / "r.zarr"
    _interrupted(tiny, out, monkeypatch)
    import copy

    half = from_hf(
        copy.deepcopy(tiny.hf).to(torch.bfloat16),
        tiny.tokenizer,
        name=tiny.name,
        weights_sha256=tiny.weights_sha256,
    )
    with pytest.raises(MechintroError, match=r"differs in: .*dtype"):
        _identity_run(half, out)
    assert runs.committed_mask(out).tolist() == [True, True, False]  # nothing mixed in


def test_resume_with_other_vectors_is_refused(tiny, tmp_path, monkeypatch):
    from mechintro.errors import MechintroError

    out = tmp_path / "r.zarr"
    _interrupted(tiny, out, monkeypatch)
    other = [dataclasses.replace(t, vector=t.vector * 2) for t in _trials(tiny, [1.0, 2.0, 3.0])]
    with pytest.raises(
        MechintroError, match=r"differs in: vectors_sha256$|differs in: vectors_sha256\)"
    ):
        _identity_run(tiny, out, other)
    _identity_run(tiny, out)  # the original vectors resume it
    assert runs.verify(out).ok


def _nudged(trials, relative):
    """``trials`` with every vector moved by ``relative`` of its norm (one coordinate)."""
    out = []
    for t in trials:
        v = t.vector.clone()
        v[0] += relative * float(v.norm())
        out.append(dataclasses.replace(t, vector=v))
    return out


def test_resume_with_vectors_differing_by_float_noise_uses_the_stored_ones(
    tiny, tmp_path, monkeypatch
):
    """Vectors recomputed on another thread count differ in the last bits: the resume goes on,
    and the trials still to run inject the stored vectors, so the store equals an uninterrupted
    run's."""
    whole = _identity_run(tiny, tmp_path / "whole.zarr")
    out = tmp_path / "r.zarr"
    _interrupted(tiny, out, monkeypatch)
    nudged = _nudged(_trials(tiny, [1.0, 2.0, 3.0]), 1e-6)
    assert not torch.equal(nudged[2].vector, _trials(tiny, [1.0, 2.0, 3.0])[2].vector)
    _identity_run(tiny, out, nudged)
    assert runs.verify(out).ok
    a, b = runs.open_run(whole), runs.open_run(out)
    np.testing.assert_array_equal(a.injected_vector.values, b.injected_vector.values)
    np.testing.assert_array_equal(a.answer_logprobs.values, b.answer_logprobs.values)
    assert runs.read_attrs(out)["identity"] == runs.read_attrs(whole)["identity"]


def test_resume_with_vectors_differing_beyond_noise_is_refused(tiny, tmp_path, monkeypatch):
    from mechintro.errors import MechintroError

    out = tmp_path / "r.zarr"
    _interrupted(tiny, out, monkeypatch)
    moved = _nudged(_trials(tiny, [1.0, 2.0, 3.0]), 10 * runner.VECTOR_NOISE)
    with pytest.raises(MechintroError, match=r"differs in: vectors_sha256"):
        _identity_run(tiny, out, moved)
    assert runs.committed_mask(out).tolist() == [True, True, False]  # nothing mixed in


def test_changed_chat_template_is_refused_also_on_a_finished_run(tiny, tmp_path):
    import copy

    from mechintro.errors import MechintroError
    from mechintro.models import from_hf

    out = _identity_run(tiny, tmp_path / "r.zarr")
    tok = copy.deepcopy(tiny.tokenizer)
    tok.chat_template = tok.chat_template.replace("'\n'}}{% endfor %}", "'\n\n'}}{% endfor %}")
    assert tok.chat_template != tiny.tokenizer.chat_template
    changed = from_hf(tiny.hf, tok, name=tiny.name, weights_sha256=tiny.weights_sha256)
    with pytest.raises(
        MechintroError, match=r"differs in: chat_template_sha256, .*input_ids_sha256"
    ):
        _identity_run(changed, out, _trials(changed, [1.0, 2.0, 3.0]))


# --- Items 2 and 3: verify sees every variable; repair never makes a store worse -----------------


def _chunk(out, name):
    return next(p for p in sorted((out / name).rglob("*")) if p.is_file() and p.name != "zarr.json")


@pytest.mark.parametrize("name", ["input_ids", "inject_mask", "strength", "concept"])
def test_deleted_input_chunk_is_reported_and_rewritten(tiny, tmp_path, name):
    reference = _identity_run(tiny, tmp_path / "ref.zarr")
    expected = runs.open_run(reference).load()
    out = tmp_path / "r.zarr"
    shutil.copytree(reference, out)
    _chunk(out, name).unlink()  # before: read back as zeros / NaN / "" and verify passed
    report = runs.verify(out)
    assert not report.ok and any(
        name in p and "no longer match the manifest" in p for p in report.problems
    ), report
    runs.verify(out, repair=True)
    _identity_run(tiny, out)
    assert runs.verify(out).ok
    xr.testing.assert_identical(runs.open_run(out).load(), expected)


def test_truncated_chunk_is_reported_not_raised(tiny, tmp_path, capsys):
    out = _identity_run(tiny, tmp_path / "r.zarr")
    for name in ("answer_logprobs", "committed"):
        chunk = _chunk(out, name)
        chunk.write_bytes(chunk.read_bytes()[:5])
    assert main(["verify", str(out)]) == 1  # before: a RuntimeError traceback
    assert "unreadable or no longer match their digests" in capsys.readouterr().out
    assert main(["verify", "--repair", str(out)]) == 1
    assert runs.committed_mask(out).tolist() == [False, False, True]
    _identity_run(tiny, out)
    assert main(["verify", str(out)]) == 0


@pytest.mark.parametrize("meta", ["resid/zarr.json", "zarr.json"])
def test_repair_restores_deleted_metadata(tiny, tmp_path, meta, capsys):
    kw = dict(config={"t": "meta"}, mode="logits", answers=runner.YES_NO, batch_size=2, record=True)
    reference = runner.execute(tiny, _trials(tiny, [1.0, 2.0, 3.0]), tmp_path / "ref.zarr", **kw)
    expected = runs.open_run(reference).load()
    out = tmp_path / "r.zarr"
    shutil.copytree(reference, out)
    (out / meta).unlink()  # before: repair uncommitted everything and the rerun died in a traceback
    assert main(["verify", str(out)]) == 1
    assert "metadata (zarr.json)" in capsys.readouterr().out
    main(["verify", "--repair", str(out)])
    assert runs.committed_mask(out).all()  # nothing that verifies was thrown away
    runner.execute(tiny, _trials(tiny, [1.0, 2.0, 3.0]), out, **kw)
    assert runs.verify(out).ok
    xr.testing.assert_identical(runs.open_run(out).load(), expected)


# --- Item 8: grading resumes where it stopped ----------------------------------------------------


class _CountingJudge:
    identity = "test:counting"

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = 0, fail_after

    def complete(self, prompt):
        from mechintro.errors import MechintroError

        if self.fail_after is not None and self.calls >= self.fail_after:
            raise MechintroError("judge went away")
        self.calls += 1
        return "YES" if len(prompt) % 2 else "NO"


def test_grading_resumes_where_it_stopped(tiny, tmp_path):
    from mechintro import judge
    from mechintro.errors import MechintroError

    trials = [
        dataclasses.replace(t, labels={"question": "Trial 1: anything?"})
        for t in _trials(tiny, [1.0, 2.0, 3.0, 4.0, 5.0])
    ]
    kw = dict(
        config={"t": "grade"},
        mode="generate",
        generation=runner.Generation(max_new_tokens=4),
        batch_size=2,
    )
    reference = runner.execute(tiny, trials, tmp_path / "ref.zarr", **kw)
    out = tmp_path / "r.zarr"
    shutil.copytree(reference, out)
    full = judge.grade_run(reference, _CountingJudge(), criteria=["coherence", "affirmative"])
    with pytest.raises(MechintroError, match="went away"):  # stopped in the second batch
        judge.grade_run(out, _CountingJudge(fail_after=5), criteria=["coherence", "affirmative"])
    assert runs.open_run(out).graded.values.tolist() == [True, True, False, False, False]
    rest = _CountingJudge()
    resumed = judge.grade_run(out, rest, criteria=["coherence", "affirmative"])
    assert rest.calls == 3 * 2  # only the three ungraded trials, two criteria each
    xr.testing.assert_identical(resumed, full)
    assert runs.verify(out).ok


def test_a_batch_larger_than_the_run_is_the_whole_run(tiny, tmp_path):
    # before: a divisor loop over 10**12 candidates, or a 14.6 TiB chunk allocated on the first
    # write
    kw = dict(config={"t": "batch"}, mode="logits", answers=runner.YES_NO, record=True)
    huge = runner.execute(
        tiny, _trials(tiny, [1.0, 2.0, 3.0]), tmp_path / "huge.zarr", batch_size=10**12, **kw
    )
    whole = runner.execute(
        tiny, _trials(tiny, [1.0, 2.0, 3.0]), tmp_path / "whole.zarr", batch_size=3, **kw
    )
    assert runs.verify(huge).ok
    xr.testing.assert_identical(
        runs.open_run(huge).load().drop_attrs(), runs.open_run(whole).load().drop_attrs()
    )
    from mechintro.errors import MechintroError

    huge_model = _Huge()  # only its sizes are read
    with pytest.raises(MechintroError, match="more than half of this machine's"):
        runner._check_memory(huge_model, _trials(tiny, [1.0, 2.0]), 10**12)


class _Huge:
    n_layers, d_model = 10**5, 10**5
