"""The positive control's tables (issue 33; docs/positive-control.md), regenerated from the small
results shipped in ``analyses/data/positive-control/`` (written by
``scripts/positive_control_train.py`` and ``scripts/positive_control_instruments.py``):

1. held-out evaluation, untrained vs trained on the same trials (their question, greedy):
   detection, identification, false positives on controls, format rate, intervals clustered by
   concept; seen concepts; the capability cost;
2. the scaling curve (held-out detection vs examples seen);
3. their out-of-distribution suites (``ood.json``), if present;
4. the sensitivity table (each instrument on the untrained and the trained model), if present.

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


NET_COLUMNS = {
    "net_sampled": "net, sampled held-out − sampled controls",
    "net_sampled_at_4": "at 4×",
    "net_sampled_at_8": "at 8×",
    "net_greedy": "net, greedy held-out − sampled controls",
    "net_seen_sampled": "net, sampled seen (training) concepts − sampled controls",
}


def nets_table(ev: dict) -> str:
    """Net detection, untrained vs trained, with the held-out side clustered by concept."""
    nets = ev.get("nets", {})
    keys = [k for k in NET_COLUMNS if any(k in nets.get(m, {}) for m in nets)]
    rows = [
        "| model | distinct controls | " + " | ".join(NET_COLUMNS[k] for k in keys) + " |",
        "|---|---|" + "---|" * len(keys),
    ]
    for label in ("untrained", "trained"):
        n = nets.get(label, {})
        cells = [_signed(n[k]) if k in n else "—" for k in keys]
        rows.append(f"| {label} | {n.get('n_controls_distinct', '—')} | {' | '.join(cells)} |")
    return "\n".join(rows)


def verdict(ev: dict) -> str:
    """The acceptance rule, read off the data: the trained model's net detection (sampled
    held-out − sampled controls) has its clustered interval above 0 on >= 50 distinct controls."""
    n = ev.get("nets", {}).get("trained", {})
    if "net_sampled" not in n:
        return "Acceptance (net detection above 0 on ≥ 50 distinct controls): not evaluated."
    lo = n["net_sampled"][1]
    k = n.get("n_controls_distinct", 0)
    met = lo > 0 and k >= 50
    why = "" if met else (" (fewer than 50 distinct controls)" if k < 50 else " (its interval "
                          "includes 0)")  # fmt: skip
    narrow = f" (narrowly: lower limit {lo:+.2f})" if met and lo < 0.05 else ""
    return (
        f"Acceptance (net detection's clustered interval above 0 on ≥ 50 distinct controls): "
        f"**{'met' if met else 'not met'}**{why}: trained {_signed(n['net_sampled'])} on {k} "
        f"distinct controls{narrow}."
    )


def seen_table(ev: dict) -> str:
    """The seen-vs-unseen gap: training concepts (seen) against the held-out ones, the same
    strengths and decoding, per model."""
    cells = {
        (r["model"], r["group"]): r
        for r in ev["summary"]
        if r["strength"] is None and r["group"] in ("held-out", "seen", "held-out-sampled",
                                                     "seen-sampled")
    }  # fmt: skip
    body = []
    for label in ("untrained", "trained"):
        for suffix, decoding in (("", "greedy, all strengths"), ("-sampled", "sampled, 4× 8×")):
            h, s = cells.get((label, "held-out" + suffix)), cells.get((label, "seen" + suffix))
            if h and s:
                body.append([label, decoding, _cell(h["detected"]), _cell(s["detected"]),
                             _cell(h["identified"]), _cell(s["identified"])])  # fmt: skip
    header = ["model", "decoding", "held-out detected", "seen detected", "held-out identified",
              "seen identified"]  # fmt: skip
    return _markdown(header, body)


def _strengths(ev: dict) -> list[str]:
    """The sampled held-out strengths of an evaluation, as "4×"."""
    return [
        f"{x:g}×" for x in ev.get("nets", {}).get("trained", {}).get("net_sampled_strengths", [])
    ]


def _markdown(header: list[str], body: list[list[str]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def why_table(why: dict) -> str:
    """scripts/positive_control_why.py: the trained protocol against Lindsey's, one factor
    swapped at a time (greedy, its held-out concepts, the same injected norm)."""
    rows = [
        "| condition | untrained detected | trained detected | trained in a trained format "
        "| trained, greedy control claims? | trained control's answer |",
        "|---|---|---|---|---|---|",
    ]
    by = {(r["model"], r["condition"]): r for r in why["summary"]}
    for cond in dict.fromkeys(r["condition"] for r in why["summary"]):
        u, t = by[("untrained", cond)], by[("trained", cond)]
        rows.append(
            f"| {cond} | {_cell(u['detected'])} | {_cell(t['detected'])} | {t['in_format']:.2f} "
            f"| {'yes' if t['control_detected'] else 'no'} | {t['control_response'][:60]} |"
        )
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
        "| model | steps | examples seen | held-out detected, greedy, 4× / 8× "
        "| held-out identified | held-out detected, sampled 4× 8× "
        "| control false positives (sampled) | net detection (sampled, 4× 8×) "
        "| net detection (greedy) | held-out text log-lik/token |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in scaling:
        control = r.get("control_sampled", r["control"])
        greedy = _signed(r["net_greedy"]) if "net_greedy" in r else _net(r["held_out"], control)
        at = {c["strength"]: c["detected"][0] for c in r.get("by_strength", [])}
        sampled = r.get("held_out_sampled")
        rows.append(
            f"| {r['model']} | {r['steps']} | {r['examples_seen']} | "
            f"{at.get(4.0, float('nan')):.2f} / {at.get(8.0, float('nan')):.2f} | "
            f"{_cell(r['held_out']['identified'])} | "
            f"{_cell(sampled['detected']) if sampled else '—'} | {_cell(control['detected'])} | "
            f"{_signed(r['net_sampled']) if 'net_sampled' in r else '—'} | {greedy} | "
            f"{r.get('loglik_per_token', '—')} |"
        )
    return "\n".join(rows)


def ood_table(ood: dict) -> str:
    """scripts/positive_control_ood.py: their five out-of-distribution suites, greedy, every
    strength pooled; each suite whole and without the entries the run trained on."""
    cells = {
        (r["model"], r["group"]): r for r in ood["summary"] if r["strength"] is None
    }  # fmt: skip
    body = []
    for suite in dict.fromkeys(r["suite"] for r in ood["rows"]):
        for group, which in ((f"ood-{suite}", "all"),
                             (f"ood-{suite}-untrained-entries", "untrained entries")):  # fmt: skip
            u, t = cells.get(("untrained", group)), cells.get(("trained", group))
            if u and t:
                body.append([suite, which, str(t["n"]), _cell(u["detected"]),
                             _cell(t["detected"]), _cell(u["identified"]),
                             _cell(t["identified"]), _cell(t["in_format"])])  # fmt: skip
    header = ["suite", "entries", "trials", "untrained detected", "trained detected",
              "untrained identified", "trained identified", "trained in format"]  # fmt: skip
    return _markdown(header, body)


def sensitivity_table(sens: list[dict]) -> str:
    header = ["instrument", "readout", "untrained", "trained", "sees the trained ability?", "note"]
    body = [[r["instrument"], r["readout"], _cell(r["untrained"]), _cell(r["trained"]), r["sees"],
             r.get("note", "")] for r in sens]  # fmt: skip
    return _markdown(header, body)


def _planned(ev: dict) -> str:
    """ " of N" planned steps, when the run's config says how many (examples × epochs / batch)."""
    c = ev.get("config") or {}
    if not all(k in c for k in ("examples", "epochs", "batch_size")):
        return ""
    return f" of {-(-c['examples'] // c['batch_size']) * c['epochs']}"


def other_models(data: Path) -> list[Path]:
    """The folders under ``data`` holding the same recipe on another model: their
    ``settings.json`` names a model other than ``data``'s own (SmolLM2's earlier runs and its
    replication name SmolLM2)."""
    own = json.loads((data / "settings.json").read_text())["model"]
    return [
        d for d in sorted(data.iterdir())
        if (d / "settings.json").exists()
        and json.loads((d / "settings.json").read_text())["model"] != own
    ]  # fmt: skip


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
        f"### Held-out evaluation ({settings['model']}, {ev['examples']} examples seen, "
        f"{ev['steps']}{_planned(ev)} steps of batch {ev.get('batch_size', '?')}, lr "
        f"{ev.get('learning_rate', '?')}, {ev['train_seconds']} s of training)",
        "",
        held_out_table(ev),
        "",
        "Net detection (the held-out side's interval clustered by concept, combined with the "
        "controls' Wilson interval by MOVER):",
        "",
        nets_table(ev),
        "",
        verdict(ev),
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
    if any(r["group"] == "seen" for r in ev["summary"]):
        out += ["", "### Seen vs unseen concepts", "", seen_table(ev)]
    out += ["", internality(ev)]
    scaling_file = data / "scaling.json"
    if scaling_file.exists():
        out += ["", "### Scaling (snapshots of the same run)", ""]
        out += [scaling_table(json.loads(scaling_file.read_text()))]
    for rep in sorted(data.glob("replication-*/eval_main.json")):  # the same models, new samples
        rev = json.loads(rep.read_text())
        head = (f"### Replication on fresh samples (`{rep.parent.name}`: the sampled trials "
                f"and controls drawn again, strengths {', '.join(_strengths(rev))})")  # fmt: skip
        out += ["", head, ""]
        out += [nets_table(rev), "", verdict(rev)]
    ood_file = data / "ood.json"
    if ood_file.exists():
        ood = json.loads(ood_file.read_text())
        out += ["", f"### Their out-of-distribution suites (greedy, strengths "
                f"{', '.join(f'{x:g}×' for x in ood['strengths'])} pooled)", ""]  # fmt: skip
        out += [ood_table(ood)]
    sens_file = data / "sensitivity.json"
    if sens_file.exists():
        out += ["", "### Sensitivity table", ""]
        out += [sensitivity_table(json.loads(sens_file.read_text()))]
    why_file = data / "why.json"
    if why_file.exists():
        why = json.loads(why_file.read_text())
        out += [
            "",
            f"### Why Lindsey's protocol misses it (step {why['adapter_steps']}, "
            f"{why['strength']:g}× the CAA norm = {why['ratio']:.2f} residual norms)",
            "",
        ]
        out += [why_table(why)]  # fmt: skip
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    args = p.parse_args()
    print(document(args.data))
    return 0


if __name__ == "__main__":
    script_main(main)
