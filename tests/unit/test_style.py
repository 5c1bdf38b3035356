"""House style holds in CI: the tree is `ruff format`ted and `ruff check` is clean, line length 100
included (rule E501), over the folders `make lint` checks. The configuration is pyproject.toml's
[tool.ruff]; to fix a failure run ``.venv/bin/python -m ruff format FOLDERS`` and wrap what
``.venv/bin/python -m ruff check FOLDERS`` still reports."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The folders of the Makefile's `lint` target.
FOLDERS = ("mechintro", "tests", "benchmarks", "analyses", "notebooks", "scripts")


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, *FOLDERS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lint_target_checks_these_folders():
    makefile = (ROOT / "Makefile").read_text()
    assert f"-m ruff format --check {' '.join(FOLDERS)}" in makefile
    assert f"-m ruff check {' '.join(FOLDERS)}" in makefile


def test_line_length_is_enforced():
    ruff = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]
    assert ruff["line-length"] == 100
    assert "E" in ruff["lint"]["select"] and "E501" not in ruff["lint"].get("ignore", [])


def test_complexity_is_limited_in_the_package():
    """McCabe complexity 15 at most for every function in mechintro/ (rule C901, which the
    `ruff check` below then holds); only the folders outside the package are exempt."""
    lint = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "C901" in lint["select"] and lint["mccabe"]["max-complexity"] == 15
    exempt = [k for k, v in lint.get("per-file-ignores", {}).items() if "C901" in v]
    assert not any(k.startswith("mechintro") for k in exempt), exempt


def test_ruff_is_the_pinned_version():
    """Ruff's formatter changes between releases: the check below means the pinned one."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pin = next(d for d in pyproject["project"]["optional-dependencies"]["dev"] if "ruff" in d)
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.split() == ["ruff", pin.split("==")[1]], (
        f"{done.stdout.strip()} installed, pyproject.toml pins {pin}: "
        "run `.venv/bin/python -m pip install -e '.[dev]'`"
    )


def test_the_tree_is_formatted():
    done = _ruff("format", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_ruff_check_is_clean():
    done = _ruff("check", "--output-format", "concise")
    assert done.returncode == 0, done.stdout + done.stderr
