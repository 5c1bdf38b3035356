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


def test_every_mi_name_in_the_documents_code_resolves():
    """``mi.NAME`` in a Python block of README.md, docs/ or notebooks/ is a name that ``import
    mechintro as mi`` maps (the README's quick start once used ``mi.detection_logits``, which
    resolved only once something else had imported it; the maps themselves are checked in
    ``test_architecture.py``)."""
    import mechintro as mi

    used: dict[str, str] = {}
    docs = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "notebooks").glob("*.py")]
    for path in docs:
        text = path.read_text()
        blocks = re.findall(r"```python\n(.*?)```", text, re.S) if path.suffix == ".md" else [text]
        for block in blocks:
            if "import mechintro as mi" not in block and path.suffix == ".py":
                continue
            for name in re.findall(r"(?<![\w.])mi\.(\w+)", block):
                used.setdefault(name, str(path.relative_to(ROOT)))
    assert "detection_logits" in used, "the pattern no longer finds the README's quick start"
    mapped = {"MechintroError", *mi._EXPORTS, *mi._SUBMODULES}
    assert {name: where for name, where in used.items() if name not in mapped} == {}
