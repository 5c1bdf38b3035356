"""`make notebook` installs its kernel into .venv, where another clone cannot repoint it, and
`make lab` starts JupyterLab with that venv's kernels ahead of a user-wide "mechintro"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "mechintro"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_notebook_installs_the_kernel_into_the_venv():
    done = subprocess.run(
        ["make", "-n", "-W", "pyproject.toml", "notebook", "lab"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    install = [line for line in done.stdout.splitlines() if "ipykernel install" in line]
    assert len(install) == 1 and "--sys-prefix" in install[0] and "--user" not in install[0]
    assert f"JUPYTER_PATH={ROOT}/.venv/share/jupyter " in done.stdout
    # setuptools' "Editable installation" banner is filtered in each editable install
    editable = [
        line for line in done.stdout.splitlines() if "pip install" in line and " -e " in line
    ]
    setup = [
        line
        for line in (ROOT / "scripts/setup.sh").read_text().splitlines()
        if "install" in line and " -e " in line
    ]
    assert editable and setup
    assert all('PYTHONWARNINGS="ignore:Editable installation"' in x for x in editable + setup)


def test_the_venvs_kernel_wins_over_a_user_wide_one(tmp_path):
    """What `make lab` relies on: with JUPYTER_PATH at a prefix's kernels, a user-wide kernel of
    the same name (another clone's, in ~/.local) does not shadow it."""
    home = tmp_path / "home"
    other = home / ".local/share/jupyter/kernels/mechintro"
    other.mkdir(parents=True)
    spec = {"argv": ["/another/clone/.venv/bin/python", "-m", "ipykernel_launcher"]}
    (other / "kernel.json").write_text(json.dumps({**spec, "display_name": "x", "language": "p"}))
    prefix = tmp_path / "venv"
    env = {**os.environ, "HOME": str(home)}
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTER_DATA_DIR", None)
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", NAME],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    which = (
        "from jupyter_client.kernelspec import get_kernel_spec as g; print(g('mechintro').argv[0])"
    )
    before = subprocess.run(
        [sys.executable, "-c", which], env=env, capture_output=True, text=True, timeout=60
    )
    assert before.stdout.strip() == spec["argv"][0]  # without it the user-wide one wins
    env["JUPYTER_PATH"] = str(prefix / "share/jupyter")
    after = subprocess.run(
        [sys.executable, "-c", which], env=env, capture_output=True, text=True, timeout=60
    )
    assert after.returncode == 0, after.stderr[-2000:]
    assert after.stdout.strip() != spec["argv"][0] and "python" in after.stdout
