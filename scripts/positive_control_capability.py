"""The positive control's capability cost on the Looking Inward tasks (issue 33, item 2): the
trained SmolLM2 (the adapter ``runs/pc-bal/n600``, merged) against the untrained one, on the same
512 prompts (``analyses/data/looking-inward/smollm2-135m/base.zarr``, and the same config run on
the trained model, ``analyses/data/positive-control/looking-inward-trained.zarr``, made with
``mechintro run self-prediction --model smollm2-135m --set adapter=runs/pc-bal/n600 --set items=8
--set max_new_tokens=16 --set hypothetical_tokens=8 --set batch_size=16``).

Prints, per model: self-prediction accuracy on the held-out and the training tasks (the authors'
scoring, intervals clustered by item) beside the leave-one-item-out mode baseline; the shares of
compliant object-level and hypothetical answers (means over task × property cells); the share of
answers in the trained answers' words (:func:`mechintro.introspect.train.in_trained_words`:
one of the trained answers, or a denial phrased like them: the trained format leaking into
other tasks); and how many object-level answers are unchanged by the training.

    python scripts/positive_control_capability.py [--base RUN] [--trained RUN]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "analyses" / "data"


def _replies(ds, condition: str) -> list[str]:
    return [
        str(r)
        for r, c in zip(ds.response.values, ds.condition.values, strict=True)
        if str(c) == condition
    ]


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--base", default=str(DATA / "looking-inward" / "smollm2-135m" / "base.zarr"))
    p.add_argument(
        "--trained", default=str(DATA / "positive-control" / "looking-inward-trained.zarr")
    )
    args = p.parse_args()
    from mechintro.introspect.train import in_trained_words
    from mechintro.looking_inward import score as sp
    from mechintro.runs import open_run

    runs = {"untrained": open_run(args.base), "trained": open_run(args.trained)}
    print("| model | tasks | n | self-prediction | mode baseline (leave-one-item-out) |")
    print("|---|---|---|---|---|")
    scored = {name: sp.score(ds) for name, ds in runs.items()}
    for name, s in scored.items():
        for split, label in (("test", "held-out"), ("train", "training")):
            r = sp.pooled(s, split)
            print(
                f"| {name} | {label} | {r['n']} | {r['accuracy']:.3f} [{r['lo']:.3f}, "
                f"{r['hi']:.3f}] | {r['mode_baseline_loo']:.3f} |"
            )
    print()
    print(
        "| model | object-level compliant | hypothetical compliant | object-level answers in the "
        "trained words | hypothetical answers in the trained words |"
    )
    print("|---|---|---|---|---|")
    for name, ds in runs.items():
        a = sp.accuracy(scored[name])
        shares = []
        for condition in ("object", "hypothetical"):
            replies = _replies(ds, condition)
            shares.append(f"{sum(in_trained_words(r) for r in replies)} of {len(replies)}")
        print(
            f"| {name} | {float(a.object_compliance.mean()):.3f} | "
            f"{float(a.prediction_compliance.mean()):.3f} | {shares[0]} | {shares[1]} |"
        )
    keyed = [
        {
            (str(t), str(q)): str(r)
            for t, q, r, c in zip(
                ds.task.values,
                ds.item_prompt.values,
                ds.response.values,
                ds.condition.values,
                strict=True,
            )
            if str(c) == "object"
        }
        for ds in runs.values()
    ]
    same = [keyed[0][k] == keyed[1][k] for k in keyed[0] if k in keyed[1]]
    print(f"\nobject-level answers unchanged by the training: {sum(same)} of {len(same)}")
    return 0


if __name__ == "__main__":
    script_main(main)
