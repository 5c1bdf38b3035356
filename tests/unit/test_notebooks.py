"""Every figure script and every notebook runs on small saved runs: the SmolLM2 runs shipped in
analyses/data, and tiny-model stand-ins for the main job's runs (made here, in seconds)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory):
    """What `make demo` writes, on a tiny checkpoint: demo.zarr (detection-logits with residuals),
    demo-vectors.zarr (every analysis word) and demo-intentional-control.zarr."""
    from mechintro import stimuli
    from mechintro.experiments import detection_logits, intentional_control
    from mechintro.models import load_model
    from mechintro.vectors import concept_vectors, save_vectors
    from tests.conftest import build_tiny

    root = tmp_path_factory.mktemp("demo")
    tiny = build_tiny("llama")
    tiny.hf.save_pretrained(root / "tiny", safe_serialization=True)
    tiny.tokenizer.save_pretrained(root / "tiny")
    model = load_model(str(root / "tiny"))
    vectors = concept_vectors(model, stimuli.analysis_words(), baseline=["Sand", "Clay", "Rain"])
    save_vectors(vectors, root / "demo-vectors.zarr")
    config = detection_logits.Config(
        model=str(root / "tiny"), layers=("1", "2"), strengths=(1.0, 4.0, 16.0), batch_size=8
    )
    detection_logits.run(config, root / "demo.zarr", model=model, vectors=vectors)
    intentional_control.run(
        intentional_control.Config(model=str(root / "tiny"), pairs=3),
        root / "demo-intentional-control.zarr",
        model=model,
    )
    return root


def _scripts() -> dict[str, dict[str, str]]:
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        from make_figures import SCRIPTS
    finally:
        sys.path.remove(str(ROOT / "analyses"))
    return SCRIPTS


def _pngs() -> list[str]:
    sys.path.insert(0, str(ROOT / "analyses"))
    try:
        from make_figures import FIGURES
    finally:
        sys.path.remove(str(ROOT / "analyses"))
    return [png for name in _scripts() for png in FIGURES.get(name, [name])]


def test_every_figure_script_is_drawn_by_make_figures():
    scripts = {p.stem for p in (ROOT / "analyses").glob("*.py")} - {
        "_figure",
        "make_figures",
        "anomaly_baselines",
        "anomaly_doc",
        "causal_check",
        "grader_agreement",
        "results_doc",
    }  # tables, not figures
    assert scripts == set(_scripts())


def test_make_figures_draws_every_figure_with_provenance(demo_runs, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "analyses/make_figures.py",
            "--runs",
            str(demo_runs),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for name in _pngs():
        png = Image.open(tmp_path / f"{name}.png")
        source = json.loads(png.text["Source"])
        assert source["weights_sha256"] and source["model"], name
        assert png.text["Software"].startswith("mechintro ")
    assert f"{len(_scripts())} of {len(_scripts())} figure scripts" in done.stdout


def test_make_figures_names_a_missing_run_in_one_line(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "analyses/anomaly_auc.py",
            "--run",
            str(tmp_path / "nope.zarr"),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "does not exist" in done.stderr and not list(tmp_path.glob("*.png"))


NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.py"))


def test_the_notebook_set():
    assert set(NOTEBOOKS) == {
        "critique.py",
        "detection_logits.py",
        "injected_thoughts.py",
        "intentional_control.py",
        "latent_introspection.py",
        "looking_inward.py",
        "oracles.py",
        "positive_control.py",
        "prefill.py",
        "thoughts_vs_text.py",
    }


def _figure_calls(source: str) -> list[str]:
    """The calls in ``source`` of :mod:`mechintro.plotting` functions that draw a figure."""
    from mechintro import plotting

    return [
        f
        for f in re.findall(r"plotting\.(\w+)\(", source)
        if getattr(getattr(plotting, f, None), "__annotations__", {}).get("return") == "plt.Figure"
    ]


@pytest.fixture(scope="module")
def kernel():
    """One Jupyter kernel for the notebooks of this file, started in ``notebooks/`` with the
    kernel's own default backend (inline figures). Each notebook starts from an empty namespace
    (:func:`_fresh`); what it keeps from the one before is the imported modules, so the notebooks
    pay mechintro's and torch's imports (≈ 5 CPU-s) once, not ten times. A missing import still
    fails: ``%reset`` unbinds every name."""
    from jupyter_client.manager import KernelManager

    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    km = KernelManager(kernel_name="python3")
    km.start_kernel(cwd=str(ROOT / "notebooks"), env=env)
    yield km
    km.shutdown_kernel(now=True)


def _fresh(km, env: dict[str, str]) -> None:
    """Empty the kernel's namespace, close its figures, and set the notebook's environment
    (``MECHINTRO_RUN`` / ``MECHINTRO_VECTORS``, or neither) and working directory."""
    code = (
        "%reset -f\n"
        "import os as _os, matplotlib.pyplot as _plt\n"
        "_plt.close('all')\n"
        f"_os.chdir({str(ROOT / 'notebooks')!r})\n"
        "for _k in ('MECHINTRO_RUN', 'MECHINTRO_VECTORS'):\n"
        "    _os.environ.pop(_k, None)\n"
        f"_os.environ.update({env!r})\n"
        "del _os, _plt, _k\n"
    )
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply = kc.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_on_small_saved_runs(name, demo_runs, kernel):
    """Each notebook, converted by jupytext and executed cell by cell in a Jupyter kernel."""
    import jupytext
    from nbclient import NotebookClient

    env = {
        "detection_logits.py": {
            "MECHINTRO_RUN": demo_runs / "demo.zarr",
            "MECHINTRO_VECTORS": demo_runs / "demo-vectors.zarr",
        },
        "intentional_control.py": {
            "MECHINTRO_RUN": demo_runs / "demo-intentional-control.zarr",
            "MECHINTRO_VECTORS": demo_runs / "demo-vectors.zarr",
        },
    }.get(name, {})  # the others read the runs shipped in analyses/data
    _fresh(kernel, {key: str(value) for key, value in env.items()})
    notebook = jupytext.read(ROOT / "notebooks" / name)
    client = NotebookClient(notebook, timeout=600, km=kernel)
    client.execute()
    errors = [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    warned = [
        o["text"]
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and "FutureWarning" in o.get("text", "")
    ]
    assert not warned, warned  # e.g. xarray's argmax without a dim
    assert sum(cell.cell_type == "code" for cell in notebook.cells) >= 2
    # a cell that draws a figure shows it exactly once: one image/png output per figure, as a
    # user sees it (a returned figure that pyplot also showed used to appear twice)
    figure_cells = [
        cell for cell in notebook.cells if cell.cell_type == "code" and "plotting." in cell.source
    ]
    assert figure_cells, f"{name} draws no figure"
    for cell in figure_cells:
        images = [
            o["data"]["image/png"]
            for o in cell.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        assert images, f"{name}: this cell drew no inline figure:\n{cell.source}"
        assert len(set(images)) == len(images), f"{name}: a figure shown twice:\n{cell.source}"
        if "for " not in cell.source:  # one figure per drawing call (a loop draws several)
            assert len(images) == len(_figure_calls(cell.source)), cell.source
    for cell in notebook.cells:  # transcripts render as HTML in the notebook
        if cell.cell_type == "code" and "mi.show(" in cell.source:
            assert any(
                "<mark" in o.get("data", {}).get("text/html", "") for o in cell.get("outputs", [])
            ), cell.source


@pytest.mark.parametrize(
    "order", ["import nnsight; import mechintro", "import mechintro; import nnsight"]
)
def test_mechintro_and_nnsight_import_in_either_order(order):
    """Researchers import nnsight first; its `.save` mount used to break anyio (and so Jupyter,
    httpx) the moment mechintro was imported. Afterwards anyio's classes exist and nnsight's
    `.save` is still mounted on tensors."""
    code = (
        f"{order}\nimport mechintro.vectors\nfrom anyio.abc import SocketAttribute\nimport torch\n"
        "assert callable(torch.zeros(1).save)\nprint('both imported')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "both imported"


def test_the_library_never_selects_a_matplotlib_backend():
    """A user's backend (here svg; in Jupyter the inline one) survives importing the plotting
    module and drawing with it."""
    code = (
        "import matplotlib\nmatplotlib.use('svg')\nimport mechintro.plotting\n"
        "print(matplotlib.get_backend())"
    )
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "svg"
