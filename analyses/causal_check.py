"""Is the anomaly direction causal? (Needs the run's model; prints a table, draws no figure.)

Adds the direction alone to the control prompts, and projects it out while the detected
injections are re-run, each against random directions of the same size.

    python analyses/causal_check.py [--run RUN] [--layer N|best] [--random 8] [--trials 16]

``--layer best`` takes the layer, among the first three quarters of the network (so that an
effect has later layers to act through), whose probe AUC after projecting the injected vectors
out is highest.
"""

import argparse

import numpy as np
from _figure import ROOT, open_run

import mechintro as mi
from mechintro import analysis
from mechintro.experiments._common import table

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--run", default=str(ROOT / "runs" / "demo.zarr"))
p.add_argument("--layer", default="best")
p.add_argument("--random", type=int, default=8)
p.add_argument("--trials", type=int, default=16)
args = p.parse_args()
ds = open_run(args.run)
labels = analysis.detection_labels(ds)
result = analysis.anomaly_directions(ds, labels, n_boot=200)
auc = result.auc.sel(estimator="probe", removal="span")
early = auc.sel(layer=auc.layer < 0.75 * ds.sizes["layer"])
layer = int(early.layer[early.argmax("layer")]) if args.layer == "best" else int(args.layer)
model = mi.load_model(ds.attrs["model"])
check = analysis.causal_check(model, ds, result, labels, layer=layer, n_random=args.random, max_trials=args.trials)
add = check.add_shift.mean("prompt").values
drop = (check.ablate_logit_diff - check.recorded_logit_diff).mean("trial").values
rate = check.ablate_detected.mean("trial").values


def versus(values: np.ndarray, sign: int) -> str:
    """The anomaly direction's effect against the random directions' (mean ± sd, z), and how many
    random directions had an effect as large in the expected direction (``sign``)."""
    rnd = values[1:]
    z = (values[0] - rnd.mean()) / rnd.std(ddof=1) if len(rnd) > 1 and rnd.std(ddof=1) > 0 else float("nan")
    as_large = int((sign * rnd >= sign * values[0]).sum())
    return f"{values[0]:+.3f} (random: {rnd.mean():+.3f} ± {rnd.std(ddof=1):.3f}, z = {z:+.1f}; {as_large}/{len(rnd)} random as large)"


print(f"{ds.attrs['model']}: layer {layer} (probe AUC after removal {float(auc.sel(layer=layer)):.3f}), "
      f"scale {check.attrs['scale']:.2f}, {check.sizes['trial']} detected trials re-run, ablated at layers {check.attrs['ablated_layers']}")
print(f"re-run vs stored log-odds: max |difference| {float(abs(check.recorded_logit_diff - check.stored_logit_diff).max()):.2e}")
print(table([
    {"test": "add the direction to the control prompt: Yes−No log-odds shift", "anomaly direction vs random": versus(add, +1)},
    {"test": "project it out of detected trials: log-odds change", "anomaly direction vs random": versus(drop, -1)},
    {"test": "project it out: share still detected", "anomaly direction vs random": versus(rate, -1)},
]))
