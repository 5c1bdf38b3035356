"""Figure: apology rate after a prefilled word vs injection layer (Lindsey 2025, experiment 3;
offline grader).

    python analyses/prefill_apology.py [--run RUN] [--out figures/]
"""

from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import prefill
from mechintro.plotting import prefill_apology

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "prefill.zarr"))
ds = open_run(args.run)
summary = prefill.summarize(ds)
print(prefill.format_summary(summary))
save(
    prefill_apology(summary, title=title(ds, "prefill: apologies for a prefilled word")),
    args.out,
    "prefill_apology",
    ds,
)
