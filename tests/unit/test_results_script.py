"""scripts/results.py's timing: segments of a resumed protocol add up, and a stop keeps the
stopped segment's time."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def results(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts/results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RUNS", tmp_path)
    handler = signal.getsignal(signal.SIGTERM)
    yield module
    signal.signal(signal.SIGTERM, handler)


def _experiment(calls: list[str], stop: bool) -> types.SimpleNamespace:
    def run(config, out, model, progress):
        calls.append(config.model)
        if stop:
            os.kill(os.getpid(), signal.SIGTERM)

    def config(model, **sizes):
        return types.SimpleNamespace(model=model)

    return types.SimpleNamespace(Config=config, run=run)


def test_segments_add_up_and_a_stop_keeps_its_time(results, monkeypatch, tmp_path):
    import mechintro.experiments as experiments
    import mechintro.models as models

    calls: list[str] = []
    monkeypatch.setattr(models, "load_model", lambda name, dtype: types.SimpleNamespace())
    monkeypatch.setattr(experiments, "EXPERIMENTS", {"sweep": _experiment(calls, stop=True)})
    with pytest.raises(SystemExit) as stopped:
        results.run("m", "default", ["sweep"])
    assert stopped.value.code == 130
    timing = json.loads((tmp_path / "m" / "timing.json").read_text())
    assert timing["sweep"]["finished"] is False and len(timing["sweep"]["segments"]) == 1

    monkeypatch.setattr(experiments, "EXPERIMENTS", {"sweep": _experiment(calls, stop=False)})
    results.run("m", "default", ["sweep"])
    entry = json.loads((tmp_path / "m" / "timing.json").read_text())["sweep"]
    assert entry["finished"] is True and len(entry["segments"]) == 2
    assert entry["seconds"] == pytest.approx(sum(s["seconds"] for s in entry["segments"]), abs=0.2)
    assert all(len(s["load"]) == 2 for s in entry["segments"])

    results.run("m", "small", ["sweep"])  # another size starts the count again
    entry = json.loads((tmp_path / "m" / "timing.json").read_text())["sweep"]
    assert entry["size"] == "small" and len(entry["segments"]) == 1
    assert calls == ["m", "m", "m"]
    assert "results_script" not in sys.modules


def test_timing_table_adds_up_and_marks_unfinished(results):
    table = results.timing_table(
        {
            "sweep": {"size": "default", "seconds": 90.0, "finished": True},
            "localisation": {
                "size": "default",
                "seconds": 585.0,
                "finished": True,
                "segments": [{"seconds": 4.0, "load": [2.1, 2.1]}],
            },
            "prefill": {
                "size": "default",
                "seconds": 3700.0,
                "finished": False,
                "segments": [{"seconds": 3700.0, "load": [2.01, 2.5]}],
            },
        }
    )
    lines = table.splitlines()
    assert lines[2] == "| sweep | default | 1m30s | — | — | yes |"
    assert lines[3] == (
        "| localisation | default | 9m45s | 1 + earlier, load not recorded | 2.1→2.1 | yes |"
    )
    assert lines[4] == "| prefill | default | 1h01m | 1 | 2.0→2.5 | **no** |"
    assert lines[-1] == "| all | | 1h12m | | | |"


def test_a_refusal_is_one_line_not_a_traceback(results, monkeypatch, capsys):
    """A MechintroError inside a protocol (here: a resume that would mix settings) ends the
    script with its one line and status 2, as the CLI does."""
    from mechintro.cli import script_main
    from mechintro.errors import MechintroError

    def refuse(*args, **kwargs):
        raise MechintroError("r.zarr was made with a different setup (differs in: dtype)")

    monkeypatch.setattr(results, "run", refuse)
    monkeypatch.setattr(sys, "argv", ["results.py", "run", "--size", "tiny"])
    with pytest.raises(SystemExit) as stop:
        script_main(results.main)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == "results.py: error: r.zarr was made with a different setup (differs in: dtype)\n"


SCRIPT_FOLDERS = ("scripts", "analyses", "benchmarks")
# Runs the authors' code on its own sys.path, so it must not import mechintro at the top.
# run partly in the authors' own environment, outside the repository's (no mechintro to import)
OWN_ERRORS = {
    "scripts/classification_side_by_side.py",
    "scripts/confusion_side_by_side.py",
    "scripts/latent_side_by_side.py",
    "scripts/replication_side_by_side.py",
    "scripts/strength_side_by_side.py",
}


def test_every_script_ends_in_script_main():
    """Every runnable script reports a MechintroError as one line (mechintro.cli.script_main)."""
    missing = []
    for folder in SCRIPT_FOLDERS:
        for path in sorted((ROOT / folder).glob("*.py")):
            name = f"{folder}/{path.name}"
            text = path.read_text()
            if 'if __name__ == "__main__":' not in text or name in OWN_ERRORS:
                continue
            tail = text.split('if __name__ == "__main__":')[-1]
            if re.search(r"script_main\(main_?\)", tail) is None:
                missing.append(name)
    assert not missing, f"end these with `script_main(main)`: {missing}"
