"""Ask the readers of ``docs/oracles.md`` about the anomaly direction (``docs/analysis.md``).

Runs Lindsey's injected-thoughts trial in logit mode with residual streams (``detection-logits``:
N concepts at one layer and the given strengths, plus its controls), labels each injected trial
*detected* when its Yes−No log-odds exceed the 0.95 quantile of the controls', and takes the
anomaly direction at the injection layer (:func:`mechintro.analysis.anomaly.anomaly_directions`:
detected minus the rest, residual averaged from the injection's start to the last prompt token;
with its concept-held-out AUC). Then it asks about that direction, about the same direction with
every injected vector projected out (``direction_span``), and, as the null, about random
directions of the same size:

* the trained oracle (``--oracle``, optional) and the untrained model in the oracle format: an
  open question and the yes/no question read as P(yes);
* Patchscopes (:func:`mechintro.oracle.describe`), the direction scaled to the mean norm of the
  residual it was read from.

    python scripts/oracle_anomaly.py --model smollm2-135m --oracle ORACLE \\
        --out runs/oracle-anomaly/smollm2-135m

Writes ``anomaly.json`` beside the run and prints it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from mechintro import oracle, runs, stimuli
from mechintro.analysis import anomaly
from mechintro.cli import main as cli
from mechintro.cli import script_main
from mechintro.models import load_model

QUESTIONS = ("What is this about?", "Is there an injected thought here? If so, what is it about?")
YES_NO_QUESTION = "Is there an injected thought here?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument(
        "--oracle",
        default=None,
        help=(
            "a trained oracle of --model (mechintro oracle train); omitted: untrained readers only"
        ),
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--concepts", type=int, default=20, help="the first N of Lindsey's 50 concepts")
    ap.add_argument("--layer", default="0.67", help="injection layer (index or fraction of depth)")
    ap.add_argument("--strengths", default="4,8,16")
    ap.add_argument("--random", type=int, default=5, help="random directions asked as the null")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    run = args.out / "trials.zarr"
    t = time.perf_counter()
    if not (
        run.exists() and runs.open_run(run, committed_only=False).attrs.get("complete") == "true"
    ):
        code = cli(
            [
                "-q",
                "run",
                "detection-logits",
                "--model",
                args.model,
                "--concepts",
                ",".join(stimuli.concept_words()[: args.concepts]),
                "--layers",
                args.layer,
                "--strengths",
                args.strengths,
                "--record-resid",
                "--seed",
                str(args.seed),
                "--out",
                str(run),
            ]
        )
        if code:
            raise SystemExit(code)
    seconds = {"trials": time.perf_counter() - t}
    ds = runs.open_run(run)
    labels = anomaly.detection_labels(ds)
    layer = int(ds["inject_layer"].values[0])
    feats = anomaly.window_features(ds, layers=[layer])
    result = anomaly.anomaly_directions(
        ds, labels, layers=[layer], features=feats, n_boot=200, seed=args.seed
    )
    norm = float(np.linalg.norm(feats.values[:, 0], axis=-1).mean())
    rng = np.random.default_rng(args.seed)
    random = rng.standard_normal((args.random, ds.sizes["d_model"])).astype(np.float32)
    random /= np.linalg.norm(random, axis=1, keepdims=True)
    directions = {
        "anomaly": result["direction"].values[0],
        "anomaly, injected vectors projected out": result["direction_span"].values[0],
    }
    directions.update({f"random {i}": r for i, r in enumerate(random)})
    model = load_model(args.model)
    readers = {"untrained": oracle.untrained(model)}
    if args.oracle:
        readers = {"oracle": oracle.load(model, args.oracle), **readers}
    t = time.perf_counter()
    acts = torch.tensor(np.stack(list(directions.values())), dtype=torch.float32)
    answers: dict[str, dict[str, object]] = {name: {} for name in directions}
    for reader, o in readers.items():
        for q in QUESTIONS:
            for name, a in zip(
                directions,
                oracle.ask(o, acts[:, None], q, layer=layer, max_new_tokens=24),
                strict=True,
            ):
                answers[name][f"{reader}: {q}"] = a.strip()
        for name, p in zip(
            directions, oracle.p_yes(o, acts[:, None], YES_NO_QUESTION, layer=layer), strict=True
        ):
            answers[name][f"{reader}: P(yes) {YES_NO_QUESTION}"] = round(float(p), 4)
    for name, a in zip(directions, oracle.describe(model, acts * norm, layer=layer), strict=True):
        answers[name]["Patchscopes"] = a
    seconds["asking"] = time.perf_counter() - t
    lab = np.asarray(labels.values)
    out = {
        "meta": {
            "model": args.model,
            "oracle": args.oracle,
            "layer": layer,
            "strengths": args.strengths,
            "concepts": args.concepts,
            "labels": labels.attrs.get("rule", ""),
            "n_detected": int((lab == "detected").sum()),
            "n_missed": int((lab == "missed").sum()),
            "n_control": int((lab == "control").sum()),
            "describe_norm": round(norm, 2),
            "seconds": {k: round(v, 1) for k, v in seconds.items()},
        },
        "auc": {
            f"{e}, removal {r}": [
                round(float(result[v].sel(estimator=e, removal=r, layer=layer)), 3)
                for v in ("auc", "auc_lo", "auc_hi")
            ]
            for e in result.estimator.values.tolist()
            for r in result.removal.values.tolist()
        },
        "answers": answers,
    }
    (args.out / "anomaly.json").write_text(json.dumps(out, indent=1, ensure_ascii=False))
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    script_main(main)
