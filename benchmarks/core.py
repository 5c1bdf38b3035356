"""Core measurements for SmolLM2-135M on this machine: model load (cold and warm), logit-mode
throughput with and without residual recording (interleaved, same run), bytes per trial on disk.

    .venv/bin/python benchmarks/core.py [--repeats 3]

Not a test: it prints measurements and ratios, and asserts nothing about time. Loads run in fresh
interpreters (a cold load converts the GGUF into an empty temporary cache).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mechintro.cli import script_main

LOAD = (
    "import time, mechintro; t = time.perf_counter(); "
    "mechintro.load_model('smollm2-135m'); print(time.perf_counter() - t)"
)


def load_seconds(cache: str) -> float:
    env = dict(os.environ, MECHINTRO_CACHE=cache)
    out = subprocess.run(
        [sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as cache:
        cold = load_seconds(cache)
        warm = [load_seconds(cache) for _ in range(args.repeats)]
    print(
        f"load smollm2-135m: cold (GGUF hash + de-quantise + cache) {cold:.1f} s; "
        f"warm median {statistics.median(warm):.2f} s (n={len(warm)})"
    )

    import mechintro as mi
    from mechintro.experiments import detection_logits as D

    model = mi.load_model("smollm2-135m")
    concepts = ("Dust", "Trumpets", "Lightning", "Oceans", "Poetry", "Bread", "Silver", "Volcanoes")
    vectors = mi.concept_vectors(model, concepts)
    cfg = dict(
        concepts=concepts, layers=("0.5", "0.67"), strengths=(2.0, 4.0, 8.0), batch_size=16
    )  # 54 trials
    rates: dict[bool, list[float]] = {True: [], False: []}
    per_trial = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for record in (False, True):
                out = Path(tmp) / f"r{r}-{record}.zarr"
                config = D.DetectionLogitsConfig(**cfg, record_resid=record)
                t = time.perf_counter()
                D.run(config, out, model=model, vectors=vectors)
                elapsed = time.perf_counter() - t
                n = mi.open_run(out).sizes["trial"]
                rates[record].append(n / elapsed)
                if record:
                    per_trial = dir_bytes(out) / n
                    resid_raw = model.n_layers * mi.open_run(out).sizes["pos"] * model.d_model * 2
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    print(
        f"logit mode, {n} trials of the 175-token injected-thoughts "
        f"prompt, batch 16 (medians of {args.repeats}, interleaved):"
    )
    print(
        f"  without recording {off:.2f} trials/s; with all {model.n_layers} "
        f"layers recorded (float16) {on:.2f} trials/s; ratio {on / off:.2f}"
    )
    print(
        f"  bytes per trial on disk with residuals: {per_trial / 1e6:.2f} MB "
        f"(raw float16 residuals {resid_raw / 1e6:.2f} MB)"
    )
    print(
        json.dumps(
            {
                "cold_load_s": cold,
                "warm_load_s": warm,
                "trials_per_s_no_record": rates[False],
                "trials_per_s_record": rates[True],
                "bytes_per_trial": per_trial,
            }
        )
    )


if __name__ == "__main__":
    script_main(main)
