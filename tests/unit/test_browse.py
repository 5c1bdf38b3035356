"""`mechintro runs DIR` / `mi.list_runs(DIR)` (not `mi.runs`: that is the module mechintro.runs):
every run under a folder with its status, checked from
metadata and the commit mask (complete / resumable / damaged); other zarr stores are not runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import mechintro as mi
from mechintro.experiments import detection_logits as D
from mechintro.vectors import concept_vectors, save_vectors

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def folder(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    vectors = concept_vectors(tiny, ["Dust", "Oceans"], baseline=["Sand", "Clay"])
    save_vectors(vectors, root / "vectors.zarr")  # a zarr store, not a run
    config = D.Config(
        model="tiny",
        concepts=("Dust", "Oceans"),
        layers=("1", "2"),
        strengths=(1.0, 4.0),
        record_resid=False,
        batch_size=4,
    )
    done = D.run(config, root / "a" / "done.zarr", model=tiny, vectors=vectors)
    # interrupted: the last trials uncommitted, the run not marked complete
    shutil.copytree(done, root / "a" / "interrupted.zarr")
    group = zarr.open_group(str(root / "a" / "interrupted.zarr"), mode="r+")
    n = group["committed"].shape[0]
    group["committed"][n - 4 :] = np.zeros(4, dtype=bool)
    group.attrs["complete"] = "false"
    # damaged: the root metadata truncated; an array's metadata deleted
    shutil.copytree(done, root / "b" / "truncated.zarr")
    (root / "b" / "truncated.zarr" / "zarr.json").write_text('{"zarr_format": 3, "node_')
    shutil.copytree(done, root / "b" / "no-meta.zarr")
    (root / "b" / "no-meta.zarr" / "input_ids" / "zarr.json").unlink()
    return root, n


def ds_model(root: Path) -> str:
    return mi.open_run(root / "a" / "done.zarr").attrs["model"]


def test_every_run_with_its_status(folder):
    root, n = folder
    found = {Path(e.path).relative_to(root).as_posix(): e for e in mi.list_runs(root)}
    assert set(found) == {
        "a/done.zarr",
        "a/interrupted.zarr",
        "b/truncated.zarr",
        "b/no-meta.zarr",
    }
    done, stopped = found["a/done.zarr"], found["a/interrupted.zarr"]
    assert (done.status, done.trials) == ("complete", f"{n}/{n}")
    assert (stopped.status, stopped.trials) == ("resumable", f"{n - 4}/{n}")
    assert done.experiment == "detection-logits" and done.model == ds_model(root)
    assert done.created and done.size_bytes > 10_000
    # the headline: the mean yes-share per condition, from the stored log-probabilities
    ds = mi.open_run(root / "a" / "done.zarr")
    p = np.exp(ds.answer_logprobs.values.astype(float))
    yes = (p * (ds.answer_label.values == "yes")).sum(1)
    share = yes / (yes + (p * (ds.answer_label.values == "no")).sum(1))
    control = float(share[ds.condition.values == "control"].mean())
    assert f"control {control:.3f}" in done.headline
    for name in ("b/truncated.zarr", "b/no-meta.zarr"):
        assert found[name].status == "damaged" and "mechintro verify" in found[name].problem
    frame = mi.list_runs(root).to_dataframe()
    assert len(frame) == 4 and set(frame.status) == {"complete", "resumable", "damaged"}


def test_the_cli_lists_them_and_names_a_missing_folder_in_one_line(folder, tmp_path):
    root, n = folder
    done = subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "runs", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    row = next(line for line in lines if line.strip().startswith("a/interrupted.zarr"))
    assert "resumable" in row and f"{n - 4}/{n}" in row and "detection-logits" in row
    assert sum("damaged: " in line for line in lines) == 2
    missing = subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "runs", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "is not a folder" in missing.stderr and "Traceback" not in missing.stderr


def test_the_listing_as_json_rows(folder):
    root, _ = folder
    rows = mi.list_runs(root).rows()
    assert json.loads(json.dumps(rows)) == rows and rows[0]["run"] == "a/done.zarr"


def test_every_positional_argument_of_runs_and_report_is_described():
    for command in ("runs", "report"):
        done = subprocess.run(
            [sys.executable, "-m", "mechintro.cli", command, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        section = done.stdout.split("positional arguments:")[1].split("options:")[0]
        lines = [line.split() for line in section.strip().splitlines()]
        assert lines and len(lines[0]) > 1, (command, section)  # a name, then its description


def test_sizes_in_the_units_du_uses():
    from mechintro.browse import human_size

    assert [human_size(n) for n in (512, 68 * 1024, 776 * 1024**2, 2 * 1024**3)] == [
        "512 B",
        "68.0 KiB",
        "776.0 MiB",
        "2.0 GiB",
    ]
