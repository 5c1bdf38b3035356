"""Figure: naming the injected word vs repeating the sentence, against strength (Lindsey 2025,
experiment 2; offline grader; chance = one word out of the ten offered).

    python analyses/thoughts_vs_text.py [--run RUN] [--out figures/]
"""

from _figure import SHIPPED, arguments, open_run, save, title

from mechintro.experiments import thoughts_vs_text
from mechintro.plotting import thoughts_vs_text as plot

args = arguments(__doc__, run=str(SHIPPED / "smollm2-135m" / "thoughts-vs-text.zarr"))
ds = open_run(args.run)
summary = thoughts_vs_text.summarize(ds)
print(thoughts_vs_text.format_summary(summary))
save(
    plot(
        summary,
        chance=summary.attrs["chance_word"],
        baseline=(summary.attrs["baseline_word"], summary.attrs["baseline_repeat"]),
        title=title(ds, f"thoughts vs text, {int(summary.n_pairs.max())} pairs per cell"),
    ),
    args.out,
    "thoughts_vs_text",
    ds,
)
