"""Figure: think / don't-think alignment — cosine of the residual stream on the written sentence
with the word's concept vector, per layer and instruction, over 100 control words (Lindsey 2025,
experiment 4).

    python analyses/intentional_control_alignment.py [--run RUN] [--vectors VECTORS] \\
        [--out figures/]
"""

from _figure import ROOT, arguments, open_run, save, title

from mechintro import analysis
from mechintro.plotting import alignment_by_layer
from mechintro.tables import table
from mechintro.vectors import load_vectors

args = arguments(
    __doc__,
    run=str(ROOT / "runs" / "demo-intentional-control.zarr"),
    vectors=str(ROOT / "runs" / "demo-vectors.zarr"),
)
ds = open_run(args.run)
summary = analysis.alignment_summary(analysis.alignment(ds, load_vectors(args.vectors)))
rows = []
layers = list(summary.layer.values[:: max(1, summary.sizes["layer"] // 10)])
layers += [] if layers[-1] == summary.layer.values[-1] else [summary.layer.values[-1]]
if "gap" in summary:  # the row the figure's maximum comes from, so a caption can quote it
    layers = sorted({*layers, summary.layer.values[int(summary.gap.argmax("layer"))]})
for layer in layers:
    cell = summary.sel(layer=layer)
    row = {
        "layer": int(layer),
        **{str(c): float(cell.cos_word.sel(condition=c)) for c in summary.condition.values},
        "control words [2.5–97.5%]": (
            f"{float(cell.baseline.isel(condition=0)):+.3f} "
            f"[{float(cell.baseline_lo.isel(condition=0)):+.3f}, "
            f"{float(cell.baseline_hi.isel(condition=0)):+.3f}]"
        ),
    }
    if "gap" in summary:
        row["think − don't [95% CI]"] = (
            f"{float(cell.gap):+.4f} [{float(cell.gap_lo):+.4f}, {float(cell.gap_hi):+.4f}]"
        )
        row["p (max-t over layers)"] = f"{float(cell.gap_p_maxt):.4f}"
    rows.append(row)
print(table(rows))
if "gap" in summary:
    sig = [int(x) for x in summary.layer.values[summary.gap_p_maxt.values < 0.05]]
    print(
        "layers with the gap above 0 after correcting for "
        f"{summary.sizes['layer']} layers (max-t p < 0.05): {sig}"
    )
    print(summary.attrs["gap_correction"])
n = ds.sizes["trial"] // summary.sizes["condition"]
save(
    alignment_by_layer(summary, title=title(ds, f"intentional control, {n} sentence/word pairs")),
    args.out,
    "intentional_control_alignment",
    ds,
)
