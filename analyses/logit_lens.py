"""Figure: logit lens over layers at the answer position — Yes−No log-odds and P(concept word)
for injected vs control trials (needs the run's model for its final norm and unembedding).

    python analyses/logit_lens.py [--run RUN] [--out figures/]
"""

from _figure import ROOT, arguments, open_run, save, title

import mechintro as mi
from mechintro import analysis
from mechintro.plotting import lens_curves
from mechintro.tables import table

args = arguments(__doc__, run=str(ROOT / "runs" / "demo.zarr"))
ds = open_run(args.run)
model = mi.load_model(ds.attrs["model"])
lens = analysis.logit_lens(ds, model)
groups = ds.inject_layer.astype(str).where(ds.condition != "control", "control")
groups = groups.where(groups == "control", "injected at layer " + groups)
summary = analysis.lens_summary(lens, groups)
short = {g: g.replace("injected at layer ", "inj L") for g in summary.group.values}
print(
    "Yes−No log-odds and P(concept word) through the lens, by group (inj L = injected at layer L):"
)
print(
    table(
        [
            {
                "layer": int(layer),
                **{
                    f"log-odds {short[g]}": float(summary.logit_diff.sel(group=g, layer=layer))
                    for g in summary.group.values
                },
                **{
                    f"P(c) {short[g]}": float(summary.p_concept.sel(group=g, layer=layer))
                    for g in summary.group.values
                    if g != "control"
                },
            }
            for layer in summary.layer.values
        ]
    )
)
save(
    lens_curves(summary, title=title(ds, "logit lens at the answer position")),
    args.out,
    "logit_lens",
    ds,
)
