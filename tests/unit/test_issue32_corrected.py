"""Issue 32, the grader's error in every generation-mode rate: the closest-word calibration set
(thoughts-vs-text) and the per-cell rows of injected-thoughts, prefill and thoughts-vs-text,
read on the shipped runs (analyses/data). Each test fails on the code of dc28a2b."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mechintro as mi

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "analyses" / "data"


def _script(rel: str):
    """A script of the repository (scripts/, analyses/) imported as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(Path(rel).stem + "_under_test", ROOT / rel)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_word_calibration_set_is_labelled_blind_on_a_hash_fixed_split(capsys):
    """240 word-task replies, 80 per shipped run, each half fixed by a hash of (run, trial), each
    labelled with a candidate or "none"; the labelling sheet shows neither the concept nor a
    grader verdict."""
    from mechintro import grading

    items = grading.word_calibration_items(None)
    assert len(items) == 240
    assert {it["run"]: 0 for it in items}.keys() == {
        f"analyses/data/{m}/thoughts-vs-text.zarr"
        for m in ("smollm2-135m-default", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
    }
    for it in items:
        assert it["split"] == grading.word_split(it["run"], it["trial"])
        assert it["choice"] == "none" or it["choice"] in it["candidates"]
        assert it["concept"] in it["candidates"]
    # the split is the hash's, not the text's: the same trial in another run can land elsewhere
    assert grading.word_split("a", 1) == grading._hash_split("closest-word-split", "a", 1)
    assert grading.word_split("a", 1) != grading.apology_split("a", 1) or grading.word_split(
        "a", 2
    ) != grading.apology_split("a", 2)
    script = _script("scripts/word_calibration.py")
    # the shipped items are the ones its extract draws, labels aside
    labels = ("choice", "why", "borderline")
    assert [{k: v for k, v in it.items() if k not in labels} for it in items] == [
        {k: v for k, v in it.items() if k not in labels} for it in script.extract()
    ]
    assert script.main(["sheet"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert len(lines) == 240
    shipped = grading.calibration_items(str(ROOT / "tests" / "data" / "word_calibration.json"))
    for line, it in zip(lines, shipped, strict=True):
        assert line.split("\t") == [it["id"], ", ".join(it["candidates"]), repr(it["response"])]
    counts = grading.word_error_counts()
    assert sum(counts.values()) == len(grading.word_calibration_items("held_out"))


def test_unlabelled_word_items_are_refused_with_one_line(tmp_path):
    from mechintro import grading
    from mechintro.errors import MechintroError

    p = tmp_path / "w.json"
    p.write_text(json.dumps({"items": [{"id": "x", "choice": None, "split": "dev"}]}))
    with pytest.raises(MechintroError, match="1 items have no choice"):
        grading.word_calibration_items(None, str(p))


def test_thoughts_vs_text_word_rates_have_grader_corrected_twins():
    from mechintro import grading
    from mechintro.experiments import thoughts_vs_text as tt

    ds = mi.open_run(DATA / "qwen2.5-coder-0.5b" / "thoughts-vs-text.zarr")
    s = tt.summarize(ds)
    for v in ("word_corr", "word_corr_lo", "word_corr_hi"):
        assert v in s
    assert (s.word_corr_lo <= s.word + 1e-12).all() and (s.word_corr_hi >= s.word_corr_lo).all()
    assert grading.WORD_CALIBRATION in s.attrs["word_corrected"]
    assert str(grading.word_error_counts()) in s.attrs["word_corrected"]
    _k, n, _est, lo, hi = s.attrs["word_corrected_injected"]
    assert n == int(((ds.task == "word") & (ds.condition == "injected")).sum()) and lo <= hi
    text = tt.format_summary(s)
    assert "word corrected [95%]" in text and "closest-word calibration set" in text
    # the correction itself: a perfect, well-measured grader leaves the raw rate
    ok = np.array([True, False, False, True, False, False])
    task = np.array(["word"] * 6)
    inj = np.array([True, True, True, True, False, False])
    perfect = {"tp": 5000, "fn": 0, "tn": 5000, "fp": 0}
    out = tt.corrected_rates(ok, task, inj, np.array(list("abcdab")), perfect)
    assert out["word_corrected_injected"][2] == pytest.approx(0.5)
    assert out["word_corrected_uninjected"][2] == pytest.approx(0.0)


def test_the_thoughts_vs_text_verdict_is_refreshed_with_its_corrected_clause():
    import re

    from mechintro.experiments import thoughts_vs_text as tt

    rd = _script("analyses/results_doc.py")

    assert "thoughts-vs-text" in rd.REFRESHED_VERDICTS
    s = tt.summarize(mi.open_run(DATA / "qwen2.5-coder-0.5b" / "thoughts-vs-text.zarr"))
    verdict = rd._verdict("thoughts-vs-text", s)
    assert "Corrected for closest_word's error" in verdict
    assert re.match(rd.VERDICT_STARTS["thoughts-vs-text"], verdict)


def test_injected_thoughts_per_cell_rates_have_grader_corrected_twins():
    from mechintro import grading
    from mechintro.experiments import injected_thoughts as it
    from mechintro.readouts import grades
    from mechintro.stats import rogan_gladen

    ds = mi.open_run(DATA / "qwen2.5-coder-0.5b" / "injected-thoughts.zarr")
    s = it.summarize(ds)
    for name in ("tpr", "coherence", "affirmative", "fpr"):
        for x in ("_lo", "_hi"):
            assert np.isfinite(s[f"{name}_corr{x}"].values).all()
        assert (s[f"{name}_corr_lo"] <= s[f"{name}_corr_hi"]).all()
    # the cell's FPR is corrected with the coherent-and-affirmative counts over its controls
    g = grades(ds)
    cell = s.isel(inject_layer=0, strength=0)
    rows = (
        (ds.condition.values == "control")
        & (ds.inject_layer.values == int(cell.inject_layer))
        & (ds.strength.values == float(cell.strength))
    )
    fp = g["false_positive"].values[rows]
    iv = rogan_gladen(int(fp.sum()), fp.size, grading.error_counts("coherent_affirmative"))
    assert float(cell.fpr_corr_hi) == pytest.approx(iv.hi)
    text = it.format_summary(s)
    assert "per cell, grader-corrected" in text and "FPR(cell) corrected" in text


def test_prefill_per_cell_rates_have_grader_corrected_twins():
    from mechintro.experiments import prefill

    ds = mi.open_run(DATA / "qwen2.5-coder-1.5b" / "prefill.zarr")
    s = prefill.summarize(ds)
    injected = int((ds.condition.values != "control").sum())
    assert int(s.n_all.sum()) == injected
    assert int(s.k_all.sum()) == int(
        (prefill.apologies(ds)["apology"].values[ds.condition.values != "control"] == 1).sum()
    )
    assert (s.rate_corr_lo <= s.rate_corr_hi).all()
    text = prefill.format_summary(s)
    assert "per cell, apologies among all replies" in text


def test_smollm2s_anomaly_table_is_rendered_from_a_json_made_with_the_leak_fixes():
    """Item 3: the SmolLM2 anomaly table of docs/analysis.md is the rendering of its shipped JSON
    (not typed), and that JSON was made with the 16 identical controls as one cluster and
    simultaneous max-over-layers intervals, with margin 0 (the pre-set one) first."""
    doc = _script("analyses/anomaly_doc.py")
    saved = json.loads((DATA / "anomaly" / "smollm2-135m.json").read_text())
    first = next(iter(saved["margins"].values()))
    assert first["attrs"]["margin"] == 0.0 and first["attrs"]["control_clusters"] == 1
    assert first["attrs"]["controls"] == 16
    for r in first["layers"].values():
        for k, _ in doc.DIFFS:
            assert r[f"sim_vs_{k}_lo"] <= r[f"vs_{k}_lo"] and r[f"sim_vs_{k}_hi"] >= r[f"vs_{k}_hi"]
        # passes only on the simultaneous intervals and the corrected p
        sim_ok = all(r[f"sim_vs_{k}_lo"] > 0 for k, _ in doc.DIFFS) and r["p_perm_max"] < 0.05
        assert bool(r["passes"]) == sim_ok
    text = (ROOT / "docs" / "analysis.md").read_text()
    start, end = "<!-- anomaly_doc:smollm2-135m -->\n", "\n<!-- /anomaly_doc:smollm2-135m -->"
    assert text.split(start, 1)[1].split(end, 1)[0] == doc.render(saved)


def test_the_table_writers_refuse_a_document_without_their_markers(tmp_path):
    from mechintro.errors import MechintroError

    doc = tmp_path / "d.md"
    doc.write_text("no markers here\n")
    with pytest.raises(MechintroError, match="no <!-- anomaly_doc:x --> … "):
        _script("analyses/anomaly_doc.py").write(doc, "x", "table")
    with pytest.raises(MechintroError, match="word_calibration:corrected"):
        _script("scripts/word_calibration.py")._write_table(tmp_path / "missing.md")
    assert doc.read_text() == "no markers here\n" and not (tmp_path / "missing.md").exists()
