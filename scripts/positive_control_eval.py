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
    p.add_argument(
        "--base",
        default="smollm2-135m",
        help="the base model the training run used (positive_control_train.py --model)",
    )
    p.add_argument(
        "--main", help="with --combine: the label of the model shown as 'trained' in "
        "eval_main.json (e.g. trained@200; default: the most-trained one evaluated)",
    )  # fmt: skip
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "positive-control")
    p.add_argument("--out-data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    p.add_argument("--strengths", default="4,8")
    p.add_argument(
        "--sampled-strengths", default="",
        help="also held-out trials sampled as the controls are (T = 1, top-p 0.9), at these "
        "strengths: net detection then compares like with like",
    )  # fmt: skip
    p.add_argument(
        "--depth-layers", default="",
        help="also greedy held-out trials with the vectors made and injected at these layers, "
        "at --depth-strength residual norms (the dose/depth figure)",
    )  # fmt: skip
    p.add_argument("--depth-ratio", type=float, default=0.72)
    p.add_argument(
        "--seen", type=int, default=0,
        help="also this many training concepts (injected as positives in training), greedy at "
        "--strengths and sampled at --sampled-strengths: the seen-vs-unseen gap",
    )  # fmt: skip
    p.add_argument("--controls", type=int, default=30)
    p.add_argument(
        "--seed", type=int, default=0,
        help="seed of the sampled trials (another seed: a replication on fresh samples)",
    )  # fmt: skip
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--examples", type=int, default=200, help="the training run's examples")
    p.add_argument("--lr", type=float, default=4e-4, help="the training run's learning rate")
    p.add_argument("--snapshot-every", type=int, default=10, help="the training run's")
    p.add_argument(
        "--export", type=Path, help="write the snapshot given as MODEL as an adapter directory "
        "here (loadable by --model of every command) and stop",
    )  # fmt: skip
    p.add_argument(
        "--import-main", type=Path, help="write the trained model's rows of a shipped "
        "eval_main.json (its settings.json beside it) into --work as rows_trained@STEPS.json, so "
        "that --combine counts an evaluation made before (graded again) and stop",
    )  # fmt: skip
    args = p.parse_args()
    if args.import_main:
        return import_main(args.import_main, args.work)
    if args.combine:
        return combine(args)
    if args.export:
        return export(args)
    if not args.model:
        raise MechintroError("give a model (untrained, a snapshot or an adapter) or --combine")
    strengths = [float(s) for s in args.strengths.split(",")]
    base = models.load_model(args.base)
    saved = torch.load(args.work / "vectors.pt", weights_only=True)
    vectors = st.Vectors(saved["layer"], saved["vectors"], saved["resid_norm"])
    st.check_strengths(strengths, vectors)
    held = sdata.held_out_concepts()
    if (args.work / "config.json").exists():  # written by positive_control_train.py
        config = run_config(args.work)
    else:
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
    kw = {"max_new_tokens": args.max_new_tokens, "batch_size": 200, "seed": args.seed}
    t = time.perf_counter()
    rows = st.trials(model, vectors, held, strengths, n_controls=1, label=label, **kw)
    rows += st.trials(
        model, vectors, [], strengths, n_controls=args.controls, label=label, temperature=1.0,
        control_group="control-sampled", **kw,
    )  # fmt: skip
    sampled = [float(x) for x in args.sampled_strengths.split(",") if x]
    if sampled:
        rows += st.trials(
            model, vectors, held, sampled, n_controls=0, label=label, temperature=1.0,
            group="held-out-sampled", **kw,
        )  # fmt: skip
    if args.seen:
        seen = seen_concepts(args.work, config, args.seen)
        rows += st.trials(model, vectors, seen, strengths, n_controls=0, label=label,
                          group="seen", **kw)  # fmt: skip
        if sampled:
            rows += st.trials(
                model, vectors, seen, sampled, n_controls=0, label=label, temperature=1.0,
                group="seen-sampled", **kw,
            )  # fmt: skip
    depth = {}
    for layer in [int(x) for x in args.depth_layers.split(",") if x]:
        vec_file = args.work / f"vectors_L{layer}.pt"
        if vec_file.exists():
            saved_l = torch.load(vec_file, weights_only=True)
            vec_l = st.Vectors(saved_l["layer"], saved_l["vectors"], saved_l["resid_norm"])
        else:
            vec_l = st.caa_vectors(base, held, layer)
            torch.save(
                {"layer": layer, "vectors": vec_l.vectors, "resid_norm": vec_l.resid_norm},
                vec_file,
            )
        s_l = args.depth_ratio / vec_l.ratio(1.0)  # the same injected norm / residual norm
        rows += st.trials(
            model, vec_l, held, [round(s_l, 3)], n_controls=0, label=label,
            group=f"layer-{layer}", **kw,
        )  # fmt: skip
        depth[str(layer)] = {"strength": round(s_l, 3), "resid_norm": round(vec_l.resid_norm, 3)}
    text = st.heldout_text()
    result = {
        "label": label,
        "steps": steps,
        "rows": rows,
        "loglik_per_token": round(st.loglik(model, text), 4),
        "texts": len(text),
        "seconds": round(time.perf_counter() - t, 1),
        "strengths": strengths,
        "depth": depth,
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


def _examples(work: Path, config) -> list:
    """The run's training examples, rebuilt from ``config.json`` and ``replay.json`` (no model)."""
    from mechintro.introspect import data as sdata

    held = sdata.held_out_concepts()
    concepts, triplets = sdata.split(held)
    replay = tuple(tuple(x) for x in json.loads((work / "replay.json").read_text()))
    return sdata.build(
        config.examples, tuple(concepts), tuple(triplets), replay, tuple(held),
        strengths=tuple(config.strengths), seed=config.seed, empty_factor=config.empty_factor,
        replay_fraction=config.replay_fraction,
    )  # fmt: skip


def run_config(work: Path):
    """The training run's ``AwarenessConfig``, from the ``config.json`` its script wrote."""
    from mechintro.introspect import train as st

    saved = json.loads((work / "config.json").read_text())
    saved["strengths"] = tuple(saved["strengths"])
    return st.AwarenessConfig(**saved)


def positive_concepts(work: Path, config) -> list[str]:
    """The concepts the run injected as positives (its ``positive`` family), sorted."""
    return sorted({ex.concept for ex in _examples(work, config) if ex.family == "positive"})


def seen_concepts(work: Path, config, n: int) -> list[str]:
    """``n`` training concepts the run injected as positives (its ``positive`` family), evenly
    spaced in sorted order: the seen group of the seen-vs-unseen gap (their evaluation's
    ``seen`` concepts)."""
    pos = positive_concepts(work, config)
    if len(pos) < n:
        raise MechintroError(f"--seen {n}: the run injected only {len(pos)} positive concepts")
    return pos[:: len(pos) // n][:n]


def import_main(main_file: Path, work: Path) -> int:
    """rows_trained@STEPS.json from a shipped eval_main.json (every trial of its trained model)."""
    ev = json.loads(main_file.read_text())
    settings = json.loads((main_file.parent / "settings.json").read_text())
    label = f"trained@{ev['steps']}"
    rows = [{**r, "model": label} for r in ev["trials"] if r["model"] == "trained"]
    seconds = settings.get("eval_seconds", {}).get(label, 0.0)
    result = {
        "label": label,
        "steps": ev["steps"],
        "rows": rows,
        "loglik_per_token": ev["capability"]["trained_loglik_per_token"],
        "texts": ev["capability"]["texts"],
        "seconds": seconds,
        "strengths": sorted({r["strength"] for r in rows if r["group"] == "held-out"}),
        "depth": ev.get("depth", {}).get("trained", {}),
        "settings": {k: settings[k] for k in settings if k not in ("eval_seconds", "training")},
        "imported_from": str(main_file),
    }
    (work / f"rows_{label}.json").write_text(json.dumps(result))
    print("wrote", work / f"rows_{label}.json", len(rows), "rows")
    return 0


def export(args) -> int:
    import torch

    from mechintro import models
    from mechintro.introspect import data as sdata
    from mechintro.introspect import train as st

    cfg = json.loads((args.work / "config.json").read_text())
    cfg["strengths"] = tuple(cfg["strengths"])
    config = st.AwarenessConfig(**cfg)
    held = sdata.held_out_concepts()
    concepts, triplets = sdata.split(held)
    replay = [tuple(x) for x in json.loads((args.work / "replay.json").read_text())]
    saved = torch.load(args.work / "vectors.pt", weights_only=True)
    vectors = st.Vectors(saved["layer"], saved["vectors"], saved["resid_norm"])
    base = models.load_model(args.base)
    examples, _ = st.prepare(
        base, config, held_out=held, concepts=concepts, triplets=triplets, replay=replay,
        vectors=vectors,
    )  # fmt: skip
    st.export_snapshot(
        base, args.model, config, args.export, st.run_record(examples, vectors, config, held)
    )
    print("wrote", args.export)
    return 0


def _nets(rows: list[dict]) -> dict:
    """Net detection (held-out claims − sampled controls' claims) with the interval clustered by
    concept on the held-out side (``mechintro.stats.net_interval``): ``net_sampled`` compares the
    held-out trials sampled as the controls are (like with like), ``net_greedy`` the greedy
    held-out trials at the sampled strengths (or all, if none were sampled)."""
    import numpy as np

    from mechintro.stats import net_interval

    ctrl = [r for r in rows if r["group"] == "control-sampled"]
    fp = np.array([r["detected"] for r in ctrl], dtype=float)
    out = {}
    sampled = [r for r in rows if r["group"] == "held-out-sampled"]
    strengths = {r["strength"] for r in sampled}
    greedy = [
        r
        for r in rows
        if r["group"] == "held-out" and (not strengths or r["strength"] in strengths)
    ]
    seen = [r for r in rows if r["group"] == "seen-sampled"]
    cells = [("net_sampled", sampled), ("net_greedy", greedy), ("net_seen_sampled", seen)]
    cells += [(f"net_sampled_at_{s:g}", [r for r in sampled if r["strength"] == s])
              for s in sorted(strengths)]  # fmt: skip
    for key, sel in cells:
        if not sel or not ctrl:
            continue
        iv = net_interval(
            np.array([r["detected"] for r in sel], dtype=float),
            np.array([r["concept"] for r in sel]),
            fp,
        )
        out[key] = [round(iv.estimate, 4), round(iv.lo, 4), round(iv.hi, 4)]
        out[key + "_strengths"] = sorted({r["strength"] for r in sel})
    out["n_controls_distinct"] = sum(r["distinct"] for r in ctrl)
    return out


def combine(args) -> int:
    from mechintro.introspect import train as st

    results = sorted(
        (json.loads(f.read_text()) for f in args.work.glob("rows_*.json")),
        key=lambda r: r["steps"],
    )
    for r in results:  # graded again from the answers: the judge's current rules for every row
        r["rows"] = [{**row, **st.judge(row["response"], row["concept"])} for row in r["rows"]]
    if not results or results[0]["label"] != "untrained" or len(results) < 2:
        raise MechintroError("evaluate the untrained model and at least one trained one first")
    base, top = results[0], results[-1]
    if args.main:
        chosen = [r for r in results if r["label"] == args.main]
        if not chosen:
            raise MechintroError(
                f"--main {args.main}: no such evaluation; evaluated: "
                f"{', '.join(r['label'] for r in results)}"
            )
        top = chosen[0]
    rows = base["rows"] + [
        {**r, "model": "trained"} for r in top["rows"]
    ]  # the most-trained model is "trained"
    record: dict = {}
    config: dict = {}
    if (args.work / "config.json").exists():  # written by positive_control_train.py
        config = json.loads((args.work / "config.json").read_text())
        args.examples, args.lr = config["examples"], config["learning_rate"]
    finished = args.work / f"n{args.examples}" / "training.json"
    snap = args.work / f"snapshot_{top['steps']}.pt"  # the shown model's own snapshot
    if finished.exists() and json.loads(finished.read_text())["steps"] == top["steps"]:
        record = json.loads(finished.read_text())
        record["families"] = record[st.AWARENESS_KEY]["families"]
    elif snap.exists():  # a snapshot's state (losses, seconds) at the shown model's step
        import torch

        state = torch.load(snap, weights_only=True)["state"]
        record = {"steps": state["step"], "losses": state["losses"]}
        record["train_seconds"] = round(state["seconds"], 1)
    if config and "families" not in record:
        from mechintro.introspect import data as sdata

        cfg = st.AwarenessConfig(**{**config, "strengths": tuple(config["strengths"])})
        examples = _examples(args.work, cfg)
        record["families"] = {f: sum(ex.family == f for ex in examples) for f in sdata.FAMILIES}
    args.out_data.mkdir(parents=True, exist_ok=True)
    (args.out_data / "eval_main.json").write_text(
        json.dumps(
            {
                "examples": top["steps"] * 4,
                "steps": top["steps"],
                "batch_size": 4,
                "learning_rate": args.lr,
                "config": config,
                "train_seconds": record.get("train_seconds", "?"),
                "families": record.get("families", {}),
                "trials": rows,
                "summary": st.summarise(rows),
                "nets": {
                    "untrained": _nets(base["rows"]),
                    "trained": _nets(top["rows"]),
                },
                "depth": {"untrained": base.get("depth", {}), "trained": top.get("depth", {})},
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
        nets = _nets(r["rows"])
        scaling.append(
            {
                **nets,
                "model": r["label"],
                "steps": r["steps"],
                "examples_seen": r["steps"] * 4,
                "held_out": by["held-out"],
                "control": by["control"],
                "control_sampled": by["control-sampled"],
                "held_out_sampled": by.get("held-out-sampled"),
                "seen": by.get("seen"),
                "seen_sampled": by.get("seen-sampled"),
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
