"""Figure: injected-thoughts detection rate and coherence vs strength, per layer (Lindsey 2025,
experiment 1; offline grader).

    python analyses/injected_thoughts_by_strength.py [--run RUN] [--out figures/]
"""

from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import injected_thoughts
from mechintro.plotting import injected_thoughts_by_strength

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "injected-thoughts.zarr"))
ds = open_run(args.run)
summary = injected_thoughts.summarize(ds)
save(
    injected_thoughts_by_strength(
        summary, title=title(ds, "injected thoughts: detection and coherence vs strength")
    ),
    args.out,
    "injected_thoughts_by_strength",
    ds,
)
