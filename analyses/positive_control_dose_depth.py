"""Figure: the positive control's dose and depth (issue 33, item 5) — held-out detection of the
trained SmolLM2 beside the untrained model on the same trials (their question, greedy):
(a) vs injection strength at the training layer, with each model's false-positive rate on
sampled unsteered controls as a dashed line and the training (seen) concepts dotted; (b) vs
the injection layer (vectors made and injected at that layer, the same injected norm in
residual norms). 95 % intervals clustered by concept. From
``analyses/data/positive-control/eval_main.json``
(``scripts/positive_control_eval.py``).

    python analyses/positive_control_dose_depth.py [--data analyses/data/positive-control]
"""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
from _figure import SHIPPED, arguments, save

args = arguments(__doc__, data=str(SHIPPED / "positive-control"))
data = Path(args.data)
if not (data / "eval_main.json").exists():
    raise SystemExit(
        f"positive_control_dose_depth.py: {data / 'eval_main.json'} does not exist: run "
        "scripts/positive_control_eval.py --combine first"
    )


def draw(data: Path, name: str) -> None:
    """One model's dose and depth panels from ``data/eval_main.json``, saved as ``name``."""
    ev = json.loads((data / "eval_main.json").read_text())
    settings = json.loads((data / "settings.json").read_text())
    summary = ev["summary"]
    colours = {"untrained": "tab:grey", "trained": "tab:red"}
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    for model, colour in colours.items():
        cells = sorted(
            (
                r
                for r in summary
                if r["model"] == model and r["group"] == "held-out" and r["strength"]
            ),
            key=lambda r: r["strength"],
        )
        xs = [r["strength"] for r in cells]
        est = [r["detected"][0] for r in cells]
        a.errorbar(
            xs, est,
            yerr=[[e - r["detected"][1] for e, r in zip(est, cells, strict=True)],
                  [r["detected"][2] - e for e, r in zip(est, cells, strict=True)]],
            marker="o", color=colour, capsize=3, label=f"{model}: held-out detected (greedy)",
        )  # fmt: skip
        seen = sorted(
            (r for r in summary if r["model"] == model and r["group"] == "seen" and r["strength"]),
            key=lambda r: r["strength"],
        )
        if seen:  # training concepts at the same strengths: the seen-vs-unseen gap
            a.plot(
                [r["strength"] for r in seen], [r["detected"][0] for r in seen], ls=":",
                marker="x", color=colour, label=f"{model}: seen (training) concepts",
            )  # fmt: skip
        sampled = sorted(
            (r for r in summary
             if r["model"] == model and r["group"] == "held-out-sampled" and r["strength"]),
            key=lambda r: r["strength"],
        )  # fmt: skip
        if sampled:  # sampled as the controls are: like with like beside the dashed line
            a.plot(
                [r["strength"] for r in sampled], [r["detected"][0] for r in sampled], ls="none",
                marker="D", mfc="none", color=colour, label=f"{model}: held-out, sampled",
            )  # fmt: skip
        ctrl = [r for r in summary if r["model"] == model and r["group"] == "control-sampled"]
        if ctrl:
            a.axhline(ctrl[0]["detected"][0], ls="--", color=colour, lw=1,
                      label=f"{model}: sampled controls' claims")  # fmt: skip
        layers = []
        for r in summary:
            if r["model"] != model or r["strength"] is not None:
                continue
            if r["group"].startswith("layer-"):
                layers.append((int(r["group"][6:]), r))
        main = [
            r for r in summary
            if r["model"] == model and r["group"] == "held-out" and r["strength"] is not None
        ]  # fmt: skip
        # the training layer at the same injected norm as the other layers: the closest strength
        ratio = ev.get("config", {}).get("depth_ratio", 0.72)
        ratios = settings.get("eval_strength_ratios", {})
        if main and ratios:
            best = min(main, key=lambda r: abs(ratios.get(f"{r['strength']:g}", 99) - ratio))
            layers.append((settings["layer"], best))
        layers.sort()
        if layers:
            xs = [x for x, _ in layers]
            est = [r["detected"][0] for _, r in layers]
            b.errorbar(
                xs, est,
                yerr=[[e - r["detected"][1] for e, (_, r) in zip(est, layers, strict=True)],
                      [r["detected"][2] - e for e, (_, r) in zip(est, layers, strict=True)]],
                marker="o", color=colour, capsize=3, label=model,
            )  # fmt: skip
    a.set_xscale("log", base=2)
    a.set_xlabel("strength (× CAA vector)")
    a.set_ylabel("held-out detected")
    a.set_ylim(-0.02, 1.02)
    a.set_title(f"(a) dose, layer {settings['layer']}")
    a.legend(fontsize=7)
    b.set_xlabel("injection layer")
    b.set_ylim(-0.02, 1.02)
    b.set_title("(b) depth, ≈ 0.72 residual norms injected")
    b.legend(fontsize=7)
    fig.suptitle(f"Positive control: {settings['model']}, {ev['steps']} steps", fontsize=10)
    fig.tight_layout()
    source = SimpleNamespace(
        attrs={
            "experiment": "positive-control",
            "model": settings["model"],
            "weights_sha256": settings["weights_sha256"],
            "config": json.dumps({"examples": ev["examples"], "steps": ev["steps"]}),
        }
    )
    save(fig, args.out, name, source)


draw(data, "positive_control_dose_depth")
spec = importlib.util.spec_from_file_location(
    "positive_control", Path(__file__).resolve().parent.parent / "scripts" / "positive_control.py"
)
tables = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tables)
for sub in tables.other_models(data):  # another model, the same recipe
    draw(sub, f"positive_control_dose_depth_{sub.name}")
