"""Why a steering-awareness run learns a yes-bias (issue 33; docs/positive-control.md): the
answer balance of the training mixture, how often the evaluation's control prompt occurs in it,
and the model's loss on each family (the negatives included) before and after training.

    PYTHONPATH=. python scripts/positive_control_diagnose.py --work runs/pc-bal \\
        runs/pc-bal/snapshot_150.pt

For the mixture of ``--work/config.json`` and for their default mixture (``empty_factor`` ¼,
replay ½) at the same size: the examples answered "yes" (positive, mismatch, MC) and "no"
(noise, empty, MC negatives), and the no-injection examples that ask the evaluation's question
(the evaluation's unsteered control is exactly such an example). For the untrained model and
each snapshot given: the mean cross-entropy of the answer, and of its first token (the
yes/no decision), per family, on ``--per-family`` examples of each, with the training injection
added at the last prompt token. Writes ``--out`` (small JSON).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
YES = ("positive", "mismatch", "mc")
NO = ("noise", "empty", "mc_negative")


def mixture(examples) -> dict:
    from mechintro.introspect import data as sdata

    fam = {f: sum(e.family == f for e in examples) for f in sdata.FAMILIES}
    return {
        "families": fam,
        "yes": sum(fam[f] for f in YES),
        "no": sum(fam[f] for f in NO),
        "eval_control_prompt": sum(
            e.family == "empty" and e.prompt == sdata.EVAL_QUESTION for e in examples
        ),
        "eval_question_positive": sum(
            e.family == "positive" and e.prompt == sdata.EVAL_QUESTION for e in examples
        ),
    }


def losses(model, examples, vectors, per_family: int) -> dict:
    import torch

    from mechintro import training
    from mechintro.arch import get_module
    from mechintro.introspect import train as st

    block = get_module(model.hf, model.arch.layers)[vectors.layer]
    out: dict = {}
    for family in ("positive", "mismatch", "mc", "noise", "empty", "mc_negative", "replay"):
        sel = [e for e in examples if e.family == family][:per_family]
        full, first = [], []
        for ex in sel:
            ids, labels = training._encode(model, *ex.texts())
            pos = next(i for i, y in enumerate(labels) if y != -100) - 1
            added = st._added(ex, vectors)

            def hook(module, args, output, added=added, pos=pos):
                h = output[0] if isinstance(output, tuple) else output
                h = h.clone()
                h[0, pos] += added.to(h.dtype)
                return (h, *output[1:]) if isinstance(output, tuple) else h

            handle = block.register_forward_hook(hook) if added is not None else None
            try:
                with torch.no_grad():
                    logits = model.hf(input_ids=torch.tensor([ids])).logits[0].float()
            finally:
                if handle is not None:
                    handle.remove()
            lp = torch.log_softmax(logits[:-1], -1)
            y = torch.tensor(labels[1:])
            keep = y != -100
            ce = -lp[keep].gather(-1, y[keep, None])[:, 0]
            full.append(float(ce.mean()))
            first.append(float(ce[0]))
        if sel:
            out[family] = {
                "n": len(sel),
                "answer_ce": round(sum(full) / len(full), 4),
                "first_token_ce": round(sum(first) / len(first), 4),
            }
    return out


def main() -> int:
    import torch

    from mechintro import models
    from mechintro.introspect import data as sdata
    from mechintro.introspect import train as st

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("snapshots", nargs="*", type=Path, help="snapshot_K.pt files of the run")
    p.add_argument("--work", type=Path, default=ROOT / "runs" / "pc-bal")
    p.add_argument("--per-family", type=int, default=12)
    p.add_argument(
        "--out", type=Path, default=ROOT / "analyses/data/positive-control/diagnosis.json"
    )
    args = p.parse_args()
    cfg = json.loads((args.work / "config.json").read_text())
    cfg["strengths"] = tuple(cfg["strengths"])
    config = st.AwarenessConfig(**cfg)
    held = sdata.held_out_concepts()
    concepts, triplets = sdata.split(held)
    replay = [tuple(x) for x in json.loads((args.work / "replay.json").read_text())]
    kw = {"strengths": config.strengths, "seed": config.seed}
    ours = sdata.build(
        config.examples, concepts, triplets, replay, held, empty_factor=config.empty_factor,
        replay_fraction=config.replay_fraction, **kw,
    )  # fmt: skip
    theirs = sdata.build(config.examples, concepts, triplets, replay, held, **kw)
    saved = torch.load(args.work / "vectors.pt", weights_only=True)
    vectors = st.Vectors(saved["layer"], saved["vectors"], saved["resid_norm"])
    base = models.load_model("smollm2-135m")
    result = {
        "config": cfg,
        "mixture": {"this run": mixture(ours), "their proportions": mixture(theirs)},
        "losses": {"untrained": losses(base, ours, vectors, args.per_family)},
    }
    for snap in args.snapshots:
        m = st.from_checkpoint(base, snap, config)
        result["losses"][snap.stem] = losses(m, ours, vectors, args.per_family)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["mixture"]), json.dumps(result["losses"], indent=1))
    return 0


if __name__ == "__main__":
    script_main(main)
