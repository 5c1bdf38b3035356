"""Wall time of the README's quick start (Python), in a fresh interpreter, with what it printed.

    .venv/bin/python benchmarks/quickstart.py [--out runs/bench-quick.zarr] [--repeat 2]

Each repetition runs the quick-start cell in a new interpreter (imports, model load, concept
vectors for two words, a 2-concept × 2-layer × 2-strength detection-logits run, the summary) into
a fresh output folder, and reports its wall time, the time of each step and every warning line
it printed on stderr. The first repetition may fill the caches (converted weights, the baseline
words' activations); the later ones show the cost a user pays every time afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from mechintro.cli import script_main

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import mechintro as mi
steps = {"import": time.perf_counter() - t0}
t = time.perf_counter()
model = mi.load_model("smollm2-135m")
steps["load_model"] = time.perf_counter() - t
t = time.perf_counter()
vectors = mi.concept_vectors(model, ["Dust", "Oceans"])
steps["concept_vectors"] = time.perf_counter() - t
config = mi.DetectionLogitsConfig(
    concepts=("Dust", "Oceans"), layers=("0.5", "0.67"), strengths=(2.0, 8.0), record_resid=True
)
t = time.perf_counter()
mi.detection_logits.run(config, sys.argv[1], model=model, vectors=vectors)
steps["run"] = time.perf_counter() - t
t = time.perf_counter()
ds = mi.open_run(sys.argv[1])
summary = mi.detection_logits.format_summary(mi.detection_logits.summarize(ds))
steps["summary"] = time.perf_counter() - t
steps["total"] = time.perf_counter() - t0
print(json.dumps(steps))
"""


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", default="runs/bench-quick.zarr")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    for k in range(args.repeat):
        shutil.rmtree(args.out, ignore_errors=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, args.out], capture_output=True, text=True
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        steps = json.loads(done.stdout.strip().splitlines()[-1])
        # everything on stderr that is not a progress bar: warnings, logged deprecations
        lines = [part for line in done.stderr.splitlines() for part in line.split("\r")]
        warnings = [
            line
            for line in lines
            if line.strip() and "|" not in line and not line.rstrip().endswith("/s]")
        ]
        print(
            f"run {k + 1}: {wall:.1f} s wall; "
            + ", ".join(f"{s} {v:.1f} s" for s, v in steps.items())
        )
        print(
            f"  stderr: {len(done.stderr.splitlines())} lines, "
            f"{len(warnings)} lines that are not progress bars"
        )
        for line in dict.fromkeys(warnings):
            print(f"    {line.strip()[:160]}")
    shutil.rmtree(args.out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    script_main(main)
