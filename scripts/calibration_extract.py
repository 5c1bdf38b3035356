"""Extract every response of injected-thoughts runs into an unlabelled calibration file.

The hand-labelled grader calibration sets (``tests/data/grader_calibration_v*.json``) are built in
two steps: this script copies each trial of one or more ``injected-thoughts`` run stores into an
item (response verbatim, the question the model was asked, the trial's concept and cell), with no
selection and no filtering; a person then fills in ``labels`` and ``why`` by the labelling rules of
``docs/grading.md``. The script reads only the response text and the trial's metadata, never any
grade, so a labeller who uses it stays blind to the grader.

Usage::

    python scripts/calibration_extract.py runs/calib3/smol-detect.zarr=smol-detect \\
        runs/calib3/qwen-detect.zarr=qwen-detect --prefix v3 --split independent \\
        --out unlabelled.json

Each item's ``id`` is ``{prefix}-{name}-{trial}``; ``labels`` is ``null`` until labelled.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mechintro.cli import script_main
from mechintro.experiments.injected_thoughts import NAME, question_kind
from mechintro.runs import open_run


def extract(path: str, name: str, *, prefix: str, split: str) -> list[dict]:
    """One unlabelled item per trial of the run store at ``path``, in trial order."""
    ds = open_run(path)
    if ds.attrs.get("experiment") != NAME:
        raise ValueError(f"{path} is a {ds.attrs.get('experiment')!r} run, not {NAME!r}")
    config = json.loads(ds.attrs["config"]) if isinstance(ds.attrs["config"], str) else {}
    kind = question_kind(config.get("question", "detect"))
    seed = ds.attrs.get("seed")
    items = []
    for i in range(ds.sizes["trial"]):
        t = ds.isel(trial=i)
        condition = str(t["condition"].values)
        items.append(
            {
                "id": f"{prefix}-{name}-{i}",
                "source": (
                    f"{path} trial {i}: {ds.attrs['model']}, question "
                    f"'{config.get('question', 'detect')}', layer {int(t['inject_layer'])}, "
                    f"strength {float(t['strength']):g}, {condition} (seed {seed})"
                ),
                "concept": str(t["concept"].values) if condition == "injected" else "",
                "response": str(t["response"].values),
                "question": str(t["question"].values),
                "question_kind": "detect" if kind == "detect" else "open",
                "labels": None,
                "why": "",
                "origin": f"{prefix}: {name}",
                "split": split,
            }
        )
    return items


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="RUN.zarr=NAME (NAME goes into each item's id)")
    ap.add_argument("--prefix", default="v3", help="id prefix (default: v3)")
    ap.add_argument("--split", default="independent", help="split of every item")
    ap.add_argument("--out", required=True, help="output JSON file")
    args = ap.parse_args(argv)
    items: list[dict] = []
    for spec in args.runs:
        path, sep, name = spec.partition("=")
        if not sep or not name:
            print(f"error: {spec!r}: write RUN.zarr=NAME", file=sys.stderr)
            return 2
        if not Path(path).exists():
            print(f"error: no run store at {path}", file=sys.stderr)
            return 2
        try:
            items += extract(path, name, prefix=args.prefix, split=args.split)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    Path(args.out).write_text(json.dumps({"items": items}, indent=1, ensure_ascii=False) + "\n")
    print(f"{len(items)} items -> {args.out}")
    return 0


if __name__ == "__main__":
    script_main(main)
