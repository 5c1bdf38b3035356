"""Run datasets: schema, round trip, resume after interruption, refusals, CLI errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import xarray as xr

from mechintro import runs
from mechintro.cli import main
from mechintro.errors import MechintroError
from mechintro.experiments import detection_logits as D
from mechintro.vectors import concept_vectors


@pytest.fixture(scope="module")
def vectors(tiny):
    return concept_vectors(tiny, ["Dust", "Oceans", "Poetry"], baseline=["Sand", "Clay", "Fog"])


def _config(**kw):
    base = dict(
        model="tiny",
        concepts=("Dust", "Oceans", "Poetry"),
        layers=("0", "2"),
        strengths=(0.0, 4.0),
        batch_size=3,
    )
    return D.DetectionLogitsConfig(**(base | kw))


def test_run_roundtrip_schema(tiny, vectors, tmp_path):
    out = D.run(_config(), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    ds = runs.open_run(out)
    assert ds.sizes["trial"] == 2 * 2 * 4  # 2 layers x 2 strengths x (3 concepts + 1 control)
    assert set(ds.condition.values) == {"injected", "control"}
    assert ds.resid.dtype == np.float16 and ds.resid.dims == ("trial", "layer", "pos", "d_model")
    assert list(ds.answer_label.values) == ["yes", "yes", "no", "no"]
    assert ds.attrs["complete"] == "true" and json.loads(ds.attrs["config"])["seed"] == 0
    inj = ds.where(ds.condition == "injected", drop=True)
    # the stored vector is the one added per unit strength, and the mask starts at the marker
    assert np.abs(inj.injected_vector.values).sum(1).min() > 0
    assert ds.where(ds.condition == "control", drop=True).inject_mask.values.sum() == 0
    # strength 0 equals its control bit for bit; injection at strength 4 changes the answer
    zero = ds.where((ds.strength == 0) & (ds.condition == "injected"), drop=True)
    ctl = ds.where((ds.strength == 0) & (ds.condition == "control"), drop=True)
    assert np.array_equal(
        zero.answer_logprobs.values,
        np.repeat(ctl.answer_logprobs.values[:1], zero.sizes["trial"], 0)[: zero.sizes["trial"]],
    )
    summary = D.summarize(ds, n_boot=200)
    assert summary.p_yes_norm.dims == ("inject_layer", "strength")
    assert np.allclose(summary.sel(strength=0.0).p_yes_norm_shift.values, 0.0)
    assert "shift" in D.format_summary(summary)


def test_same_seed_same_dataset(tiny, vectors, tmp_path):
    a = runs.open_run(D.run(_config(), tmp_path / "a.zarr", model=tiny, vectors=vectors)).load()
    b = runs.open_run(D.run(_config(), tmp_path / "b.zarr", model=tiny, vectors=vectors)).load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())


def test_resume_after_interruption_equals_uninterrupted(tiny, vectors, tmp_path, monkeypatch):
    full = runs.open_run(
        D.run(_config(), tmp_path / "full.zarr", model=tiny, vectors=vectors)
    ).load()
    calls = {"n": 0}
    real = runs.write_batch

    def dying(path, start, outputs):
        calls["n"] += 1
        if calls["n"] == 3:  # die between the data write and the commit of the third batch
            xr.Dataset(dict(outputs)).to_zarr(
                path,
                region={"trial": slice(start, start + len(next(iter(outputs.values()))[1]))},
                consolidated=False,
            )
            raise KeyboardInterrupt
        real(path, start, outputs)

    monkeypatch.setattr(runs, "write_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        D.run(_config(), tmp_path / "cut.zarr", model=tiny, vectors=vectors)
    partial = runs.open_run(tmp_path / "cut.zarr")
    assert partial.sizes["trial"] == 6 and partial.attrs["complete"] == "false"
    monkeypatch.setattr(runs, "write_batch", real)
    resumed = runs.open_run(
        D.run(_config(), tmp_path / "cut.zarr", model=tiny, vectors=vectors)
    ).load()
    xr.testing.assert_identical(resumed.drop_attrs(), full.drop_attrs())


def test_resume_with_other_config_is_refused(tiny, vectors, tmp_path):
    D.run(_config(), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    with pytest.raises(MechintroError, match="differs in: strengths"):
        D.run(_config(strengths=(1.0, 4.0)), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    # issue 30, before: "differs in: batch_size, batch_size" (an attribute and a config field)
    with pytest.raises(MechintroError, match="differs in: batch_size\\)") as refused:
        D.run(_config(batch_size=4), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    assert str(refused.value).count("batch_size") == 1, refused.value


def test_bad_input_leaves_no_file(tiny, vectors, tmp_path):
    with pytest.raises(MechintroError, match="out of range"):
        D.run(_config(layers=("9",)), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    with pytest.raises(MechintroError, match="does not occur"):
        D.run(_config(question="Trial 2: hello"), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    with pytest.raises(MechintroError, match="no vectors"):
        D.run(_config(concepts=("Dust", "Bread")), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kw",
    [
        dict(concepts=()),
        dict(strengths=()),
        dict(strengths=(float("nan"),)),
        dict(concepts=("a", "A")),
        dict(trials=9),
    ],
)
def test_config_rejects(kw):
    with pytest.raises(MechintroError):
        _config(**kw)


def test_open_run_rejects_wrong_schema_and_corrupt(tiny, vectors, tmp_path):
    out = D.run(_config(), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    other = tmp_path / "other.zarr"
    xr.Dataset({"x": ("a", np.arange(3))}).to_zarr(other, zarr_format=3, consolidated=False)
    with pytest.raises(MechintroError, match="missing attributes"):
        runs.open_run(other)
    broken = tmp_path / "broken.zarr"
    shutil.copytree(out, broken)
    (broken / "zarr.json").write_text("{ truncated")
    with pytest.raises(MechintroError, match="not a readable zarr store"):
        runs.open_run(broken)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "nope", "--out", "X"], "unknown experiment"),
        (["run", "detection-logits", "--strengths", "1,nan", "--out", "X"], "not finite"),
        (["run", "detection-logits", "--strengths", ",", "--out", "X"], "comma-separated"),
        (["run", "detection-logits", "--concepts", "Dust,dust", "--out", "X"], "duplicates"),
        (["run", "detection-logits", "--model", "no-such-model", "--out", "X"], "unknown model"),
        (["run", "detection-logits", "--trials", "0", "--out", "X"], "at least 1"),
        (["info", "X"], "does not exist"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_cli_bad_input_one_line_exit_2(argv, needle, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("mechintro: error:")
        and needle in err
        and "\n" not in err
        and "Traceback" not in err
    )
    assert not (tmp_path / "X").exists()


def test_cli_missing_optional_model_package(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("pandas_sns") else real(name, *a),
    )
    monkeypatch.chdir(tmp_path)
    assert (
        main(["-q", "run", "detection-logits", "--model", "qwen2.5-coder-0.5b", "--out", "X"]) == 2
    )
    assert "pip install 'mechintro[qwen05]'" in capsys.readouterr().err


def test_cli_info(tiny, vectors, tmp_path, capsys):
    out = D.run(_config(), tmp_path / "r.zarr", model=tiny, vectors=vectors)
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert (
        "16 committed of 16" in text
        and "weights sha256" in text
        and '"strengths": [0.0, 4.0]' in text
    )


def test_layer_fractions_by_value_and_optional_ints_parse():
    from mechintro.cli import _parser
    from mechintro.cli._args import apply_settings, field_value
    from mechintro.vectors import resolve_layers

    assert resolve_layers(["1e-1"], 30) == [3]  # before: "1e-1" had no ".", so it was index 0
    assert resolve_layers(["12", 12, "0.5"], 30) == [12, 15]
    args = _parser().parse_args(["run", "detection-logits", "--set", "trials=1", "--out", "x.zarr"])
    given: dict = {}
    apply_settings(args.settings, D.DetectionLogitsConfig, given)
    assert given == {"trials": 1}
    assert field_value("1,2", tuple[float, ...], "strengths") == (1.0, 2.0)


def test_truncated_model_cache_manifest_is_reconverted(tiny, tmp_path, monkeypatch):
    import dataclasses

    from mechintro import models

    checkpoint = tmp_path / "ckpt"
    tiny.hf.save_pretrained(checkpoint, safe_serialization=True)
    tiny.tokenizer.save_pretrained(checkpoint)
    weights = checkpoint / "model.safetensors"
    spec = dataclasses.replace(
        models.OFFLINE_MODELS["smollm2-135m"], name="fake-tiny", sha256=models.sha256_of([weights])
    )
    converted = []

    def convert(spec, parts, out):
        converted.append(out)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(checkpoint, out)
        (out / "manifest.json").write_text(
            json.dumps(
                {
                    "gguf_sha256": spec.sha256,
                    "safetensors_sha256": models.sha256_of([out / "model.safetensors"]),
                }
            )
        )

    monkeypatch.setenv("MECHINTRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(models, "offline_parts", lambda spec: [weights])
    monkeypatch.setattr(models, "_convert_gguf", convert)
    models._load_offline(spec, "float32", None)
    assert len(converted) == 1
    manifest = converted[0] / "manifest.json"
    manifest.write_text(manifest.read_text()[:10])  # before: a JSONDecodeError traceback
    models._load_offline(spec, "float32", None)
    assert len(converted) == 2 and json.loads(manifest.read_text())["gguf_sha256"] == spec.sha256


_ABANDONED_WRITES = """
import asyncio, errno, sys
from zarr.core.sync import _get_loop
from mechintro import cli
from mechintro.cli import info

def full_disk(args):  # what a full disk leaves: zarr's other chunk writes pending in its loop
    async def stuck():
        await asyncio.Event().wait()

    async def spawn():
        return [asyncio.ensure_future(stuck()) for _ in range(5)]

    asyncio.run_coroutine_threadsafe(spawn(), _get_loop()).result()
    raise OSError(errno.ENOSPC, "No space left on device")

info.command = full_disk
sys.exit(cli.main(["info", "x.zarr"]))
"""


def test_disk_full_is_one_line(tmp_path):
    # issue 30, before: the right line, then ~70 lines of asyncio "Task was destroyed but it is
    # pending!" with tracebacks (seen with a SmolLM2 run on a 4 MB tmpfs)
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", _ABANDONED_WRITES],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], done.stderr
