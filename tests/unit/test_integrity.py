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


# --- Issue 30: metadata, grade arrays and reads are covered by the manifest ----------------------


def _graded_run(model, out, judged=True):
    """A small generation run with residuals, graded by a deterministic judge."""
    from mechintro import judge

    trials = [
        dataclasses.replace(t, labels={"question": "Trial 1: anything?"})
        for t in _trials(model, [1.0, 2.0, 3.0, 4.0, 5.0])
    ]
    runner.execute(
        model,
        trials,
        out,
        config={"t": "graded"},
        mode="generate",
        generation=runner.Generation(max_new_tokens=4),
        batch_size=2,
        record=True,
    )
    if judged:
        judge.grade_run(
            out, _CountingJudge(), criteria=["coherence", "affirmative"], progress=False
        )
    return out


def _edit_json(file: Path, edit) -> None:
    import json

    meta = json.loads(file.read_text())
    edit(meta)
    file.write_text(json.dumps(meta))


def _refused_everywhere(out: Path, capsys, report: bool = True) -> None:
    """verify reports the damage; open_run (with a read), info and report refuse in one line
    (``report=False``: the damage is in the residuals, which the report does not read)."""
    from mechintro.errors import MechintroError

    assert not runs.verify(out).ok
    with pytest.raises(MechintroError, match=r"damaged|not a readable"):
        runs.open_run(out, committed_only=False).load()
    capsys.readouterr()
    assert main(["info", str(out)]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "verify --repair" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    if not report:
        return
    assert main(["report", str(out), "--out", str(out.parent / "report.html")]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and len(err.strip().splitlines()) == 1, err
    assert not (out.parent / "report.html").exists()


@pytest.mark.parametrize(("name", "factor"), [("strength", 2.0), ("answer_logprobs", 0.5)])
def test_an_added_scale_factor_is_refused_and_repaired(tiny, tmp_path, name, factor, capsys):
    # issue 30 row 1, before: verify OK, open_run returned strengths x2 / log-probs halved
    reference = _identity_run(tiny, tmp_path / "ref.zarr")
    expected = runs.open_run(reference).load()
    out = tmp_path / "r.zarr"
    shutil.copytree(reference, out)
    _edit_json(out / name / "zarr.json", lambda m: m["attributes"].update(scale_factor=factor))
    report = runs.verify(out)
    assert any(f"zarr.json) of {name}" in p for p in report.problems), report
    _refused_everywhere(out, capsys)
    with pytest.raises(runs.DamagedRunError, match=f"zarr.json\\) of {name}"):
        _identity_run(tiny, out)  # a resume would write with the edited encoding
    runs.verify(out, repair=True)
    _identity_run(tiny, out)
    assert runs.verify(out).ok
    xr.testing.assert_identical(runs.open_run(out).load(), expected)


def test_edited_config_and_fill_value_are_refused_and_repaired(tiny, tmp_path, capsys):
    # issue 30 row 3, before: verify OK after either edit
    import json

    reference = _identity_run(tiny, tmp_path / "ref.zarr")
    expected = runs.open_run(reference).load()
    config = tmp_path / "config.zarr"
    shutil.copytree(reference, config)
    _edit_json(
        config / "zarr.json",
        lambda m: m["attributes"].update(config=json.dumps({"t": "identity", "strengths": 8})),
    )
    assert any("root attribute(s) config differ" in p for p in runs.verify(config).problems)
    _refused_everywhere(config, capsys)
    runs.verify(config, repair=True)
    assert runs.verify(config).ok
    xr.testing.assert_identical(runs.open_run(config).load(), expected)

    fill = tmp_path / "fill.zarr"
    shutil.copytree(reference, fill)
    _edit_json(fill / "answer_logprobs" / "zarr.json", lambda m: m.update(fill_value=5.0))
    assert any("answer_logprobs" in p for p in runs.verify(fill).problems)
    _refused_everywhere(fill, capsys)
    runs.verify(fill, repair=True)
    _identity_run(tiny, fill)
    assert runs.verify(fill).ok
    xr.testing.assert_identical(runs.open_run(fill).load(), expected)


def _rewrite_verdicts(out: Path) -> None:
    """Two YES verdicts of one batch rewritten to NO as a valid chunk (zarr writes it)."""
    import zarr

    array = zarr.open_array(str(out / "grade_affirmative"), mode="r+")
    values = np.asarray(array[0:2]).astype(object)
    array[0:2] = np.array(["NO" if v == "YES" else "YES" for v in values], dtype=object)


@pytest.mark.parametrize("damage", ["delete", "rewrite", "truncate"])
def test_damaged_grades_are_refused_and_regraded(tiny, tmp_path, damage, capsys):
    # issue 30 row 4, before: verify OK; open_run returned blanks / wrong verdicts with graded
    # true; the truncated reply made info and report crash with a Zstd traceback
    from mechintro import judge

    reference = _graded_run(tiny, tmp_path / "ref.zarr")
    expected = runs.open_run(reference).load()
    out = tmp_path / "r.zarr"
    shutil.copytree(reference, out)
    if damage == "delete":
        (out / "grade_coherence" / "c" / "1").unlink()
    elif damage == "rewrite":
        _rewrite_verdicts(out)
    else:
        chunk = out / "grade_affirmative_reply" / "c" / "2"
        chunk.write_bytes(chunk.read_bytes()[:5])
    report = runs.verify(out)
    assert any("graded batch(es)" in p for p in report.problems), report
    _refused_everywhere(out, capsys)
    runs.verify(out, repair=True)
    assert runs.verify(out).ok  # the batch is ungraded now, the run itself sound
    judge.grade_run(out, _CountingJudge(), criteria=["coherence", "affirmative"], progress=False)
    assert runs.verify(out).ok
    xr.testing.assert_identical(runs.open_run(out).load().drop_attrs(), expected.drop_attrs())


def test_flipped_or_deleted_chunk_is_refused_on_read(tiny, tmp_path, capsys):
    # issue 30 row 10, before: a bit flip decoded to -2.57e10, a deleted chunk read as NaN, and
    # open_run, info and report showed them as committed data
    from mechintro.errors import MechintroError

    kw = dict(config={"t": "flip"}, mode="logits", answers=runner.YES_NO, batch_size=2, record=True)
    reference = runner.execute(tiny, _trials(tiny, [1.0, 2.0, 3.0]), tmp_path / "ref.zarr", **kw)
    flipped = tmp_path / "flip.zarr"
    shutil.copytree(reference, flipped)
    chunk = flipped / "resid" / "c" / "1" / "2" / "0" / "0"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x10
    chunk.write_bytes(bytes(data))
    ds = runs.open_run(flipped)  # opening is cheap: the chunk is checked when it is read
    assert np.isfinite(ds["resid"].isel(trial=0).values).all()  # batch 0 is sound
    with pytest.raises(MechintroError, match=r"batch 1 \(trial 2\) of resid.*does not match"):
        ds["resid"].load()
    _refused_everywhere(flipped, capsys, report=False)

    deleted = tmp_path / "deleted.zarr"
    shutil.copytree(reference, deleted)
    (deleted / "answer_logprobs" / "c" / "0" / "0").unlink()
    with pytest.raises(MechintroError, match=r"batch 0 \(trials 0–1\) of answer_logprobs.*missing"):
        runs.open_run(deleted)
    _refused_everywhere(deleted, capsys)
    for out in (flipped, deleted):
        runs.verify(out, repair=True)
        runner.execute(tiny, _trials(tiny, [1.0, 2.0, 3.0]), out, **kw)
        assert runs.verify(out).ok
        xr.testing.assert_identical(runs.open_run(out).load(), runs.open_run(reference).load())


def _flip_bit(file: Path, rng: random.Random) -> None:
    data = bytearray(file.read_bytes())
    i = rng.randrange(len(data))
    data[i] ^= 1 << rng.randrange(8)
    file.write_bytes(bytes(data))


def _edit_metadata(out: Path, victim: Path, rng: random.Random) -> str:
    """One edit of an array's or the root's zarr.json that changes what a read returns."""
    import json

    if victim.parent == out:  # the root: an attribute that defines the run
        meta = json.loads(victim.read_text())
        key = rng.choice(["config", "identity", "model", "batch_size", "mode", "seed"])
        meta["attributes"][key] = str(meta["attributes"].get(key, "")) + "x"
        victim.write_text(json.dumps(meta))
        return f"root {key}"
    meta = json.loads(victim.read_text())
    edits = {
        "scale_factor": lambda m: m["attributes"].update(scale_factor=rng.choice([2.0, 0.5])),
        "add_offset": lambda m: m["attributes"].update(add_offset=1.0),
        "fill_value": lambda m: m.update(fill_value=5 if m["data_type"] != "string" else "x"),
        "units": lambda m: m["attributes"].update(units="days since 2000-01-01"),
        "codecs": lambda m: m["codecs"].reverse(),
        "shape": lambda m: m.update(shape=[m["shape"][0] + 1, *m["shape"][1:]]),
    }
    name = rng.choice(sorted(edits))
    edits[name](meta)
    victim.write_text(json.dumps(meta))
    return name


def _rewrite_chunk(out: Path, victim: Path) -> str:
    """A chunk of an output or grade array rewritten as a valid chunk with other values."""
    import zarr

    name, index = victim.relative_to(out).parts[0], victim.relative_to(out).parts[2:]
    array = zarr.open_array(str(out / name), mode="r+")
    block = tuple(int(i) for i in index)
    values = np.asarray(array.get_block_selection(block))
    if values.dtype.kind in "OTU":
        new = np.array([str(v)[::-1] + "!" for v in values.ravel()], dtype=object)
        new = new.reshape(values.shape)
    elif values.dtype == bool:
        new = ~values
    else:
        new = values + 1
    array.set_block_selection(block, new)
    return "rewritten"


@pytest.mark.parametrize("how", ["delete", "truncate", "flip", "metadata", "rewrite"])
def test_random_damage_of_a_graded_run_is_caught_everywhere(tiny, tmp_path, how, capsys):
    """Issue 30: metadata edits and grade arrays included, every draw is reported by verify and
    refused by open_run (at open or on read) and info, each in one line."""
    from mechintro.errors import MechintroError

    reference = _graded_run(tiny, tmp_path / "reference.zarr")
    files = _store_files(reference)
    metadata = [p for p in files if p.name == "zarr.json"]
    chunks = [p for p in files if p.name != "zarr.json"]
    outputs = [
        p
        for p in chunks
        if p.relative_to(reference).parts[0] not in runs.read_manifest(reference)["inputs"]
        and p.relative_to(reference).parts[0] not in ("committed", "graded")
    ]
    pool = {"metadata": metadata, "rewrite": outputs, "flip": files}.get(how, files)
    rng = random.Random(f"graded-{how}")
    for draw in range(CORRUPTION_DRAWS):
        out = tmp_path / f"draw{draw}.zarr"
        shutil.copytree(reference, out)
        victim = out / rng.choice(pool).relative_to(reference)
        if how == "delete":
            victim.unlink()
        elif how == "truncate":
            data = victim.read_bytes()
            victim.write_bytes(data[: rng.randrange(len(data))])
        elif how == "flip":
            _flip_bit(victim, rng)
        elif how == "metadata":
            how = f"metadata {_edit_metadata(out, victim, rng)}"
        else:
            _rewrite_chunk(out, victim)
        where = f"draw {draw}: {how} {victim.relative_to(out)}"
        assert not runs.verify(out).ok, where
        with pytest.raises(MechintroError):
            runs.open_run(out, committed_only=False).load()
        capsys.readouterr()
        assert main(["info", str(out)]) == 2, where
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, (where, err)
        how = how.split(" ")[0]
        shutil.rmtree(out)


def test_a_lost_manifest_is_one_line_without_a_zarr_warning(tiny, tmp_path):
    # issue 30, before: a ZarrUserWarning ("Object at _mechintro is not recognized") preceded
    # verify's line
    import subprocess
    import sys

    out = _identity_run(tiny, tmp_path / "r.zarr")
    (out / runs.MANIFEST_GROUP / "zarr.json").unlink()
    done = subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "verify", str(out)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and "manifest is missing or damaged" in done.stdout
    assert "Warning" not in done.stderr, done.stderr


def test_a_run_finished_after_its_grading_opens_and_grades_the_rest(tiny, tmp_path, monkeypatch):
    # a run graded while incomplete, then finished: its new trials are ungraded, not damage
    from mechintro import judge

    reference = _graded_run(tiny, tmp_path / "ref.zarr")
    out = tmp_path / "r.zarr"
    real, calls = runs.write_batch, []

    def once(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "write_batch", once)
    with pytest.raises(KeyboardInterrupt):
        _graded_run(tiny, out, judged=False)
    monkeypatch.setattr(runs, "write_batch", real)
    judge.grade_run(out, _CountingJudge(), criteria=["coherence", "affirmative"], progress=False)
    _graded_run(tiny, out, judged=False)  # finishes the run
    assert runs.open_run(out).attrs["grading_complete"] == "false" and runs.verify(out).ok
    judge.grade_run(out, _CountingJudge(), criteria=["coherence", "affirmative"], progress=False)
    assert runs.verify(out).ok
    xr.testing.assert_identical(
        runs.open_run(out).load().drop_attrs(), runs.open_run(reference).load().drop_attrs()
    )


def test_the_mode_spelling_warns_and_stores_the_same_run(tiny, tmp_path):
    """``execute(mode="logits", answers=...)`` is deprecated: it warns, naming ``readouts``, and
    the store it writes is the one ``readouts=[NextToken(answers)]`` writes."""
    import numpy as np
    import pytest

    from mechintro.reading import NextToken

    kw = dict(config={"t": 5}, batch_size=2, record=True)
    with pytest.warns(DeprecationWarning, match=r"execute\(mode='logits'\) is deprecated"):
        old = runner.execute(
            tiny, _trials(tiny, [1.0, 2.0]), tmp_path / "old.zarr", mode="logits",
            answers=runner.YES_NO, **kw,
        )  # fmt: skip
    new = runner.execute(
        tiny, _trials(tiny, [1.0, 2.0]), tmp_path / "new.zarr",
        readouts=[NextToken(runner.YES_NO)], **kw,
    )  # fmt: skip
    a, b = runs.open_run(old), runs.open_run(new)
    assert a.attrs["identity"] == b.attrs["identity"]
    for name in ("answer_logprobs", "resid"):
        assert np.array_equal(a[name].values, b[name].values)
