"""What every figure script shares: its arguments (input runs, output folder) and saving a figure
with the run's provenance. Figure scripts read saved runs only.

A PNG's bytes depend only on what it shows: its metadata holds the inputs that determine the
pixels (experiment, model, weights hash, config, seed) and the script that drew it, never a time,
a version or a commit, so redrawing from the same runs rewrites identical files and leaves
``git status`` clean. The rest of the provenance (the run's creation time, commit and package
versions; the mechintro version and commit that drew the figure) goes to a sidecar
``NAME.provenance.json`` beside the PNG, which git ignores: it changes on every redraw."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script that only saves PNGs; the library itself never picks a backend
import matplotlib.pyplot as plt

import mechintro as mi
from mechintro.errors import MechintroError
from mechintro.provenance import figure_metadata

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "analyses" / "data"  # small runs shipped with the repository


def _one_line(kind, exc, tb) -> None:
    """``sys.excepthook`` of a figure script: a MechintroError is its one line, not a traceback."""
    if isinstance(exc, MechintroError):
        print(f"{Path(sys.argv[0]).name}: error: {exc}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, exc, tb)


# Every script in analyses/ imports this module: from here on a MechintroError it does not catch
# (a bad option reaching an analysis function) ends it with its one line.
sys.excepthook = _one_line


def arguments(doc: str, **inputs: str) -> argparse.Namespace:
    """``--NAME PATH`` per input (default shown in the help), and ``--out`` (default figures/)."""
    p = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    for name, default in inputs.items():
        p.add_argument(f"--{name}", default=default, help=f"default: {default}")
    p.add_argument(
        "--out", default=str(ROOT / "figures"), help="folder for the PNG (default: figures/)"
    )
    return p.parse_args()


def open_run(path: str):
    try:
        return mi.open_run(path)
    except MechintroError as exc:
        sys.exit(f"{Path(sys.argv[0]).name}: {exc}")


def per_model(run: str, experiment: str, name: str) -> list[tuple[object, str]]:
    """The runs a figure script draws, each with its figure's name: ``run`` as ``name``; and when
    ``run`` is the shipped SmolLM2 run (the script's default), the same experiment's shipped run
    of every other model under ``analyses/data/`` as ``{name}_{model}`` (the Qwen runs of
    issue 34), after SmolLM2's ``{experiment}-{variant}.zarr`` runs as ``{name}_{variant}``, so
    that ``make figures`` draws them all."""
    out = [(open_run(run), name)]
    default = SHIPPED / "smollm2-135m" / f"{experiment}.zarr"
    if Path(run).resolve() == default.resolve():
        # SmolLM2's variants of the same experiment (concept-confusion-introspect.zarr: the info
        # document) as {name}_{variant}
        for variant in sorted(default.parent.glob(f"{experiment}-*.zarr")):
            out.append((open_run(str(variant)), f"{name}_{variant.stem[len(experiment) + 1 :]}"))
        for folder in sorted(p for p in SHIPPED.iterdir() if p.name != "smollm2-135m"):
            if (folder / f"{experiment}.zarr").exists():
                out.append((open_run(str(folder / f"{experiment}.zarr")), f"{name}_{folder.name}"))
    return out


# the run attributes that determine a figure's pixels; the others (created, git_commit,
# package_versions, mechintro_version) change when the same run is made again
PIXEL_KEYS = ("experiment", "model", "weights_sha256", "config", "seed")


def png_metadata(ds) -> dict[str, str]:
    """The PNG's metadata: the same for every redraw from the same inputs by the same script."""
    source = {k: ds.attrs[k] for k in PIXEL_KEYS if k in ds.attrs}
    return {
        "Software": f"mechintro analyses/{Path(sys.argv[0]).name}",
        "Source": json.dumps(source, sort_keys=True),
    }


def save(fig: plt.Figure, out: str, name: str, ds) -> Path:
    """``OUT/NAME.png`` (byte-reproducible, see the module docstring) and its provenance sidecar
    ``OUT/NAME.provenance.json``."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, metadata=png_metadata(ds))
    plt.close(fig)
    full = figure_metadata(ds)
    sidecar = {"figure": path.name, "drawn_by": full["Software"], "run": json.loads(full["Source"])}
    (folder / f"{name}.provenance.json").write_text(json.dumps(sidecar, indent=1, sort_keys=True))
    print(path)
    return path


def title(ds, what: str) -> str:
    return f"{ds.attrs['model']}: {what}"
