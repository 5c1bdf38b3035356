"""Exports of a run's trials: a labelled DataFrame, Parquet and a Hugging Face Dataset, each with
the run's provenance; the optional libraries' absence is one clear line."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import mechintro as mi
from mechintro.errors import MechintroError
from mechintro.experiments import detection_logits as D
from mechintro.vectors import concept_vectors


@pytest.fixture(scope="module")
def ds(tiny, tmp_path_factory):
    vectors = concept_vectors(tiny, ["Dust", "Oceans"], baseline=["Sand", "Clay"])
    config = D.Config(
        model="tiny", concepts=("Dust", "Oceans"), layers=("1", "2"), strengths=(1.0, 4.0)
    )
    out = tmp_path_factory.mktemp("export") / "r.zarr"
    return mi.open_run(D.run(config, out, model=tiny, vectors=vectors))


def test_one_labelled_row_per_trial(ds, tiny):
    frame = mi.to_dataframe(ds, prompts=True, tokenizer=tiny.tokenizer)
    assert len(frame) == ds.sizes["trial"] and frame.index.name == "trial"
    assert list(frame.condition) == [str(c) for c in ds.condition.values]
    assert np.allclose(frame.strength, ds.strength.values)
    p = np.exp(ds.answer_logprobs.values.astype(float))
    labels = np.array([str(v) for v in ds.answer_label.values])
    yes, no = p[:, labels == "yes"].sum(1), p[:, labels == "no"].sum(1)  # over the answer forms
    assert np.allclose(frame.p_yes_norm, yes / (yes + no))
    form = str(ds.answer.values[0])
    assert np.allclose(frame[f"logprob[{form}]"], ds.answer_logprobs.values[:, 0])
    assert "resid" not in frame and "digest" not in frame
    keep = ds.attention_mask.values[3].astype(bool)
    assert frame.prompt.iloc[3] == tiny.tokenizer.decode(ds.input_ids.values[3][keep].tolist())
    assert frame.attrs["weights_sha256"] == ds.attrs["weights_sha256"]


def test_parquet_round_trip_with_provenance(ds, tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from mechintro.export import read_provenance

    path = mi.to_parquet(ds, tmp_path / "r.parquet")
    back = pd.read_parquet(path)
    frame = mi.to_dataframe(ds)
    assert list(back.columns) == list(frame.columns) and len(back) == len(frame)
    assert np.allclose(back.p_yes_norm, frame.p_yes_norm)
    assert read_provenance(path)["weights_sha256"] == ds.attrs["weights_sha256"]
    with pytest.raises(MechintroError, match="already exists"):
        mi.to_parquet(ds, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.parquet"]  # no partial file


def test_hf_dataset_with_residuals_at_chosen_layers(ds, tiny):
    pytest.importorskip("datasets")
    layer = int(ds.layer.values[1])
    hf = mi.to_hf_dataset(ds, layers=[layer], tokenizer=tiny.tokenizer)
    assert hf.num_rows == ds.sizes["trial"]
    assert {"prompt", "condition", "concept", "p_yes_norm", f"resid_layer_{layer}"} <= set(
        hf.column_names
    )
    resid = np.array(hf[f"resid_layer_{layer}"], dtype=np.float32)
    assert np.allclose(resid, ds.resid.sel(layer=layer).isel(pos=-1).values.astype(np.float32))
    assert json.loads(hf.info.description)["mechintro_run"]["model"] == ds.attrs["model"]
    with pytest.raises(MechintroError, match="not in this run"):
        mi.to_hf_dataset(ds, layers=[999], tokenizer=tiny.tokenizer)


@pytest.mark.parametrize("module", ["pyarrow", "datasets"])
def test_a_missing_optional_library_is_one_line(ds, tmp_path, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    monkeypatch.setitem(sys.modules, f"{module}.parquet", None)
    with pytest.raises(MechintroError) as err:
        if module == "pyarrow":
            mi.to_parquet(ds, tmp_path / "r.parquet")
        else:
            mi.to_hf_dataset(ds)
    assert str(err.value) == (
        f"this export needs {module}, which is not installed: pip install 'mechintro[export]'"
    )
    assert not list(tmp_path.iterdir())
