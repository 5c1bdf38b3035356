"""How close `mechintro run … --dry-run` comes: three SmolLM2 runs of different shape, each
estimated (one calibration batch, nothing written) and then run, side by side in one process.

Prints one JSON line per run: estimated vs measured bytes on disk (ratio; the target is within
20 %) and estimated vs measured wall time of the run (ratio; the target is within a factor of
2). The run's time is measured the same way the estimate counts it: from the experiment's
``run`` call (its concept vectors included; the model is loaded once, before).

    python benchmarks/plan_accuracy.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    import mechintro as mi
    from mechintro import planning
    from mechintro.experiments import detection_logits, injected_thoughts

    model = mi.load_model("smollm2-135m", progress=False)
    concepts = ("Dust", "Oceans", "Trees", "Bread")
    runs = {
        "detection-logits, residuals": (
            detection_logits,
            detection_logits.Config(concepts=concepts, layers=("0.5", "0.67"),
                                    strengths=(1.0, 2.0, 4.0, 8.0), record_resid=True),
        ),
        "injected-thoughts, 48 tokens": (
            injected_thoughts,
            injected_thoughts.Config(concepts=concepts, layers=("0.67",), strengths=(4.0, 8.0),
                                     trials=4, controls=4, max_new_tokens=48),
        ),
        "injected-thoughts, residuals, 16 tokens": (
            injected_thoughts,
            injected_thoughts.Config(concepts=concepts[:2], layers=("0.5",), strengths=(8.0,),
                                     trials=8, controls=8, max_new_tokens=16, record_resid=True),
        ),
    }  # fmt: skip
    for name, spec in runs.items():
        module, config = spec
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "r.zarr"
            e = planning.estimate(lambda m=module, c=config, o=out: m.run(c, o, model=model))
            t0 = time.perf_counter()
            module.run(config, out, model=model, progress=False)
            seconds = time.perf_counter() - t0
            size = _size(out)
        row = {
            "run": name,
            "trials": e.trials,
            "estimated_MB": round(e.bytes / 1e6, 2),
            "measured_MB": round(size / 1e6, 2),
            "bytes_ratio": round(e.bytes / size, 3),
            "estimated_s": round(e.seconds, 1),
            "measured_s": round(seconds, 1),
            "time_ratio": round(e.seconds / seconds, 2),
        }
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    from mechintro.cli import script_main

    script_main(main)
