"""``resid_dtype`` stores the residual stream as float16 (the default), float32 or bfloat16: each
round-trips exactly (bfloat16 as its bits, read back as float32), verifies, resumes only with
the same dtype, and a bad value is one line with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import zarr

from mechintro import runner, runs
from mechintro.cli import main
from mechintro.errors import MechintroError
from mechintro.experiments import detection_logits
from tests.unit.test_oom_backoff import _trials

KW = dict(mode="logits", answers=runner.YES_NO, batch_size=3, record=True)


@pytest.fixture(scope="module")
def stores(tiny, tmp_path_factory):
    """The same five trials recorded in each dtype."""
    tmp = tmp_path_factory.mktemp("dtypes")
    return {
        dtype: runner.execute(
            tiny, _trials(tiny, 5), tmp / f"{dtype}.zarr", config={"resid_dtype": dtype}, **KW
        )
        for dtype in ("float32", "float16", "bfloat16")
    }


def test_each_dtype_round_trips_the_forwards_values(stores):
    f32 = runs.open_run(stores["float32"]).load()
    assert f32.resid.dtype == np.float32
    reference = torch.from_numpy(f32.resid.values)  # the tiny model computes in float32
    f16 = runs.open_run(stores["float16"]).load()
    assert f16.resid.dtype == np.float16
    np.testing.assert_array_equal(f16.resid.values, reference.to(torch.float16).numpy())
    bf16 = runs.open_run(stores["bfloat16"]).load()
    assert bf16.resid.dtype == np.float32  # read back exactly, as float32
    np.testing.assert_array_equal(
        bf16.resid.values, reference.to(torch.bfloat16).to(torch.float32).numpy()
    )
    assert not np.array_equal(bf16.resid.values, f16.resid.values.astype(np.float32))
    for ds in (f16, bf16):  # the readouts do not depend on how residuals are stored
        np.testing.assert_array_equal(ds.answer_logprobs.values, f32.answer_logprobs.values)


def test_on_disk_dtype_size_and_verify(stores):
    on_disk = {d: zarr.open_group(str(p), mode="r")["resid"] for d, p in stores.items()}
    assert on_disk["float32"].dtype == np.float32 and on_disk["float16"].dtype == np.float16
    assert on_disk["bfloat16"].dtype == np.uint16
    assert on_disk["bfloat16"].attrs["resid_dtype"] == "bfloat16"
    assert "resid_dtype" not in on_disk["float16"].attrs  # the default: stored as before
    raw = {d: a.nbytes for d, a in on_disk.items()}
    assert raw["float32"] == 2 * raw["float16"] == 2 * raw["bfloat16"]
    for path in stores.values():
        assert runs.verify(path).ok


def test_a_tampered_dtype_attribute_is_refused(stores, tmp_path):
    import shutil

    copy = tmp_path / "t.zarr"
    shutil.copytree(stores["bfloat16"], copy)
    meta = json.loads((copy / "resid" / "zarr.json").read_text())
    meta["attributes"]["resid_dtype"] = "float16"
    (copy / "resid" / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(MechintroError) as info:
        runs.open_run(copy)  # the manifest's copy of the metadata differs
    assert "\n" not in str(info.value)
    with pytest.raises(MechintroError, match="uint16 with resid_dtype 'float16'"):
        runs.open_run(copy, check="off")  # even unchecked, never read bits as float16


def test_bad_values_are_one_line_and_write_nothing(tiny, tmp_path):
    with pytest.raises(MechintroError, match="resid_dtype='float8' is invalid"):
        detection_logits.Config(resid_dtype="float8")
    with pytest.raises(MechintroError, match="resid_dtype 'int8' is not one of"):
        runner.execute(tiny, _trials(tiny, 2), tmp_path / "a.zarr",
                       config={"resid_dtype": "int8"}, **KW)  # fmt: skip
    assert not (tmp_path / "a.zarr").exists()


def test_the_cli_refuses_a_bad_dtype_in_one_line(tmp_path, capsys):
    out = tmp_path / "r.zarr"
    code = main(["-q", "run", "detection-logits", "--resid-dtype", "float64", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    # the flag's choices come from the config field's Literal (wt-31e): argparse names the flag
    assert code == 2 and "\n" not in err and "--resid-dtype: invalid choice: 'float64'" in err, err
    assert "'float16', 'bfloat16', 'float32'" in err
    assert not out.exists()


def test_resume_needs_the_same_dtype_and_old_runs_read_as_float16(tiny, tmp_path):
    config = detection_logits.Config(concepts=("cat", "dog"), layers=("1",), strengths=(1.0,),
                                     batch_size=2)  # fmt: skip
    out = detection_logits.run(config, tmp_path / "dl.zarr", model=tiny)
    group = zarr.open_group(str(out), mode="r+")
    stored = json.loads(group.attrs["config"])
    assert stored.pop("resid_dtype") == "float16"  # a run made before the field
    assert stored.pop("resid_positions") == ["all"]
    group.attrs["config"] = json.dumps(stored, sort_keys=True)
    group.attrs["complete"] = "false"
    detection_logits.run(config, out, model=tiny)  # resumes: no 'differs in'
    changed = detection_logits.Config(concepts=("cat", "dog"), layers=("1",), strengths=(1.0,),
                                      batch_size=2, resid_dtype="bfloat16")  # fmt: skip
    with pytest.raises(MechintroError, match="differs in: resid_dtype"):
        detection_logits.run(changed, out, model=tiny)


def test_generation_and_prefix_reuse_record_the_dtype(tiny, tmp_path):
    """The generation paths (and a shared prefix computed once) hand back the asked dtype."""
    from mechintro.experiments import injected_thoughts

    kw = dict(concepts=("cat",), layers=("1",), strengths=(2.0,), trials=2, controls=1,
              max_new_tokens=3, record_resid=True)  # fmt: skip
    f32 = runs.open_run(injected_thoughts.run(
        injected_thoughts.Config(**kw, resid_dtype="float32"), tmp_path / "a.zarr", model=tiny
    )).load()  # fmt: skip
    bf16 = runs.open_run(injected_thoughts.run(
        injected_thoughts.Config(**kw, resid_dtype="bfloat16"), tmp_path / "b.zarr", model=tiny
    )).load()  # fmt: skip
    expect = torch.from_numpy(f32.resid.values).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(bf16.resid.values, expect)
    np.testing.assert_array_equal(f32.response_ids.values, bf16.response_ids.values)


def test_shards_of_a_bfloat16_run_merge_into_the_unsharded_run(tiny, stores, tmp_path):
    config = {"resid_dtype": "bfloat16"}
    parts = [
        runner.execute(
            tiny,
            _trials(tiny, 5),
            tmp_path / f"p{i}.zarr",
            config=config,
            shard=runner.Shard(i, 2),
            **KW,
        )
        for i in (1, 2)
    ]
    merged = runs.merge(parts, tmp_path / "merged.zarr")
    assert runs.verify(merged).ok
    got, whole = runs.open_run(merged).load(), runs.open_run(stores["bfloat16"]).load()
    np.testing.assert_array_equal(got.resid.values, whole.resid.values)
    assert zarr.open_group(str(merged), mode="r")["resid"].dtype == np.uint16
