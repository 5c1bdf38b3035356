"""The closest-word grader's hand-labelled calibration set (thoughts-vs-text; docs/grading.md,
issue 32).

    python scripts/word_calibration.py extract --out tests/data/word_calibration.json
    python scripts/word_calibration.py sheet   # what the labeller reads: no concept, no verdict
    python scripts/word_calibration.py score   # κ, Se, Sp on the held-out half
    python scripts/word_calibration.py table --doc docs/grading.md   # the corrected-rate table

``extract`` draws 80 word-task trials from each shipped generation-mode thoughts-vs-text run
(``numpy.random.default_rng(33)`` per run, without replacement) and writes them unlabelled
(``choice`` null), each with its half fixed by a hash of its run and trial
(:func:`mechintro.grading.word_split`), never by its text. ``sheet`` prints, per item, its id,
the 10 candidates in their stored order and the response: not the injected concept and no grader
verdict, so the labeller's ``choice`` (a candidate or ``none``, by the rules of docs/grading.md)
is blind to both. ``score`` runs :func:`mechintro.grading.closest_word` on the labelled items and
prints κ with n and positives per half. ``table`` writes the raw and corrected word rates of
every shipped thoughts-vs-text run between the ``word_calibration:corrected`` markers of
``--doc``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
RUNS = (
    "analyses/data/smollm2-135m-default/thoughts-vs-text.zarr",
    "analyses/data/qwen2.5-coder-0.5b/thoughts-vs-text.zarr",
    "analyses/data/qwen2.5-coder-1.5b/thoughts-vs-text.zarr",
)
PER_RUN = 80
SEED = 33


def _apology_script():
    """scripts/apology_calibration.py, whose drawing and writing this set shares."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "apology_calibration", Path(__file__).with_name("apology_calibration.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pool(rel: str, ds) -> np.ndarray:
    if ds.attrs.get("experiment") != "thoughts-vs-text":
        from mechintro.errors import MechintroError

        raise MechintroError(
            f"{rel} is not a thoughts-vs-text run: check the RUNS paths of this script"
        )
    return np.flatnonzero(np.asarray(ds["task"].values) == "word")


def _item(rel: str, ds, i: int) -> dict:
    from mechintro.grading import word_split

    t = ds.isel(trial=i)
    return _apology_script().trial_fields("word", rel, ds, i) | {
        "concept": str(t["concept"].values),
        "candidates": json.loads(str(t["candidates"].values)),
        "response": str(t["response"].values),
        "choice": None,
        "why": "",
        "split": word_split(rel, i),
    }


def extract(per_run: int = PER_RUN) -> list[dict]:
    """The unlabelled items, in run and trial order."""
    return _apology_script().draw(RUNS, per_run, SEED, _pool, _item)


TABLE_RUNS = (*RUNS, "analyses/data/smollm2-135m/thoughts-vs-text.zarr")


def corrected_table() -> str:
    """Markdown: per shipped thoughts-vs-text run, the word rate raw and corrected."""
    from mechintro.experiments import thoughts_vs_text as tt
    from mechintro.runs import open_run

    rows = [
        "| run | cells | word named, injected: raw → corrected [95%] (concepts resampled) | "
        "per-cell corrected upper limits | cells above chance, raw / corrected lower limit | "
        "uninjected: raw → corrected [95%] |",
        "|---|---|---|---|---|---|",
    ]
    for rel in TABLE_RUNS:
        s = tt.summarize(open_run(ROOT / rel))
        k, n, _e, lo, hi = s.attrs["word_corrected_injected"]
        bk, bn, _be, blo, bhi = s.attrs["word_corrected_uninjected"]
        up = s.word_corr_hi.values
        raw_above = int(((s.word_lo > 0.1) & (s.repeat > 0.5)).sum())
        corr_above = int(((s.word_corr_lo > 0.1) & (s.repeat > 0.5)).sum())
        rows.append(
            f"| `{rel.split('/')[2]}` | {up.size} | {k}/{n} → [{lo:.3f}, {hi:.3f}] | "
            f"{up.min():.3f}–{up.max():.3f} | {raw_above} / {corr_above} | "
            f"{bk}/{bn} → [{blo:.3f}, {bhi:.3f}] |"
        )
    return "\n".join(rows)


def _write_table(doc: Path) -> None:
    start, end = "<!-- word_calibration:corrected -->", "<!-- /word_calibration:corrected -->"
    text = doc.read_text() if doc.is_file() else ""
    if start not in text or end not in text:
        from mechintro.errors import MechintroError

        raise MechintroError(f"{doc}: no {start} … {end} markers to write the table between")
    head, rest = text.split(start, 1)
    table = corrected_table()
    doc.write_text(head + start + "\n" + table + "\n" + end + rest.split(end, 1)[1])
    print(f"corrected-rate table -> {doc}")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract", help="draw the unlabelled items")
    e.add_argument("--out", required=True)
    t = sub.add_parser("table", help="the corrected-rate table, into a document")
    t.add_argument("--doc", default=str(ROOT / "docs" / "grading.md"))
    for name, helptext in (("sheet", "the labelling sheet"), ("score", "κ of closest_word")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--set", default=None, help="the set (default: the shipped one)")
    args = ap.parse_args(argv)
    if args.cmd == "extract":
        _apology_script().write_items(extract(), args.out)
        return 0
    from mechintro import grading

    if args.cmd == "table":
        _write_table(Path(args.doc))
        return 0
    if args.cmd == "sheet":
        path = args.set or str(ROOT / "tests" / "data" / "word_calibration.json")
        for it in grading.calibration_items(path):
            print(f"{it['id']}\t{', '.join(it['candidates'])}\t{it['response']!r}")
        return 0
    from mechintro.stats import cohen_kappa

    for half in ("dev", "held_out"):
        items = grading.word_calibration_items(half, args.set)
        c = grading.word_error_counts(items)
        truth = [it["choice"] == it["concept"] for it in items]
        guess = [
            grading.closest_word(it["response"], it["candidates"]) == it["concept"] for it in items
        ]
        same = sum(
            (grading.closest_word(it["response"], it["candidates"]) or "none") == it["choice"]
            for it in items
        )
        print(
            f"{half}: n {len(items)}, injected concept chosen by hand {sum(truth)}, by the grader "
            f"{sum(guess)}; tp {c['tp']} fn {c['fn']} tn {c['tn']} fp {c['fp']}; "
            f"κ {cohen_kappa(truth, guess):.3f}; same choice (candidate or none) "
            f"{same}/{len(items)}"
        )
    return 0


if __name__ == "__main__":
    script_main(main)
