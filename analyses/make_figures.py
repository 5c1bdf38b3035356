"""Regenerate every figure in ``figures/`` from saved runs: the small runs shipped in
``analyses/data/`` and the main job's runs in ``runs/`` (``make demo``). Each figure script runs
in this process (one import of torch), in order, with its time printed.

    python analyses/make_figures.py [--out figures/]
"""

from __future__ import annotations

import argparse
import runpy
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = (
    "detection_logits_shift", "injected_thoughts_by_layer", "injected_thoughts_by_strength", "thoughts_vs_text",
    "prefill_apology", "intentional_control_alignment", "latent_shifts", "sweep_heatmaps", "logit_lens",
    "anomaly_auc", "anomaly_cosines",
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(HERE.parent / "figures"))
    out = p.parse_args().out
    sys.path.insert(0, str(HERE))
    total = time.perf_counter()
    failed = []
    for name in SCRIPTS:
        start = time.perf_counter()
        sys.argv = [str(HERE / f"{name}.py"), "--out", out]
        try:
            runpy.run_path(sys.argv[0], run_name="__main__")
        except SystemExit as exc:  # a script's one-line error (e.g. a run that does not exist yet)
            if exc.code not in (None, 0):
                failed.append(name)
                print(exc.code, file=sys.stderr)
        print(f"[{name}: {time.perf_counter() - start:.1f} s]", flush=True)
    print(f"{len(SCRIPTS) - len(failed)} of {len(SCRIPTS)} figures in {time.perf_counter() - total:.0f} s"
          + (f"; not drawn: {', '.join(failed)} (run `make demo` first)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
