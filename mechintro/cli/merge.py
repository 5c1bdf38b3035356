"""``mechintro merge``: join a sharded run's stores into one run."""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import _args, _common

HELP = "join the stores of a sharded run into one run"


def arguments(p: _args.Parser) -> None:
    p.add_argument("shards", type=Path, nargs="+", help="the store of every shard (1/N … N/N)")
    _args.required_path(p, "--out", "the merged run store")


def command(args: argparse.Namespace) -> int:
    from mechintro.runs import merge, open_run

    _common.check_out(args.out)
    out = merge(args.shards, args.out)
    ds = open_run(out)
    print(f"merged {len(args.shards)} shards: {ds.sizes['trial']} trials → {out}")
    return 0
