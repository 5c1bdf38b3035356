"""Figures and tables for Looking Inward from the runs of ``scripts/looking_inward.py``:
accuracy against the mode baseline per property, before and after self-training; the
predictor × target matrix (untrained, and trained); self- vs cross-prediction after training with
its test; the cross-training data-scaling curve; probes on the hypothetical prompts' activations.

    python analyses/looking_inward.py [--root analyses/data/looking-inward] [--out figures/]
    python analyses/looking_inward.py --root runs/looking-inward
        # + the probe figures (they need the residuals)
    python analyses/looking_inward.py --rules lenient
        # mechintro's earlier scoring (lenient parsing, object-level non-compliant pairs left
        # out, every pair in the behaviour change, per-prompt calibration MAD)

Scoring follows the authors' code by default (``--rules authors``; docs/looking-inward.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from _figure import ROOT, arguments, save
from _figure import open_run as _open_run

from mechintro.looking_inward import score as sp
from mechintro.looking_inward.tasks import RESID_GROUP
from mechintro.plotting import (
    probe_auc,
    self_cross_matrix,
    self_prediction_accuracy,
    self_vs_cross_bars,
)
from mechintro.tables import table

_opened: dict[Path, object] = {}


def open_run(path):
    """Each run opened once: the comparisons below read the same runs many times."""
    key = Path(path).resolve()
    if key not in _opened:
        _opened[key] = _open_run(path)
    return _opened[key]


args = arguments(__doc__, root=str(ROOT / "analyses" / "data" / "looking-inward"), rules="authors")
if args.rules not in ("authors", "lenient"):
    raise SystemExit(f"looking_inward.py: --rules must be authors or lenient, got {args.rules!r}")
RULES = args.rules
STATISTIC = "binned" if RULES == "authors" else "per_prompt"
root = Path(args.root)
names = (
    sorted(d.name for d in root.iterdir() if (d / "base.zarr").exists()) if root.exists() else []
)
if not names:
    raise SystemExit(
        f"looking_inward.py: no runs under {root}: run `python scripts/looking_inward.py` first"
    )
base = {n: open_run(root / n / "base.zarr") for n in names}
trained = {
    n: open_run(root / n / "self.zarr")
    for n in names
    if (root / n / "self.zarr" / "zarr.json").exists()
}


def pooled_row(label, scored, split="test"):
    r = sp.pooled(scored, split)
    return {
        "predictor → target": label,
        "n": r["n"],
        "accuracy": f"{r['accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]",
        "mode baseline (leave-one-item-out)": f"{r['mode_baseline_loo']:.3f}",
        "in-sample mode": f"{r['mode_baseline']:.3f}",
    }


print("== self-prediction, pooled over tasks ==")
rows = []
for n in names:
    for split in ("test", "train"):
        rows.append(
            pooled_row(f"{n} → itself ({split} tasks)", sp.score(base[n], rules=RULES), split)
        )
        if n in trained:
            rows.append(
                pooled_row(
                    f"{n}, self-trained → itself ({split} tasks)",
                    sp.score(trained[n], rules=RULES),
                    split,
                )
            )
rows = [
    r for r in rows if r["n"]
]  # runs that predicted on held-out tasks only have no training rows
print(table(rows))

summaries = {n: sp.accuracy(sp.score(base[n], rules=RULES)) for n in names}
summaries.update(
    {f"{n} self-trained": sp.accuracy(sp.score(trained[n], rules=RULES)) for n in trained}
)
print("\n== per task and property (held-out tasks) ==")
for label, s in summaries.items():
    keep = s.split.values == "test"
    print(f"-- {label}")
    print(
        table(
            [
                {
                    "task": str(s.task.values[i]),
                    "property": str(s.property.values[i]),
                    "n": int(s.n.values[i]),
                    "accuracy": (
                        f"{float(s.accuracy.values[i]):.3f} [{float(s.lo.values[i]):.2f}, "
                        f"{float(s.hi.values[i]):.2f}]"
                    ),
                    "mode": float(s.mode_baseline.values[i]),
                    "object ok": float(s.object_compliance.values[i]),
                    "prediction ok": float(s.prediction_compliance.values[i]),
                }
                for i in np.nonzero(keep)[0]
            ]
        )
    )
any_run = next(iter(base.values()))
save(
    self_prediction_accuracy(
        summaries,
        title="Looking Inward: predicting a property of one's own answer (held-out tasks)",
    ),
    args.out,
    "self_prediction_accuracy",
    any_run,
)

matrix = sp.cross_matrix(base, rules=RULES)
print("\n== untrained predictor × target (held-out tasks) ==")
print(
    table(
        [
            {
                "predictor": p,
                **{
                    f"→ {t}": f"{float(matrix.accuracy.sel(predictor=p, target=t)):.3f}"
                    for t in names
                },
            }
            for p in names
        ]
    )
)
save(
    self_cross_matrix(matrix, title="untrained: predictor × target accuracy, held-out tasks"),
    args.out,
    "self_cross_matrix_untrained",
    any_run,
)

runs = sp.study(root)
results = {
    f"target {m1}\nM2 = {m2}": sp.self_vs_cross(open_run(own), open_run(cross), rules=RULES)
    for m1, m2, own, cross in runs["self_vs_cross"]
}
if results:
    print(
        "\n== after training: M1 predicting itself vs M2 trained on M1's behaviour (held-out "
        "tasks, same pairs) =="
    )
    print(
        table(
            [
                {
                    "pair": k.replace("\n", ", "),
                    "self": r["self"],
                    "cross": r["cross"],
                    "difference": f"{r['difference']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]",
                    "p": f"{r['p']:.5f} (step {r['p_resolution']:.0e})",
                    "pairs": r["n_pairs"],
                    "items": r["n_items"],
                }
                for k, r in results.items()
            ]
        )
    )
    save(
        self_vs_cross_bars(
            results, title="after training: self- vs cross-prediction (held-out tasks)"
        ),
        args.out,
        "self_vs_cross",
        any_run,
    )

curves = sorted(root.glob("*/cross-on-*/scaling-*/run.zarr"))
if curves:
    fig, ax = plt.subplots(figsize=(5, 3.5), constrained_layout=True)
    groups: dict[tuple[str, str], list] = {}
    for run in curves:
        m2, m1 = run.parts[-4], run.parts[-3].removeprefix("cross-on-")
        if m1 not in trained or not (run / "zarr.json").exists():
            continue
        n = json.loads((run.parent / "adapter" / "training.json").read_text())["examples"]
        groups.setdefault((m1, m2), []).append(
            (n, sp.pooled(sp.score(open_run(run), trained[m1], rules=RULES), "test"))
        )
    print("\n== cross-training data scaling (held-out tasks) ==")
    for (m1, m2), pts in groups.items():
        full = root / m2 / f"cross-on-{m1}"
        pts.append(
            (
                json.loads((full / "adapter" / "training.json").read_text())["examples"],
                sp.pooled(sp.score(open_run(full / "run.zarr"), trained[m1], rules=RULES), "test"),
            )
        )
        pts.sort(key=lambda x: x[0])
        x = [n for n, _ in pts]
        ax.errorbar(
            x,
            [r["accuracy"] for _, r in pts],
            yerr=[
                [r["accuracy"] - r["lo"] for _, r in pts],
                [r["hi"] - r["accuracy"] for _, r in pts],
            ],
            fmt="o-",
            capsize=3,
            label=f"{m2} trained on {m1}'s behaviour",
        )
        own = sp.pooled(sp.score(trained[m1], rules=RULES), "test")
        ax.axhline(
            own["accuracy"], color="C3", ls="--", label=f"{m1} self-trained, predicting itself"
        )
        ax.axhline(
            own["mode_baseline_loo"], color="k", ls=":", label="mode baseline (out of sample)"
        )
        print(
            table(
                [
                    {
                        "examples": n,
                        "accuracy": f"{r['accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}]",
                        "n": r["n"],
                    }
                    for n, r in pts
                ]
            )
        )
    ax.set(
        xlabel="training examples", ylabel="accuracy on held-out tasks", xscale="log", ylim=(0, 1)
    )
    ticks = sorted({n for pts in groups.values() for n, _ in pts})
    ax.set_xticks(ticks, [str(n) for n in ticks])
    ax.minorticks_off()
    ax.legend(fontsize=6)
    save(fig, args.out, "cross_training_scaling", any_run)

for m1, m2, changed, old in runs["behaviour_change"]:
    r = sp.behaviour_change(open_run(changed), open_run(old), rules=RULES)
    print(
        f"\n== behaviour change: {m1} (self-trained), then finetuned on {m2}'s answers "
        "(held-out tasks) =="
    )
    print(
        table(
            [
                {"predictions scored against": "its new behaviour", "accuracy": r["new"]},
                {"predictions scored against": "its old behaviour", "accuracy": r["old"]},
            ]
        )
    )
    print(
        f"new − old {r['difference']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}], p = "
        f"{r['p']:.3f}; {r['n_pairs']} pairs "
        f"({r['n_items']} items); the finetuning changed the answer's property in "
        f"{r['changed_answers']:.0%} of the pairs with both answers compliant"
        + (
            f"; only the changed pairs are scored (mode baselines: new {r['mode_new']:.3f}, "
            f"old {r['mode_old']:.3f})"
            if r["shifted_only"]
            else ""
        )
    )
    if "control_difference" in r:
        print(
            "control, against the new behaviour: the changed model's predictions "
            f"{r['control_a']:.3f} vs the old model's "
            f"{r['control_b']:.3f}, {r['control_difference']:+.3f} [{r['control_lo']:+.3f}, "
            f"{r['control_hi']:+.3f}], "
            f"p = {r['control_p']:.3f} ({r['control_n_pairs']} pairs)"
        )

cal_rows = []
for m1, who, predictor, target in runs["calibration"]:
    c = sp.calibration(open_run(predictor), open_run(target), rules=RULES, statistic=STATISTIC)
    cal_rows.append(
        {
            "target": m1,
            "predictor": who,
            "prompts": c.attrs["n"],
            "MAD (points)": f"{c.attrs['mad']:.1f} [{c.attrs['lo']:.1f}, {c.attrs['hi']:.1f}]",
            "never matching": f"{c.attrs['no_match']:.1f}",
            "binned MAD": f"{c.attrs['binned_mad']:.1f}",
            "per-prompt MAD": f"{c.attrs['per_prompt_mad']:.1f}",
        }
    )
if cal_rows:
    print(
        f"\n== calibration: animals, second character, sampled at temperature 1 ({STATISTIC} "
        "mean absolute deviation, lower is better) =="
    )
    print(table(cal_rows))

if len(names) >= 2 and not all((root / n / "base.zarr" / RESID_GROUP).exists() for n in names):
    print(
        f"\nprobes skipped: the runs under {root} carry no residuals (the shipped copies do "
        "not; use runs/looking-inward)"
    )
elif len(names) >= 2:
    for target in names:
        sources = {
            f"{target} (own)": root / target / "base.zarr",
            **{f"{o} (other)": root / o / "base.zarr" for o in names if o != target},
        }
        result = sp.probe(base[target], sources)
        print(
            f"\n== probes: a property of {target}'s answers from activations at the "
            "hypothetical prompt's last token =="
        )
        print(
            table(
                [
                    {
                        "source": s,
                        "property": p,
                        "n": int(result.n.sel(source=s, property=p)),
                        "within-task pairs": int(result.pairs.sel(source=s, property=p)),
                        **{
                            f"depth {d:.2f}": (
                                f"{float(result.auc.sel(source=s, property=p, depth=d)):.2f}"
                            )
                            for d in result.depth.values
                        },
                    }
                    for s in result.source.values
                    for p in result.property.values
                    if int(result.n.sel(source=s, property=p)) > 0
                ]
            )
        )
        save(
            probe_auc(result, title=f"probes on the hypothetical prompt: {target}'s own answers"),
            args.out,
            f"self_prediction_probe_{target}",
            base[target],
        )
