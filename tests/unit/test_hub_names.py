"""Hub ids without an org (gpt2, distilgpt2, …) are valid model names: they load offline from the
local Hugging Face cache (issue 36: `--model gpt2` was refused as "unknown model")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_with_tiny_gpt2(root: Path) -> Path:
    """A Hugging Face hub cache holding a tiny random checkpoint under the repo id ``gpt2``, laid
    out as `hf download` leaves it (refs/main names the snapshot)."""
    from tests.conftest import build_tiny

    hub = root / "hub"
    snapshot = hub / "models--gpt2" / "snapshots" / COMMIT
    tiny = build_tiny("llama")
    tiny.hf.save_pretrained(snapshot, safe_serialization=True)
    tiny.tokenizer.save_pretrained(snapshot)
    (hub / "models--gpt2" / "refs").mkdir()
    (hub / "models--gpt2" / "refs" / "main").write_text(COMMIT)
    return hub


def _offline_env(root: Path, hub: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    return env | {
        "HF_HOME": str(root / "hf-home"),
        "HF_HUB_CACHE": str(hub),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mechintro.cli", "-q", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_a_hub_id_without_an_org_loads_offline_from_the_local_cache(tmp_path):
    hub = _cache_with_tiny_gpt2(tmp_path)
    env = _offline_env(tmp_path, hub)
    out = tmp_path / "v.zarr"
    done = _cli(
        env,
        "vectors",
        "--model",
        "gpt2",
        "--concepts",
        "Dust",
        "--baseline-words",
        "Sand,Clay",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "wrote 1 lindsey vectors × 3 layers" in done.stdout and out.is_dir()
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import mechintro as mi; m = mi.load_model('gpt2', progress=False); "
            "print(m.name, m.weights_sha256, m.n_layers)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["gpt2", f"hf:gpt2@{COMMIT}", "3"]


def test_an_uncached_id_without_an_org_is_one_line_without_a_network_call(tmp_path):
    hub = tmp_path / "empty-hub"
    hub.mkdir()
    done = _cli(
        _offline_env(tmp_path, hub),
        "vectors",
        "--model",
        "distilgpt2",
        "--concepts",
        "Dust",
        "--out",
        str(tmp_path / "v.zarr"),
    )
    err = done.stderr.strip()
    assert done.returncode == 2 and "\n" not in err, err
    assert "unknown model 'distilgpt2'" in err and "local Hugging Face cache" in err
