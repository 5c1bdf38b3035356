"""Figure: the yes/no shift under injection on Lindsey's trial question, read as next-token
probabilities (the main job's detection-logits run).

    python analyses/detection_logits_shift.py [--run RUN] [--out figures/]
"""

from _figure import ROOT, arguments, open_run, save, title

from mechintro.experiments import detection_logits
from mechintro.plotting import detection_shift

args = arguments(__doc__, run=str(ROOT / "runs" / "demo.zarr"))
ds = open_run(args.run)
summary = detection_logits.summarize(ds)
print(detection_logits.format_summary(summary))
save(
    detection_shift(
        summary,
        title=title(
            ds,
            f"injected-thoughts prompt, logit readout (n={int(summary.n.max())} concepts per cell)",
        ),
    ),
    args.out,
    "detection_logits_shift",
    ds,
)
