"""Regenerate every figure in ``figures/`` from saved runs: the small runs shipped in
``analyses/data/`` and the main job's runs in ``runs/`` (``make demo``). Each figure script runs
in this process (one import of torch), in order, with its time printed.

    python analyses/make_figures.py [--runs runs/] [--out figures/]

``--runs`` is the folder holding the main job's ``demo.zarr``, ``demo-vectors.zarr`` and
``demo-intentional-control.zarr``.
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

from mechintro.cli import script_main
from mechintro.errors import MechintroError

HERE = Path(__file__).resolve().parent
# script → its inputs from the main job's folder (scripts not listed read the shipped runs)
SCRIPTS: dict[str, dict[str, str]] = {
    "detection_logits_shift": {"run": "demo.zarr"},
    "injected_thoughts_by_layer": {},
    "injected_thoughts_by_strength": {},
    "thoughts_vs_text": {},
    "prefill_apology": {},
    "intentional_control_alignment": {
        "run": "demo-intentional-control.zarr",
        "vectors": "demo-vectors.zarr",
    },
    "latent_shifts": {},
    "sweep_heatmaps": {},
    "logit_lens": {"run": "demo.zarr"},
    "anomaly_auc": {"run": "demo.zarr"},
    "anomaly_cosines": {"run": "demo.zarr", "vectors": "demo-vectors.zarr"},
    # reads analyses/data/looking-inward; the probe figures need runs/looking-inward
    "looking_inward": {},
    "oracles": {},  # reads analyses/data/oracles/{model}
    # the next five read analyses/data/{model}/{experiment}.zarr of every shipped model
    "strength_comparison": {},  # strength-comparison.zarr
    "sentence_localisation": {},  # sentence-localisation.zarr
    "strength_classification": {},  # strength-classification.zarr
    "mismatch": {},  # mismatch.zarr
    "concept_confusion": {},  # concept-confusion.zarr (+ SmolLM2 itself, for its lens layers)
    "positive_control": {},  # reads analyses/data/positive-control (issue 33)
    "positive_control_dose_depth": {},  # the same data: detection vs strength and vs layer
}
# the PNGs a script draws, where they are not just ``{script}.png``
FIGURES: dict[str, list[str]] = {
    "looking_inward": [
        "self_prediction_accuracy",
        "self_cross_matrix_untrained",
        "self_vs_cross",
        "cross_training_scaling",
    ],
    "oracles": ["oracle_comparison_qwen2.5-coder-0.5b", "oracle_comparison_smollm2-135m"],
    # SmolLM2's run, then each other model trained with the same recipe
    "positive_control_dose_depth": [
        "positive_control_dose_depth",
        "positive_control_dose_depth_qwen2.5-coder-0.5b",
    ],
}

# issue 34's protocols: each script draws SmolLM2's shipped run, then every other model's shipped
# run of the same experiment as {script}_{model} (analyses/_figure.py per_model), after SmolLM2's
# variants {experiment}-{variant}.zarr as {script}_{variant}
PER_MODEL = {
    "strength_comparison": "strength-comparison",
    "sentence_localisation": "sentence-localisation",
    "strength_classification": "strength-classification",
    "mismatch": "mismatch",
    "concept_confusion": "concept-confusion",
}
FIGURES.update(
    {
        script: [
            script,
            *(
                f"{script}_{z.stem[len(experiment) + 1 :]}"
                for z in sorted((HERE / "data" / "smollm2-135m").glob(f"{experiment}-*.zarr"))
            ),
            *(
                f"{script}_{d.name}"
                for d in sorted((HERE / "data").iterdir())
                if d.name != "smollm2-135m" and (d / f"{experiment}.zarr").exists()
            ),
        ]
        for script, experiment in PER_MODEL.items()
    }
)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", default=str(HERE.parent / "runs"))
    p.add_argument("--out", default=str(HERE.parent / "figures"))
    args = p.parse_args()
    sys.path.insert(0, str(HERE))
    total = time.perf_counter()
    failed = []
    for name, inputs in SCRIPTS.items():
        start = time.perf_counter()
        sys.argv = [str(HERE / f"{name}.py"), "--out", args.out]
        for key, file in inputs.items():
            sys.argv += [f"--{key}", str(Path(args.runs) / file)]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exc:  # a script's one-line error (e.g. a run that does not exist yet)
            if exc.code not in (None, 0):
                failed.append(name)
                print(exc.code, file=sys.stderr)
        except MechintroError as exc:  # the same, raised past the script's own checks
            failed.append(name)
            print(f"{name}.py: error: {exc}", file=sys.stderr)
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
    print(
        f"{len(SCRIPTS) - len(failed)} of {len(SCRIPTS)} figure scripts in "
        f"{time.perf_counter() - total:.0f} s"
        + (f"; not drawn: {', '.join(failed)} (run `make demo` first)" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    script_main(main)
