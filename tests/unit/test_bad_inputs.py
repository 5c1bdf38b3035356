"""Every bad input in tests/bad_inputs.py gets its one-line error (and docs/bad-inputs.md lists
them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mechintro.cli import main
from mechintro.errors import MechintroError
from tests.bad_inputs import CASES, Case, build_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return build_env(tmp_path_factory.mktemp("bad"))


def run_case(case: Case, env: Path, monkeypatch, capsys) -> str:
    """Run one case and return its one-line error message (asserting the contract)."""
    if case.patch is not None:
        case.patch(monkeypatch)
    if case.argv is not None:
        argv = [a.replace("{env}", str(env)) for a in case.argv]
        code = main(["-q", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2, f"exit {code}: {err}"
        assert err.startswith("mechintro: error:") and "\n" not in err and "Traceback" not in err, (
            err
        )
        if case.out:
            assert not (env / case.out).exists(), f"{case.out} was left behind"
        return err.removeprefix("mechintro: error: ")
    with pytest.raises(MechintroError) as info:
        case.call(env)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, env, monkeypatch, capsys):
    message = run_case(case, env, monkeypatch, capsys)
    assert case.expect in message, message


def test_there_are_at_least_30_and_the_doc_lists_each():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)
    doc = (ROOT / "docs" / "bad-inputs.md").read_text()
    listed = re.findall(r"^\| `([a-z0-9-]+)` \|", doc, flags=re.M)
    assert listed == [c.id for c in CASES], (
        "regenerate with: .venv/bin/python scripts/bad_input_table.py"
    )


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(MechintroError, match="does not exist"):
        main(["--debug", "info", str(tmp_path / "nope.zarr")])


@pytest.mark.parametrize(
    ("argv", "attr", "want"),
    [
        (["run", "x", "--strengths", "-1,2"], "strengths", [-1.0, 2.0]),
        (["run", "x", "--strengths=-1,2"], "strengths", [-1.0, 2.0]),
        (["run", "x", "--strengths", "-.5,-2e1"], "strengths", [-0.5, -20.0]),
        (["run", "x", "--layers", "-1,0.5"], "layers", ["-1", "0.5"]),
        (
            ["oracle", "ask", "o", "r", "--question", "q", "--out", "a", "--positions", "-3,-1"],
            "positions",
            ["-3", "-1"],
        ),
        (["grade", "r", "--criteria", "coherence"], "criteria", ["coherence"]),
    ],
)
def test_negative_numbers_in_list_options_in_both_forms(argv, attr, want):
    """`--strengths -1,2` was taken for an unknown option (only `--strengths=-1,2` worked)."""
    from mechintro.cli import _parser

    args = _parser().parse_args(argv)
    assert getattr(args, attr) == want


def test_an_unwritable_out_folder_is_refused_before_work(tmp_path, monkeypatch, capsys):
    """Root may write anywhere, so the read-only/permission answer of access(2) is simulated."""
    import os

    import mechintro.cli._common

    real = os.access
    monkeypatch.setattr(
        mechintro.cli._common.os,
        "access",
        lambda p, mode: False if Path(p) == tmp_path else real(p, mode),
    )

    def refuse(*args, **kwargs):
        raise AssertionError("the model loaded before --out was checked")

    monkeypatch.setattr("mechintro.models.load_model", refuse)
    code = main(["-q", "vectors", "--concepts", "Dust", "--out", str(tmp_path / "sub" / "v.zarr")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not writable" in err and "\n" not in err, err
