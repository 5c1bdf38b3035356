"""Held-out evaluation of the positive control's models, one model per call, and the JSON files
``scripts/positive_control.py`` and the figure read (issue 33; docs/positive-control.md).

    # the untrained model, then each snapshot of the training run (a finetune checkpoint copied by
    # scripts/positive_control_train.py) or a finished adapter
    PYTHONPATH=. python scripts/positive_control_eval.py untrained
    PYTHONPATH=. python scripts/positive_control_eval.py runs/positive-control/snapshot_20.pt
    PYTHONPATH=. python scripts/positive_control_eval.py --combine  # analyses/data/positive-control

Trials: every held-out concept (Lindsey's 50) at ``--strengths`` on their question, greedy, the
last prompt token at the training layer, 12 new tokens; one greedy control (deterministic) and
``--controls`` sampled controls (T = 1, top-p 0.9, their sampling settings). Rows go to
``runs/positive-control/rows_{label}.json``; ``--combine`` writes ``eval_main.json`` (untrained
and the most-trained model, every trial), ``scaling.json`` and ``settings.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mechintro.cli import script_main
from mechintro.errors import MechintroError

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    import numpy as np
    import torch

    from mechintro import models
    from mechintro.introspect import data as sdata
    from mechintro.introspect import train as st

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", help="untrained, a snapshot_K.pt, or an adapter directory")
    p.add_argument("--combine", action="store_true")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "positive-control")
    p.add_argument("--out-data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    p.add_argument("--strengths", default="4,8")
    p.add_argument("--controls", type=int, default=30)
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--examples", type=int, default=200, help="the training run's examples")
    p.add_argument("--lr", type=float, default=4e-4, help="the training run's learning rate")
    p.add_argument("--snapshot-every", type=int, default=10, help="the training run's")
    args = p.parse_args()
    if args.combine:
        return combine(args)
    if not args.model:
        raise MechintroError("give a model (untrained, a snapshot or an adapter) or --combine")
    strengths = [float(s) for s in args.strengths.split(",")]
    base = models.load_model("smollm2-135m")
    saved = torch.load(args.work / "vectors.pt", weights_only=True)
    vectors = st.Vectors(saved["layer"], saved["vectors"], saved["resid_norm"])
    st.check_strengths(strengths, vectors)
    held = sdata.held_out_concepts()
    config = st.AwarenessConfig(
        examples=args.examples, epochs=1, learning_rate=args.lr,
        checkpoint_every=args.snapshot_every,
    )  # fmt: skip
    if args.model == "untrained":
        model, label, steps = base, "untrained", 0
    elif args.model.endswith(".pt"):
        model = st.from_checkpoint(base, args.model, config)
        steps = int(Path(args.model).stem.split("_")[1])
        label = f"trained@{steps}"
    else:
        model, record = st.load(base, args.model)
        steps, label = record["steps"], f"trained@{record['steps']}"
    kw = {"max_new_tokens": args.max_new_tokens, "batch_size": 200}
    t = time.perf_counter()
    rows = st.trials(model, vectors, held, strengths, n_controls=1, label=label, **kw)
    rows += st.trials(
        model, vectors, [], strengths, n_controls=args.controls, label=label, temperature=1.0,
        control_group="control-sampled", **kw,
    )  # fmt: skip
    text = st.heldout_text()
    result = {
        "label": label,
        "steps": steps,
        "rows": rows,
        "loglik_per_token": round(st.loglik(model, text), 4),
        "texts": len(text),
        "seconds": round(time.perf_counter() - t, 1),
        "strengths": strengths,
        "ratios": {f"{s:g}": round(vectors.ratio(s), 4) for s in strengths},
        "settings": {
            "model": base.name,
            "weights_sha256": base.weights_sha256,
            "layer": vectors.layer,
            "n_layers": base.n_layers,
            "resid_norm": round(vectors.resid_norm, 3),
            "vector_norm_median": round(float(np.median(vectors.norms())), 3),
            "train_strength_ratios": {
                f"{s:g}": round(vectors.ratio(s), 4) for s in sdata.TRAIN_STRENGTHS
            },
            "eval_strength_ratios": {
                f"{s:g}": round(vectors.ratio(s), 4) for s in sdata.EVAL_STRENGTHS
            },
        },
    }
    (args.work / f"rows_{label}.json").write_text(json.dumps(result))
    print(label, "done in", result["seconds"], "s")
    return 0


def combine(args) -> int:
    from mechintro.introspect import train as st

    results = sorted(
        (json.loads(f.read_text()) for f in args.work.glob("rows_*.json")),
        key=lambda r: r["steps"],
    )
    if not results or results[0]["label"] != "untrained" or len(results) < 2:
        raise MechintroError("evaluate the untrained model and at least one trained one first")
    base, top = results[0], results[-1]
    rows = base["rows"] + [
        {**r, "model": "trained"} for r in top["rows"]
    ]  # the most-trained model is "trained"
    record: dict = {}
    finished = args.work / f"n{args.examples}" / "training.json"
    snaps = sorted(args.work.glob("snapshot_*.pt"), key=lambda f: int(f.stem.split("_")[1]))
    if finished.exists():
        record = json.loads(finished.read_text())
        record["families"] = record[st.AWARENESS_KEY]["families"]
    elif snaps:  # the run was stopped: its last snapshot's state (losses, seconds)
        import torch

        state = torch.load(snaps[-1], weights_only=True)["state"]
        record = {"steps": state["step"], "losses": state["losses"]}
        record["train_seconds"] = round(state["seconds"], 1)
    args.out_data.mkdir(parents=True, exist_ok=True)
    (args.out_data / "eval_main.json").write_text(
        json.dumps(
            {
                "examples": top["steps"] * 4,
                "steps": top["steps"],
                "batch_size": 4,
                "learning_rate": args.lr,
                "train_seconds": record.get("train_seconds", "?"),
                "families": record.get("families", {}),
                "trials": rows,
                "summary": st.summarise(rows),
                "capability": {
                    "texts": base["texts"],
                    "untrained_loglik_per_token": base["loglik_per_token"],
                    "trained_loglik_per_token": top["loglik_per_token"],
                },
                "losses": record.get("losses", []),
            },
            indent=0,
        )
    )
    scaling = []
    for r in results:
        summary = st.summarise(r["rows"])
        by = {
            s["group"]: s
            for s in summary
            if s["strength"] is None or s["group"].startswith("control")
        }
        scaling.append(
            {
                "model": r["label"],
                "steps": r["steps"],
                "examples_seen": r["steps"] * 4,
                "held_out": by["held-out"],
                "control": by["control"],
                "control_sampled": by["control-sampled"],
                "loglik_per_token": r["loglik_per_token"],
                "by_strength": [s for s in summary if s["group"] == "held-out" and s["strength"]],
            }
        )
    (args.out_data / "scaling.json").write_text(json.dumps(scaling, indent=0))
    settings = {**top["settings"], "eval_seconds": {r["label"]: r["seconds"] for r in results}}
    settings["training"] = {k: v for k, v in record.items() if k != "losses"}
    (args.out_data / "settings.json").write_text(json.dumps(settings, indent=1))
    print(f"wrote {args.out_data}: {[r['label'] for r in results]}")
    return 0


if __name__ == "__main__":
    script_main(main)
