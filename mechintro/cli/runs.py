"""``mechintro runs FOLDER``: every run under a folder, one row each."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args

HELP = (
    "list every run under a folder: experiment, model, size, status "
    "(complete / resumable / damaged), headline result, date"
)


def arguments(p: _args.Parser) -> None:
    p.add_argument("folder", type=Path, nargs="?", default=Path("runs"), help="default: runs")


def command(args: argparse.Namespace) -> int:
    from mechintro.browse import list_runs

    found = list_runs(args.folder)
    print(found)
    for e in found:
        if e.status == "damaged":
            print(f"damaged: {e.path}: {e.problem}")
    return 0
