"""The type checker holds in CI: mypy, strict on the kit — the engine (with its edit and
interventions), the runner and its readouts (``mechintro.reading``), the run store
(``mechintro.runs`` and ``mechintro/store/``) and the experiments' base — with the configuration
of pyproject.toml's ``[tool.mypy]`` (other modules are read for their types, their own errors not
reported; torch, nnsight, transformers and dask are not analysed). mypy is pinned in the ``dev``
extra, which ``scripts/setup.sh`` installs. To see what fails, run the command of ``_mypy``:
``.venv/bin/python -m mypy mechintro/engine.py mechintro/edit.py mechintro/interventions.py
mechintro/runner.py mechintro/reading.py mechintro/runs.py mechintro/store
mechintro/experiments/base.py``."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KIT = (
    "mechintro/engine.py",
    "mechintro/edit.py",
    "mechintro/interventions.py",
    "mechintro/runner.py",
    "mechintro/reading.py",
    "mechintro/runs.py",
    "mechintro/store",
    "mechintro/experiments/base.py",
)
STRICT = {
    "mechintro.engine",
    "mechintro.edit",
    "mechintro.interventions",
    "mechintro.runner",
    "mechintro.reading",
    "mechintro.runs",
    "mechintro.store.*",
    "mechintro.experiments.base",
}


def _mypy(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_kit_is_strict_and_mypy_is_pinned():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    strict = [o for o in pyproject["tool"]["mypy"]["overrides"] if o.get("strict")]
    assert len(strict) == 1 and set(strict[0]["module"]) == STRICT
    assert any(d.startswith("mypy==") for d in pyproject["project"]["optional-dependencies"]["dev"])


def test_the_kit_type_checks():
    done = _mypy(*KIT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_type_error_in_a_kit_module_fails(tmp_path):
    """The strict settings reach the kit's modules by name: an unannotated function and a wrong
    return type planted in a copy of a store module are both reported."""
    package = tmp_path / "mechintro" / "store"
    package.mkdir(parents=True)
    (tmp_path / "mechintro" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    source = (ROOT / "mechintro" / "store" / "shards.py").read_text()
    planted = "\n\ndef untyped(x):\n    return x\n\n\ndef wrong() -> int:\n    return 'one'\n"
    (package / "shards.py").write_text(source + planted)
    done = _mypy("mechintro/store/shards.py", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Function is missing a type annotation  [no-untyped-def]" in done.stdout
    assert 'Incompatible return value type (got "str", expected "int")' in done.stdout
    (package / "shards.py").write_text(source)
    assert _mypy("mechintro/store/shards.py", cwd=tmp_path).returncode == 0
