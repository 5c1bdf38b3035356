"""Figure: held-out-concept AUC per layer of the anomaly direction (detected vs undetected and
uninjected trials), before and after projecting the injected concept out.

Detected: an injected trial whose Yes−No log-odds exceed the 95th percentile of the controls'.

These AUCs stand beside no baseline: they include trials injected after the layer (identical to
controls there), and at late layers the residual holds the answer that defines "detected". The
claim "an anomaly direction exists" is made only by analyses/anomaly_baselines.py (layer×strength
predictor, logit-lens score, within-concept permutation null, nested layer choice).

    python analyses/anomaly_auc.py [--run RUN] [--out figures/]
"""

from _figure import ROOT, arguments, open_run, save, title

from mechintro import analysis
from mechintro.plotting import anomaly_auc
from mechintro.tables import table

args = arguments(__doc__, run=str(ROOT / "runs" / "demo.zarr"))
ds = open_run(args.run)
labels = analysis.detection_labels(ds)
result = analysis.anomaly_directions(ds, labels)
print(
    f"{result.attrs['n_detected']} detected vs {result.attrs['n_negative']} "
    f"others, {result.attrs['n_concepts']} concepts, "
    f"{result.attrs['folds']} concept-grouped folds; {labels.attrs['rule']}"
)
print("not evidence on their own: see analyses/anomaly_baselines.py for the baselines and nulls")


def _cell(**at: object) -> str:
    """``AUC [lo, hi]`` of one (estimator, removal, layer) cell."""
    return (
        f"{float(result.auc.sel(**at)):.3f} "
        f"[{float(result.auc_lo.sel(**at)):.2f}, {float(result.auc_hi.sel(**at)):.2f}]"
    )


print(
    table(
        [
            {
                "layer": int(layer),
                **{
                    f"{est} {rem}": _cell(estimator=est, removal=rem, layer=layer)
                    for est in ("diff_means", "probe")
                    for rem in ("none", "span")
                },
            }
            for layer in result.layer.values
        ]
    )
)
save(
    anomaly_auc(
        result, title=title(ds, "anomaly direction: detected vs the rest, AUC on held-out concepts")
    ),
    args.out,
    "anomaly_auc",
    ds,
)
