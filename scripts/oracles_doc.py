"""Regenerate the measured tables of ``docs/oracles.md`` from the shipped results.

Each table sits between ``<!-- oracles_doc:NAME -->`` and ``<!-- /oracles_doc:NAME -->`` in the
document; everything else (the prose) is left alone. Tables:

* ``eval-{model}``: ``mechintro oracle eval``'s rows (``analyses/data/oracles/{model}/eval.json``)
  with the oracle's paired tests against shuffled activations and the untrained model;
* ``compare-{model}``: ``scripts/oracle_compare.py``'s ``table.json`` (readers of injected vs
  control trials) and its legibility summary per layer.

    python scripts/oracles_doc.py [--check]

``--check`` exits 1 (and writes nothing) when the document is out of date.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "analyses" / "data" / "oracles"
DOC = ROOT / "docs" / "oracles.md"
READERS = ("oracle", "untrained", "shuffled", "probe", "majority")


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def eval_table(rows: list[dict]) -> list[str]:
    cells = {(r["set"], r["reader"]): r for r in rows}
    sets = list(dict.fromkeys(r["set"] for r in rows))
    out = [
        "| set | " + " | ".join(READERS) + " |",
        "|---" * (len(READERS) + 1) + "|",
    ]
    for s in sets:
        out.append(
            f"| {s} | "
            + " | ".join(
                f"{c['correct']}/{c['n']} = {c['accuracy']:.3f} [{c['lo']:.3f}, {c['hi']:.3f}]"
                if (c := cells.get((s, r)))
                else "—"
                for r in READERS
            )
            + " |"
        )
    tests = [cells[(s, "oracle")] for s in sets if "vs_shuffled" in cells.get((s, "oracle"), {})]
    if tests:
        out += [
            "",
            "| set | oracle vs shuffled: right only for the oracle / only shuffled | McNemar p "
            "| concept-clustered p | oracle vs untrained: only oracle / only untrained "
            "| McNemar p | concept-clustered p |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in tests:
            a, b = row["vs_shuffled"], row["vs_untrained"]
            out.append(
                f"| {row['set']} | {a['a_only']} / {a['b_only']} | {_p(a['mcnemar_p'])} | "
                f"{_p(a['clustered_p'])} ({a['clusters']} concepts) | {b['a_only']} / "
                f"{b['b_only']} | {_p(b['mcnemar_p'])} | {_p(b['clustered_p'])} |"
            )
    return out


def _cell(v: dict | None) -> str:
    return f"{v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}] ({v['k']}/{v['n']})" if v else "—"


def compare_table(table: dict) -> list[str]:
    out = [
        "| reader | detects (injected) | detects (control: FPR) | AUC | names the concept "
        "(injected) | names a tested concept (control) |",
        "|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        auc = r.get("auc", r.get("p_yes_auc"))
        out.append(
            f"| {r['reader']} | {_cell(r.get('detect_injected'))} | "
            f"{_cell(r.get('detect_control_fpr'))} | {'—' if auc is None else f'{auc:.3f}'} | "
            f"{_cell(r.get('identify_injected'))} | {_cell(r.get('names_a_concept_control'))} |"
        )
    meta = table["meta"]
    if "legibility" in meta:
        out += [
            "",
            "| layer | differs from its own prompt's control (injected; control) | probe AUC "
            "| differs-from-controls AUC | probe right only / trivial right only | McNemar p "
            "| clustered p |",
            "|---|---|---|---|---|---|---|",
        ]
        for layer, v in meta["legibility"].items():
            own = v["differs_from_own_prompt_control"]
            t = v["probe_vs_trivial"]
            where = " (injection)" if int(layer) == meta["layer"] else ""
            out.append(
                f"| {layer}{where} | {own['injected']}; {own['control']} | {v['probe_auc']:.3f} "
                f"| {v['trivial_auc']:.3f} | {t['a_only']} / {t['b_only']} | {_p(t['mcnemar_p'])} "
                f"| {_p(t['clustered_p'])} |"
            )
    return out


def tables() -> dict[str, list[str]]:
    out = {}
    for folder in sorted(d for d in DATA.iterdir() if d.is_dir()):
        if (folder / "eval.json").exists():
            out[f"eval-{folder.name}"] = eval_table(json.loads((folder / "eval.json").read_text()))
        if (folder / "table.json").exists():
            out[f"compare-{folder.name}"] = compare_table(
                json.loads((folder / "table.json").read_text())
            )
    return out


def render(doc: str, made: dict[str, list[str]]) -> str:
    for name, lines in made.items():
        tag = re.escape(name)
        pattern = re.compile(
            rf"(<!-- oracles_doc:{tag} -->\n).*?(<!-- /oracles_doc:{tag} -->)", re.S
        )
        body = "\n".join(lines) + "\n"
        doc = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), doc)
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if docs/oracles.md is stale")
    args = ap.parse_args()
    doc = DOC.read_text()
    new = render(doc, tables())
    if args.check:
        if new != doc:
            print("docs/oracles.md is out of date: run python scripts/oracles_doc.py")
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    script_main(main)
