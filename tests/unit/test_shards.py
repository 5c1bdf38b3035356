"""Sharded runs: N stores, each owning every N-th batch, merge into the run an unsharded process
writes with the same seed — in logit and generation mode, with residuals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from mechintro import runner, runs
from mechintro.errors import MechintroError
from mechintro.prompts import Window, render_chat, tokenize

# Attributes that legitimately differ between two processes (and the shard bookkeeping).
VOLATILE = {
    "created",
    "git_commit",
    "package_versions",
    "mechintro_version",
    "shard",
    "merged_from",
}


def _trials(model, n: int = 11) -> list[runner.Trial]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        text = render_chat(
            model.tokenizer,
            [{"role": "user", "content": f"Trial {i}: do you detect it?" + "!" * (i % 3)}],
        )
        vector = (
            None
            if i % 4 == 0
            else torch.from_numpy(rng.standard_normal(model.d_model).astype(np.float32))
        )
        out.append(
            runner.Trial(
                prompt=tokenize(model.tokenizer, text),
                condition="control" if vector is None else "injected",
                concept="" if vector is None else f"c{i}",
                strength=0.0 if vector is None else 3.0,
                inject_layer=-1 if vector is None else 1,
                inject_layer_end=-1 if vector is None else 2,
                vector=vector,
                window=Window.from_marker("Trial"),
            )
        )
    return out


def _run(model, out, mode: str, shard=None):
    kw = (
        {"answers": runner.YES_NO}
        if mode == "logits"
        else {"generation": runner.Generation(max_new_tokens=5)}
    )
    return runner.execute(
        model,
        _trials(model),
        out,
        config={"test": "shards"},
        mode=mode,
        batch_size=2,
        record=True,
        seed=7,
        shard=shard,
        **kw,
    )


def _same(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert {k: v for k, v in a.attrs.items() if k not in VOLATILE} == {
        k: v for k, v in b.attrs.items() if k not in VOLATILE
    }


@pytest.mark.parametrize("mode", ["logits", "generate"])
def test_merged_shards_equal_the_unsharded_run(tiny, tmp_path, mode):
    whole = _run(tiny, tmp_path / "whole.zarr", mode)
    parts = [_run(tiny, tmp_path / f"part{i}.zarr", mode, runner.Shard(i, 3)) for i in (1, 2, 3)]
    for i, p in enumerate(parts, 1):
        shard = runs.open_run(p)
        owned = runs.shard_batches(11, 2, i, 3)
        assert shard.sizes["trial"] == sum(min(2, 11 - 2 * b) for b in owned)
        assert runs.verify(p).ok, runs.verify(p).problems
    merged = runs.merge(list(reversed(parts)), tmp_path / "merged.zarr")
    assert runs.verify(merged).ok
    _same(runs.open_run(merged).load(), runs.open_run(whole).load())


def test_a_resumed_shard_runs_only_its_missing_batches(tiny, tmp_path):
    out = tmp_path / "part.zarr"
    _run(tiny, out, "logits", runner.Shard(2, 2))
    first = runs.open_run(out).load()
    seen = []
    runner.execute(
        tiny,
        _trials(tiny),
        out,
        config={"test": "shards"},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=2,
        record=True,
        seed=7,
        shard=runner.Shard(2, 2),
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen == [(5, 5)]  # batches 1, 3 and 5 (2 + 2 + 1 trials), nothing left to do
    xr.testing.assert_identical(first, runs.open_run(out).load())
    with pytest.raises(MechintroError, match="differs in: shard"):
        _run(tiny, out, "logits", runner.Shard(1, 2))


def test_merge_refuses_what_is_not_one_finished_sharded_run(tiny, tmp_path):
    a = _run(tiny, tmp_path / "a.zarr", "logits", runner.Shard(1, 2))
    b = _run(tiny, tmp_path / "b.zarr", "logits", runner.Shard(2, 2))
    whole = _run(tiny, tmp_path / "whole.zarr", "logits")
    cases = [
        ([a], "shard(s) 2/2 missing"),
        ([a, a], "given twice"),
        ([a, whole], "is not a shard"),
        ([a, b], "already exists"),
    ]
    (tmp_path / "out.zarr").mkdir()
    for shards, message in cases:
        with pytest.raises(MechintroError, match=message.replace("(", r"\(").replace(")", r"\)")):
            runs.merge(
                shards, tmp_path / ("out.zarr" if message == "already exists" else "new.zarr")
            )
    other = runner.execute(
        tiny,
        _trials(tiny),
        tmp_path / "other.zarr",
        config={"test": "other"},
        mode="logits",
        answers=runner.YES_NO,
        batch_size=2,
        record=True,
        seed=7,
        shard=runner.Shard(2, 2),
    )
    with pytest.raises(MechintroError, match="differ in: config"):
        runs.merge([a, other], tmp_path / "new.zarr")
    import zarr

    zarr.open_group(str(b), mode="r+").attrs["complete"] = "false"
    with pytest.raises(MechintroError, match="unfinished"):
        runs.merge([a, b], tmp_path / "new.zarr")
    assert not (tmp_path / "new.zarr").exists()


def test_shard_numbers_are_checked():
    assert runner.Shard.parse("2/4") == runner.Shard(2, 4)
    assert runs.shard_batches(18, 2, 2, 4) == [1, 5]  # 9 batches: shard 2/4 owns batches 1 and 5
    for text, message in (
        ("0/4", "does not exist"),
        ("5/4", "does not exist"),
        ("2", "not of the form"),
        ("a/b", "not of the form"),
    ):
        with pytest.raises(MechintroError, match=message):
            runner.Shard.parse(text)


def test_cli_runs_shards_and_merges_them(tmp_path, capsys):
    from mechintro.cli import main
    from tests.conftest import build_tiny

    tiny = build_tiny("llama")
    tiny.hf.save_pretrained(tmp_path / "tiny", safe_serialization=True)
    tiny.tokenizer.save_pretrained(tmp_path / "tiny")
    common = [
        "run",
        "detection-logits",
        "--model",
        str(tmp_path / "tiny"),
        "--concepts",
        "Dust,Oceans,Bread",
        "--layers",
        "1,2",
        "--strengths",
        "1,4",
        "--batch-size",
        "3",
        "--no-record-resid",
    ]
    assert main(["-q", *common, "--out", str(tmp_path / "whole.zarr")]) == 0
    for i in (1, 2):
        assert (
            main(["-q", *common, "--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}.zarr")]) == 0
        )
    assert (
        main(
            [
                "-q",
                "merge",
                str(tmp_path / "s1.zarr"),
                str(tmp_path / "s2.zarr"),
                "--out",
                str(tmp_path / "m.zarr"),
            ]
        )
        == 0
    )
    assert "merged 2 shards: 16 trials" in capsys.readouterr().out
    _same(runs.open_run(tmp_path / "m.zarr").load(), runs.open_run(tmp_path / "whole.zarr").load())


def test_merge_refuses_a_damaged_shard(tiny, tmp_path):
    import shutil

    a = _run(tiny, tmp_path / "a.zarr", "logits", runner.Shard(1, 2))
    b = _run(tiny, tmp_path / "b.zarr", "logits", runner.Shard(2, 2))
    for damage in ("answer_logprobs", "input_ids"):
        hurt = tmp_path / f"hurt-{damage}.zarr"
        shutil.copytree(b, hurt)
        chunk = next(
            p for p in sorted((hurt / damage).rglob("*")) if p.is_file() and p.name != "zarr.json"
        )
        chunk.write_bytes(chunk.read_bytes()[:7])  # before: merged as if nothing were wrong
        with pytest.raises(MechintroError, match=r"shard 2/2 .* is damaged .*merge refused"):
            runs.merge([a, hurt], tmp_path / "new.zarr")
        assert not (tmp_path / "new.zarr").exists()
    merged = runs.merge([a, b], tmp_path / "new.zarr")
    assert (
        runs.verify(merged).ok
        and runs.read_manifest(merged)["root"]["attributes"].get("shard") is None
    )


def test_merge_refuses_a_shard_with_edited_metadata(tiny, tmp_path, capsys):
    # issue 30 row 2, before: merge exited 0 and the merged store failed verify afterwards
    import json
    import shutil

    from mechintro.cli import main

    a = _run(tiny, tmp_path / "a.zarr", "logits", runner.Shard(1, 2))
    b = _run(tiny, tmp_path / "b.zarr", "logits", runner.Shard(2, 2))
    hurt = tmp_path / "hurt.zarr"
    shutil.copytree(b, hurt)
    meta = json.loads((hurt / "answer_logprobs" / "zarr.json").read_text())
    meta["attributes"]["scale_factor"] = 0.5
    (hurt / "answer_logprobs" / "zarr.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert main(["merge", str(a), str(hurt), "--out", str(tmp_path / "m.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "merge refused" in err and "answer_logprobs" in err, err
    assert not (tmp_path / "m.zarr").exists()


def test_user_folders_named_like_staging_folders_survive_a_merge(tiny, tmp_path):
    # issue 30 row 5, before: `victim.zarr.partial-2024` and `victim.zarr.partial-vm-2025` (on
    # host vm, no such process) were deleted with their files by `merge --out victim.zarr`
    import subprocess
    import sys

    from mechintro import _fs
    from mechintro.cli import main

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    folders = [
        tmp_path / "victim.zarr.partial-2024",
        tmp_path / f"victim.zarr.partial-{_fs._host()}-{dead.pid}",  # this host, a gone pid
    ]
    for folder in folders:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    a = _run(tiny, tmp_path / "a.zarr", "logits", runner.Shard(1, 2))
    b = _run(tiny, tmp_path / "b.zarr", "logits", runner.Shard(2, 2))
    assert main(["-q", "merge", str(a), str(b), "--out", str(tmp_path / "victim.zarr")]) == 0
    for folder in folders:
        assert (folder / "notes.txt").read_text() == "mine", folder
    assert runs.verify(tmp_path / "victim.zarr").ok
