"""Activation Oracles: readers of injected vs control trials (detection against the control
false-positive rate; naming the concept) and the oracle's held-out task accuracy against the
untrained model, shuffled activations and a linear probe — from the shipped results of
``scripts/oracle_compare.py`` and ``mechintro oracle eval`` (``docs/oracles.md``).

    python analyses/oracles.py [--root analyses/data/oracles/smollm2-135m] [--out figures/]
"""

from __future__ import annotations

import json
from pathlib import Path

from _figure import ROOT, arguments, open_run, save

from mechintro.plotting import oracle_comparison

args = arguments(__doc__, root=str(ROOT / "analyses" / "data" / "oracles" / "smollm2-135m"))
root = Path(args.root)
if not (root / "table.json").exists() or not (root / "eval.json").exists():
    raise SystemExit(
        "oracles.py: no table.json and eval.json under "
        f"{root}: run the commands in docs/oracles.md first"
    )
table = json.loads((root / "table.json").read_text())
evaluation = json.loads((root / "eval.json").read_text())
for row in table["rows"]:
    cells = {
        k: f"{v['k']}/{v['n']} = {v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}]"
        for k, v in row.items()
        if isinstance(v, dict) and "k" in v
    }
    print(row["reader"], cells)
for e in evaluation:
    print(
        f"{e['set']:<18} {e['reader']:<10} {e['correct']}/{e['n']} "
        f"= {e['accuracy']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"
    )
save(
    oracle_comparison(table, evaluation),
    args.out,
    "oracle_comparison",
    open_run(root / "oracle.zarr"),
)
