"""scripts/summary_digests.py, the refactor check: a changed number fails, an added one passes
only with --allow-added, and a number digests alike as a numpy or a Python scalar."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from mechintro.experiments import injected_thoughts as IT
from mechintro.vectors import concept_vectors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def sd():
    spec = importlib.util.spec_from_file_location(
        "summary_digests", ROOT / "scripts/summary_digests.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def root(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("digests")
    vectors = concept_vectors(tiny, ["Dust", "Oceans"], baseline=["apple", "chair"])
    config = IT.Config(
        concepts=("Dust", "Oceans"), layers=(1,), strengths=(2.0,), trials=2, controls=1,
        max_new_tokens=2,
    )  # fmt: skip
    IT.run(config, root / "it.zarr", model=tiny, vectors=vectors)
    return root


def test_an_attribute_digests_alike_as_numpy_or_python_values(sd):
    assert sd._value_digest([np.int64(2), np.float64(0.5)]) == sd._value_digest((2, 0.5))
    assert sd._value_digest({"k": np.array([1.0, 2.0])}) == sd._value_digest({"k": [1.0, 2.0]})
    assert sd._value_digest([2, 0.5]) != sd._value_digest([2, 0.51])


def test_check_passes_unchanged_and_tells_added_from_changed(
    sd, root, tmp_path, monkeypatch, capsys
):
    saved = tmp_path / "before.json"
    assert sd.main([str(root), "--save", str(saved)]) == 0
    assert sd.main([str(root), "--check", str(saved)]) == 0
    assert capsys.readouterr().out.endswith("1 unchanged of 1\n")

    summarize = IT.summarize

    def added(ds):
        out = summarize(ds)
        out.attrs["extra"] = 1.0
        return out.assign(extra_rate=out.tpr * 0)

    monkeypatch.setattr(IT, "summarize", added)
    assert sd.main([str(root), "--check", str(saved)]) == 1
    assert "added: extra, extra_rate:" in capsys.readouterr().err
    assert sd.main([str(root), "--check", str(saved), "--allow-added"]) == 0

    def changed(ds):
        out = summarize(ds)
        return out.assign(tpr=out.tpr + 1e-12)

    monkeypatch.setattr(IT, "summarize", changed)
    assert sd.main([str(root), "--check", str(saved), "--allow-added"]) == 1
    assert "changed: tpr:" in capsys.readouterr().err

    moved_attr = []

    def moved(ds):
        out = summarize(ds)
        numbers = [k for k, v in out.attrs.items() if type(v) in (int, float, np.float64)]
        moved_attr.append(sorted(numbers)[0])
        out.attrs[moved_attr[0]] += 1
        return out

    monkeypatch.setattr(IT, "summarize", moved)
    assert sd.main([str(root), "--check", str(saved), "--allow-added"]) == 1
    assert f"changed: {moved_attr[0]}:" in capsys.readouterr().err


def test_a_store_of_an_experiment_the_saved_library_lacked_is_new(sd):
    summary = {"summary": "a", "table": "t", "variables": {"x": "1"}, "attrs": {}}
    run_data = {**summary, "table": "", "kind": "run data"}
    assert sd.compare({"s": run_data}, {"s": summary}) == {"s": "new"}
    assert sd.compare(
        {"s": {"summary": "unreadable: newer schema", "table": ""}}, {"s": summary}
    ) == {"s": "new"}
    assert sd.compare({"s": summary}, {}) == {"s": "gone"}
