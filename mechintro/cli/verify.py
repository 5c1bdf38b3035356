"""``mechintro verify RUN``: check a run store (and mark damaged batches for a resume)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args

HELP = "check a run: schema, counts, digests, hashes, non-finite values"


def arguments(p: _args.Parser) -> None:
    p.add_argument("run", type=Path)
    p.add_argument(
        "--repair",
        action="store_true",
        help="mark damaged batches uncommitted so a resume recomputes them",
    )


def command(args: argparse.Namespace) -> int:
    from mechintro.runs import verify

    report = verify(args.run, repair=args.repair)
    for line in report.notes:
        print(f"note: {line}")
    for line in report.problems:
        print(f"problem: {line}")
    print(f"{args.run}: {'OK' if report.ok else f'{len(report.problems)} problem(s)'}")
    return 0 if report.ok else 1
