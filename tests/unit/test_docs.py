"""The repository is self-contained: code and docs cite papers, the authors' code and docs/, never
private notes that a reader of the repository cannot open."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCOPE = ("mechintro", "docs", "tests", "analyses", "notebooks", "scripts", "README.md")
TEXT = {
    ".py",
    ".md",
    ".json",
    ".ipynb",
    ".txt",
    ".toml",
    ".cff",
    ".yaml",
    ".yml",
    ".cfg",
    ".sh",
    ".rst",
}
# Built from pieces so that this file does not match itself.
PRIVATE = re.compile(
    "|".join(
        re.escape(a + b)
        for a, b in (
            ("PROTOCOL", ".md"),
            ("ENGINEERING", "_NOTES"),
            ("STYLE", ".md"),
            ("shared/", "reference"),
        )
    )
)


def _files() -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--", *SCOPE], cwd=ROOT, capture_output=True, check=True
        ).stdout
        paths = [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (e.g. an sdist)
        paths = [
            p
            for s in SCOPE
            for p in ([ROOT / s] if (ROOT / s).is_file() else (ROOT / s).rglob("*"))
        ]
    return [p for p in paths if p.is_file() and (p.suffix in TEXT or p.name == "README.md")]


def test_the_pattern_catches_each_private_note():
    for name in (
        "PROTOCOL" + ".md §1.3",
        "ENGINEERING" + "_NOTES G6",
        "STYLE" + ".md habit 9",
        "shared/" + "reference/stimuli",
    ):
        assert PRIVATE.search(f"see ({name})"), name
    assert not PRIVATE.search("see docs/protocols.md and docs/engineering.md")


def test_no_tracked_file_cites_private_notes():
    files = _files()
    assert any(p.name == "engine.py" for p in files) and any(p.parent.name == "docs" for p in files)
    hits = []
    for path in files:
        for n, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
        ):
            if PRIVATE.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()[:120]}")
    assert not hits, "cite the paper or docs/ instead of private notes:\n" + "\n".join(hits)
