"""The package's layering, held by a test: the import graph of ``mechintro/`` has no forbidden
edge and no cycle, and ``import mechintro.analysis`` loads no model code.

The graph is read from the source (``ast``), not from ``sys.modules``: every ``import`` and
``from ... import`` anywhere in a module counts — inside functions too, since a cycle hidden in a
function is still a cycle (it only fails later, at the call) — as does
``importlib.import_module("literal")``. Imports under ``if TYPE_CHECKING:`` never run and do not
count. ``from mechintro.pkg import name`` is an edge to the submodule ``mechintro.pkg.name`` when
that is a module, else to ``mechintro.pkg``. The implicit import of a module's parent packages is
not an edge (a package ``__init__`` importing its own submodules is not a cycle).

The layers (docs/architecture.md): every module has a rank, its row of the table (``LAYERS``,
which a test checks against the document's table), and imports only from its own rank or below —
an unranked module or an import that runs back up fails. On top of the ranks:

* the **leaf** modules — statistics (``stats``), readout helpers (``readouts``, ``grading``),
  config checks (``config``), tables (``tables``), stimuli (``stimuli``) — import only each other
  and ``errors``, and nothing heavy (torch, nnsight, transformers, peft, accelerate);
* **analysis** (``analysis/`` and Looking Inward's ``looking_inward.score``) reads saved runs:
  it never imports ``experiments``, ``engine``, ``runner``,
  ``models``, ``vectors``, ``training``, ``cli``, torch or nnsight — except its declared
  model-needing modules (``analysis.MODEL_MODULES``: the logit lens and the causal check), which
  ``mechintro.analysis`` imports only on first use;
* an **experiment** (a module of ``experiments/`` or one registered in
  ``experiments.MODULES``, as ``looking_inward.experiment``) imports no other experiment, only the
  shared ``experiments._*`` / ``base`` modules;
* nothing imports ``cli`` (the CLI is the top).
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import mechintro
import mechintro.analysis
import mechintro.experiments

PACKAGE = Path(mechintro.__file__).resolve().parent
ROOT = "mechintro"

LEAF = {f"{ROOT}.{m}" for m in ("stats", "readouts", "grading", "config", "tables", "stimuli")}
HEAVY = ("torch", "nnsight", "transformers", "peft", "accelerate", "safetensors")
ANALYSIS = (f"{ROOT}.analysis", f"{ROOT}.looking_inward.score")
ANALYSIS_FORBIDDEN = (
    *(f"{ROOT}.{m}" for m in ("experiments", "engine", "runner", "models", "vectors", "training")),
    *("torch", "nnsight", "transformers", "peft"),
)
MODEL_MODULES = set(mechintro.analysis.MODEL_MODULES)
EXPERIMENT_MODULES = set(mechintro.experiments.MODULES.values())
DOC = PACKAGE.parent / "docs" / "architecture.md"

# The layer table of docs/architecture.md, lowest first: a module imports only from its own row
# or the rows before it. Names are relative to ``mechintro`` ("" is the package itself); a name
# ending in "/" is a package and covers its submodules (the longest match wins).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundations", ("", "errors", "_anyio_guard", "_fs", "progress", "provenance")),
    ("leaves", ("stats", "readouts", "grading", "config", "tables", "stimuli")),
    ("study data", ("looking_inward", "looking_inward.tasks")),
    (
        "model",
        (
            "arch",
            "models",
            "prompts",
            "edit",
            "interventions",
            "engine",
            "vectors",
            "training",
            "transcripts",
        ),
    ),
    ("store", ("runs", "store/", "runner", "reading", "planning")),
    ("analysis", ("analysis/", "looking_inward.score", "plotting/", "browse", "export")),
    ("experiments", ("experiments/", "looking_inward.experiment")),
    ("applications", ("judge", "learned_grader", "oracle/", "introspect/", "report")),
    ("top", ("cli/",)),
)


# --- The checker -------------------------------------------------------------------------------


def package_sources(root: Path = PACKAGE, name: str = ROOT) -> dict[str, tuple[str, bool]]:
    """Module name → (source, is_package) for every ``.py`` file under ``root``."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        out[".".join([name, *parts])] = (path.read_text(), is_package)
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterable[ast.AST]:
    """Every import statement and ``importlib.import_module("...")`` call, at any depth, except
    under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node
        stack.extend(ast.iter_child_nodes(node))


@functools.cache
def _import_statements(source: str) -> tuple[ast.AST, ...]:
    """The import nodes of ``source``, parsed once per distinct text: the planted-import tests
    read the whole package again for each plant, and all but one module's text is unchanged."""
    return tuple(_import_nodes(ast.parse(source)))


def imports_of(source: str, module: str, is_package: bool, modules: set[str]) -> set[str]:
    """The modules ``module`` imports (mechintro modules by full name, third-party ones by their
    top-level name). ``modules`` is the set of mechintro module names, to tell a submodule from a
    name defined in a package."""
    package = module if is_package else module.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_statements(source):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Call):
            out.add(node.args[0].value)  # type: ignore[attr-defined]
        else:
            assert isinstance(node, ast.ImportFrom)
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in modules else target)
    return {_normalise(m, modules) for m in out if m}


def _normalise(name: str, modules: set[str]) -> str:
    """A mechintro module by its full name; anything else by its top-level package."""
    if name == ROOT or name.startswith(ROOT + "."):
        while name not in modules and "." in name:  # `import mechintro.x.y` where y is a name
            name = name.rpartition(".")[0]
        return name
    return name.split(".")[0]


def import_graph(sources: Mapping[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """Module → the modules it imports (itself excluded)."""
    modules = set(sources)
    return {
        name: imports_of(src, name, is_pkg, modules) - {name}
        for name, (src, is_pkg) in sources.items()
    }


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def forbidden_edges(
    graph: Mapping[str, set[str]], model_modules: set[str] = MODEL_MODULES
) -> list[str]:
    """``"a → b (why)"`` for every edge the layering forbids."""
    bad = []
    for src, targets in sorted(graph.items()):
        for dst in sorted(targets):
            why = None
            if _within(dst, f"{ROOT}.cli") and not _within(src, f"{ROOT}.cli"):
                why = "nothing imports the CLI"
            elif src in LEAF and (
                (dst.startswith(ROOT) and dst not in LEAF | {f"{ROOT}.errors"}) or dst in HEAVY
            ):
                why = "a leaf module imports only other leaf modules and errors, nothing heavy"
            elif (
                any(_within(src, a) for a in ANALYSIS)
                and src not in model_modules
                and (any(_within(dst, f) for f in ANALYSIS_FORBIDDEN) or dst in EXPERIMENT_MODULES)
            ):
                why = "the analysis layer reads runs: model code only in " + ", ".join(
                    sorted(model_modules)
                )
            elif (
                src.startswith(f"{ROOT}.experiments.") or src in EXPERIMENT_MODULES
            ) and _experiment_module(dst):
                why = "an experiment imports no other experiment (shared code: experiments._*)"
            if why:
                bad.append(f"{src} → {dst} ({why})")
    return bad


def rank_of(module: str, layers: tuple[tuple[str, tuple[str, ...]], ...] = LAYERS) -> int | None:
    """The row of ``layers`` that holds ``module`` (a full name), or None."""
    name = module.removeprefix(ROOT).removeprefix(".")
    best: tuple[int, int] | None = None  # (rank, length of the matching entry)
    for rank, (_, members) in enumerate(layers):
        for member in members:
            package = member.endswith("/")
            entry = member.rstrip("/")
            if name == entry or (package and name.startswith(entry + ".")):
                if best is None or len(entry) > best[1]:
                    best = (rank, len(entry))
    return None if best is None else best[0]


def unranked(graph: Mapping[str, set[str]]) -> list[str]:
    """The mechintro modules in no row of the layer table."""
    return sorted(m for m in graph if m.startswith(ROOT) and rank_of(m) is None)


def upward_edges(graph: Mapping[str, set[str]]) -> list[str]:
    """``"a (row) → b (row)"`` for every import of a module in a higher row of the table."""
    bad = []
    for src, targets in sorted(graph.items()):
        low = rank_of(src)
        for dst in sorted(t for t in targets if t.startswith(ROOT)):
            high = rank_of(dst)
            if low is not None and high is not None and high > low:
                bad.append(f"{src} ({LAYERS[low][0]}) → {dst} ({LAYERS[high][0]})")
    return bad


def doc_layers(text: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """The layer table of docs/architecture.md: the rows whose first cell is a rank, as
    (layer, the backticked module names of the third cell)."""
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].isdigit():
            names = re.findall(r"`([^`]+)`", cells[2])
            rows.append((cells[1], tuple("" if n == ROOT else n for n in names)))
    return tuple(rows)


def _experiment_module(name: str) -> bool:
    """A protocol's module: in ``experiments/`` but not its shared code, or registered elsewhere
    (Looking Inward's, in its package)."""
    return name in EXPERIMENT_MODULES or (
        name.startswith(f"{ROOT}.experiments.") and not _shared_experiment_module(name)
    )


def _shared_experiment_module(name: str) -> bool:
    leaf = name.removeprefix(f"{ROOT}.experiments.").split(".")[0]
    return leaf.startswith("_") or leaf == "base"


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The import cycles among mechintro modules: every strongly connected component with more
    than one module (Tarjan), each sorted."""
    nodes = [n for n in graph if n.startswith(ROOT)]
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(nodes) + 100))
    try:
        for v in sorted(nodes):
            if v not in index:
                visit(v)
    finally:
        sys.setrecursionlimit(limit)
    return sorted(found)


# --- The package as it is ------------------------------------------------------------------------


def test_the_graph_sees_every_kind_of_import():
    """The checker is only as good as the edges it sees: each form of import, on a synthetic
    package, and two edges known to be in this one."""
    source = """
import numpy as np, mechintro.stats
from mechintro import tables as t, errors
from . import sibling
from .sub import deep
from mechintro.pkg.sibling import NAME
import importlib
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from mechintro import typing_only
def later():
    from mechintro.pkg import inner
    importlib.import_module("mechintro.lazy")
"""
    modules = {
        "mechintro",
        "mechintro.stats",
        "mechintro.tables",
        "mechintro.errors",
        "mechintro.pkg",
        "mechintro.pkg.mod",
        "mechintro.pkg.sibling",
        "mechintro.pkg.sub",
        "mechintro.pkg.sub.deep",
        "mechintro.pkg.inner",
        "mechintro.lazy",
        "mechintro.typing_only",
    }
    assert imports_of(source, "mechintro.pkg.mod", False, modules) == {
        "numpy",
        "importlib",
        "typing",
        "mechintro.stats",
        "mechintro.tables",
        "mechintro.errors",
        "mechintro.pkg.sibling",
        "mechintro.pkg.sub.deep",
        "mechintro.pkg.inner",  # inside a function
        "mechintro.lazy",  # importlib.import_module("literal")
    }
    graph = import_graph(package_sources())
    assert "mechintro.engine" in graph["mechintro.analysis.causal"]
    assert "nnsight" in graph["mechintro.engine"]


def test_no_forbidden_import_edge():
    assert forbidden_edges(import_graph(package_sources())) == []


def test_no_import_cycle():
    assert cycles(import_graph(package_sources())) == []


def test_every_module_has_a_row_of_the_layer_table():
    assert unranked(import_graph(package_sources())) == []


def test_no_import_runs_up_a_layer():
    assert upward_edges(import_graph(package_sources())) == []


def test_the_layer_table_is_the_documents():
    """LAYERS is docs/architecture.md's table, row for row and module for module."""
    assert doc_layers(DOC.read_text()) == LAYERS


def test_analysis_lazy_names_come_only_from_the_declared_model_modules():
    """``mechintro.analysis`` loads its model-needing names lazily (a string map, which the AST
    does not see as an import): every such name must come from a declared model module."""
    assert set(mechintro.analysis._LAZY.values()) <= MODEL_MODULES
    sources = package_sources()
    for module in MODEL_MODULES:
        assert module in sources, f"declared model module {module} does not exist"
    for name, module in mechintro.analysis._LAZY.items():
        assert f"def {name}(" in sources[module][0], f"{module} defines no {name}"


# --- The checker fails on what it should catch ---------------------------------------------------


def _with(extra: Mapping[str, str]) -> dict[str, tuple[str, bool]]:
    """The package's sources, with ``extra`` code appended to the named modules."""
    sources = package_sources()
    for name, code in extra.items():
        src, is_pkg = sources[name]
        sources[name] = (src + "\n" + code + "\n", is_pkg)
    return sources


def test_an_injected_forbidden_import_fails_the_check():
    hidden = "def _later():\n    from mechintro.experiments import injected_thoughts\n"
    bad = forbidden_edges(import_graph(_with({"mechintro.analysis.alignment": hidden})))
    assert bad == [
        "mechintro.analysis.alignment → mechintro.experiments.injected_thoughts (the analysis "
        "layer reads runs: model code only in mechintro.analysis.causal, "
        "mechintro.analysis.lens)"
    ]
    for module, code, edge in [
        ("mechintro.analysis.anomaly", "import nnsight", "mechintro.analysis.anomaly → nnsight"),
        ("mechintro.stats", "import torch", "mechintro.stats → torch"),
        ("mechintro.readouts", "from mechintro import engine", "→ mechintro.engine"),
        ("mechintro.runs", "from mechintro.cli import main", "mechintro.runs → mechintro.cli"),
        (
            "mechintro.experiments.prefill",
            "from mechintro.experiments.thoughts_vs_text import NAME",
            "mechintro.experiments.prefill → mechintro.experiments.thoughts_vs_text",
        ),
        (
            "mechintro.analysis.alignment",
            "from ..experiments import prefill",  # relative imports resolve too
            "→ mechintro.experiments.prefill",
        ),
        (
            "mechintro.looking_inward.score",
            "from . import experiment",  # the study's scoring is analysis: it reads runs
            "mechintro.looking_inward.score → mechintro.looking_inward.experiment",
        ),
        (
            "mechintro.looking_inward.score",
            "import torch",
            "mechintro.looking_inward.score → torch",
        ),
        (
            "mechintro.looking_inward.experiment",
            "from mechintro.experiments import prefill",
            "mechintro.looking_inward.experiment → mechintro.experiments.prefill",
        ),
        (
            "mechintro.experiments.sweep",
            "from mechintro.looking_inward.experiment import NAME",
            "mechintro.experiments.sweep → mechintro.looking_inward.experiment",
        ),
        (
            "mechintro.analysis",
            "importlib.import_module('mechintro.engine')",
            "mechintro.analysis → mechintro.engine",
        ),
    ]:
        found = forbidden_edges(import_graph(_with({module: code})))
        assert len(found) == 1 and edge in found[0], (module, code, found)


def test_a_planted_upward_import_or_unranked_module_fails_the_check():
    """The runner reading the experiments (the arrow that ran back up, issue 31), a leaf
    importing the model, an application imported by the store, anywhere in a function: each is
    reported as exactly that edge; a module in no row is reported by name."""
    for module, code, edge in [
        (
            "mechintro.runner",
            "def _legacy():\n    from mechintro.experiments import EXPERIMENTS\n",
            "mechintro.runner (store) → mechintro.experiments (experiments)",
        ),
        ("mechintro.stimuli", "import mechintro.models", "mechintro.stimuli (leaves) → "),
        ("mechintro.store.verify", "from mechintro import judge", "→ mechintro.judge (app"),
        ("mechintro.experiments.base", "from mechintro.oracle import train", "→ mechintro.oracle"),
        ("mechintro.progress", "from mechintro import plotting", "(foundations) → mechintro.plot"),
    ]:
        found = upward_edges(import_graph(_with({module: code})))
        assert len(found) == 1 and edge in found[0], (module, code, found)
    sources = package_sources()
    sources["mechintro.newroom"] = ("from mechintro import stats\n", False)
    assert unranked(import_graph(sources)) == ["mechintro.newroom"]
    assert rank_of("mechintro.experiments.a_new_protocol") == rank_of("mechintro.experiments")
    assert rank_of("mechintro.store.verify") == rank_of("mechintro.runs")
    changed = (*LAYERS[:-1], ("top", ("cli/", "browse")))
    assert doc_layers(DOC.read_text()) != changed


def test_declared_model_modules_may_import_model_code_and_type_checking_imports_do_not_count():
    lens_code = "from mechintro import engine"
    assert forbidden_edges(import_graph(_with({"mechintro.analysis.lens": lens_code}))) == []
    typing_only = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n"
    assert forbidden_edges(import_graph(_with({"mechintro.stats": typing_only}))) == []


def test_an_injected_cycle_fails_the_check():
    """A cycle hidden inside a function (the self-prediction modules had one) is found."""
    hidden = "def _later():\n    from mechintro.analysis import alignment\n"
    found = cycles(import_graph(_with({"mechintro.stats": hidden})))
    assert found == [["mechintro.analysis.alignment", "mechintro.stats"]]
    longer = cycles(
        import_graph(
            _with(
                {
                    "mechintro.looking_inward.tasks": "from mechintro import training",
                    "mechintro.training": (
                        "def f():\n    from mechintro.looking_inward import score"
                    ),
                }
            )
        )
    )
    assert longer == [
        ["mechintro.looking_inward.score", "mechintro.looking_inward.tasks", "mechintro.training"]
    ]


# --- What importing the analysis layer loads -----------------------------------------------------


def test_importing_the_analysis_layer_loads_no_model_code():
    """A fresh interpreter: ``import mechintro.analysis`` leaves nnsight, torch, the experiments
    and the engine unloaded (the model modules load on first use of their names)."""
    code = (
        "import json, sys\n"
        "import mechintro.analysis\n"
        "before = sorted(sys.modules)\n"
        "mechintro.analysis.lens_summary\n"
        "print(json.dumps([before, sorted(sys.modules)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    before, after = (set(x) for x in json.loads(out))
    for name in (
        "nnsight",
        "torch",
        "transformers",
        "mechintro.experiments",
        "mechintro.engine",
        "mechintro.runner",
        "mechintro.models",
        *MODEL_MODULES,
    ):
        assert name not in before, f"import mechintro.analysis loaded {name}"
    assert "mechintro.analysis.lens" in after  # the lazy name did load its module


def _top_level_names(source: str) -> set[str]:
    """The names a module binds at its top level: definitions, assignments and imports."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def test_the_package_root_is_a_facade_that_loads_only_the_foundations():
    """``mechintro`` (rank 0) names things of higher rows (``mi.load_model``, ``mi.open_run``)
    through string maps the AST does not see as imports: importing it must load nothing above the
    foundations; each mapped name must be bound at the top level of the module the map names (read
    from the source: an attribute that appears only once a submodule is imported does not count),
    and each mapped submodule must exist."""
    code = "import json, sys, mechintro\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = {m for m in json.loads(out) if m == ROOT or m.startswith(f"{ROOT}.")}
    foundations = {ROOT if m == "" else f"{ROOT}.{m}" for m in dict(LAYERS)["foundations"]}
    assert loaded <= foundations, f"import mechintro loaded {sorted(loaded - foundations)}"
    assert "torch" not in json.loads(out)
    sources = package_sources()
    unbound = {
        name: module
        for name, module in mechintro._EXPORTS.items()
        if name not in _top_level_names(sources[module][0])
    }
    assert unbound == {}
    assert set(mechintro._SUBMODULES.values()) <= set(sources)
