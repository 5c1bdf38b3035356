"""The sensitivity table of the positive control (issue 33): each instrument of the toolkit, run
with its own protocol on the untrained and on the trained SmolLM2 (the same trials, the same
seeds), and whether it sees the trained ability.

Inputs (made with ``mechintro run … --model runs/positive-control/n200`` for the trained model,
commands in docs/positive-control.md): a ``detection-logits`` run with residuals and an
``injected-thoughts`` run per model, and ``eval_main.json`` (the training question); optional:
the other instruments' runs, oracle_compare's ``per_trial.json``, and ``dlx-trained.zarr``, the
trained model's detection-logits run with the untrained model's vectors (the same input). Output:
``analyses/data/positive-control/sensitivity.json`` (small), read by
``scripts/positive_control.py``.

    PYTHONPATH=. python scripts/positive_control_instruments.py --runs runs/pc \\
        --adapter runs/positive-control/n200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from mechintro.cli import script_main
from mechintro.errors import MechintroError

ROOT = Path(__file__).resolve().parent.parent


def _iv(x, clusters) -> list[float]:
    from mechintro.stats import cluster_interval

    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return [float("nan")] * 3
    iv = cluster_interval(x, np.asarray(clusters), binary=bool(np.isin(x, (0, 1)).all()))
    return [round(iv.estimate, 4), round(iv.lo, 4), round(iv.hi, 4)]


def injected_thoughts_rows(ds) -> dict[str, list[float]]:
    """Lindsey's prompt, the offline grader: the claim rate (affirmative) on injected trials, the
    control false-positive rate, and Lindsey's success (coherent + affirmative identification)."""
    from mechintro.readouts import grades

    g = grades(ds, source="offline")
    injected = np.asarray(ds.condition.values) != "control"
    concept = np.array([str(c) for c in ds.concept.values], dtype=object)
    ids = np.array([f"t{i}" for i in range(len(injected))], dtype=object)
    from mechintro.stats import net_interval

    a = np.asarray(g.affirmative.values, dtype=float)
    net = net_interval(a[injected], concept[injected], a[~injected])  # clustered by concept
    return {
        "affirmative_net": [round(net.estimate, 4), round(net.lo, 4), round(net.hi, 4)],
        "affirmative": _iv(g.affirmative.values[injected], concept[injected]),
        "control_affirmative": _iv(g.affirmative.values[~injected], ids[~injected]),
        "success": _iv(g.success.values[injected], concept[injected]),
    }


def detection_logits_rows(ds, model, *, anomaly: bool = True) -> dict[str, list[float]]:
    """P(yes)/(P(yes)+P(no)) shift (injected − the mean control) on Lindsey's trial question; the
    logit lens's probability of the concept's first token at the last layer, answer position; the
    anomaly-direction and linear-probe AUCs (detected vs the rest, concept-grouped folds) at the
    last recorded layer (unless ``anomaly`` is False)."""
    from mechintro import analysis
    from mechintro.readouts import yes_no

    yn = yes_no(ds)
    injected = np.asarray(ds.condition.values) != "control"
    concept = np.array([str(c) for c in ds.concept.values], dtype=object)
    p = np.asarray(yn["p_yes_norm"].values, dtype=float)
    out = {"p_yes_shift": _iv(p[injected] - p[~injected].mean(), concept[injected])}
    lens = analysis.logit_lens(ds, model)
    last = lens.layer.values[-1]
    pc = np.asarray(lens["p_concept"].sel(layer=last).values, dtype=float)
    out["lens_p_concept"] = _iv(pc[injected], concept[injected])
    # internality: the concept's first token through the layers at the answer position
    for layer in lens.layer.values:
        pl = np.asarray(lens["p_concept"].sel(layer=layer).values, dtype=float)
        out[f"lens_p_concept_L{int(layer)}"] = _iv(pl[injected], concept[injected])
    if not anomaly:
        return out
    try:
        labels = analysis.detection_labels(ds)
        res = analysis.anomaly_directions(ds, labels)
        layer = res.layer.values[-1]
        for est, key in (("diff_means", "anomaly_auc"), ("probe", "probe_auc")):
            at = {"estimator": est, "removal": "none", "layer": layer}
            out[key] = [
                round(float(res.auc.sel(**at)), 4),
                round(float(res.auc_lo.sel(**at)), 4),
                round(float(res.auc_hi.sel(**at)), 4),
            ]
        out["n_detected"] = int((np.asarray(labels.values) == "detected").sum())
    except MechintroError as exc:  # e.g. too few detected trials to fit a direction
        out["anomaly_error"] = str(exc)
    return out


def latent_rows(ds) -> dict[str, list[float]]:
    """latent-introspection (vgel's KV-cache protocol, the "inject" framing): the logit shift of
    P(" yes") steered − unsteered on the same prompt, pooled over the framings, per strength,
    clustered by concept; and the yes/no mass after "The answer is" (steered trials)."""
    p = np.exp(np.asarray(ds["answer_logprobs"].values, dtype=np.float64))
    labels = np.asarray(ds["answer_label"].values)
    p_yes = p[:, labels == "yes"].sum(1)
    p_no = p[:, labels == "no"].sum(1)
    cond = np.asarray(ds["condition"].values)
    variant = np.asarray(ds["variant"].values)
    base = {v: p_yes[i] for i, v in enumerate(variant) if cond[i] == "unsteered"}
    concept = np.array([str(c) for c in ds.concept.values], dtype=object)
    strength = np.asarray(ds["strength"].values, dtype=float)
    clip = 1e-7

    def logit(x):
        x = np.clip(x, clip, 1 - clip)
        return np.log(x) - np.log1p(-x)

    out = {}
    for s in sorted(set(strength[cond == "steered"].tolist())):
        m = (cond == "steered") & (strength == s)
        shift = logit(p_yes[m]) - logit(np.array([base[v] for v in variant[m]]))
        out[f"li_logit_shift_{s:g}"] = _iv(shift, concept[m])
        out[f"li_mass_{s:g}"] = _iv(p_yes[m] + p_no[m], concept[m])
    return out


def thoughts_vs_text_rows(ds) -> dict[str, list[float]]:
    """thoughts-vs-text (Lindsey's experiment 2): the injected word named (of 10 candidates,
    chance 0.1) and the sentence repeated, injected pairs pooled over strengths, clustered by
    concept; the word task without injection (the baseline)."""
    from mechintro.experiments import thoughts_vs_text as tt

    ok = np.asarray(tt.scores(ds)["success"].values, dtype=float)
    task, cond = np.asarray(ds["task"].values), np.asarray(ds["condition"].values)
    concept = np.array([str(c) for c in ds.concept.values], dtype=object)
    inj = cond == "injected"
    return {
        "tt_word": _iv(ok[inj & (task == "word")], concept[inj & (task == "word")]),
        "tt_repeat": _iv(ok[inj & (task == "repeat")], concept[inj & (task == "repeat")]),
        "tt_word_baseline": _iv(ok[~inj & (task == "word")], concept[~inj & (task == "word")]),
        "tt_layers": sorted({int(x) for x in np.asarray(ds["inject_layer"].values)[inj]}),
        "tt_strengths": sorted({float(x) for x in np.asarray(ds["strength"].values)[inj]}),
    }


def patchscope_rows(ds) -> dict[str, list[float]]:
    """The token-identity Patchscope: the continuation names the patched concept vector, pooled
    over layers and strengths, clustered by concept; the random-vector control."""
    from mechintro.experiments import patchscope as ps

    ok = np.asarray(ps.hits(ds), dtype=float)
    cond = np.asarray(ds["condition"].values)
    concept = np.array([str(c) for c in ds.concept.values], dtype=object)
    return {
        "ps_concept": _iv(ok[cond == "concept"], concept[cond == "concept"]),
        "ps_random": _iv(ok[cond == "random"], concept[cond == "random"]),
    }


OPTIONAL = {"li": latent_rows, "tt": thoughts_vs_text_rows, "ps": patchscope_rows}


def oracle_rows(per_trial: dict) -> dict[str, list[float]]:
    """The Activation Oracle (``scripts/oracle_compare.py``'s ``per_trial.json``; Lindsey's
    trials, the oracle trained on the base model reading the last prompt token): its open answer
    detects (injected, clustered by concept; controls, clustered by prompt) and names the concept;
    its yes/no P(yes) ranks injected above control trials (AUC, concept/prompt-cluster
    bootstrap); Patchscopes names the concept."""
    from mechintro.stats import cluster_bootstrap_weights, paired_auc

    injected = np.asarray(per_trial["injected"], dtype=bool)
    clusters = np.array([c if i else f"prompt {v}" for c, i, v in zip(
        per_trial["concept"], injected, per_trial["prompt_variant"], strict=True)])  # fmt: skip
    r = per_trial["readers"]
    det = np.asarray(r["oracle"]["detect"], dtype=float)
    p_yes = np.asarray(r["oracle (yes/no)"]["p_yes"], dtype=float)
    weights = cluster_bootstrap_weights(clusters, 2000, 0)
    auc = paired_auc(p_yes, injected, np.zeros(len(p_yes)), weights)
    return {
        "ao_detect": _iv(det[injected], clusters[injected]),
        "ao_fpr": _iv(det[~injected], clusters[~injected]),
        "ao_identify": _iv(
            np.asarray(r["oracle"]["identify"], float)[injected], clusters[injected]
        ),
        "ao_p_yes_auc": [round(x, 4) for x in auc],
        "ao_patchscopes_identify": _iv(
            np.asarray(r["Patchscopes"]["identify"], float)[injected], clusters[injected]
        ),
    }


def _sees(u: list[float], t: list[float]) -> str:
    if any(np.isnan(u + t)):
        return "n/a"
    if t[1] > u[2]:
        return "yes (intervals apart)"
    if t[2] < u[1]:
        return "lower"
    return "no (intervals overlap)"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "pc2")
    p.add_argument("--adapter", type=Path, default=ROOT / "runs" / "pc-bal" / "trained100")
    p.add_argument("--data", type=Path, default=ROOT / "analyses" / "data" / "positive-control")
    args = p.parse_args()
    import mechintro as mi
    from mechintro import training

    for f in ("dl-untrained.zarr", "dl-trained.zarr", "it-untrained.zarr", "it-trained.zarr"):
        if not (args.runs / f).exists():
            raise MechintroError(
                f"{args.runs / f} does not exist: make it (docs/positive-control.md)"
            )
    base = mi.load_model(training.read_training(args.adapter)["base_model"])
    trained = training.apply_adapter(base, args.adapter)
    res = {}
    for label, m in (("untrained", base), ("trained", trained)):
        res[label] = {
            **injected_thoughts_rows(mi.open_run(args.runs / f"it-{label}.zarr")),
            **detection_logits_rows(mi.open_run(args.runs / f"dl-{label}.zarr"), m),
        }
        for prefix, rows_of in OPTIONAL.items():  # instruments added in the third session
            if (args.runs / f"{prefix}-untrained.zarr").exists() and (
                args.runs / f"{prefix}-trained.zarr"
            ).exists():
                res[label] |= rows_of(mi.open_run(args.runs / f"{prefix}-{label}.zarr"))
        # the same-input control: the trained model given the untrained model's own vectors (the
        # untrained side is its own run, already read above)
        if (args.runs / "dlx-trained.zarr").exists():
            rows = (
                detection_logits_rows(mi.open_run(args.runs / "dlx-trained.zarr"), m, anomaly=False)
                if label == "trained"
                else dict(res[label])
            )
            res[label] |= {f"same_{k}": v for k, v in rows.items()
                           if k == "p_yes_shift" or k.startswith("lens_p_concept_L")}  # fmt: skip
        oracle_file = args.data / f"oracle-{label}" / "per_trial.json"
        if oracle_file.exists():  # scripts/oracle_compare.py (--reader-model for the trained)
            res[label] |= oracle_rows(json.loads(oracle_file.read_text()))
            meta = json.loads((oracle_file.parent / "table.json").read_text())["meta"]
            res[label]["ao_layers"] = [meta["layer"], meta["read_layer"]]
    ev = json.loads((args.data / "eval_main.json").read_text())
    held = {
        r["model"]: r for r in ev["summary"] if r["group"] == "held-out" and r["strength"] is None
    }
    from mechintro.stats import newcombe

    sampled = {r["model"]: r for r in ev["summary"] if r["group"] == "control-sampled"}
    for label in ("untrained", "trained"):
        h, c = held[label], sampled[label]
        nets = ev.get("nets", {}).get(label, {})
        if "net_sampled" in nets:  # sampled held-out − sampled controls, clustered by concept
            res[label]["training_question_net"] = nets["net_sampled"]
        else:
            net = newcombe(round(h["detected"][0] * h["n"]), h["n"],
                           round(c["detected"][0] * c["n"]), c["n"])  # fmt: skip
            res[label]["training_question_net"] = [
                round(net.estimate, 4),
                round(net.lo, 4),
                round(net.hi, 4),
            ]
        res[label]["training_question_fpr"] = c["detected"]
        res[label]["training_question"] = held[label]["detected"]
        res[label]["training_question_identified"] = held[label]["identified"]
        for strength in (1.0, 8.0, 16.0):  # the dose (SmolLM2: 0.09, 0.72, 1.44 residual norms)
            cell = [
                r for r in ev["summary"]
                if r["model"] == label and r["group"] == "held-out" and r["strength"] == strength
            ]  # fmt: skip
            if cell:
                res[label][f"training_question_at_{strength:g}"] = cell[0]["detected"]
    rows = []

    def row(instrument, readout, key, note=""):
        u, t = res["untrained"].get(key), res["trained"].get(key)
        if u is None or t is None:
            note = (note + "; " if note else "") + res["trained"].get("anomaly_error", "missing")
            u = t = [float("nan")] * 3
        rows.append(
            {"instrument": instrument, "readout": readout, "untrained": u, "trained": t,
             "sees": _sees(u, t), "note": note}
        )  # fmt: skip

    row("steering-awareness eval (their question; the trained task)", "claims, held-out",
        "training_question", "their question, greedy, strengths 1-16")  # fmt: skip
    ratios = json.loads((args.data / "settings.json").read_text())["eval_strength_ratios"]
    row("steering-awareness eval", f"claims at 1× ({ratios['1']:.2f} residual norms), greedy",
        "training_question_at_1")  # fmt: skip
    greedy_control = {
        r["model"]: r["detected"][0] for r in ev["summary"] if r["group"] == "control"
    }  # the one deterministic unsteered answer per model
    row("steering-awareness eval", f"claims at 8× ({ratios['8']:.2f} residual norms), greedy",
        "training_question_at_8", "greedy unsteered control claims: " + ", ".join(
            f"{m} {'yes' if v else 'no'}" for m, v in sorted(greedy_control.items())))  # fmt: skip
    row("steering-awareness eval", f"claims at 16× ({ratios['16']:.2f} residual norms), greedy",
        "training_question_at_16")  # fmt: skip
    row("steering-awareness eval", "false positives, sampled controls", "training_question_fpr")
    row("steering-awareness eval", "net detection (held-out − sampled controls)",
        "training_question_net", "held-out and controls both sampled (T = 1), strengths 4 "
        "and 8; clustered by concept (MOVER)")  # fmt: skip
    row("steering-awareness eval", "identified, held-out", "training_question_identified")
    row("injected-thoughts (Lindsey's prompt), offline grader", "claims detection (affirmative)",
        "affirmative",
        f"control false positives: untrained {res['untrained']['control_affirmative'][0]:.2f}, "
        f"trained {res['trained']['control_affirmative'][0]:.2f}")  # fmt: skip
    row("injected-thoughts, offline grader", "net claims (injected − control)", "affirmative_net",
        "clustered by concept (MOVER)")  # fmt: skip
    row("injected-thoughts, offline grader", "Lindsey success (coherent + names it)", "success")
    row("detection-logits", "P(yes) shift vs control", "p_yes_shift")
    row("logit lens (detection-logits run)", "P(concept token), last layer", "lens_p_concept")
    row("anomaly direction (diff of means)", "AUC detected vs rest", "anomaly_auc")
    row("linear probe (logistic, concept-grouped folds)", "AUC detected vs rest", "probe_auc")
    for key in sorted(k for k in res["trained"] if k.startswith("li_logit_shift_")):
        row("latent-introspection (KV-cache protocol, Lindsey's vectors)",
            f"logit shift of P(yes), strength {key[15:]}", key,
            "steered − unsteered, the same prompt; 8 concepts × 2 framings")  # fmt: skip
    for key in sorted(k for k in res["trained"] if k.startswith("li_mass_")):
        row("latent-introspection", f"P(yes) + P(no) after 'The answer is', strength {key[8:]}",
            key, "how much of the distribution the readout reads")  # fmt: skip
    if "tt_word" in res["trained"]:
        row("thoughts-vs-text (Lindsey's experiment 2)", "injected word named (of 10; chance "
            "0.1)", "tt_word", f"layer {', '.join(map(str, res['trained']['tt_layers']))}, "
            f"strengths {' and '.join(f'{x:g}' for x in res['trained']['tt_strengths'])} "
            "pooled")  # fmt: skip
        row("thoughts-vs-text", "word named without injection", "tt_word_baseline")
        row("thoughts-vs-text", "sentence repeated (injected)", "tt_repeat")
    if "ps_concept" in res["trained"]:
        row("Patchscope (token identity)", "names the patched concept vector", "ps_concept",
            "pooled over its layers and strengths")  # fmt: skip
        row("Patchscope", "names it from a random vector (control)", "ps_random")
    if "ao_detect" in res["trained"]:
        row("Activation Oracle (trained on the base model; Lindsey's trials, open answer)",
            "claims detection (injected)", "ao_detect",
            "reads the last prompt token at layer {1}, injected at {0}".format(
                *res["trained"]["ao_layers"]))  # fmt: skip
        row("Activation Oracle", "claims detection (controls)", "ao_fpr")
        row("Activation Oracle", "names the injected concept", "ao_identify")
        row("Activation Oracle (yes/no)", "AUC of P(yes), injected vs control", "ao_p_yes_auc",
            "concept/prompt-cluster bootstrap")  # fmt: skip
        row("Patchscopes (entity description)", "names the injected concept",
            "ao_patchscopes_identify", "the same activations")  # fmt: skip
    for key in sorted((k for k in res["trained"] if k.startswith("lens_p_concept_L")),
                      key=lambda k: int(k[16:])):  # fmt: skip
        row("logit lens through the layers (internality)", f"P(concept token), layer {key[16:]}",
            key, "answer position, injected trials")  # fmt: skip
    if "same_p_yes_shift" in res["trained"]:
        note = "the untrained model's Lindsey vectors injected in both models (dlx-trained.zarr)"
        row("detection-logits, the same vectors", "P(yes) shift vs control", "same_p_yes_shift",
            note)  # fmt: skip
        for key in sorted((k for k in res["trained"] if k.startswith("same_lens_p_concept_L")),
                          key=lambda k: int(k[21:])):  # fmt: skip
            row("logit lens, the same vectors", f"P(concept token), layer {key[21:]}", key, note)
    args.data.mkdir(parents=True, exist_ok=True)
    (args.data / "sensitivity.json").write_text(json.dumps(rows, indent=1))
    (args.data / "instruments_raw.json").write_text(json.dumps(res, indent=1))
    for r in rows:
        print(r["instrument"], "|", r["readout"], "|", r["untrained"], "|", r["trained"], "|",
              r["sees"])  # fmt: skip
    return 0


if __name__ == "__main__":
    script_main(main)
