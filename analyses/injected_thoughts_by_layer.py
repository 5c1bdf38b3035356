"""Figure: injected-thoughts detection rate vs injection layer, per strength, with the control
false-positive rate (Lindsey 2025, experiment 1; offline grader).

    python analyses/injected_thoughts_by_layer.py [--run RUN] [--out figures/]
"""

from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import injected_thoughts
from mechintro.plotting import injected_thoughts_by_layer

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "injected-thoughts.zarr"))
ds = open_run(args.run)
summary = injected_thoughts.summarize(ds)
print(injected_thoughts.format_summary(summary))
n = int(summary.n.max())
save(
    injected_thoughts_by_layer(
        summary, title=title(ds, f"injected thoughts, {n} trials per cell, offline grader")
    ),
    args.out,
    "injected_thoughts_by_layer",
    ds,
)
