"""The main job (``make demo``): on the embedded SmolLM2-135M, Lindsey's injected-thoughts trial
in logit mode with every residual stream recorded, the concept vectors every analysis compares
with, and a small intentional-control run — the saved runs ``make figures`` draws from.

    python scripts/demo.py [--runs runs]

Writes ``runs/demo.zarr`` (detection-logits: 8 concepts × 4 layers × 4 strengths + controls),
``runs/demo-vectors.zarr`` (Lindsey's vectors for the 50 concepts, the 100 control words and the
anomaly words) and ``runs/demo-intentional-control.zarr`` (20 sentence/word pairs × think /
don't think / rewarded / punished). Runs that exist are resumed (finished ones return at once).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import mechintro as mi
from mechintro import stimuli
from mechintro.cli import script_main
from mechintro.experiments import detection_logits, intentional_control
from mechintro.vectors import concept_vectors, load_vectors, save_vectors


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", default="runs", help="output folder (default: runs)")
    folder = Path(p.parse_args().runs)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = mi.load_model("smollm2-135m")
    path = folder / "demo-vectors.zarr"
    vectors = load_vectors(path, model) if path.exists() else None
    if vectors is None:
        vectors = concept_vectors(model, stimuli.analysis_words())
        save_vectors(vectors, path)
    print(
        f"vectors: {vectors.sizes['concept']} words × {vectors.sizes['layer']} "
        f"layers → {path}  ({time.perf_counter() - start:.0f} s)"
    )
    run = detection_logits.run(
        detection_logits.Config(), folder / "demo.zarr", model=model, vectors=vectors
    )
    print(detection_logits.format_summary(detection_logits.summarize(mi.open_run(run))))
    print(f"→ {run}  ({time.perf_counter() - start:.0f} s)")
    run = intentional_control.run(
        intentional_control.Config(pairs=20), folder / "demo-intentional-control.zarr", model=model
    )
    print(f"intentional-control: → {run}  ({time.perf_counter() - start:.0f} s)")
    print("figures: make figures (or python analyses/make_figures.py)")
    return 0


if __name__ == "__main__":
    script_main(main)
