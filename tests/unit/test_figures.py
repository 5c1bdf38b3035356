"""Figure scripts read saved runs only and embed the run's provenance in the PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from mechintro.experiments import detection_logits as D
from mechintro.vectors import concept_vectors

ROOT = Path(__file__).resolve().parents[2]


def test_detection_figure_from_saved_run_has_provenance(tiny, tmp_path):
    vectors = concept_vectors(tiny, ["Dust", "Oceans"], baseline=["Sand", "Clay"])
    config = D.Config(
        model="tiny",
        concepts=("Dust", "Oceans"),
        layers=("1", "2"),
        strengths=(1.0, 4.0),
        record_resid=False,
    )
    run = D.run(config, tmp_path / "r.zarr", model=tiny, vectors=vectors)
    done = subprocess.run(
        [
            sys.executable,
            "analyses/detection_logits_shift.py",
            "--run",
            str(run),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-1000:]
    png = Image.open(tmp_path / "detection_logits_shift.png")
    source = json.loads(png.text["Source"])
    assert source["weights_sha256"] == tiny.weights_sha256 and json.loads(source["config"])[
        "strengths"
    ] == [1.0, 4.0]
    assert png.text["Software"].startswith("mechintro ")


def test_a_figure_scripts_uncaught_refusal_is_one_line():
    """Once ``_figure`` is imported (every analysis script does, whether or not it calls
    ``arguments``) a MechintroError the script does not catch itself (e.g. from an analysis
    function) prints its one line, no traceback; other errors keep theirs."""
    code = (
        "import sys; sys.path.insert(0, 'analyses'); sys.argv = ['fig.py']\n"
        "import _figure\n"
        "from mechintro.errors import MechintroError\n"
        "raise MechintroError('the runs share no items: run both with the same tasks')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    assert done.stderr == "fig.py: error: the runs share no items: run both with the same tasks\n"
    other = subprocess.run(
        [sys.executable, "-c", code.replace("MechintroError('", "KeyError('")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" in other.stderr


def test_probe_figure_without_a_scoreable_property_says_so():
    """Looking Inward's probe figure for answers with no boolean property varying within a task
    says so on its axes instead of being blank."""
    import numpy as np
    import xarray as xr

    from mechintro.plotting import probe_auc

    grid, cells = ("source", "property", "depth"), ("source", "property")
    result = xr.Dataset(
        {k: (grid, np.full((1, 1, 2), np.nan)) for k in ("auc", "lo", "hi")}
        | {k: (cells, np.zeros((1, 1), int)) for k in ("n", "pairs")},
        coords={"source": ["a (own)"], "property": ["ethical_stance"], "depth": [0.0, 1.0]},
    )
    fig = probe_auc(result)
    assert [t.get_text() for t in fig.axes[0].texts] == [
        "no boolean property of these answers\nvaries within a held-out task"
    ]


def test_a_figure_redrawn_from_the_same_inputs_has_the_same_bytes(tmp_path):
    """``make figures`` twice on the same data leaves ``git status`` clean: the PNG holds no time,
    version or commit (a remade run's ``created``, another checkout's commit), only what
    determines its pixels; the rest of the provenance is in the sidecar beside it."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "analyses")!r}); sys.argv = ["demo_fig.py"]
import _figure
import matplotlib.pyplot as plt
import xarray as xr
import mechintro.provenance as prov

def draw(out, created, commit, versions):
    prov.git_commit = lambda: commit  # the checkout that draws it
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [1, 0, 2])
    attrs = dict(experiment="detection-logits", model="tiny", weights_sha256="ab" * 32,
                 config='{{"seed": 0}}', seed="0", created=created, git_commit=commit,
                 package_versions=versions)
    return _figure.save(fig, out, "f", xr.Dataset(attrs=attrs))

a = draw("a", "2026-01-01T00:00:00", "1" * 40, '{{"torch": "2.1"}}')
b = draw("b", "2026-12-06T21:00:00", "2" * 40 + "-dirty", '{{"torch": "2.13"}}')
print(a.read_bytes() == b.read_bytes())
sidecar = json.loads((b.parent / "f.provenance.json").read_text())
print(sidecar["run"]["created"], sidecar["drawn_by"].endswith("-dirty)"))
"""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-3:] == ["True", "2026-12-06T21:00:00", "True"]
    png = Image.open(tmp_path / "a" / "f.png")
    assert png.text["Software"] == "mechintro analyses/demo_fig.py"
    assert json.loads(png.text["Source"])["weights_sha256"] == "ab" * 32


# issue 34's protocols: their figure script draws every shipped model's run (analyses/_figure.py
# per_model), and make_figures' FIGURES lists each PNG so that the make-figures test checks it


def test_each_shipped_models_run_of_the_new_protocols_is_drawn_and_listed():
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        from _figure import SHIPPED, per_model
        from make_figures import FIGURES, PER_MODEL
    finally:
        sys.path.remove(str(ROOT / "analyses"))
    five = {"strength-comparison", "sentence-localisation", "strength-classification"}
    assert set(PER_MODEL.values()) == five | {"mismatch", "concept-confusion"}
    for script, experiment in PER_MODEL.items():
        default = SHIPPED / "smollm2-135m" / f"{experiment}.zarr"
        drawn = per_model(str(default), experiment, script)
        names = [name for _, name in drawn]
        assert names[0] == script and drawn[0][0].attrs["model"] == "smollm2-135m"
        assert f"{script}_qwen2.5-coder-0.5b" in names, names  # the Qwen run is drawn too
        for ds, name in drawn[1:]:
            model = ds.attrs["model"]
            suffix = name[len(script) + 1 :]  # SmolLM2's {experiment}-{variant}.zarr, or a model
            variant = (SHIPPED / "smollm2-135m" / f"{experiment}-{suffix}.zarr").exists()
            assert variant == (model == "smollm2-135m"), name
            assert variant or name == f"{script}_{model}", name
            assert ds.attrs["experiment"] == experiment
        assert FIGURES.get(script, [script]) == names, script
        # any other run: that run alone, under the script's own name
        other = per_model(
            str(SHIPPED / "qwen2.5-coder-0.5b" / f"{experiment}.zarr"), experiment, script
        )
        assert [name for _, name in other] == [script]
