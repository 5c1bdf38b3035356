"""Write ``docs/results.md``: every saved results run, summarised, next to the published numbers.

Called by ``python scripts/results.py write``. Reads ``runs/results/{model}/{experiment}.zarr``
and ``timing.json``; nothing here runs a model. Each verdict sentence is computed from the
numbers it sits next to (an interval that excludes zero, or does not).
"""

from __future__ import annotations

import json
import re
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
    "strength-comparison": (
        "Hahami et al. (arXiv 2512.12411 v2, 5.1), Llama-3.1-8B: the stronger of two injected "
        "sentences named 83% of the time at layer 3, pair (3, 7) (chance 50%); their code's "
        "comments: up to 98% at layer 2, pair (2, 6). No random-direction control."
    ),
    "sentence-localisation": (
        "Hahami et al. (arXiv 2512.12411 v2, 5.2), Llama-3.1-8B: which of 10 sentences carried "
        "the injection, up to 88% at layer 2, α 5 (chance 10%). No random-direction control."
    ),
    "strength-classification": (
        "Hahami et al. (elyhahami18/CS2881-Introspection @ e3d2f4c), Llama-3.1-8B: the injection's "
        "strength bin (Weak / Moderate / Strong / Very strong) named by an LLM judge of the "
        "model's answer in up to 0.7 of 10 concepts (layer 18, coefficient 9, expected "
        "Moderate). No random-direction control, no uninjected answer."
    ),
    "mismatch": (
        "Sridharan (agastyasridharan/introspection), Qwen3-8B: introspection score (detection "
        "shift minus factual-question shift) -0.52 (14B -0.35, 32B -2.83); congruent - "
        "incongruent gap +0.18 logits (paired t over 50 concepts, p = 0.67). No random "
        "direction."
    ),
    "concept-confusion": (
        "Pearson-Vogel et al. (arXiv 2602.20031), Qwen2.5-Coder-32B: mutual information between "
        "the injected and the recovered concept (10 options, at most 3.32 bits) 0.62 bits, "
        "1.05 bits with the info document. No random-direction control."
    ),
    "patchscope": (
        "Ghandeharioun et al. (2024), 'Patchscopes': the identity prompt decodes a hidden state "
        "by asking the model to repeat it; the paper patches hidden states, not concept "
        "vectors, so there is no published number for this use."
    ),
}


def _concept_and_random(summary):
    """The accuracies of the cells that ran, for the concept and (where the run has the random
    control) the random direction, and the number of cells: strength comparison and sentence
    localisation read their verdicts from these."""
    concept = summary.accuracy.sel(condition="concept").values
    acc = concept[np.isfinite(concept)]
    if "above_random" not in summary:
        return acc, None, acc.size
    rnd = summary.accuracy.sel(condition="random").values
    return acc, rnd[np.isfinite(rnd)], acc.size


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
            + _corrected_clause(a)
        )
    if name == "thoughts-vs-text":
        above = (summary.word_lo > 0.1) & (summary.repeat > 0.5)
        return (
            f"{int(above.sum())} of {above.size} (layer, strength) cells name the injected "
            "word above the 10% chance (lower bound) while repeating over half the "
            f"sentences; uninjected word-task rate {summary.attrs['baseline_word']:.3f}."
            + _word_corrected_clause(summary)
        )
    if name == "prefill":
        a = summary.attrs
        if "max_reduction" not in a:
            return "No cell could be compared."
        worst = (
            f" Whatever the ungraded "
            f"{1 - a['graded_share']:.0%} of responses are, the control rate is "
            f"{a['control_worst_case'][0]:.3f}–{a['control_worst_case'][1]:.3f} and this "
            f"reduction {a['max_reduction_worst_case'][0]:+.3f} to "
            f"{a['max_reduction_worst_case'][1]:+.3f}."
            if "max_reduction_worst_case" in a
            else ""
        )
        if "apology_corrected_reduction" in a:
            raw, est, lo, hi = a["apology_corrected_reduction"]
            worst += (
                " Over all replies (ungraded = no apology) and corrected for the apology "
                "grader's error (Rogan–Gladen, apology calibration set's held-out half, "
                f"`docs/grading.md`), this cell's reduction is {raw:+.3f} raw → {est:+.3f} "
                f"[{lo:+.3f}, {hi:+.3f}]."
            )
        return (
            "Largest apology reduction (matched vs min(control, random)): "
            f"{a['max_reduction']:+.3f} at layer {a['max_reduction_layer']}, strength "
            f"{a['max_reduction_strength']:g}, control rate {a['control_rate']:.3f}; "
            "the best of many cells is an optimistic estimate." + worst
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
        rows = summary.attrs.get("readout_rows", [])
        read_key = f"cells with mass ≥ {a['mass_threshold']:g}"
        read = [r for r in rows if not r["first (expected, p)"].startswith("—")]
        unread = [r["readout"] for r in rows if r["first (expected, p)"].startswith("—")]
        stands_out = a.get("eligible_cells", 0) and (
            a["eligible_top_rank_p"] < 0.05 or a["eligible_above_pi_p"] < 0.05
        )
        return (
            f"Across {a['cells']} cells the introspection and control shifts "
            f"correlate at r = {corr:.2f}. Rule fixed in advance: a cell is read only where the "
            f"readout holds ≥ {a['mass_threshold']:g} of the next-token mass; "
            + "; ".join(
                f"{r['readout']} (mass {r['mass intro/control']}): "
                f"{r[read_key]} cells read"
                + (
                    ""
                    if r["first (expected, p)"].startswith("—")
                    else f", introspection first in {_expected(r['first (expected, p)'])}, "
                    "above the controls' 95% prediction interval in "
                    f"{_expected(r['above PI (expected, p)'])}"
                )
                for r in rows
            )
            + " "
            + "(one-sided binomial p, cells treated as independent, which neighbouring cells "
            "are not). "
            + (
                "The introspection question stands out more often than chance where the readout "
                "holds mass."
                if stands_out
                else "**no** introspection-specific shift where a readout holds mass"
                + (f" ({', '.join(unread)} reads no cell)" if unread else "")
                + "."
            )
            + ("" if read else " **No readout holds mass: no verdict.**")
        )
    if name == "intentional-control":
        return (
            "Residuals recorded on the written sentence; the think "
            "/ don't-think alignment is an analysis (issue 4)."
        )
    if name == "localisation":
        raw = int((summary.lo > summary.chance).sum())
        cells = int(np.isfinite(summary.accuracy).sum())
        no_power = int((summary.varies == 0).sum())
        ok = np.isfinite(summary.balanced_accuracy.values)
        bal = summary.balanced_accuracy.values[ok]
        p = summary.balanced_p.values[ok]
        holm = stats.holm(p)
        return (
            f"{int((p < 0.05).sum())} of {cells} (task, layer, strength) cells have a balanced "
            f"accuracy above chance (one-sided permutation p < 0.05, uncorrected; "
            f"{int((holm < 0.05).sum())} after Holm over the {cells}); balanced accuracy "
            f"{bal.min():.3f}–{bal.max():.3f} (chance 1/k). On raw accuracy (Wilson lower bound "
            f"above chance, which a favourite answer matching a frequent target inflates): {raw}. "
            f"{no_power} cells have **no power** (the answer never varies)."
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
    if name == "strength-comparison":
        acc, rnd, cells = _concept_and_random(summary)
        text = (
            f"The stronger sentence is named in {acc.min():.2f}–{acc.max():.2f} of decisions "
            f"across {cells} (layer, pair) cells (chance 0.5; both orders pooled)"
        )
        if rnd is not None:
            text += (
                f"; a random unit direction at the same strengths {rnd.min():.2f}–"
                f"{rnd.max():.2f}; {int(summary.above_random.sum())} of {cells} cells are above "
                "the random control (Wilson intervals apart)"
            )
        return (
            text + f"; uninjected, the model answers '1' to "
            f"{summary.attrs['uninjected_share_1']:.0%} of {summary.attrs['uninjected_n']} prompts."
        )
    if name == "sentence-localisation":
        acc, rnd, cells = _concept_and_random(summary)
        text = (
            f"The injected sentence is named in {acc.min():.2f}–{acc.max():.2f} of injections "
            f"across {cells} (layer, strength) cells (chance {float(summary.chance):.2f})"
        )
        if rnd is not None:
            text += (
                f"; a random unit direction {rnd.min():.2f}–{rnd.max():.2f}; "
                f"{int(summary.above_random.sum())} of {cells} cells are above the random "
                "control (Wilson intervals apart)"
            )
        return text + f"; uninjected answers {summary.attrs['uninjected_choices']}."
    if name == "strength-classification":
        acc, rnd, cells = _concept_and_random(summary)
        bal = summary.balanced.sel(condition="concept").values
        text = (
            f"The expected strength bin is named in {acc.min():.2f}–{acc.max():.2f} of trials "
            f"across {cells} (layer, coefficient) cells (balanced accuracy per layer "
            f"{bal.min():.2f}–{bal.max():.2f}, chance {float(summary.chance):.2f})"
        )
        if rnd is not None:
            text += (
                f"; a random unit direction {rnd.min():.2f}–{rnd.max():.2f}; "
                f"{int(summary.above_random.sum())} of {cells} cells are above the random "
                "control (Wilson intervals apart)"
            )
        return text + f"; uninjected answers {summary.attrs['uninjected']}."
    if name == "mismatch":
        a = summary.attrs
        parts = []
        if "score_concept" in a:
            text = f"Introspection score {a['score_concept']:+.2f} ({a['score_concept_positive']}"
            text += " concepts > 0)"
            if "score_random" in a:
                text += f"; a random direction of the same norm {a['score_random']:+.2f}"
            parts.append(text)
        if "gap" in a:
            parts.append(
                f"congruent - incongruent gap {a['gap']:+.2f} (paired t p = {a['gap_p']:.2g}; "
                f"congruent {a['congruent']:+.2f}, incongruent {a['incongruent']:+.2f}, "
                f"uninjected {a['baseline']:+.2f})"
            )
        return "; ".join(parts) + "."
    if name == "concept-confusion":
        c, r = summary.sel(condition="concept"), summary.sel(condition="random")
        cells = int(np.isfinite(c.accuracy.values).sum())
        return (
            f"At the final layer, {cells} (framing, document, strength) cells: balanced accuracy "
            f"{float(c.accuracy.min()):.2f}–{float(c.accuracy.max()):.2f} (chance "
            f"{float(summary.chance):.2f}), the random direction {float(r.accuracy.min()):.2f}–"
            f"{float(r.accuracy.max()):.2f}; {int(summary.above_random.sum())} of {cells} cells "
            "above the random control (Wilson intervals apart); mutual information (Miller-Madow) "
            f"{float(c.mi_mm.min()):+.2f} to {float(c.mi_mm.max()):+.2f} bits, the random "
            f"direction's {float(r.mi_mm.min()):+.2f} to {float(r.mi_mm.max()):+.2f}; smallest "
            "permutation p "
            f"{float(c.mi_p.min()):.3f}; "
            + ("the answer varies." if bool((c.varies > 0).any()) else "**no power** (the "
               "answer never varies).")
        )  # fmt: skip
    return ""


def _expected(text: str) -> str:
    """``"4 (2.9, 0.332)"`` → ``"4 (expected 2.9, p = 0.332)"``."""
    k, rest = text.split(" (", 1)
    e, p = rest.rstrip(")").split(", ")
    return f"{k} (expected {e}, p = {p})"


def _corrected_clause(a: dict) -> str:
    """The grader-corrected FPR and TPR beside the raw ones (injected-thoughts, offline)."""
    if "corrected_fpr" not in a:
        return ""
    parts = []
    for key, label in (("fpr", "FPR"), ("tpr", "TPR over all injected trials")):
        k, n, est, lo, hi = a[f"corrected_{key}"]
        parts.append(f"{label} raw {int(k)}/{int(n)} → {est:.3f} [{lo:.3f}, {hi:.3f}]")
    return (
        " Corrected for the grader's error (Rogan–Gladen, clean calibration set, "
        "`docs/grading.md`): " + "; ".join(parts) + "."
    )


def _word_corrected_clause(summary) -> str:
    """The thoughts-vs-text verdict read on the grader-corrected word rates (issue 32)."""
    a = summary.attrs
    if "word_corrected" not in a:
        return ""
    above = (summary.word_corr_lo > 0.1) & (summary.repeat > 0.5)
    k, n, _est, lo, hi = a["word_corrected_injected"]
    tp, fn, _tn, _fp = a["word_corrected_counts"]
    unmeasured = (
        " The set's held-out half has no hand positive: the grader's sensitivity is not "
        "measured (a uniform prior), so these upper limits rest on that prior, not on data."
        if tp + fn == 0
        else ""
    )
    return (
        " Corrected for closest_word's error (Rogan–Gladen, closest-word calibration set, "
        f"`docs/grading.md`): {int(above.sum())} of {above.size} cells by the corrected lower "
        f"limit; per-cell upper limits up to {float(summary.word_corr_hi.max()):.3f}; every "
        f"injected trial {int(k)}/{int(n)} → [{lo:.3f}, {hi:.3f}]." + unmeasured
    )


# The experiments whose overview sentence `refresh` recomputes (the others' are hand-written),
# and how their generated sentence under the table starts.
REFRESHED_VERDICTS = ("injected-thoughts", "sweep", "localisation", "prefill", "thoughts-vs-text")
VERDICT_STARTS = {
    "thoughts-vs-text": r"\d+ of \d+ \(layer, strength\) cells name the injected word",
    "injected-thoughts": r"Held-out net detection at the best cell",
    "sweep": r"Across \d+ cells the introspection and control shifts",
    "localisation": r"\d+ of \d+ \(task, layer, strength\) cells",
    "prefill": r"Largest apology reduction",
}


def _block(name: str, path: Path, verdicts: list[tuple[str, str]]) -> list[str]:
    module = EXPERIMENTS[name]
    ds = open_run(path)
    total = open_run(path, committed_only=False).sizes["trial"]
    summary = _summarize(name, ds)
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
        lines += [
            "A subset of the grid (every layer and strength is in the run):",
            "",
            "```",
            _sweep_text(module, summary),
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
    from mechintro.looking_inward import score as sp

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
        "by item; the mode baseline guesses each cell's most frequent value among the cell's "
        "**other** items (leave-one-item-out: out of sample); the in-sample mode, which counts "
        "the item's own answer and is biased upward with 8 items per cell, is shown beside it. "
        "p-values: paired sign flips over items, every flip when 2^items ≤ 100,000, else "
        "100,000 drawn (step 1e-05).",
        "",
        "| predictor → target | tasks | pairs | accuracy | mode baseline (out of sample) "
        "| in-sample mode |",
        "|---|---|---|---|---|---|",
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
                        f"{r['mode_baseline_loo']:.3f} | {r['mode_baseline']:.3f} |"
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
    pending: list[tuple[tuple[str, str], str, str]] = []
    for (m1, m2, own, r), p_adj in zip(results, p_holm, strict=True):
        rows.append(
            f"| {m1} | {m2} | {r['n_pairs']} ({r['n_items']} items) | "
            f"{r['self']:.3f} | {r['cross']:.3f} | {r['difference']:+.3f} "
            f"[{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['p']:.4f} |"
        )
        mode = sp.pooled(sp.score(open_run(own)), "test")["mode_baseline_loo"]
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
        pending.append(
            (
                (m1, m2),
                f"looking inward: {m1} vs {m2}",
                f"{m1} {how} ({r['difference']:+.3f} [{r['lo']:+.3f}, "
                f"{r['hi']:+.3f}], p = {r['p']:.4f} uncorrected, one test of "
                f"{n_tests}; Holm {p_adj:.3f}); its self-prediction accuracy "
                f"{r['self']:.3f} is {'above' if r['self'] > mode else '**below**'} "
                f"the out-of-sample mode baseline {mode:.3f}, and the two models differ in "
                "capacity, "
                "so a gap can be capacity rather than privileged access: a "
                f"self-prediction advantage is {'shown' if shown else '**not shown**'}.",
            )
        )
    for (m1, m2), name, text in pending:  # each row carries the section's both-ways caveat
        back = shown_by_direction.get((m2, m1))
        caveat = (
            " The reverse direction was not run, so the paper's test (both directions) is not met."
            if back is None
            else f" The reverse direction ({m2} as the target) is "
            + (
                "also shown: the paper's test is met."
                if back
                else "**not** shown: the paper's "
                "test (both directions) is **not met** for this pair."
            )
        )
        verdicts.append((name, text + (caveat if shown_by_direction[(m1, m2)] else "")))
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


def _summarize(name: str, ds):
    """``summarize`` as the document reads it: the sweep with the readout that holds mass (four
    forms) and both readouts' rows under the mass rule fixed in advance (``sweep.readout_rows``)."""
    module = EXPERIMENTS[name]
    if name != "sweep":
        return module.summarize(ds)
    summary = module.summarize(ds, readout="four_forms")
    summary.attrs["readout_rows"] = module.readout_rows(ds)
    return summary


def _sweep_text(module, summary) -> str:
    from mechintro.tables import table

    keep_layers = summary.inject_layer.values[:: max(1, summary.sizes["inject_layer"] // 6)]
    keep_strengths = summary.strength.values[:: max(1, summary.sizes["strength"] // 4)]
    shown = summary.sel(inject_layer=keep_layers, strength=keep_strengths)
    shown.attrs = summary.attrs
    return (
        module.format_summary(shown)
        + "\n\nboth readouts under the mass rule fixed in advance (sweep.MASS_THRESHOLD):\n"
        + table(summary.attrs["readout_rows"])
    )


def _summary_text(name: str, path: Path) -> str:
    """The fenced table ``_block`` writes for the run at ``path`` (the sweep: its grid subset)."""
    module = EXPERIMENTS[name]
    summary = _summarize(name, open_run(path))
    if name == "sweep":
        return _sweep_text(module, summary)
    return module.format_summary(summary)


def refresh(doc: Path, root: Path, only: tuple[str, ...] = ()) -> list[str]:
    """Recompute, in place, every fenced summary table of ``doc`` that follows a
    ``Run: `path/{experiment}.zarr``` line whose run exists under ``root`` (the repository),
    with the current ``summarize`` and ``format_summary``; the prose around the tables (hand
    written where runs of several sizes are compared) is left as it is. Returns the runs
    refreshed. ``only``: just these experiments' tables (``looking-inward`` for that section).
    ``python scripts/results.py refresh [--only injected-thoughts,prefill]``."""
    lines = doc.read_text().split("\n")
    done, i = [], 0
    model = ""
    while i < len(lines):
        line = lines[i]
        if line.startswith("## ") and line[3:] in MODELS:
            model = line[3:]
        if line.startswith("Run: `") and ".zarr`" in line:
            rel = line[len("Run: `") : line.index(".zarr`") + len(".zarr")]
            path, name = root / rel, Path(rel).stem
            start = next((j for j in range(i + 1, min(i + 8, len(lines))) if lines[j] == "```"), -1)
            wanted = not only or name in only
            if wanted and name in EXPERIMENTS and (path / "zarr.json").exists() and start > 0:
                end = lines.index("```", start + 1)
                lines[start + 1 : end] = _summary_text(name, path).split("\n")
                done.append(rel)
                row = f"| {model} | {name} | "
                j = _row_index(lines, row)
                if name in REFRESHED_VERDICTS:
                    verdict = _verdict(name, _summarize(name, open_run(path)))
                    if j >= 0:
                        lines[j] = row + verdict.replace("|", "/") + " |"
                    after = lines.index("```", start + 1) + 2  # the sentence under the table
                    if after < len(lines) and re.match(VERDICT_STARTS[name], lines[after]):
                        lines[after] = verdict
        i += 1
    inward = root / "analyses" / "data" / "looking-inward"
    if (
        "## Looking Inward (self- vs cross-prediction)" in lines
        and inward.exists()
        and (not only or "looking-inward" in only)
    ):
        section, verdicts = _looking_inward(inward)
        lines = _refresh_inward(lines, section)
        for n, v in verdicts:
            row = f"| — | {n} | "
            j = _row_index(lines, row)
            if j >= 0:
                lines[j] = row + v.replace("|", "/") + " |"
        done.append(_shown(inward))
    doc.write_text("\n".join(lines))
    return done


def _row_index(lines: list[str], prefix: str) -> int:
    """The first line starting with ``prefix`` (an overview row), or -1."""
    return next((j for j, x in enumerate(lines) if x.startswith(prefix)), -1)


def _refresh_inward(lines: list[str], gen: list[str]) -> list[str]:
    """The Looking Inward section's generated parts (its "Runs:" line, and everything from the
    accuracy table to the calibration table) replaced by ``gen``; the prose between is kept."""
    head = lines.index("## Looking Inward (self- vs cross-prediction)")

    def span(text: list[str], start: int) -> tuple[int, int]:
        a = next(j for j in range(start, len(text)) if text[j].startswith("| predictor → target"))
        b = next(j for j in range(a, len(text)) if text[j].startswith("Calibration (animals"))
        return a, b

    runs = next(j for j in range(head, len(lines)) if lines[j].startswith("Runs: `"))
    lines[runs] = next(g for g in gen if g.startswith("Runs: `"))
    a, b = span(lines, head)
    ga, gb = span(gen, 0)
    return [*lines[:a], *gen[ga:gb], *lines[b:]]


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
                "The oracle's held-out evaluation (yes/no accuracy"
                + (
                    f"; the oracle of `training.json`, trained {t['created'][:10]}):"
                    if (root / model / "training.json").exists()
                    else "):"
                ),
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
        "SmolLM2-135M on 600 examples × 2 epochs (300 steps), on CPU. The tables below are "
        "the balanced-mixture run (no-injection negatives as many as the positives; its main "
        "model is the snapshot named in the first heading, the others are in the scaling "
        "table); the earlier runs with their mixture (`n200`, `n800`) follow. Recipe, "
        "deviations, commands: [`docs/positive-control.md`](positive-control.md).",
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
            f"### Scaling, an earlier run (`{sub.name}`, their mixture: one pass, snapshots)",
            "",
            module.scaling_table(json.loads((sub / "scaling.json").read_text())),
        ]
        if (sub / "sensitivity.json").exists():
            extra += [
                "",
                f"Sensitivity table of `{sub.name}` (untrained vs that run's adapter):",
                "",
                module.sensitivity_table(json.loads((sub / "sensitivity.json").read_text())),
            ]
    for sub in module.other_models(root):
        model = json.loads((sub / "settings.json").read_text())["model"]
        extra += [
            "",
            f"## Positive control: {model} trained with the same recipe",
            "",
            "SmolLM2's recipe (`docs/positive-control.md`, the Qwen command there), its held-out "
            "evaluation, out-of-distribution suites and instruments, each on the untrained and "
            f"the trained {model} with the same trials.",
            "",
            module.document(sub),
        ]
    return [*lines, module.document(root), *extra, ""]
