"""Does an external reader find the injected concept where the model's self-report does not?

Runs Lindsey's injected-thoughts trials (with residual streams) on a model, every trial asked as
"Trial k" with k drawn from 1..--prompt-variants for injected and control trials alike (so the
control trials are not one identical activation), then reads every trial's activation at the last
prompt token and grades each reader with the same rule-based graders (mechintro.grading):

* self-report: the model's own answer to the trial question;
* oracle: the trained activation oracle asked the trial question (open answer) and its yes/no
  variant (P(yes) > 0.5), reading --read-layer;
* untrained: the base model asked the same two ways (no training);
* Patchscopes: :func:`mechintro.oracle.describe` (identity readout, no training);
* probe: logistic regression, 5-fold cross-validated with folds grouped by concept (controls by
  prompt), at the injection layer and at --read-layer, against the trivial detector "differs
  from the control activations" on the same folds (mechintro.oracle.legibility).

The last prompt token is inside the injection window (which runs through every generated token),
so at the injection layer the activation holds strength × vector by construction; --read-layer
(default 3/4 of depth, one of the oracle's source layers) must be later than the injection.

Every reader gets a detection rate on injected trials and its false-positive rate on controls,
and an identification rate (names the injected concept) with its control rate (names any of the
tested concepts), each with a Wilson interval. The concepts are Lindsey's, which the oracle
never saw in training (mechintro.oracle.data).

    python scripts/oracle_compare.py --model smollm2-135m --oracle ORACLE \\
        --out runs/oracle-compare/smollm2-135m

With ``--reader-model BASE`` the trials run on ``--model`` (e.g. the positive control's trained
adapter, docs/positive-control.md) and the oracle, the untrained reader and Patchscopes sit on
``BASE``, the model the oracle was trained on, reading the trained model's activations; the open
answers are then asked in memory (``mechintro.oracle.ask``) and kept in ``examples.json`` and
``answers.json``, not as answer runs (``oracle ask`` refuses a run recorded on other weights).

Prints a Markdown table and writes ``table.json`` (and every reader's verdict per trial,
``per_trial.json``) beside the runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from mechintro import grading, oracle, runs, stimuli, training
from mechintro.cli import script_main
from mechintro.errors import MechintroError
from mechintro.experiments import injected_thoughts as it
from mechintro.models import load_model
from mechintro.oracle import legibility
from mechintro.runner import execute
from mechintro.stats import wilson
from mechintro.vectors import concept_vectors, resolve_layers

QUESTION = "Is there an injected thought here? If so, what is it about?"
YES_NO_QUESTION = "Is there an injected thought here?"
PER_TRIAL = ("detect", "identify", "p_yes")


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
    ap.add_argument(
        "--read-layer",
        default="0.75",
        help="layer the readers read (index or fraction of depth; later than the injection)",
    )
    ap.add_argument(
        "--prompt-variants",
        type=int,
        default=15,
        help="every trial asks 'Trial k', k drawn from 1..N for both conditions",
    )
    ap.add_argument(
        "--reader-model",
        help="the oracle's base model when --model is a finetune of it (the readers then read "
        "the finetune's activations); default: --model",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    concepts = stimuli.concept_words()[: args.concepts]
    run = args.out / "trials.zarr"
    timing = {}
    t = time.perf_counter()
    model = (
        training.load_adapted(args.model)
        if training.is_adapter(args.model)
        else load_model(args.model)
    )
    config = it.InjectedThoughtsConfig(
        model=args.model,
        concepts=tuple(concepts),
        layers=(args.layer,),
        strengths=tuple(float(x) for x in args.strengths.split(",")),
        trials=args.trials,
        controls=args.controls,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        record_resid=True,
    )
    inject = resolve_layers(config.layers, model.n_layers)[0]
    read = resolve_layers((args.read_layer,), model.n_layers)[0]
    if read <= inject:
        raise MechintroError(
            f"--read-layer {read} is not after the injection layer {inject}: at the injection "
            "layer the activation holds strength × vector by construction; choose a later layer"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    if not (
        run.exists() and runs.open_run(run, committed_only=False).attrs.get("complete") == "true"
    ):
        vectors = concept_vectors(model, config.words(), lowercase=config.lowercase)
        trials, layers = it.build_trials(config, model, vectors)
        trials = legibility.vary_prompts(
            trials, model, config, variants=args.prompt_variants, seed=args.seed
        )
        execute(
            model,
            trials,
            run,
            config=config,
            experiment=it.NAME,
            readouts=it.readouts(config, model),
            layers=layers,
            vectors=vectors,
            extra_attrs={"prompt_variants": str(args.prompt_variants)},
            progress=False,
        )
    timing["trials"] = time.perf_counter() - t
    ds = runs.open_run(run)
    injected = np.array([str(c) == "injected" for c in ds["condition"].values])
    concept = np.array([str(c) for c in ds["concept"].values])
    variant = np.array([int(v) for v in ds["prompt_variant"].values])
    layer = int(ds["inject_layer"].values[injected][0])
    reader = load_model(args.reader_model) if args.reader_model else model
    if reader.d_model != model.d_model:
        raise MechintroError(
            f"--reader-model {args.reader_model} has d_model {reader.d_model}, the trials' model "
            f"{model.d_model}: give the model --model was finetuned from"
        )
    trained = oracle.load(reader, args.oracle)
    base = oracle.untrained(reader)
    _, acts = oracle.run_activations(ds, layer=read, positions=[-1])

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
    asked: dict[str, list[str]] = {}
    for name, o in (("oracle", trained), ("untrained", base)):
        t = time.perf_counter()
        if args.reader_model:
            answers = oracle.ask(o, acts, QUESTION, layer=read, max_new_tokens=args.max_new_tokens)
            asked[name] = answers
        else:
            out = oracle.ask_run(
                o,
                run,
                QUESTION,
                args.out / f"{name}.zarr",
                layer=read,
                positions=[-1],
                max_new_tokens=args.max_new_tokens,
                oracle_path=args.oracle if o is trained else "untrained",
            )
            answers = [str(r) for r in runs.open_run(out)["response"].values]
        readers[name] = graded(answers)
        py = oracle.p_yes(o, acts, YES_NO_QUESTION, layer=read)
        readers[f"{name} (yes/no)"] = {"detect": py > 0.5, "p_yes": py}
        timing[name] = time.perf_counter() - t
    t = time.perf_counter()
    described = oracle.describe(reader, acts[:, 0], layer=read)
    g = graded(described)
    readers["Patchscopes"] = {
        "identify": g["identify"],
        "names_any": g["names_any"],
        "responses": g["responses"],
    }
    timing["Patchscopes"] = time.perf_counter() - t
    y = injected.astype(int)
    group = legibility.groups(concept.tolist(), variant.tolist(), injected)
    legible = {}
    for at in sorted({layer, read, model.n_layers - 1}):
        x = oracle.run_activations(ds, layer=at, positions=[-1])[1][:, 0].numpy()
        res = legibility.detect(x, y, group, variant, seed=args.seed)
        own = legibility.differs_from_own_control(x, y, variant)
        where = "injection layer" if at == layer else f"layer {at}"
        readers[f"probe, {where} (grouped {res['folds']}-fold)"] = {
            "detect": res["probe"]["flags"],
            "auc": res["probe"]["auc"],
        }
        readers[f"differs from controls, {where}"] = {
            "detect": res["trivial"]["flags"],
            "auc": res["trivial"]["auc"],
        }
        legible[at] = {
            "probe_auc": res["probe"]["auc"],
            "trivial_auc": res["trivial"]["auc"],
            "probe_vs_trivial": res["probe_vs_trivial"],
            "differs_from_own_prompt_control": {
                cond: f"{int(np.nansum(own[m]))}/{int(np.sum(~np.isnan(own[m])))}"
                for cond, m in (("injected", injected), ("control", ~injected))
            },
        }
    x = acts[:, 0].numpy()
    inj_idx = np.flatnonzero(injected)
    labels = np.unique(concept[inj_idx], return_inverse=True)[1]
    pred = _cv_predict(x[inj_idx], labels, args.seed)
    if pred is not None:  # needs at least 2 injected trials of every concept
        readers[f"probe, layer {read} (which concept)"] = {"identify": np.zeros(len(x), dtype=bool)}
        readers[f"probe, layer {read} (which concept)"]["identify"][inj_idx] = pred == labels

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
        if "auc" in r:  # threshold-free: the cross-validated score's AUC, injected vs control
            row["auc"] = r["auc"]
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
        "reader_model": args.reader_model or args.model,
        "layer": layer,
        "read_layer": read,
        "position": "last prompt token (inside the injection window)",
        "prompt_variants": args.prompt_variants,
        "control_prompts": len(set(variant[~injected])),
        "legibility": {str(k): v for k, v in legible.items()},
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
    if asked:
        (args.out / "answers.json").write_text(json.dumps(asked, indent=1))
    per_trial = {  # every reader's verdict per trial: intervals clustered by concept from these
        "injected": injected.tolist(),
        "concept": concept.tolist(),
        "prompt_variant": variant.tolist(),
        "readers": {
            name: {k: np.asarray(v).tolist() for k, v in r.items() if k in PER_TRIAL}
            for name, r in readers.items()
        },
    }
    (args.out / "per_trial.json").write_text(json.dumps(per_trial))

    def cell(v: dict | None) -> str:
        return (
            "—"
            if v is None
            else f"{v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}] ({v['k']}/{v['n']})"
        )

    print(
        f"{args.model}, injection layer {layer}, read at layer {read}, strengths "
        f"{args.strengths}: "
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
        if "auc" in row:
            print(f"<!-- {row['reader']}: AUC injected vs control {row['auc']:.3f} -->")
        print(
            f"| {row['reader']} | {cell(row.get('detect_injected'))} | "
            f"{cell(row.get('detect_control_fpr'))} | {cell(row.get('identify_injected'))} "
            f"| {cell(row.get('names_a_concept_control'))} |"
        )


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    script_main(main)
