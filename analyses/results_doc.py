"""Write ``docs/results.md``: every saved results run, summarised, next to the published numbers.

Called by ``python scripts/results.py write``. Reads ``runs/results/{model}/{experiment}.zarr``
and ``timing.json``; nothing here runs a model. Each verdict sentence is computed from the
numbers it sits next to (an interval that excludes zero, or does not).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mechintro import stats
from mechintro.errors import MechintroError
from mechintro.experiments import EXPERIMENTS
from mechintro.runs import open_run

MODELS = ("smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b")
PUBLISHED = {
    "injected-thoughts": (
        "Lindsey (2025), experiment 1: Claude Opus 4.1 succeeds on ≈20% "
        "of trials at ≈2/3 depth, strength 2–4, with 0/100 false "
        "positives; random vectors 9/100; base models never exceed net 0."
    ),
    "thoughts-vs-text": (
        "Lindsey 2025, experiment 2: all models well above the 10% chance of the word task "
        "while still repeating the sentence, best near 2/3 depth (numbers in figures only)."
    ),
    "prefill": (
        "Lindsey 2025, experiment 3: matched injection on the sentence reduces the "
        "apology rate within a layer band peaking slightly over half depth; injection "
        "after the prefill has no comparable effect (numbers in figures only)."
    ),
    "intentional-control": (
        "Lindsey 2025, experiment 4: the word is represented more in 'think' than 'don't think', "
        "the gap emerging in the latter half of the network (measured in the analyses, issue 4)."
    ),
    "latent-introspection": (
        "vgel / Latent Introspection (Qwen2.5-Coder-32B, strength 20, layers 21–42): P(' yes') "
        "0.150% → 0.522% (cat), → 0.193% (bread) without info; with the info prompt ≈0.3–0.76% "
        "→ 39–53%; Lorem ipsum and wrong location give small shifts; +0.6% false positives."
    ),
    "sweep": (
        "Godet, 'Introspection or confusion?': on small models (Qwen2.5 0.5–32B, Llama "
        "3.x) the Yes−No logit difference of the introspection question and of the "
        "'1+1=3' control move toward 0 together across layers × scales: steering noise."
    ),
    "localisation": (
        "Godet, 'Introspection via localization': 5-sentence localisation above the "
        "20% chance at early layers, falling to chance by mid-depth; a commenter's "
        "Qwen2.5-14B reached 89% (but 90% for 'which is most abstract?')."
    ),
    "patchscope": (
        "Ghandeharioun et al. (2024), 'Patchscopes': the identity prompt decodes a hidden state "
        "by asking the model to repeat it; the paper patches hidden states, not concept "
        "vectors, so there is no published number for this use."
    ),
}


def _verdict(name: str, summary) -> str:
    """One sentence computed from the summary: does the published effect appear here?"""
    if name == "injected-thoughts":
        a = summary.attrs
        if "best_heldout_net_lo" not in a:
            return "Too few concepts for a held-out estimate."
        shown = a["best_heldout_net_lo"] > 0
        return (
            f"Held-out net detection at the best cell (layer {a['best_layer']}, "
            f"strength {a['best_strength']:g}): {a['best_heldout_net']:+.3f} "
            f"[{a['best_heldout_net_lo']:+.3f}, {a['best_heldout_net_hi']:+.3f}] — "
            + (
                "detection above false positives **appears**."
                if shown
                else "**no** detection above false positives at this scale."
            )
        )
    if name == "thoughts-vs-text":
        above = (summary.word_lo > 0.1) & (summary.repeat > 0.5)
        return (
            f"{int(above.sum())} of {above.size} (layer, strength) cells name the injected "
            "word above the 10% chance (lower bound) while repeating over half the "
            f"sentences; uninjected word-task rate {summary.attrs['baseline_word']:.3f}."
        )
    if name == "prefill":
        a = summary.attrs
        if "max_reduction" not in a:
            return "No cell could be compared."
        return (
            "Largest apology reduction (matched vs min(control, random)): "
            f"{a['max_reduction']:+.3f} at layer {a['max_reduction_layer']}, strength "
            f"{a['max_reduction_strength']:g}, control rate {a['control_rate']:.3f}; "
            "the best of many cells is an optimistic estimate."
        )
    if name == "latent-introspection":
        rows = [str(r) for r in summary.row.values]
        intro = [r for r in rows if r.startswith("introspection/")]
        first = "introspection/none" if "introspection/none" in intro else intro[0]
        s = float(summary.strength.values[-1])
        parts = [
            f"{r.split('/')[1]} {float(summary.yes_shift.sel(row=r, strength=s)):+.4f}"
            for r in intro
        ]
        ctl = [r for r in rows if not r.startswith("introspection/")]
        ctl_txt = ", ".join(
            f"{r} {float(summary.yes_shift.sel(row=r, strength=s)):+.4f}" for r in ctl
        )
        return (
            f"At strength {s:g}, P(yes) shifts by variant: {', '.join(parts)}; control questions "
            f"under the same steering: {ctl_txt}. Unsteered P(yes) of the introspection "
            f"question: {float(summary.base_p_yes.sel(row=first, strength=s)):.3f} "
            f"({first.split('/')[1]}); vgel's Qwen-32B: 0.0015."
        )
    if name == "sweep":
        a = summary.attrs
        corr = float(
            np.corrcoef(summary.intro_shift.values.ravel(), summary.control_shift.values.ravel())[
                0, 1
            ]
        )
        return (
            f"Across {a['cells']} cells the introspection and control shifts "
            f"correlate at r = {corr:.2f}; the introspection question has the "
            f"largest shift of all {a['n_control_questions'] + 1} questions in "
            f"{a['top_rank_cells']} cell{'' if a['top_rank_cells'] == 1 else 's'} "
            f"({a['top_rank_expected']:.1f} expected by chance; one-sided binomial p = "
            f"{a['top_rank_p']:.3f}) and lies above the control questions' 95% prediction "
            f"interval in {a['above_pi_cells']} ({a['outside_pi_expected']:.1f} "
            "expected outside by chance): "
            + (
                "the introspection question stands out more often than chance "
                "(cells treated as independent, which neighbouring cells are not)."
                if a["top_rank_p"] < 0.05
                else "**no** introspection-specific shift."
            )
            + " Readout: "
            f"{a.get('readout', 'not recorded')}; it reads a mean probability mass of "
            f"{float(summary.intro_mass.mean()):.3g} (introspection) and "
            f"{float(summary.control_mass.mean()):.3g} (controls) — a readout holding little "
            "mass is noise (`docs/protocols.md`)."
        )
    if name == "intentional-control":
        return (
            "Residuals recorded on the written sentence; the think "
            "/ don't-think alignment is an analysis (issue 4)."
        )
    if name == "localisation":
        above = summary.lo > summary.chance
        cells = int(np.isfinite(summary.accuracy).sum())
        no_power = int((summary.varies == 0).sum())
        bal = summary.balanced_accuracy.values[np.isfinite(summary.balanced_accuracy.values)]
        return (
            f"{int(above.sum())} of {cells} (task, layer, strength) cells are above chance "
            f"(Wilson lower bound); balanced accuracy {bal.min():.3f}–{bal.max():.3f} "
            f"(chance 1/k); {no_power} cells have **no power** (the answer never varies), so "
            "accuracy there is the share of targets matching the model's favourite answer."
        )
    if name == "patchscope":
        rate = summary.rate
        concept, random = rate.sel(condition="concept"), rate.sel(condition="random")
        above = summary.lo.sel(condition="concept") > summary.hi.sel(condition="random")
        n = int(summary.n.sel(condition="concept").sum())
        hits = float((concept * summary.n.sel(condition="concept")).sum())
        return (
            f"The patched concept vector is repeated as its word in {hits:.0f} of {n} trials "
            f"(best cell {float(concept.max()):.2f}); random vectors of the same norm "
            f"{float(random.mean()):.2f} on average, no patch "
            f"{float(rate.sel(condition='none').mean()):.2f}; {int(above.sum())} of "
            f"{above.size} (layer, strength) cells are above the random-vector control "
            "(Wilson intervals apart)."
        )
    return ""


def _block(name: str, path: Path, verdicts: list[tuple[str, str]]) -> list[str]:
    module = EXPERIMENTS[name]
    ds = open_run(path)
    total = open_run(path, committed_only=False).sizes["trial"]
    summary = module.summarize(ds)
    config = json.loads(ds.attrs["config"])
    partial = (
        ""
        if ds.sizes["trial"] == total
        else f" (**incomplete**: {ds.sizes['trial']} of {total} "
        "trials committed; rerun the same command to finish it)"
    )
    lines = [
        f"Run: `{path.relative_to(path.parents[3])}`, {ds.sizes['trial']} trials{partial}, "
        f"mechintro {ds.attrs['mechintro_version']} (git {ds.attrs['git_commit'][:10]}). "
        f"Config: `{json.dumps({k: v for k, v in config.items() if k not in ('model',)})}`",
        "",
    ]
    if name == "sweep":
        keep_layers = summary.inject_layer.values[:: max(1, summary.sizes["inject_layer"] // 6)]
        keep_strengths = summary.strength.values[:: max(1, summary.sizes["strength"] // 4)]
        shown = summary.sel(inject_layer=keep_layers, strength=keep_strengths)
        shown.attrs = summary.attrs
        lines += [
            "A subset of the grid (every layer and strength is in the run):",
            "",
            "```",
            module.format_summary(shown),
            "```",
        ]
    else:
        lines += ["```", module.format_summary(summary), "```"]
    verdict = _verdict(name, summary)
    verdicts.append((name, verdict + partial))
    lines += ["", verdict, ""]
    return lines


LOOKING_INWARD_PUBLISHED = (
    "Binder et al. 2024 (held-out tasks): self-prediction training raises accuracy from "
    "32.6% to 49.4% (GPT-4o) and 26.4% to 48.5% (Llama 3.1 70B); Llama 70B predicting "
    "itself 48.5% vs GPT-4o trained on Llama's behaviour 31.8%, GPT-4o itself 49.4% vs "
    "Llama 70B trained on GPT-4o's behaviour 36.6% (p < 0.01); GPT-3.5 16.3% to 37.3%, "
    "its advantage +0.8%; cross-training GPT-4o on Llama's behaviour plateaus at 35.2%."
)


def _looking_inward(root: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """The Looking Inward section, from ``scripts/looking_inward.py``'s runs under ``root``."""
    from mechintro.analysis import self_prediction as sp

    names = [m for (m,) in sp.study(root)["models"]]
    lines = [
        "## Looking Inward (self- vs cross-prediction)",
        "",
        f"Published: {LOOKING_INWARD_PUBLISHED}",
        "",
    ]
    if not names:
        return [*lines, "No runs yet: `python scripts/looking_inward.py`.", ""], []
    timing = (
        json.loads((root / "timing.json").read_text()) if (root / "timing.json").exists() else {}
    )
    lines += [
        f"Runs: `{_shown(root)}/` (`python scripts/looking_inward.py`; details, "
        "differences from the paper and figures: `docs/looking-inward.md`). "
        "Accuracy pooled over task × property cells with a 95% bootstrap clustered "
        "by item; the mode baseline always guesses each cell's most frequent value.",
        "",
        "| predictor → target | tasks | pairs | accuracy | mode baseline |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        for label, run in (
            (n, root / n / "base.zarr"),
            (f"{n}, self-trained", root / n / "self.zarr"),
        ):
            if not (run / "zarr.json").exists():
                continue
            scored = sp.score(open_run(run))
            for split in ("test", "train"):
                r = sp.pooled(scored, split)
                if r["n"]:
                    lines.append(
                        f"| {label} → itself | {'held-out' if split == 'test' else 'training'} "
                        f"| {r['n']} | {r['accuracy']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}] | "
                        f"{r['mode_baseline']:.3f} |"
                    )
    runs = sp.study(root)
    verdicts = []
    rows = []
    results = [
        (m1, m2, own, sp.self_vs_cross(open_run(own), open_run(cross)))
        for m1, m2, own, cross in runs["self_vs_cross"]
    ]
    n_tests = len(results)
    # Holm over the study's self-vs-cross tests (one per direction of each pair).
    p_holm = stats.holm([r["p"] for *_, r in results]) if results else []
    shown_by_direction: dict[tuple[str, str], bool] = {}  # (target, cross-trained) → shown
    for (m1, m2, own, r), p_adj in zip(results, p_holm, strict=True):
        rows.append(
            f"| {m1} | {m2} | {r['n_pairs']} ({r['n_items']} items) | "
            f"{r['self']:.3f} | {r['cross']:.3f} | {r['difference']:+.3f} "
            f"[{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['p']:.4f} |"
        )
        mode = sp.pooled(sp.score(open_run(own)), "test")["mode_baseline"]
        above = r["lo"] > 0
        shown = above and p_adj < 0.05 and r["self"] > mode
        shown_by_direction[(m1, m2)] = bool(shown)
        if above:
            how = f"predicts itself better than {m2} trained on its behaviour"
        elif r["hi"] < 0:
            how = f"predicts itself **worse** than {m2} trained on its behaviour does"
        else:
            how = (
                f"predicts itself no better (interval includes 0) than {m2} "
                "trained on its behaviour"
            )
        verdicts.append(
            (
                f"looking inward: {m1} vs {m2}",
                f"{m1} {how} ({r['difference']:+.3f} [{r['lo']:+.3f}, "
                f"{r['hi']:+.3f}], p = {r['p']:.4f} uncorrected, one test of "
                f"{n_tests}; Holm {p_adj:.3f}); its self-prediction accuracy "
                f"{r['self']:.3f} is {'above' if r['self'] > mode else '**below**'} "
                f"the mode baseline {mode:.3f}, and the two models differ in capacity, "
                "so a gap can be capacity rather than privileged access: a "
                f"self-prediction advantage is {'shown' if shown else '**not shown**'}.",
            )
        )
    if rows:
        lines += [
            "",
            "After training, on the same held-out pairs (M1's "
            "answers after its own training are the target):",
            "",
            "| M1 (target, self-trained) | M2 (trained on M1's behaviour) "
            "| pairs | M1 → M1 | M2 → M1 | difference | p (sign flip) |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
        ]
        lines += [v for _, v in verdicts] + [""]
        lines += [
            "The paper's test asks for the advantage in both directions of a pair: "
            + "; ".join(_both_directions(shown_by_direction))
            + ". Every accuracy above is also compared with its mode baseline in the first "
            "table.",
            "",
        ]
    for m1, m2, changed, old in runs["behaviour_change"]:
        r = sp.behaviour_change(open_run(changed), open_run(old))
        lines += [
            "Behaviour change (the paper: GPT-4o's predictions follow its new behaviour, "
            f"35.4% vs 21.7% for the old): {m1}, self-trained and then finetuned on "
            f"{m2}'s object-level answers, predicts its new behaviour at {r['new']:.3f} "
            f"and its old at {r['old']:.3f} (new − old {r['difference']:+.3f} "
            f"[{r['lo']:+.3f}, {r['hi']:+.3f}], p = {r['p']:.3f}; {r['n_pairs']} held-out "
            f"pairs scored; the finetuning changed the answer's property in "
            f"{r['changed_answers']:.0%} of the pairs with both answers compliant)"
            + (
                ". Control, against the new behaviour: the changed model's "
                f"predictions {r['control_a']:.3f} vs the old model's "
                f"{r['control_b']:.3f} ({r['control_difference']:+.3f} "
                f"[{r['control_lo']:+.3f}, {r['control_hi']:+.3f}], p = "
                f"{r['control_p']:.3f}, {r['control_n_pairs']} pairs)."
                if "control_difference" in r
                else "."
            ),
            "",
        ]
    cal = []
    for m1, who, predictor, target in runs["calibration"]:
        c = sp.calibration(open_run(predictor), open_run(target))
        cal.append(
            f"| {m1} | {who} | {c.attrs['n']} | {c.attrs['mad']:.1f} "
            f"[{c.attrs['lo']:.1f}, {c.attrs['hi']:.1f}] | {c.attrs['no_match']:.1f} |"
        )
    if cal:
        lines += [
            "Calibration (animals, second character, answers and predictions "
            "sampled at temperature 1; mean absolute deviation between the "
            "two distributions in points, lower is better; the paper, Llama "
            "70B: untrained 23.0, self-trained 8.7, cross-trained 21.3 — its "
            "aggregation may differ from ours, see `docs/looking-inward.md`):",
            "",
            "| target | predictor | prompts | MAD [95% CI] | never-matching predictions |",
            "|---|---|---|---|---|",
            *cal,
            "",
        ]
    if timing:
        lines += [
            "Wall times (2 CPU cores, one job at a time unless noted in `docs/looking-inward.md`):",
            "",
            "| step | seconds |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in timing.items()],
            "",
        ]
    return lines, verdicts


def write(runs: Path, out: Path) -> Path:
    header = [
        "# Results: the published experiments on small open models",
        "",
        "Written by `python scripts/results.py write` from the runs under `runs/results/` (made by "
        "`python scripts/results.py run --model M --size "
        "default|small`). Intervals are 95%: Wilson for proportions, "
        "bootstrap clustered by concept (or over questions) for "
        'means. Small models often say "yes" with no injection at '
        "all, so every table shows the uninjected baseline, and "
        "every shift sits next to the same shift on control "
        "questions. Grading is the offline grader (`docs/grading.md`), "
        "not Claude. Where our protocol differs from a "
        "paper's, `docs/protocols.md` says how.",
        "",
    ]
    body: list[str] = []
    overview = ["## Overview", "", "| model | experiment | what the run shows |", "|---|---|---|"]
    for model in MODELS:
        verdicts: list[tuple[str, str]] = []
        folder = runs / model
        present = [n for n in EXPERIMENTS if (folder / f"{n}.zarr").exists()]
        body += [f"## {model}", ""]
        if not present:
            body += [
                "No runs yet: `python scripts/results.py run --model " + model + " --size small`.",
                "",
            ]
            continue
        timing = (
            json.loads((folder / "timing.json").read_text())
            if (folder / "timing.json").exists()
            else {}
        )
        if timing:
            body += [
                "Wall times on 2 CPU cores, fp32, as measured (`timing.json`); when "
                "several runs shared the machine they are longer than a run alone.",
                "",
                "| experiment | size | wall time |",
                "|---|---|---|",
            ]
            body += [
                f"| {n} | {t['size']} | {t['seconds'] / 60:.1f} min |" for n, t in timing.items()
            ]
            body += [""]
        for name in present:
            try:
                block = _block(name, folder / f"{name}.zarr", verdicts)
            except MechintroError as e:  # an unreadable run: say so, keep the rest of the document
                block = [f"(not summarised: {e})", ""]
            body += [f"### {name}", "", f"Published: {PUBLISHED.get(name, '—')}", "", *block]
        overview += [f"| {model} | {n} | {v.replace('|', '/')} |" for n, v in verdicts]
    inward, verdicts = _looking_inward(runs.parent / "looking-inward")
    overview += [f"| — | {n} | {v.replace('|', '/')} |" for n, v in verdicts]
    body += inward
    body += _oracles(Path(__file__).resolve().parent / "data" / "oracles")
    body += _positive_control(Path(__file__).resolve().parent / "data" / "positive-control")
    out.write_text("\n".join([*header, *overview, "", *body]))
    return out


def _both_directions(shown: dict[tuple[str, str], bool]) -> list[str]:
    """Per pair of models, whether the self-prediction advantage holds in both directions — or
    which direction was not run (a pair with one direction run cannot meet the test)."""
    out = []
    for a, b in sorted({tuple(sorted(k)) for k in shown}):
        ab, ba = shown.get((a, b)), shown.get((b, a))
        if ab is not None and ba is not None:
            out.append(f"{a} and {b}: {'met' if ab and ba else '**not met**'}")
        else:
            target, other = (a, b) if ab is not None else (b, a)
            out.append(
                f"{a} and {b}: **not tested** ({other} as the target, {target} trained on its "
                "behaviour, not run)"
            )
    return out


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it (as the docs name folders)."""
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


def _oracles(root: Path) -> list[str]:
    """The Activation Oracles section, from the shipped ``table.json``, ``eval.json`` and
    ``training.json`` under ``root/{model}`` (``scripts/oracle_compare.py``,
    ``mechintro oracle eval``)."""
    lines = [
        "## Activation Oracles (oracle vs self-report)",
        "",
        "Published: Karvonen et al. (2025) train on about 1M examples; here a smoke-scale "
        "oracle. Details, commands, what was not run: [`docs/oracles.md`](oracles.md).",
        "",
    ]
    models = (
        sorted(d.name for d in root.iterdir() if (d / "table.json").exists())
        if root.exists()
        else []
    )
    if not models:
        return [*lines, "No results yet: the commands in `docs/oracles.md`.", ""]

    def cell(v: dict | None) -> str:
        return f"{v['rate']:.2f} [{v['lo']:.2f}, {v['hi']:.2f}] ({v['k']}/{v['n']})" if v else "—"

    for model in models:
        table = json.loads((root / model / "table.json").read_text())
        meta = table["meta"]
        size = (
            f"{meta['n_injected']} injected and {meta['n_control']} control "
            f"trials, {len(meta['concepts'])} concepts held out of the oracle's "
            f"training, layer {meta['layer']}, strengths {meta['strengths']}"
        )
        if (root / model / "training.json").exists():
            t = json.loads((root / model / "training.json").read_text())
            size += f"; the oracle: {t['examples']} training examples, {t['steps']} steps"
        lines += [
            f"### {model}",
            "",
            f"Size: {size}. Wilson 95% intervals.",
            "",
            "| reader | detects (injected) | false positives (control) | "
            "names the concept (injected) | names a tested concept (control) |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['reader']} | {cell(r.get('detect_injected'))} | "
            f"{cell(r.get('detect_control_fpr'))} | {cell(r.get('identify_injected'))} "
            f"| {cell(r.get('names_a_concept_control'))} |"
            for r in table["rows"]
        ]
        above = [
            r["reader"]
            for r in table["rows"]
            if "detect_injected" in r and r["detect_injected"]["lo"] > r["detect_control_fpr"]["hi"]
        ]
        lines += [
            "",
            "Readers whose detection rate on injected trials lies above their control "
            f"false-positive rate (intervals disjoint): {', '.join(above) if above else 'none'}.",
        ]
        aucs = [f"{r['reader']} {r['p_yes_auc']:.3f}" for r in table["rows"] if "p_yes_auc" in r]
        if aucs:
            lines += ["", f"AUC of P(yes), injected against control: {', '.join(aucs)}."]
        if (root / model / "eval.json").exists():
            ev = json.loads((root / model / "eval.json").read_text())
            readers = list(dict.fromkeys(e["reader"] for e in ev))
            sets = list(dict.fromkeys(e["set"] for e in ev))
            acc = {(e["set"], e["reader"]): e for e in ev}
            lines += [
                "",
                "The oracle's held-out evaluation (yes/no accuracy):",
                "",
                "| set | " + " | ".join(readers) + " |",
                "|---" * (len(readers) + 1) + "|",
            ]
            lines += [
                f"| {s} | "
                + " | ".join(
                    f"{acc[(s, r)]['accuracy']:.3f} [{acc[(s, r)]['lo']:.3f}, "
                    f"{acc[(s, r)]['hi']:.3f}] (n {acc[(s, r)]['n']})"
                    if (s, r) in acc
                    else "—"
                    for r in readers
                )
                + " |"
                for s in sets
            ]
        lines += [""]
    return lines


def _positive_control(root: Path) -> list[str]:
    """The positive-control section (issue 33), from the small results shipped under ``root``
    (``scripts/positive_control_train.py`` and ``scripts/positive_control_instruments.py``),
    formatted by ``scripts/positive_control.py``."""
    import importlib.util

    lines = [
        "## Positive control: SmolLM2 trained to notice injected thoughts",
        "",
        "Published: Fonseca Rivera (2025) trains 7-9B models on ~12,000 examples × 4 epochs "
        "(Qwen2.5-7B held-out detection 0.6 % → 85.5 %, 0 % false positives); here "
        "SmolLM2-135M on a few hundred examples, one pass, on CPU. Recipe, deviations, commands: "
        "[`docs/positive-control.md`](positive-control.md).",
        "",
    ]
    if not (root / "eval_main.json").exists():
        return [*lines, "No results yet: the commands in `docs/positive-control.md`.", ""]
    path = Path(__file__).resolve().parent.parent / "scripts" / "positive_control.py"
    spec = importlib.util.spec_from_file_location("positive_control", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    extra = []
    for sub in sorted(d for d in root.iterdir() if (d / "scaling.json").exists()):
        extra += [
            "",
            f"### Scaling, the second run (`{sub.name}`: one pass, snapshots)",
            "",
            module.scaling_table(json.loads((sub / "scaling.json").read_text())),
        ]
    return [*lines, module.document(root), *extra, ""]
