"""The research-scale benchmarks' own logic: the dtype benchmark's varied-prompt controls (which
the concept-grouped anomaly analysis needs since identical controls became one CV group) and
``research_scale.py``'s estimate read from its own measured rows."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / f"benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tiny, tmp_path: Path, variants: int):
    import xarray as xr

    import mechintro as mi
    from mechintro import runs
    from mechintro.experiments import detection_logits
    from mechintro.runner import execute

    bench = _script("resid_dtype_error")
    rng = np.random.default_rng(0)
    words = list(bench.CONCEPTS)
    array = rng.standard_normal((len(words), tiny.n_layers, tiny.d_model)).astype(np.float32)
    vectors = mi.vectors_from_array(array, tiny, words, method="random")
    trials, layers = bench.varied_trials(tiny, vectors, variants=variants)
    out = execute(
        tiny, trials, tmp_path / f"v{variants}.zarr",
        config=detection_logits.Config(
            concepts=bench.CONCEPTS, layers=("0.5",), strengths=(2.0, 4.0, 8.0, 16.0),
            record_resid=True,
        ),
        experiment=detection_logits.NAME, mode="logits", answers=detection_logits.YES_NO,
        layers=layers, vectors=vectors, progress=False,
    )  # fmt: skip
    ds = runs.open_run(out).load()
    injected = np.asarray(ds["condition"].values) != "control"
    labels = xr.DataArray(np.where(injected, "detected", "control"), dims="trial")
    return trials, ds, labels


def test_the_dtype_benchmarks_controls_vary_so_the_anomaly_analysis_runs(tiny, tmp_path):
    from mechintro.analysis.anomaly import anomaly_directions
    from mechintro.errors import MechintroError

    trials, ds, labels = _run(tiny, tmp_path, variants=16)
    controls = [tuple(t.prompt.input_ids) for t in trials if t.condition == "control"]
    assert len(controls) == 8 and len(set(controls)) == 8  # two per strength, all different
    injected = {tuple(t.prompt.input_ids) for t in trials if t.condition != "control"}
    assert len(injected) > 1 and injected & set(controls)  # same prompts on both sides
    result = anomaly_directions(ds, labels, n_boot=20)
    assert np.isfinite(result.auc.values).all()

    # the earlier design: every control on "Trial 1", one CV group, refused
    _, ds1, labels1 = _run(tiny, tmp_path, variants=1)
    with pytest.raises(MechintroError, match="leaves no detected"):
        anomaly_directions(ds1, labels1, n_boot=20)


def test_the_estimate_reads_this_runs_rows():
    bench = _script("research_scale")

    def row(shape, positions, cpu, wall, ratio, stored=175, writer="inline"):
        return {
            "shape": shape, "resid_positions": positions, "writer": writer,
            "write_raw_MB_per_cpu_s": cpu, "write_raw_MB_s": wall, "resid_ratio": ratio,
            "positions_stored": stored, "prompt_width": 175,
        }  # fmt: skip

    rows = [
        row("smollm2-135m", "all", 80.0, 8.0, 4.8),
        row("smollm2-135m", "window", 140.0, 14.0, 12.5, stored=30),
        row("llama-8b-width", "all", 70.0, 7.0, 2.9),
        row("llama-8b-width", "all", None, 9.0, 2.9, writer="background"),
        row("llama-70b-width", "all", 60.0, 6.0, 2.8),
    ]
    args = argparse.Namespace()
    bench.estimate_inputs(rows, args, "cpu")
    assert args.write_mb_s_all == 70.0  # the 8B width's own rate
    assert args.write_mb_s_window == 140.0  # no 8B-width window row: SmolLM2's
    assert args.ratio_all == 4.8  # compression: the trained model's
    assert args.window_share == round(30 / 175, 3)
    assert args.ratio_window == round(12.5 * 30 / 175, 2)
    bench.estimate_inputs(rows, args, "wall")
    assert (args.write_mb_s_all, args.write_mb_s_window) == (7.0, 14.0)


def test_all_quick_measures_both_writers_the_back_pressure_and_the_estimate(
    tiny, monkeypatch, capsys
):
    """``--all-quick`` on the tiny model, with the simulations' widths and the trial counts
    shrunk: each shape is run with writes inline and on the background writer, side by side,
    and the rows carry what the docs quote (MB per CPU-second inline; the writer's back-pressure
    and tail in the background; a peak memory; the load), then the estimate from the run's own
    rows, per CPU-second and at the wall-clock rates."""
    import json
    import sys

    import mechintro
    from mechintro import runner

    bench = _script("research_scale")
    monkeypatch.setattr(mechintro, "load_model", lambda *a, **k: tiny)
    monkeypatch.setattr(
        bench,
        "SIMS",
        {"llama-8b-width": (64, 4, 2, 128, 32), "llama-70b-width": (96, 4, 2, 192, 80)},
    )
    # the writer part (its off/on alternation, unchanged but for the load it prints) is left out
    # to keep this test short
    quick = {**bench.QUICK, "strengths": 2, "sim_strengths": 2, "parts": "store,estimate"}
    monkeypatch.setattr(bench, "QUICK", quick)
    monkeypatch.setattr(sys, "argv", ["research_scale.py", "--all-quick", "--batch-size", "2"])
    assert bench.main() == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert runner.BACKGROUND_WRITES is True  # restored
    rows = [x for x in lines if "writer" in x and "shape" in x]
    shapes = {(r["shape"], r["resid_positions"], r["writer"]) for r in rows}
    assert shapes == {
        *((s, p, w) for s in ("smollm2-135m", "llama-8b-width") for p in ("all", "window")
          for w in ("inline", "background")),
        ("llama-70b-width", "all", "inline"), ("llama-70b-width", "all", "background"),
    }  # fmt: skip
    for r in rows:
        assert r["batches"] >= 2 and r["peak_rss_GB"] > 0 and r["store_MB_per_trial"] > 0
        assert len(r["load_1min_start_end"]) == 2
        if r["writer"] == "inline":
            assert r["write_raw_MB_per_cpu_s"] > 0 and r["writer_backpressure_s"] is None
        else:
            assert r["write_raw_MB_per_cpu_s"] is None
            assert r["writer_backpressure_s"] >= 0 and r["writer_tail_s"] > 0
    sim = next(r for r in rows if r["shape"] == "llama-70b-width")
    assert sim["d_model"] == 96 and sim["full_layers"] == 80
    assert len([x for x in lines if "writer_effect" in x]) == 5
    estimates = [x for x in lines if "settings" in x]
    eight_b = next(r for r in rows if r["shape"] == "llama-8b-width" and r["writer"] == "inline")
    assert len(estimates) == 4  # defaults and recommended, per CPU-second and wall clock
    assert estimates[0]["assumed"]["write_MB_s"] == eight_b["write_raw_MB_per_cpu_s"]
    assert estimates[2]["assumed"]["write_MB_s"] == eight_b["write_raw_MB_s"]
    assert "total_wall_s" in lines[-1] and "end_load_1_5_15min" in lines[-1]
