"""``mechintro report RUN``: a run's (or a folder's) one-page HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args, _common

HELP = "write a run's one-page HTML report: provenance, summary, figures, every trial's transcript"


def arguments(p: _args.Parser) -> None:
    p.add_argument(
        "run",
        type=Path,
        help="a run store (the .zarr folder `mechintro run --out` wrote), or a folder holding "
        "runs: then each run's report is written into OUT_runs/ and --out is an index page "
        "linking them (experiment, model, size, status, headline result, date)",
    )
    _args.required_path(
        p, "--out", "the HTML file to write (self-contained: no network needed to view it)"
    )


def command(args: argparse.Namespace) -> int:
    # No backend is chosen here either: figures are saved to PNG bytes and closed (any backend
    # can), and main() may run inside a user's kernel, whose inline backend must stay.
    from mechintro.report import write_report

    _common.check_out(args.out)
    out = write_report(args.run, args.out, progress=False if args.quiet else None)
    print(f"{out}  ({out.stat().st_size / 1e6:.1f} MB; open it in a browser)")
    return 0
