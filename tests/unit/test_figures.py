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
