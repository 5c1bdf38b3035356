"""benchmarks/gpu_check.py runs its whole path on the CPU (``--device cpu``) and its comparison
fails when the device's numbers differ from the reference's."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks/gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(tiny, path: Path) -> Path:
    tiny.hf.save_pretrained(path, safe_serialization=True)
    tiny.tokenizer.save_pretrained(path)
    return path


ARGS = ["--device", "cpu", "--concepts", "cat,dog", "--trials", "2", "--max-new-tokens", "6"]


def test_cpu_path_passes_and_reports(tiny, tmp_path, capsys):
    ckpt = _checkpoint(tiny, tmp_path / "ckpt")
    code = _script().main(["--model", str(ckpt), *ARGS, "--out", str(tmp_path / "out")])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0 and rows[-1]["verdict"] == "PASS", rows
    dl, it = rows[0], rows[1]
    assert dl["max_abs_dlogprob"] <= 1e-3 and dl["resid_median_rel_err"] <= 1e-3
    assert it["first_token_agreement"] == 1.0
    assert dl["cpu"]["store_mb_per_s"] > 0 and it["cpu"]["tokens_per_s"] > 0


def test_a_device_that_differs_fails(tiny, tmp_path, capsys, monkeypatch):
    """Mutation: the 'device' model answers with perturbed log-probabilities → FAIL, exit 1."""
    import mechintro as mi

    module = _script()
    real_open = mi.open_run

    def open_run(path, *a, **kw):
        ds = real_open(path, *a, **kw)
        if "-cpu.zarr" in str(path) and "answer_logprobs" in ds:
            lp = ds.answer_logprobs.values.copy()
            lp[:, 0] += 0.5  # one answer form moves by half a nat
            ds = ds.assign(answer_logprobs=(ds.answer_logprobs.dims, lp))
        return ds

    monkeypatch.setattr(mi, "open_run", open_run)
    ckpt = _checkpoint(tiny, tmp_path / "ckpt")
    code = module.main(["--model", str(ckpt), *ARGS, "--out", str(tmp_path / "out")])
    verdict = json.loads(capsys.readouterr().out.splitlines()[-1])["verdict"]
    assert code == 1 and verdict.startswith("FAIL") and "log-prob" in verdict
