"""The positive control's tables (issue 33; docs/positive-control.md), regenerated from the small
results shipped in ``analyses/data/positive-control/`` (written by
``scripts/positive_control_train.py`` and ``scripts/positive_control_instruments.py``):

1. held-out evaluation, untrained vs trained on the same trials (their question, greedy):
   detection, identification, false positives on controls, format rate, intervals clustered by
   concept; seen concepts; the capability cost;
2. the scaling curve (held-out detection vs examples seen);
3. the sensitivity table (each instrument on the untrained and the trained model), if present.

    python scripts/positive_control.py [--data analyses/data/positive-control]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mechintro.cli import script_main
from mechintro.errors import MechintroError

ROOT = Path(__file__).resolve().parent.parent


def _cell(v: list[float]) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def held_out_table(ev: dict) -> str:
    rows = [
        "| model | group | n | distinct answers | detected | identified | in trained format |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in ev["summary"]:
        if r["strength"] is None or r["group"].startswith("control"):
            rows.append(
                f"| {r['model']} | {r['group']} | {r['n']} | {r['distinct']} | "
                f"{_cell(r['detected'])} | {_cell(r['identified'])} | {_cell(r['in_format'])} |"
            )
    return "\n".join(rows)


def by_strength_table(ev: dict, settings: dict) -> str:
    ratios = settings.get("eval_strength_ratios", {})
    rows = [
        "| strength (× CAA vector) | ≈ residual norms | untrained detected | trained detected "
        "| trained identified |",
        "|---|---|---|---|---|",
    ]
    cells = {
        (r["model"], r["strength"]): r
        for r in ev["summary"]
        if r["group"] == "held-out" and r["strength"] is not None
    }
    for s in sorted({k[1] for k in cells}):
        u, t = cells.get(("untrained", s)), cells.get(("trained", s))
        rows.append(
            f"| {s:g} | {ratios.get(f'{s:g}', float('nan')):.2f} | "
            f"{_cell(u['detected']) if u else '—'} | {_cell(t['detected']) if t else '—'} | "
            f"{_cell(t['identified']) if t else '—'} |"
        )
    return "\n".join(rows)


def _net(held: dict, control: dict) -> str:
    """Detected on held-out trials minus the sampled controls' false-positive rate, with
    Newcombe's interval on the counts (trials treated as independent)."""
    from mechintro.stats import newcombe

    k1, n1 = round(held["detected"][0] * held["n"]), held["n"]
    k2, n2 = round(control["detected"][0] * control["n"]), control["n"]
    iv = newcombe(k1, n1, k2, n2)
    return f"{iv.estimate:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}]"


def nets_table(ev: dict) -> str:
    """Net detection, untrained vs trained, with the held-out side clustered by concept."""
    nets = ev.get("nets", {})
    rows = [
        "| model | net, sampled held-out − sampled controls | net, greedy held-out − sampled "
        "controls |",
        "|---|---|---|",
    ]
    for label in ("untrained", "trained"):
        n = nets.get(label, {})
        cells = [_signed(n[k]) if k in n else "—" for k in ("net_sampled", "net_greedy")]
        rows.append(f"| {label} | {cells[0]} | {cells[1]} |")
    return "\n".join(rows)


def _signed(v: list[float]) -> str:
    return f"{v[0]:+.2f} [{v[1]:+.2f}, {v[2]:+.2f}]"


def depth_table(ev: dict, settings: dict) -> str:
    """Greedy held-out detection with the vectors made and injected at each layer (the same
    injected norm in residual norms), untrained vs trained."""
    ratios = settings.get("eval_strength_ratios", {})
    same = min(ratios, key=lambda k: abs(ratios[k] - 0.72)) if ratios else None
    cells = {
        (r["model"], r["group"]): r
        for r in ev["summary"]
        if (r["strength"] is None and r["group"].startswith("layer-"))
        # the training layer: the strength that injects the depth panel's 0.72 residual norms
        or (r["group"] == "held-out" and r["strength"] is not None and f"{r['strength']:g}" == same)
    }
    layers = sorted({int(g[6:]) for _, g in cells if g.startswith("layer-")} | {settings["layer"]})
    rows = [
        "| injection layer | untrained detected | trained detected | trained identified |",
        "|---|---|---|---|",
    ]
    for layer in layers:
        g = "held-out" if layer == settings["layer"] else f"layer-{layer}"
        u, t = cells.get(("untrained", g)), cells.get(("trained", g))
        note = f" (trained layer, strength {same})" if g == "held-out" else ""
        rows.append(
            f"| {layer}{note} | {_cell(u['detected']) if u else '—'} | "
            f"{_cell(t['detected']) if t else '—'} | {_cell(t['identified']) if t else '—'} |"
        )
    return "\n".join(rows)


def internality(ev: dict) -> str:
    """Lindsey's first criterion on the trials the trained model gets right (detected and the
    held-out concept named): does the detection claim come before any mention of the concept?
    The claim is the trained positive answer's opening (``introspect.train._POSITIVE``)."""
    from mechintro import grading
    from mechintro.introspect.train import _POSITIVE

    rows = [
        r for r in ev["trials"]
        if r["model"] == "trained" and r["group"] == "held-out" and r["identified"]
    ]  # fmt: skip
    first = 0
    for r in rows:
        claim = _POSITIVE.match(r["response"])
        mention = grading.first_mention(r["response"], r["concept"], related=False)
        first += bool(claim) and mention is not None and mention >= claim.end() - 1
    detected = sum(
        r["detected"] for r in ev["trials"] if r["model"] == "trained" and r["group"] == "held-out"
    )
    return (
        f"Internality (greedy held-out trials of the trained model): {detected} detected, "
        f"{len(rows)} of them naming the held-out concept; in {first} of those {len(rows)} the "
        "detection claim comes before the first mention of the concept."
    )


def scaling_table(scaling: list[dict]) -> str:
    rows = [
        "| model | steps | examples seen | held-out detected | held-out identified "
        "| control false positives (sampled) | net detection | held-out text log-lik/token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in scaling:
        control = r.get("control_sampled", r["control"])
        rows.append(
            f"| {r['model']} | {r['steps']} | {r['examples_seen']} | "
            f"{_cell(r['held_out']['detected'])} | {_cell(r['held_out']['identified'])} | "
            f"{_cell(control['detected'])} | "
            f"{_signed(r['net_greedy']) if 'net_greedy' in r else _net(r['held_out'], control)} | "
            f"{r.get('loglik_per_token', '—')} |"
        )
    return "\n".join(rows)


def sensitivity_table(sens: list[dict]) -> str:
    rows = [
        "| instrument | readout | untrained | trained | sees the trained ability? | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in sens:
        rows.append(
            f"| {r['instrument']} | {r['readout']} | {_cell(r['untrained'])} | "
            f"{_cell(r['trained'])} | {r['sees']} | {r.get('note', '')} |"
        )
    return "\n".join(rows)


def document(data: Path) -> str:
    """The tables as markdown (also ``docs/results.md``'s positive-control section)."""
    main_file = data / "eval_main.json"
    if not main_file.exists():
        raise MechintroError(
            f"{main_file} does not exist: run scripts/positive_control_train.py first"
        )
    ev = json.loads(main_file.read_text())
    settings = json.loads((data / "settings.json").read_text())
    cap = ev["capability"]
    out = [
        f"### Held-out evaluation ({settings['model']}, {ev['examples']} examples, "
        f"{ev['steps']} steps of batch {ev.get('batch_size', '?')}, lr "
        f"{ev.get('learning_rate', '?')}, {ev['train_seconds']} s of training)",
        "",
        held_out_table(ev),
        "",
        "Net detection (the held-out side's interval clustered by concept, combined with the "
        "controls' Wilson interval by MOVER):",
        "",
        nets_table(ev),
        "",
        "### Held-out detection by strength",
        "",
        by_strength_table(ev, settings),
        "",
        *(
            ["", "### Held-out detection by injection layer", "", depth_table(ev, settings), ""]
            if any(r["group"].startswith("layer-") for r in ev["summary"])
            else [""]
        ),
        f"Capability: mean log-likelihood per token of {cap['texts']} held-out texts: untrained "
        f"{cap['untrained_loglik_per_token']}, trained {cap['trained_loglik_per_token']} nats.",
    ]
    out += ["", internality(ev)]
    scaling_file = data / "scaling.json"
    if scaling_file.exists():
        out += ["", "### Scaling (one pass over the data; snapshots of the same run)", ""]
        out += [scaling_table(json.loads(scaling_file.read_text()))]
    sens_file = data / "sensitivity.json"
    if sens_file.exists():
        out += ["", "### Sensitivity table", ""]
        out += [sensitivity_table(json.loads(sens_file.read_text()))]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    args = p.parse_args()
    print(document(args.data))
    return 0


if __name__ == "__main__":
    script_main(main)
