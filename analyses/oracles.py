"""Activation Oracles: readers of injected vs control trials (detection against the control
false-positive rate; naming the concept) and the oracle's held-out task accuracy against the
untrained model, shuffled activations and a linear probe — from the shipped results of
``scripts/oracle_compare.py`` and ``mechintro oracle eval`` (``docs/oracles.md``), one figure per
model folder (``oracle_comparison_{model}.png``).

    python analyses/oracles.py [--root analyses/data/oracles] [--out figures/]
"""

from __future__ import annotations

import json
from pathlib import Path

from _figure import ROOT, arguments, open_run, save

from mechintro.plotting import oracle_comparison

args = arguments(__doc__, root=str(ROOT / "analyses" / "data" / "oracles"))
root = Path(args.root)
models = sorted(
    d for d in root.glob("*") if (d / "table.json").exists() and (d / "eval.json").exists()
)
if not models:
    raise SystemExit(
        f"oracles.py: no model folder with table.json and eval.json under {root}: "
        "run the commands in docs/oracles.md first"
    )
for folder in models:
    table = json.loads((folder / "table.json").read_text())
    evaluation = json.loads((folder / "eval.json").read_text())
    for row in table["rows"]:
        cells = {
            k: f"{v['k']}/{v['n']} = {v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}]"
            for k, v in row.items()
            if isinstance(v, dict) and "k" in v
        }
        print(folder.name, row["reader"], cells)
    for e in evaluation:
        print(
            f"{folder.name} {e['set']:<18} {e['reader']:<10} {e['correct']}/{e['n']} "
            f"= {e['accuracy']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"
        )
    save(
        oracle_comparison(table, evaluation),
        args.out,
        f"oracle_comparison_{folder.name}",
        open_run(folder / "oracle.zarr"),
    )
