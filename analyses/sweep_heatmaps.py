"""Figure: layer × strength heatmaps of the Yes−No shift for the introspection question and the
control questions, and their difference (Godet's critique).

    python analyses/sweep_heatmaps.py [--run RUN] [--readout four_forms|godet] [--out figures/]

The shipped figure reads the four yes / no forms summed (``--readout four_forms``): SmolLM2 puts at
most 0.004 of its next-token mass on Godet's own " Yes" / " No" tokens in any cell, so his readout
(the experiment's default, ``--readout godet``) tracks tokens it does not say (docs/protocols.md).
"""

import numpy as np
from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import sweep
from mechintro.plotting import sweep_heatmaps

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "sweep.zarr"), readout="four_forms")
if args.readout not in ("four_forms", "godet"):
    raise SystemExit(f"sweep_heatmaps.py: --readout {args.readout}: use four_forms or godet")
ds = open_run(args.run)
summary = sweep.summarize(ds, readout=args.readout)
ok = np.isfinite(summary.intro_shift.values) & np.isfinite(summary.control_shift.values)
r = np.corrcoef(summary.intro_shift.values[ok], summary.control_shift.values[ok])[0, 1]
print(f"introspection vs control shift: r = {r:.3f} over {int(ok.sum())} cells")
save(
    sweep_heatmaps(
        summary,
        title=title(
            ds,
            f"layer × strength sweep, {summary.attrs['readout'].split(':')[0]} readout "
            f"(introspection vs control shifts: r = {r:.2f})",
        ),
    ),
    args.out,
    "sweep_heatmaps",
    ds,
)
