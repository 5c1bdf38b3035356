"""Agreement of graders with the hand-labelled calibration set (tests/data/grader_calibration.json).

    python analyses/grader_agreement.py  # the offline grader, v1 set (61 items)
    python analyses/grader_agreement.py --set tests/data/grader_calibration_v2.json --split held_out
    python analyses/grader_agreement.py --set tests/data/grader_calibration_qwen.json
    python analyses/grader_agreement.py --judge-model smollm2-135m --max-new-tokens 64
    python analyses/grader_agreement.py --set tests/data/grader_calibration_v3.json \
        --labels tests/data/grader_calibration_v3_labeller3.json   # two labellers
    python analyses/grader_agreement.py --split clean   # no item any rule was written on (311)
    python analyses/grader_agreement.py --split clean --learned smollm2-135m   # learned grader

Prints accuracy and Cohen's κ per criterion with a 95% bootstrap interval over items (--bootstrap
resamples; 0 to skip), n and the positives by hand and by the grader (and the share of "ungraded"
judge replies, counted as NO); with --out, writes the table as JSON. The Qwen set
(tests/data/grader_calibration_qwen.json) is an independent check: no rule was tuned on it.
A local model as judge uses Lindsey's prompts verbatim. ``--labels`` puts a second labeller's
labels of the same items (a JSON list of ``{"id", "labels"}``) in the grader's place: the
agreement two labellers reach by the same written rules, the ceiling a grader can be held to.
"""

from __future__ import annotations

import argparse
import json
import time

from mechintro import grading, judge
from mechintro.cli import script_main


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--judge-model")
    p.add_argument(
        "--labels", help="a second labeller's labels of the same items, in the grader's place"
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--judge-readout",
        choices=["generate", "first-token"],
        default="generate",
        help="the judge reasons then answers (Lindsey) or its first token is read (fast)",
    )
    p.add_argument(
        "--criteria",
        default=",".join(grading.CRITERIA),
        help="comma-separated criteria the judge is asked about (the others are not reported)",
    )
    p.add_argument(
        "--learned",
        metavar="MODEL",
        help="a learned grader (mechintro.learned_grader) on MODEL's residual stream, fitted on "
        "the development items only, in the offline grader's place (with --split clean)",
    )
    p.add_argument("--set", help="calibration JSON (default: tests/data/grader_calibration.json)")
    p.add_argument(
        "--split",
        choices=["all", "dev", "held_out", "independent", "clean"],
        default="all",
        help=(
            "one half of a set; 'clean' (ignores --set): v2's held-out half without its v1 "
            "items and all of v3, the only items no rule was written on (grading."
            "clean_calibration_items), where κ is claimed"
        ),
    )
    p.add_argument(
        "--bootstrap", type=int, default=2000, help="resamples for κ's interval (0: none)"
    )
    p.add_argument("--out")
    args = p.parse_args()
    criteria = [c for c in args.criteria.split(",") if c]
    unknown = sorted(set(criteria) - set(grading.CRITERIA))
    if unknown:
        p.error(f"unknown criteria {unknown}: choose from {', '.join(grading.CRITERIA)}")
    if args.split == "clean":
        items = grading.clean_calibration_items()
    else:
        items = grading.calibration_items(args.set)
        if args.split != "all":
            items = [it for it in items if it.get("split") == args.split]
    doc_question = grading.calibration_question(args.set)
    start = time.perf_counter()
    ungraded = 0
    if args.judge_model:
        from mechintro.models import load_model

        j = judge.ModelJudge(
            model=load_model(args.judge_model),
            max_new_tokens=args.max_new_tokens,
            readout=args.judge_readout,
        )
        name = j.identity

        def predict(item: dict) -> dict[str, bool]:
            nonlocal ungraded
            out = dict.fromkeys(grading.CRITERIA, False)  # criteria not asked: not reported
            for c in criteria:
                v = judge.grade(
                    j,
                    c,
                    question=item.get("question", doc_question),
                    response=item["response"],
                    word=item["concept"].lower(),
                )
                ungraded += v.answer == "ungraded"
                out[c] = v.answer == "YES"
            return out
    elif args.learned:
        from mechintro import learned_grader
        from mechintro.models import load_model

        if args.split != "clean":
            p.error("--learned is scored on the clean split only: add --split clean")
        model = load_model(args.learned)
        fitted = learned_grader.fit(model, learned_grader.development_items())
        for c, layer in fitted.layers.items():
            folds = ", ".join(f"{k} {v:+.3f}" for k, v in fitted.cv_kappa[c].items())
            print(
                f"  {c}: layer {layer} chosen on the development folds (mean κ by layer: {folds})"
            )
        verdicts = dict(
            zip(
                (it["id"] for it in items),
                fitted.predict(model, items),
                strict=True,
            )
        )
        criteria = [c for c in criteria if c in learned_grader.FITTED]
        name = f"learned grader ({args.learned}, layers {fitted.layers})"

        def predict(item: dict) -> dict[str, bool]:
            return dict.fromkeys(grading.CRITERIA, False) | verdicts[item["id"]]
    elif args.labels:
        name, predict = f"second labeller ({args.labels})", _second_labeller(args.labels, items)
    else:
        name, predict = "offline grader", grading.offline_predict
    result = grading.agreement(items, predict, bootstrap=args.bootstrap)
    seconds = time.perf_counter() - start
    print(
        f"{name}: {len(items)} items ({args.split}), {seconds:.0f} s, ungraded replies {ungraded}"
    )
    for c, r in result.items():
        if c not in criteria:
            continue
        ci = r.get("kappa_ci")
        interval = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        print(
            f"  {c:<28} accuracy {r['accuracy']:.3f}  kappa {r['kappa']:+.3f}{interval}  "
            f"(n {r['n']}, positives {r['positives']}, grader positives {r['predicted_positives']})"
        )
    if not args.judge_model and not args.labels and not args.learned:
        # the rates the summaries report rest on these combinations of criteria: their
        # confusion counts are what mechintro.stats.rogan_gladen corrects with
        from mechintro.stats import cohen_kappa

        for name, (crits, kind) in grading.COMPOSITES.items():
            sub = [it for it in items if it.get("question_kind", "detect") == kind]
            truth = [all(bool(it["labels"][c]) for c in crits) for it in sub]
            guess = [all(grading.offline_predict(it)[c] for c in crits) for it in sub]
            e = grading.error_counts(name, sub)
            print(
                f"  {name:<28} kappa {cohen_kappa(truth, guess):+.3f}  ({kind} items: n "
                f"{len(sub)}, positives {sum(truth)}, grader positives {sum(guess)}; "
                f"tp {e['tp']} fn {e['fn']} tn {e['tn']} fp {e['fp']})"
            )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(
                {
                    "grader": name,
                    "seconds": seconds,
                    "ungraded": ungraded,
                    "agreement": {c: r for c, r in result.items() if c in criteria},
                },
                f,
                indent=1,
            )


def _second_labeller(path: str, items: list[dict]):
    """``predict`` from another labeller's labels of the same items (refused when an item has no
    labels there)."""
    with open(path) as f:
        other = {x["id"]: x["labels"] for x in json.load(f)}
    missing = [it["id"] for it in items if it["id"] not in other]
    if missing:
        raise SystemExit(f"{path}: no labels for {len(missing)} items (e.g. {missing[0]})")
    return lambda item: {c: bool(other[item["id"]][c]) for c in grading.CRITERIA}


if __name__ == "__main__":
    script_main(main)
