"""Does an external reader find the injected concept where the model's self-report does not?

Runs Lindsey's injected-thoughts trials (with residual streams) on a model, then reads every
trial's activation at the injection layer, last prompt token, five ways, and grades each with the
same rule-based graders (mechintro.grading):

* self-report: the model's own answer to the trial question;
* oracle: the trained activation oracle asked the trial question (open answer) and its yes/no
  variant (P(yes) > 0.5);
* untrained: the base model asked the same two ways (no training);
* Patchscopes: :func:`mechintro.oracle.describe` (identity readout, no training);
* probe: logistic regression on the same activations, 5-fold cross-validated (injected vs
  control; and, over injected trials, which concept).

Every reader gets a detection rate on injected trials and its false-positive rate on controls,
and an identification rate (names the injected concept) with its control rate (names any of the
tested concepts), each with a Wilson interval. The concepts are Lindsey's, which the oracle
never saw in training (mechintro.oracle.data).

    python scripts/oracle_compare.py --model smollm2-135m --oracle ORACLE \\
        --out runs/oracle-compare/smollm2-135m

Prints a Markdown table and writes ``table.json`` beside the runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from mechintro import grading, oracle, runs, stimuli
from mechintro.cli import main as cli
from mechintro.cli import script_main
from mechintro.models import load_model
from mechintro.stats import wilson

QUESTION = "Is there an injected thought here? If so, what is it about?"
YES_NO_QUESTION = "Is there an injected thought here?"


def _cv_predict(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray | None:
    """Cross-validated predictions, or None when a class has fewer than 2 trials (no fold can hold
    it out and train on it)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    folds = min(5, int(np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    if folds < 2:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    return cross_val_predict(
        probe, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)
    )


def _rate(hits: np.ndarray) -> dict:
    n, k = len(hits), int(np.sum(hits))
    lo, hi = wilson(k, n)
    return {"k": k, "n": n, "rate": k / n if n else float("nan"), "lo": lo, "hi": hi}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument(
        "--oracle", required=True, help="a trained oracle of --model (mechintro oracle train)"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--concepts", type=int, default=20, help="the first N of Lindsey's 50 concepts")
    ap.add_argument("--layer", default="0.67", help="injection layer (index or fraction of depth)")
    ap.add_argument("--strengths", default="4,8")
    ap.add_argument("--trials", type=int, default=20, help="injected trials per strength")
    ap.add_argument("--controls", type=int, default=20)
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    concepts = stimuli.concept_words()[: args.concepts]
    run = args.out / "trials.zarr"
    timing = {}
    t = time.perf_counter()
    if not (
        run.exists() and runs.open_run(run, committed_only=False).attrs.get("complete") == "true"
    ):
        code = cli(
            [
                "-q",
                "run",
                "injected-thoughts",
                "--model",
                args.model,
                "--concepts",
                ",".join(concepts),
                "--layers",
                args.layer,
                "--strengths",
                args.strengths,
                "--trials",
                str(args.trials),
                "--record-resid",
                "--seed",
                str(args.seed),
                "--set",
                f"controls={args.controls}",
                "--set",
                f"max_new_tokens={args.max_new_tokens}",
                "--out",
                str(run),
            ]
        )
        if code:
            raise SystemExit(code)
    timing["trials"] = time.perf_counter() - t
    ds = runs.open_run(run)
    injected = np.array([str(c) == "injected" for c in ds["condition"].values])
    concept = np.array([str(c) for c in ds["concept"].values])
    layer = int(ds["inject_layer"].values[injected][0])
    model = load_model(args.model)
    trained = oracle.load(model, args.oracle)
    base = oracle.untrained(model)
    _, acts = oracle.run_activations(ds, layer=layer, positions=[-1])

    readers: dict[str, dict[str, np.ndarray]] = {}

    def graded(responses: list[str]) -> dict[str, np.ndarray]:
        det = np.array([grading.coherent(r) and grading.affirmative(r) for r in responses])
        ident = np.array(
            [
                c != "" and grading.first_mention(r, c) is not None
                for r, c in zip(responses, concept, strict=True)
            ]
        )
        any_concept = np.array(
            [any(grading.first_mention(r, c) is not None for c in concepts) for r in responses]
        )
        return {
            "detect": det,
            "identify": ident,
            "names_any": any_concept,
            "responses": np.array(responses, dtype=object),
        }

    readers["self-report"] = graded([str(r) for r in ds["response"].values])
    for name, o in (("oracle", trained), ("untrained", base)):
        t = time.perf_counter()
        out = oracle.ask_run(
            o,
            run,
            QUESTION,
            args.out / f"{name}.zarr",
            layer=layer,
            positions=[-1],
            max_new_tokens=args.max_new_tokens,
            oracle_path=args.oracle if o is trained else "untrained",
        )
        readers[name] = graded([str(r) for r in runs.open_run(out)["response"].values])
        py = oracle.p_yes(o, acts, YES_NO_QUESTION, layer=layer)
        readers[f"{name} (yes/no)"] = {"detect": py > 0.5, "p_yes": py}
        timing[name] = time.perf_counter() - t
    t = time.perf_counter()
    described = oracle.describe(model, acts[:, 0], layer=layer)
    g = graded(described)
    readers["Patchscopes"] = {
        "identify": g["identify"],
        "names_any": g["names_any"],
        "responses": g["responses"],
    }
    timing["Patchscopes"] = time.perf_counter() - t
    x = acts[:, 0].numpy()
    det = _cv_predict(x, injected.astype(int), args.seed)
    probe = {"detect": det == 1}
    inj_idx = np.flatnonzero(injected)
    labels = np.unique(concept[inj_idx], return_inverse=True)[1]
    pred = _cv_predict(x[inj_idx], labels, args.seed)
    if pred is not None:  # needs at least 2 injected trials of every concept
        probe["identify"] = np.zeros(len(x), dtype=bool)
        probe["identify"][inj_idx] = pred == labels
    readers["probe (5-fold)"] = probe

    rows = []
    for name, r in readers.items():
        row = {"reader": name}
        if "detect" in r:
            row["detect_injected"] = _rate(r["detect"][injected])
            row["detect_control_fpr"] = _rate(r["detect"][~injected])
        if "identify" in r:
            row["identify_injected"] = _rate(r["identify"][injected])
        if "names_any" in r:
            row["names_a_concept_control"] = _rate(r["names_any"][~injected])
        if "p_yes" in r:  # threshold-free: does P(yes) rank injected trials above controls?
            from sklearn.metrics import roc_auc_score

            row["p_yes_auc"] = float(roc_auc_score(injected, r["p_yes"]))
            row["p_yes_mean"] = {
                "injected": float(r["p_yes"][injected].mean()),
                "control": float(r["p_yes"][~injected].mean()),
            }
        rows.append(row)
    meta = {
        "model": args.model,
        "oracle": args.oracle,
        "layer": layer,
        "concepts": concepts,
        "strengths": args.strengths,
        "n_injected": int(injected.sum()),
        "n_control": int((~injected).sum()),
        "seconds": {k: round(v, 1) for k, v in timing.items()},
        "question": QUESTION,
        "yes_no_question": YES_NO_QUESTION,
    }
    (args.out / "table.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    examples = {
        name: [str(s) for s in r["responses"][:3]]
        for name, r in readers.items()
        if "responses" in r
    }
    (args.out / "examples.json").write_text(json.dumps(examples, indent=1))

    def cell(v: dict | None) -> str:
        return (
            "—"
            if v is None
            else f"{v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}] ({v['k']}/{v['n']})"
        )

    print(
        f"{args.model}, layer {layer}, strengths {args.strengths}: "
        f"{meta['n_injected']} injected, {meta['n_control']} control trials"
    )
    print(
        "| reader | detects (injected) | detects (control: FPR) | names "
        "the concept (injected) | names a tested concept (control) |"
    )
    print("|---|---|---|---|---|")
    for row in rows:
        if "p_yes_auc" in row:
            print(
                f"<!-- {row['reader']}: P(yes) AUC injected vs control "
                f"{row['p_yes_auc']:.3f}; mean P(yes) {row['p_yes_mean']} -->"
            )
        print(
            f"| {row['reader']} | {cell(row.get('detect_injected'))} | "
            f"{cell(row.get('detect_control_fpr'))} | {cell(row.get('identify_injected'))} "
            f"| {cell(row.get('names_a_concept_control'))} |"
        )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    script_main(main)
