"""Figure: layer × strength heatmaps of the Yes−No shift for the introspection question and the
control questions, and their difference (Godet's critique).

    python analyses/sweep_heatmaps.py [--run RUN] [--out figures/]
"""

import numpy as np
from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import sweep
from mechintro.plotting import sweep_heatmaps

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "sweep.zarr"))
ds = open_run(args.run)
summary = sweep.summarize(ds)
ok = np.isfinite(summary.intro_shift.values) & np.isfinite(summary.control_shift.values)
r = np.corrcoef(summary.intro_shift.values[ok], summary.control_shift.values[ok])[0, 1]
print(f"introspection vs control shift: r = {r:.3f} over {int(ok.sum())} cells")
save(
    sweep_heatmaps(
        summary,
        title=title(ds, f"layer × strength sweep (introspection vs control shifts: r = {r:.2f})"),
    ),
    args.out,
    "sweep_heatmaps",
    ds,
)
