"""Train SmolLM2-135M-Instruct to notice injected thoughts at several data sizes and evaluate each
held-out beside the untrained model (issue 33; docs/positive-control.md).

Writes small JSON files under ``--out-data`` (default analyses/data/positive-control/):
``scaling.json`` (held-out detection, identification, false positives and format rate per size),
``eval_main.json`` (the largest size: every trial, the summary, the capability cost),
``settings.json`` (layer, residual and vector norms, strength ratios, replay size, timings).
Adapters go under ``--adapters`` (not shipped: ~10 MB each).

    PYTHONPATH=. python scripts/positive_control_train.py --sizes 200,400,800

The replay pairs and the vectors are computed once and shared by every size. Seeded; re-running
resumes finished or interrupted adapters (``mechintro.training.finetune``).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path

import torch

from mechintro.cli import script_main

log = logging.getLogger("positive_control_train")


def main() -> int:
    from mechintro import models
    from mechintro.introspect import data as sdata
    from mechintro.introspect import train as st

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--sizes", default="200", help="training examples (the last is used)")
    p.add_argument(
        "--scaling-steps", default="10,30", help="snapshots to evaluate for the scaling curve"
    )
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--snapshot-every", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adapters", type=Path, default=Path("runs/positive-control"))
    p.add_argument("--out-data", type=Path, default=Path("analyses/data/positive-control"))
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument(
        "--empty-factor", type=float, default=0.25, help="no-injection negatives per positive"
    )
    p.add_argument("--replay-fraction", type=float, default=0.5)
    p.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    p.add_argument("--decay", action="store_true", help="cosine decay to 0 after the warm-up")
    p.add_argument("--clip", type=float, default=0.0, help="gradient-norm clipping (0: none)")
    p.add_argument("--train-only", action="store_true", help="stop after training")
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--controls", type=int, default=60)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    sizes = sorted(int(s) for s in args.sizes.split(","))
    args.adapters.mkdir(parents=True, exist_ok=True)
    args.out_data.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    model = models.load_model(args.model)
    held = sdata.held_out_concepts()
    concepts, triplets = sdata.split(held)
    t = time.perf_counter()
    replay_file = args.adapters / "replay.json"
    if replay_file.exists():
        replay = [tuple(x) for x in json.loads(replay_file.read_text())]
    else:
        replay = st.replay_examples(model, held)
        replay_file.write_text(json.dumps(replay, indent=0))
    timings["replay_s"] = round(time.perf_counter() - t, 1)
    log.info("replay: %d pairs in %.0f s", len(replay), timings["replay_s"])

    layer = st.default_layer(model)
    needed: set[str] = set()
    for n in sizes:
        ex = sdata.build(
            n, concepts, triplets, replay, held, seed=args.seed, empty_factor=args.empty_factor,
            replay_fraction=args.replay_fraction,
        )  # fmt: skip
        needed |= {e.concept for e in ex if e.vector is not None}
    seen = sorted(needed)[:: max(1, len(needed) // 10)][:10]
    t = time.perf_counter()
    vec_file = args.adapters / "vectors.pt"
    if vec_file.exists():
        saved = torch.load(vec_file, weights_only=True)
        vectors = st.Vectors(saved["layer"], saved["vectors"], saved["resid_norm"])
    else:
        vectors = st.caa_vectors(model, sorted(needed) + held, layer)
        torch.save(
            {"layer": layer, "vectors": vectors.vectors, "resid_norm": vectors.resid_norm}, vec_file
        )
    timings["vectors_s"] = round(time.perf_counter() - t, 1)
    log.info("vectors: %d at layer %d in %.0f s", len(vectors.vectors), layer, timings["vectors_s"])
    import numpy as np

    norms = vectors.norms()
    settings = {
        "model": model.name,
        "weights_sha256": model.weights_sha256,
        "layer": layer,
        "n_layers": model.n_layers,
        "resid_norm": round(vectors.resid_norm, 3),
        "vector_norm_median": round(float(np.median(norms)), 3),
        "vector_norm_range": [round(float(norms.min()), 3), round(float(norms.max()), 3)],
        "train_strength_ratios": {
            f"{s:g}": round(vectors.ratio(s), 4) for s in sdata.TRAIN_STRENGTHS
        },
        "eval_strength_ratios": {
            f"{s:g}": round(vectors.ratio(s), 4) for s in sdata.EVAL_STRENGTHS
        },
        "replay_pairs": len(replay),
        "training_concepts": len(concepts),
        "training_triplets": len(triplets),
        "held_out": held,
        "seen_eval": seen,
        "timings": timings,
    }
    (args.out_data / "settings.json").write_text(json.dumps(settings, indent=1))

    def run_trials(m, label, with_seen):
        kw = {"max_new_tokens": args.max_new_tokens, "batch_size": 400}
        rows = st.trials(
            m, vectors, held, sdata.EVAL_STRENGTHS, n_controls=args.controls, label=label, **kw
        )
        rows += st.trials(  # sampled controls (their sampling: T=1, top-p 0.9): distinct answers
            m, vectors, [], sdata.EVAL_STRENGTHS, n_controls=args.controls, label=label,
            temperature=1.0, seed=args.seed, control_group="control-sampled", **kw,
        )  # fmt: skip
        if with_seen:
            rows += st.trials(
                m, vectors, seen, sdata.EVAL_STRENGTHS, n_controls=0, label=label,
                group="seen", **kw,
            )  # fmt: skip
        return rows

    # One pass over the data (1 epoch), the adapter snapshotted at every checkpoint: the
    # snapshot after k steps has seen k × batch examples once, so the curve is detection vs data.
    n = sizes[-1]
    config = st.AwarenessConfig(
        examples=n, epochs=args.epochs, seed=args.seed, learning_rate=args.lr,
        checkpoint_every=args.snapshot_every, empty_factor=args.empty_factor,
        replay_fraction=args.replay_fraction, warmup_steps=args.warmup,
        cosine_decay=args.decay, max_grad_norm=args.clip,
    )  # fmt: skip
    import dataclasses

    # the eval script rebuilds the same config from this file (snapshots are checked against it)
    (args.adapters / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    out = args.adapters / f"n{n}"
    partial = out.with_name(out.name + ".partial")

    def progress(step, total):
        if step % 10 == 0:
            log.info("step %d/%d", step, total)
        if step % args.snapshot_every == 1 and step > 1:  # the previous step's checkpoint exists
            snap = args.adapters / f"snapshot_{step - 1}.pt"
            if not snap.exists():
                shutil.copy(partial / "checkpoint.pt", snap)

    st.train(
        model, out, config, replay=replay, vectors=vectors, held_out=held, concepts=concepts,
        triplets=triplets, progress=progress,
    )  # fmt: skip
    record = json.loads((out / "training.json").read_text())
    timings["train_s"] = record["train_seconds"]
    (args.out_data / "settings.json").write_text(json.dumps(settings, indent=1))
    if args.train_only:
        return 0

    t = time.perf_counter()
    base_rows = run_trials(model, "untrained", True)
    timings["eval_untrained_s"] = round(time.perf_counter() - t, 1)
    trained, _ = st.load(model, out)
    t = time.perf_counter()
    rows = run_trials(trained, "trained", True)
    timings["eval_trained_s"] = round(time.perf_counter() - t, 1)
    text = st.heldout_text()
    capability = {
        "texts": len(text),
        "untrained_loglik_per_token": round(st.loglik(model, text), 4),
        "trained_loglik_per_token": round(st.loglik(trained, text), 4),
    }
    all_rows = base_rows + rows
    (args.out_data / "eval_main.json").write_text(
        json.dumps(
            {
                "examples": n,
                "trials": all_rows,
                "summary": st.summarise(all_rows),
                "capability": capability,
                "losses": record["losses"],
                "families": record[st.AWARENESS_KEY]["families"],
                "steps": record["steps"],
                "batch_size": config.batch_size,
                "learning_rate": config.learning_rate,
                "train_seconds": record["train_seconds"],
            },
            indent=0,
        )
    )
    (args.out_data / "settings.json").write_text(json.dumps(settings, indent=1))

    def overall(summary, steps, label):
        by = {
            r["group"]: r
            for r in summary
            if r["strength"] is None or r["group"].startswith("control")
        }
        return {
            "model": label,
            "steps": steps,
            "examples_seen": steps * config.batch_size,
            "held_out": by["held-out"],
            "control": by["control"],
            "control_sampled": by["control-sampled"],
            "by_strength": [r for r in summary if r["group"] == "held-out" and r["strength"]],
        }

    scaling = [
        overall(st.summarise(base_rows), 0, "untrained"),
        overall(st.summarise(rows), record["steps"], "trained"),
    ]
    for snap in sorted(args.adapters.glob("snapshot_*.pt"), key=lambda p: int(p.stem[9:])):
        steps = int(snap.stem[9:])
        if steps >= record["steps"] or str(steps) not in args.scaling_steps.split(","):
            continue
        m = st.from_checkpoint(model, snap, config)
        t = time.perf_counter()
        snap_rows = run_trials(m, f"trained@{steps}", False)
        timings[f"eval_step{steps}_s"] = round(time.perf_counter() - t, 1)
        scaling.append(overall(st.summarise(snap_rows), steps, f"trained@{steps}"))
        (args.out_data / "scaling.json").write_text(
            json.dumps(sorted(scaling, key=lambda r: r["steps"]), indent=0)
        )
    (args.out_data / "scaling.json").write_text(
        json.dumps(sorted(scaling, key=lambda r: r["steps"]), indent=0)
    )
    (args.out_data / "settings.json").write_text(json.dumps(settings, indent=1))
    return 0


if __name__ == "__main__":
    script_main(main)
