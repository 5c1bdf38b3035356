"""What every figure script shares: its arguments (input runs, output folder) and saving a figure
with the run's provenance in the PNG metadata. Figure scripts read saved runs only."""

from __future__ import annotations

import argparse
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


def save(fig: plt.Figure, out: str, name: str, ds) -> Path:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=110, metadata=figure_metadata(ds))
    plt.close(fig)
    print(path)
    return path


def title(ds, what: str) -> str:
    return f"{ds.attrs['model']}: {what}"
