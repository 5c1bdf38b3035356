"""``mechintro info RUN``: a run's provenance, config and trial counts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechintro.cli import _args

HELP = "describe a run: provenance, config, trial counts"


def arguments(p: _args.Parser) -> None:
    p.add_argument("run", type=Path)


def command(args: argparse.Namespace) -> int:
    import numpy as np

    from mechintro.runs import open_run, stored_readouts

    # Every chunk checked against its digest first: a damaged run is named, not described.
    ds = open_run(args.run, committed_only=False, check="full")
    committed = np.asarray(ds["committed"].values)
    a = ds.attrs
    print(f"run:            {args.run}")
    print(
        f"experiment:     {a.get('experiment', '?')}  (reads "
        f"{', '.join(r['readout'] for r in stored_readouts(a)) or 'nothing'}, complete: "
        f"{a.get('complete')})"
    )
    print(
        f"trials:         {int(committed.sum())} committed of {committed.size}; non-finite: "
        f"{int(np.asarray(ds['nonfinite'].values)[committed].sum())}"
    )
    print(f"model:          {a['model']}  weights sha256 {a['weights_sha256']}")
    print(
        "residuals:      "
        f"{'recorded ' + str(dict(ds['resid'].sizes)) if 'resid' in ds else 'not recorded'}"
    )
    print(
        f"mechintro:      {a['mechintro_version']}  git {a['git_commit']}  created "
        f"{a.get('created', '?')}"
    )
    print(f"packages:       {a['package_versions']}")
    print("config:         " + json.dumps(json.loads(a["config"]), sort_keys=True))
    for key in ("layer_map", "seed", "batch_size"):
        if key in a:
            print(f"{key + ':':<16}{a[key]}")
    return 0
