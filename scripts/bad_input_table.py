"""Write docs/bad-inputs.md: every case of tests/bad_inputs.py with the error it actually gets.

.venv/bin/python scripts/bad_input_table.py
"""

from __future__ import annotations

import contextlib
import io
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mechintro.cli import main, script_main  # noqa: E402
from mechintro.errors import MechintroError  # noqa: E402
from tests.bad_inputs import CASES, build_env  # noqa: E402


def message(case, env: Path) -> str:
    with pytest.MonkeyPatch.context() as mp:
        if case.patch is not None:
            case.patch(mp)
        if case.argv is not None:
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(["-q", *[a.replace("{env}", str(env)) for a in case.argv]])
            assert code == 2, case.id
            return err.getvalue().strip()
        try:
            case.call(env)
        except MechintroError as exc:
            return f"MechintroError: {exc}"
        raise AssertionError(f"{case.id} raised nothing")


def main_() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = build_env(Path(tmp) / "env")
        rows = []
        for case in CASES:
            text = message(case, env).replace(str(env), "…").replace("|", "\\|")
            surface = "CLI (exit 2)" if case.argv is not None else "Python API"
            rows.append(f"| `{case.id}` | {case.what} | {surface} | {text} |")
    head = [
        "# Bad inputs and the errors they get",
        "",
        f"{len(CASES)} bad inputs, each one a test (`tests/unit/test_bad_inputs.py`, cases in",
        "`tests/bad_inputs.py`). CLI cases exit with status "
        "2 and print exactly this one line on stderr,",
        "with no traceback (`--debug` shows it) and no output file left behind; API cases raise",
        "`mechintro.MechintroError` (a `ValueError`). `…` stands for the test's temporary folder.",
        "Regenerate with `.venv/bin/python scripts/bad_input_table.py`.",
        "",
        "| id | input | where | error |",
        "|---|---|---|---|",
    ]
    (ROOT / "docs" / "bad-inputs.md").write_text("\n".join(head + rows) + "\n")
    print(f"wrote docs/bad-inputs.md ({len(rows)} cases)")


if __name__ == "__main__":
    script_main(main_)
