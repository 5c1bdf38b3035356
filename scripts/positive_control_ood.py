"""The positive control's out-of-distribution suites (issue 33): Fonseca Rivera's five
``EVAL_SUITES`` (david-aisi/steering-awareness @ 4f0dab39, ``data/concepts.py``; evaluated by
``scripts/run_full_eval.py`` with ``SteeringEvaluator.evaluate_suite``), on the untrained and the
trained model, the same trials.

Each entry's CAA vector is made as the training run's were (their template, their baseline words,
the run's layer), added at ``--strengths`` on the last prompt token of their question, greedy,
12 new tokens (as ``scripts/positive_control_eval.py``'s held-out trials). Graded by the held-out
evaluation's rules (``mechintro.introspect.train.judge``): detection, identification (the entry's
name: the word itself, or the Manifold text's domain) and the trained format. An entry the run
injected as a training positive (any form of the word, either way round) is flagged ``trained``;
the summary has each suite whole and without those. The unsteered control is the held-out
evaluation's (``eval_main.json``): the same prompt.

    PYTHONPATH=. python scripts/positive_control_ood.py runs/pc-bal/n600 --work runs/pc-bal
    PYTHONPATH=.:SITE python scripts/positive_control_ood.py DIR/n600 --work DIR \\
        --base qwen2.5-coder-0.5b --out-data analyses/data/positive-control/qwen2.5-coder-0.5b

writes ``ood.json`` (every answer and the summary) into ``--out-data``;
``scripts/positive_control.py`` prints its table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from mechintro.cli import script_main
from mechintro.errors import MechintroError

ROOT = Path(__file__).resolve().parent.parent


def _named(vectors, suites):
    """The suites' vectors keyed by entry name (the Manifold texts' vectors under their domain)."""
    from mechintro.introspect import train as st

    named = {name: vectors.vectors[text] for pairs in suites.values() for name, text in pairs}
    return st.Vectors(vectors.layer, named, vectors.resid_norm)


def _trained_names(work: Path, names: list[str]) -> set[str]:
    """The entries the run injected as training positives (any form of the word, either way)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from positive_control_eval import positive_concepts, run_config

    from mechintro.introspect import data as sdata

    return set(sdata.overlapping(names, positive_concepts(work, run_config(work))))


def summary(rows: list[dict]) -> list[dict]:
    """``introspect.train.summarise`` per suite, whole and without the trained entries
    (group ``ood-{suite}-untrained-entries``)."""
    from mechintro.introspect import train as st

    unseen = [
        {**r, "group": r["group"] + "-untrained-entries"} for r in rows if not r["trained_entry"]
    ]
    return st.summarise(rows) + st.summarise(unseen)


def main() -> int:
    import numpy as np
    import torch

    from mechintro import models
    from mechintro.introspect import data as sdata
    from mechintro.introspect import train as st

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("adapter", type=Path, help="the trained adapter directory")
    p.add_argument(
        "--work", type=Path, required=True,
        help="the training run's directory (vectors.pt, config.json, replay.json)",
    )  # fmt: skip
    p.add_argument("--base", default="smollm2-135m")
    p.add_argument("--strengths", default="4,8")
    p.add_argument("--max-new-tokens", type=int, default=12)
    p.add_argument("--out-data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    args = p.parse_args()
    for f in ("vectors.pt", "config.json", "replay.json"):
        if not (args.work / f).exists():
            raise MechintroError(
                f"{args.work / f} does not exist: give the training run's --work directory"
            )
    strengths = [float(s) for s in args.strengths.split(",")]
    suites = sdata.ood_suites()
    names = [n for pairs in suites.values() for n, _ in pairs]
    trained_names = _trained_names(args.work, names)
    base = models.load_model(args.base)
    trained, record = st.load(base, args.adapter)
    layer = int(torch.load(args.work / "vectors.pt", weights_only=True)["layer"])
    t = time.perf_counter()
    texts = [text for pairs in suites.values() for _, text in pairs]
    vectors = _named(st.caa_vectors(base, texts, layer), suites)
    st.check_strengths(strengths, vectors)
    rows = []
    kw = {"n_controls": 0, "max_new_tokens": args.max_new_tokens, "batch_size": 100}
    for label, m in (("untrained", base), ("trained", trained)):
        for suite, pairs in suites.items():
            got = st.trials(m, vectors, [n for n, _ in pairs], strengths, label=label,
                            group=f"ood-{suite}", **kw)  # fmt: skip
            rows += [{**r, "suite": suite, "trained_entry": r["concept"] in trained_names}
                     for r in got]  # fmt: skip
    norms = {
        suite: round(float(np.median([vectors.vectors[n].norm() for n, _ in pairs])), 3)
        for suite, pairs in suites.items()
    }
    result = {
        "source": "david-aisi/steering-awareness @ 4f0dab39, data/concepts.py EVAL_SUITES",
        "model": base.name,
        "adapter_steps": record["steps"],
        "layer": layer,
        "strengths": strengths,
        "resid_norm": round(vectors.resid_norm, 3),
        "vector_norm_median": norms,
        "trained_entries": sorted(trained_names),
        "seconds": round(time.perf_counter() - t, 1),
        "rows": rows,
        "summary": summary(rows),
    }
    args.out_data.mkdir(parents=True, exist_ok=True)
    (args.out_data / "ood.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    for r in result["summary"]:
        if r["strength"] is None:
            print(r["model"], r["group"], r["n"], "detected", r["detected"],
                  "identified", r["identified"])  # fmt: skip
    return 0


if __name__ == "__main__":
    script_main(main)
