"""The apology grader's hand-labelled calibration set (prefill; docs/grading.md, issue 32).

    python scripts/apology_calibration.py extract --out tests/data/apology_calibration.json
    python scripts/apology_calibration.py score   # κ, Se, Sp on the held-out half

``extract`` draws 80 trials from each shipped generation-mode prefill run
(``numpy.random.default_rng(32)`` per run, without replacement) and writes them unlabelled
(``stance`` null), each with its half fixed by a hash of its run and trial
(:func:`mechintro.grading.apology_split`), never by its text. It reads the reply and the trial's
metadata only, never a grade. A labeller then fills in ``stance`` (accident / intended / neither)
and ``why`` by the rules of docs/grading.md. ``score`` runs :func:`mechintro.grading.apology` on
the labelled items and prints κ with n and positives per half.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
RUNS = (
    "analyses/data/smollm2-135m-default/prefill.zarr",
    "analyses/data/qwen2.5-coder-0.5b/prefill.zarr",
    "analyses/data/qwen2.5-coder-1.5b/prefill.zarr",
)
PER_RUN = 80
SEED = 32


def draw(runs, per_run: int, seed: int, pool, item) -> list[dict]:
    """``per_run`` trials of each run of ``runs`` (paths under the repository), drawn without
    replacement from ``pool(rel, ds)`` (a trial count or trial indices) with
    ``numpy.random.default_rng(seed)`` per run, in trial order, each made into a calibration item
    by ``item(rel, ds, trial)``; shared with ``scripts/word_calibration.py``."""
    from mechintro.runs import open_run

    items = []
    for rel in runs:
        ds = open_run(ROOT / rel)
        chosen = np.random.default_rng(seed).choice(pool(rel, ds), per_run, False)
        items += [item(rel, ds, i) for i in np.sort(chosen).tolist()]
    return items


def write_items(items: list[dict], out: str) -> None:
    """Write unlabelled items as a calibration set, and say how many fell in each half."""
    Path(out).write_text(json.dumps({"items": items}, indent=1, ensure_ascii=False) + "\n")
    halves = {h: sum(it["split"] == h for it in items) for h in ("dev", "held_out")}
    print(f"{len(items)} items -> {out} ({halves})")


def _pool(rel: str, ds) -> int:
    if ds.attrs.get("mode") != "generate":
        from mechintro.errors import MechintroError

        raise MechintroError(
            f"{rel} is not a generation-mode prefill run: check the RUNS paths of this script"
        )
    return ds.sizes["trial"]


def trial_fields(prefix: str, rel: str, ds, i: int) -> dict:
    """The fields every calibration item opens with: its id, run, trial, model and cell."""
    t = ds.isel(trial=i)
    return {
        "id": f"{prefix}-{rel.split('/')[2]}-{i}",
        "run": rel,
        "trial": i,
        "model": ds.attrs["model"],
        "condition": str(t["condition"].values),
        "layer": int(t["inject_layer"]),
        "strength": float(t["strength"]),
    }


def _item(rel: str, ds, i: int) -> dict:
    from mechintro.grading import apology_split

    t = ds.isel(trial=i)
    return trial_fields("apology", rel, ds, i) | {
        "sentence": str(t["sentence"].values),
        "concept": str(t["prefilled"].values),
        "response": str(t["response"].values),
        "stance": None,
        "why": "",
        "split": apology_split(rel, i),
    }


def extract(per_run: int = PER_RUN) -> list[dict]:
    """The unlabelled items, in run and trial order."""
    return draw(RUNS, per_run, SEED, _pool, _item)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="draw the unlabelled items")
    e.add_argument("--out", required=True)
    s = sub.add_parser("score", help="κ of grading.apology against the labels")
    s.add_argument("--set", default=None, help="labelled set (default: the shipped one)")
    args = ap.parse_args(argv)
    if args.cmd == "extract":
        write_items(extract(), args.out)
        return 0
    from mechintro import grading
    from mechintro.stats import cohen_kappa

    for half in ("dev", "held_out"):
        items = grading.apology_calibration_items(half, args.set)
        c = grading.apology_error_counts(items)
        truth = [it["stance"] == "accident" for it in items]
        guess = [grading.apology(it["response"]) is True for it in items]
        print(
            f"{half}: n {len(items)}, apologies by hand {sum(truth)}, by the grader {sum(guess)}; "
            f"tp {c['tp']} fn {c['fn']} tn {c['tn']} fp {c['fp']}; "
            f"κ {cohen_kappa(truth, guess):.3f}"
        )
    return 0


if __name__ == "__main__":
    script_main(main)
