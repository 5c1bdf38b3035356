"""Is the anomaly direction causal? (Needs the run's model; prints a table, draws no figure.)

Adds the direction alone to the control prompts, and sets the detected trials' coordinate along
it to the controls' mean at the layer and every later one, against three nulls: random unit
directions, directions fitted on labels shuffled within concept, and the missed-vs-control
direction. The ablated direction is cross-fitted (fitted on the other half of the concepts).

    python analyses/causal_check.py --run RUN --layer N [--random 1000] [--random-ablate 100]
        [--shuffled 20] [--trials 16] [--margin 0]

The layer is given, not chosen on the AUCs it would then be tested beside. ``--margin`` labels the
trials as ``anomaly_baselines.py --margins`` does (detected only that many log-odds above the
controls' 95th percentile; the trials in between are left out), so a candidate found at a
margin is checked with the direction that was found there. Permutation p-values
are (1 + #null ≥ observed) / (n + 1); their resolution is printed with them.
"""

import argparse

from _figure import ROOT, open_run

import mechintro as mi
from mechintro import analysis

p = argparse.ArgumentParser(
    description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
)
p.add_argument("--run", default=str(ROOT / "runs" / "demo.zarr"))
p.add_argument("--layer", type=int, required=True)
p.add_argument("--random", type=int, default=1000)
p.add_argument("--random-ablate", type=int, default=100)
p.add_argument("--shuffled", type=int, default=20)
p.add_argument("--trials", type=int, default=16)
p.add_argument("--margin", type=float, default=0.0, help="detection margin in log-odds")
args = p.parse_args()
ds = open_run(args.run)
labels = analysis.detection_labels(ds, margin=args.margin)
result = analysis.anomaly_directions(ds, labels, layers=[args.layer], n_boot=50)
model = mi.load_model(ds.attrs["model"])
check = analysis.causal_check(
    model,
    ds,
    result,
    labels,
    layer=args.layer,
    n_random=args.random,
    n_random_ablate=args.random_ablate,
    n_shuffled=args.shuffled,
    max_trials=args.trials,
)
a = check.attrs
print(
    f"{ds.attrs['model']}: layer {a['layer']}, scale {a['scale']:.2f}, {a['n_trials']} detected "
    f"trials re-run, coordinate set to the controls' mean at layers {a['ablated_layers']}"
)
print(
    "re-run vs stored log-odds: max |difference| "
    f"{float(abs(check.recorded_logit_diff - check.stored_logit_diff).max()):.2e}"
)
print(
    "add the direction (Yes−No log-odds shift on the control prompt): anomaly "
    f"{a['add_shift_anomaly']:+.3f}, missed-vs-control {a['add_shift_missed_vs_control']:+.3f}; "
    f"p vs {args.random} random = {a['add_p_random']:.4f} (resolution "
    f"{a['p_resolution_add_random']:.4f}); p vs {args.shuffled} shuffled-label directions = "
    f"{a['add_p_shuffled']:.3f} (resolution {a['p_resolution_shuffled']:.3f})"
)
print(
    f"ablate to the controls' mean (drop in log-odds): anomaly {a['ablate_drop_anomaly']:+.3f}, "
    f"missed-vs-control {a['ablate_drop_missed_vs_control']:+.3f}; p vs {args.random_ablate} "
    f"random = {a['ablate_p_random']:.3f} (resolution {a['p_resolution_ablate_random']:.3f}); p "
    f"vs shuffled = {a['ablate_p_shuffled']:.3f}; still detected after ablation "
    f"{a['ablate_share_detected_anomaly']:.2f}"
)
