"""What the stored residual dtype moves in every analysis that reads residuals, measured.

The same SmolLM2 runs (the model computes in float32) recorded with ``resid_dtype`` float32,
float16 and bfloat16 through the real code path (``detection_logits.run``,
``intentional_control.run``), then each analysis run on each store and compared with the
float32 store's result:

The detection-logits run gives every trial, injected or control, the prompt "Trial k" with ``k``
drawn from ``1..--prompt-variants`` independently of the condition, and each control its own
``k`` (two controls per strength): controls whose prompts are the same have bit-identical
residuals and are one cross-validation group (issue 32), so the anomaly analysis needs controls
on varied prompts, as the oracle's probe does (``mechintro.oracle.legibility.vary_prompts``).
``--prompt-variants 1`` is the earlier design (every trial on "Trial 1", one control per
strength), which the lens and alignment rows of ``docs/performance.md`` were first measured on.

- stored values: relative error per vector (‖stored − float32‖ / ‖float32‖, over every trial,
  layer and prompt position that is not padding);
- logit lens (``analysis.lens.logit_lens``, last position, every layer): max |Δ logit_diff|
  (log-odds yes − no) and max |Δ log p_concept|;
- anomaly directions and the probe (``analysis.anomaly.anomaly_directions``, injected vs
  control trials, window positions, every layer from the injection on — before it the two
  groups' residuals are the same numbers, their difference is rounding noise in any dtype and
  its AUC and direction mean nothing): max |Δ AUC| of the difference of means and of the
  logistic-regression probe (without and with the injected vectors' span removed), the
  smallest cosine between a layer's direction and the float32 store's, max |Δ score| of each
  trial's projection on its layer's direction (relative to the scores' range), and how many
  verdicts flip: a (estimator, removal, layer) cell whose 95 % interval lies above 0.5 in one
  store and not in the other;
- think / don't-think alignment (``analysis.alignment.alignment``): max |Δ cos_word|, max
  relative |Δ proj_word|, and max |Δ| of the think − don't-think difference of mean cos_word
  per layer (the experiment's headline).

Prints one JSON line per dtype, with the 1-minute load average.

    python benchmarks/resid_dtype_error.py
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

DTYPES = ("float32", "float16", "bfloat16")
CONCEPTS = ("Dust", "Oceans", "Trees", "Bread", "Silver", "Music", "Fire", "Clocks")
BASELINE = ("Sand", "Rivers", "Stone", "Paper")


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    return float(np.abs(a[both] - b[both]).max())


def varied_trials(model, vectors, *, variants: int, seed: int = 0):
    """The detection-logits trials (8 concepts x 4 strengths at half depth) with each trial's
    prompt "Trial k": injected trials draw ``k`` uniformly from ``1..variants``, and each
    strength has two controls, each on one of the injected trials' prompts (a control reads its
    injected twin's window), all distinct while there are 8 distinct ones. With
    ``variants`` 1 the run's own trials (one control per strength, all on "Trial 1")."""
    import dataclasses

    from mechintro import stimuli
    from mechintro.experiments import detection_logits
    from mechintro.prompts import Window, render_chat, tokenize

    config = detection_logits.Config(
        concepts=CONCEPTS, layers=("0.5",), strengths=(2.0, 4.0, 8.0, 16.0), record_resid=True
    )
    trials, layers = detection_logits.build_trials(config, model, vectors)
    if variants == 1:
        return trials, layers
    cache: dict[int, tuple] = {}

    def prompt(k: int) -> tuple:
        if k not in cache:
            text = stimuli.TRIAL_QUESTION.replace("Trial 1:", f"Trial {k}:", 1)
            rendered = render_chat(model.tokenizer, stimuli.injected_thoughts_messages(text))
            cache[k] = (tokenize(model.tokenizer, rendered), Window.from_marker(f"\n\nTrial {k}"))
        return cache[k]

    rng = np.random.default_rng(seed)
    ks = [int(rng.integers(1, variants + 1)) for t in trials if t.condition != "control"]
    # a control reads the window of an injected trial with its prompt: draw from theirs
    control_k = iter(rng.permutation(sorted(set(ks))).tolist() * 2)
    injected_k = iter(ks)
    out = []
    for trial in trials:
        if trial.condition == "control":
            copies = [next(control_k), next(control_k)]
        else:
            copies = [next(injected_k)]
        for k in copies:
            p, w = prompt(k)
            out.append(dataclasses.replace(trial, prompt=p, window=w))
    return out, layers


def _scores(ds: xr.Dataset, result: xr.Dataset, labels: xr.DataArray) -> np.ndarray:
    """Each kept trial's window mean projected on its layer's direction, ``(trial, layer)``."""
    from mechintro.analysis.anomaly import window_features

    feats = window_features(ds, layers=[int(x) for x in result.layer.values])
    keep = np.isin(np.asarray(labels.values), ("detected", "control"))
    return np.einsum("nld,ld->nl", np.asarray(feats.values)[keep], result["direction"].values)


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--analyses", default="lens,anomaly,alignment")
    parser.add_argument(
        "--prompt-variants",
        type=int,
        default=16,
        help="'Trial k' prompts, k in 1..N (1: every trial on 'Trial 1', the identical controls)",
    )
    args = parser.parse_args()
    wanted = args.analyses.split(",")
    import mechintro as mi
    from mechintro import runs
    from mechintro.analysis.alignment import alignment
    from mechintro.analysis.anomaly import anomaly_directions
    from mechintro.analysis.lens import logit_lens
    from mechintro.experiments import detection_logits, intentional_control
    from mechintro.progress import set_default
    from mechintro.reading import NextToken
    from mechintro.runner import execute

    set_default(False)
    model = mi.load_model("smollm2-135m", progress=False)
    vectors = mi.concept_vectors(model, [*CONCEPTS, *BASELINE], progress=False)
    trials, layers = varied_trials(model, vectors, variants=args.prompt_variants)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as tmp:
        for dtype in DTYPES:
            dl = execute(
                model, trials, Path(tmp) / f"dl-{dtype}.zarr",
                config=detection_logits.Config(
                    concepts=CONCEPTS, layers=("0.5",), strengths=(2.0, 4.0, 8.0, 16.0),
                    record_resid=True, resid_dtype=dtype,
                ),
                experiment=detection_logits.NAME, readouts=[NextToken(detection_logits.YES_NO)],
                layers=layers, vectors=vectors, progress=False,
            )  # fmt: skip
            ds = runs.open_run(dl).load()
            injected = np.asarray(ds["condition"].values) != "control"
            labels = xr.DataArray(np.where(injected, "detected", "control"), dims="trial")
            ic = None if "alignment" not in wanted else intentional_control.run(
                intentional_control.Config(
                    concepts=CONCEPTS, pairs=8, instructions=("think", "dont_think"),
                    resid_dtype=dtype,
                ),
                Path(tmp) / f"ic-{dtype}.zarr", model=model, progress=False,
            )  # fmt: skip
            ic_ds = runs.open_run(ic).load() if ic is not None else None
            results[dtype] = {
                "resid": ds.resid.values.astype(np.float32),
                "attn": np.asarray(ds.attention_mask.values, dtype=bool),
                "lens": logit_lens(ds, model) if "lens" in wanted else None,
                "anomaly": None
                if "anomaly" not in wanted
                else anomaly_directions(
                    ds,
                    labels,
                    n_boot=200,
                    layers=[
                        int(x)
                        for x in ds.layer.values
                        if x >= ds.inject_layer.values[injected].min()
                    ],
                ),
                "ds": ds,
                "labels": labels,
                "align": None
                if ic_ds is None
                else alignment(ic_ds, vectors, baseline=list(BASELINE)),
                "instruction": None if ic_ds is None else np.asarray(ic_ds["condition"].values),
                "disk_MB": sum(f.stat().st_size for f in (dl / "resid").rglob("*") if f.is_file())
                / 1e6,
            }
    ref = results["float32"]
    for dtype in DTYPES:
        r = results[dtype]
        mask = ref["attn"][:, None, :] & np.ones(ref["resid"].shape[1], bool)[None, :, None]
        x, y = ref["resid"][mask], r["resid"][mask]  # (vectors, d_model)
        rel = np.linalg.norm(y - x, axis=-1) / np.linalg.norm(x, axis=-1)
        row = {
            "dtype": dtype,
            "resid_disk_MB_detection_logits": round(r["disk_MB"], 2),
            "rel_err_median": float(np.median(rel)),
            "rel_err_max": float(rel.max()),
            "load_1min": round(os.getloadavg()[0], 2),
        }
        if r["lens"] is not None:
            lens, lens0 = r["lens"], ref["lens"]
            row["lens_max_abs_d_logit_diff"] = _max_abs(
                lens.logit_diff.values, lens0.logit_diff.values
            )
            row["lens_max_abs_d_log_p_concept"] = _max_abs(
                np.log(lens.p_concept.values), np.log(lens0.p_concept.values)
            )
            row["lens_logit_diff_range"] = float(np.ptp(lens0.logit_diff.values))
        if r["anomaly"] is not None:
            an, an0 = r["anomaly"], ref["anomaly"]
            d, d0 = an["direction"].values, an0["direction"].values
            cos = (d * d0).sum(-1) / (np.linalg.norm(d, axis=-1) * np.linalg.norm(d0, axis=-1))
            row["anomaly_layers"] = [int(x) for x in an.layer.values]
            for est in ("diff_means", "probe"):
                row[f"auc_{est}_max_abs_d"] = _max_abs(
                    an.auc.sel(estimator=est).values, an0.auc.sel(estimator=est).values
                )
                row[f"auc_{est}_float32_range"] = [
                    float(np.nanmin(an0.auc.sel(estimator=est).values)),
                    float(np.nanmax(an0.auc.sel(estimator=est).values)),
                ]
            row["anomaly_min_cos_direction"] = float(np.nanmin(cos))
            for rem in an.removal.values:
                for est in ("diff_means", "probe"):
                    row[f"auc_{est}_{rem}_max_abs_d"] = _max_abs(
                        an.auc.sel(estimator=est, removal=rem).values,
                        an0.auc.sel(estimator=est, removal=rem).values,
                    )
            sc = _scores(r["ds"], an, r["labels"])
            sc0 = _scores(ref["ds"], an0, ref["labels"])
            row["score_max_abs_d_over_range"] = _max_abs(sc, sc0) / float(np.ptp(sc0))
            # verdict: the cell's 95 % interval lies above 0.5
            above, above0 = an.auc_lo.values > 0.5, an0.auc_lo.values > 0.5
            row["verdict_cells"] = int(above0.size)
            row["verdict_cells_above_half_float32"] = int(above0.sum())
            row["verdicts_flipped"] = int((above != above0).sum())
            row["n_detected_negative"] = [an.attrs["n_detected"], an.attrs["n_negative"]]
        if r["align"] is not None:
            al, al0 = r["align"], ref["align"]
            row["align_max_abs_d_cos_word"] = _max_abs(al.cos_word.values, al0.cos_word.values)
            sd = float(np.nanstd(al0.proj_word.values))
            row["align_max_abs_d_proj_word_over_sd"] = (
                _max_abs(al.proj_word.values, al0.proj_word.values) / sd
            )
            think = r["instruction"] == "think"
            effect = al.cos_word.values[think].mean(0) - al.cos_word.values[~think].mean(0)
            effect0 = al0.cos_word.values[think].mean(0) - al0.cos_word.values[~think].mean(0)
            row["align_max_abs_d_think_minus_dont"] = _max_abs(effect, effect0)
            row["align_think_minus_dont_range"] = [float(effect0.min()), float(effect0.max())]
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    from mechintro.cli import script_main

    script_main(main)
