"""Every name a script takes from mechintro exists.

Scripts (``scripts/``, ``analyses/``, ``benchmarks/``) run outside the test suite, so a name the
library renames or moves breaks them silently: ``scripts/oracle_compare.py`` called
``injected_thoughts.concept_vectors`` for a session after the function had moved to
``mechintro.vectors``. This reads each script's syntax tree (nothing is run): every
``from mechintro… import name`` and every ``alias.attribute`` on an imported mechintro module
must resolve.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(
    p for folder in ("scripts", "analyses", "benchmarks") for p in (ROOT / folder).glob("*.py")
)


def _resolves(module: str, name: str) -> bool:
    mod = importlib.import_module(module)
    if hasattr(mod, name):
        return True
    try:  # a submodule not imported by its package
        importlib.import_module(f"{module}.{name}")
    except ModuleNotFoundError:
        return False
    return True


def unresolved(source: str) -> list[str]:
    """``module.name`` for every mechintro name ``source`` imports or reads that does not exist."""
    tree = ast.parse(source)
    aliases: dict[str, str] = {}  # local name -> mechintro module
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "mechintro":
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "mechintro"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mechintro":
            for a in node.names:
                if not _resolves(node.module, a.name):
                    missing.append(f"{node.module}.{a.name}")
                elif isinstance(getattr(importlib.import_module(node.module), a.name), ModuleType):
                    aliases[a.asname or a.name] = f"{node.module}.{a.name}"  # a module: follow it
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and not _resolves(aliases[node.value.id], node.attr)
        ):
            missing.append(f"{aliases[node.value.id]}.{node.attr}")
    return sorted(set(missing))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_mechintro_name_a_script_uses_exists(script):
    assert unresolved(script.read_text()) == [], f"{script.name} uses names mechintro lacks"


def test_a_moved_function_is_caught():
    """The bug this test exists for, and two forms of it."""
    assert unresolved(
        "from mechintro.experiments import injected_thoughts as it\n"
        "it.concept_vectors(model, words)\n"
    ) == ["mechintro.experiments.injected_thoughts.concept_vectors"]
    assert unresolved("from mechintro.vectors import no_such_function\n") == [
        "mechintro.vectors.no_such_function"
    ]
    assert unresolved("import mechintro as mi\nmi.no_such_thing()\n") == ["mechintro.no_such_thing"]
    assert unresolved("from mechintro.vectors import concept_vectors\nimport mechintro as mi\n"
                      "mi.open_run('x')\n") == []  # fmt: skip
