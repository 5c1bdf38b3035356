"""The cost of the read checks of ``open_run`` (issue 30): open and read times of a 1,000-trial
store with residuals, with the checks off (what ``open_run`` did before) and with the default
lazy checks (``check="fast"``: metadata and chunk presence at open, each chunk's digest when it is
read), and ``check="full"`` (every chunk hashed at open, what ``mechintro info`` uses), measured
interleaved in one process.

    .venv/bin/python benchmarks/store_checks.py [--trials 1000] [--repeats 5]

The store is written through the library's own commit path (``runs.create_run`` and
``runs.write_batch``) with random values (float16 residuals compress as badly as real ones), shaped
like a SmolLM2-135M logit run that records 30 layers over an 8-token prompt. Not a test: it prints
measurements and ratios, and asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr

from mechintro import runs
from mechintro.cli import script_main


def make_store(path: Path, n: int, layers: int, pos: int, d_model: int, batch: int) -> None:
    rng = np.random.default_rng(0)
    inputs = xr.Dataset(
        {
            "input_ids": (("trial", "pos"), rng.integers(0, 49152, (n, pos), dtype=np.int32)),
            "attention_mask": (("trial", "pos"), np.ones((n, pos), dtype=np.int8)),
            "inject_mask": (("trial", "pos"), np.zeros((n, pos), dtype=bool)),
            "injected_vector": (
                ("trial", "d_model"),
                rng.standard_normal((n, d_model)).astype(np.float32),
            ),
        },
        coords={
            "concept": ("trial", [f"c{i % 50}" for i in range(n)]),
            "condition": ("trial", ["injected"] * n),
            "strength": ("trial", np.full(n, 4.0)),
            "inject_layer": ("trial", np.full(n, 15)),
            "inject_layer_end": ("trial", np.full(n, 16)),
            "answer": ["Yes", "No"],
            "answer_label": ("answer", ["yes", "no"]),
        },
    )
    attrs = {
        "model": "benchmark",
        "weights_sha256": "0" * 64,
        "mechintro_version": "benchmark",
        "git_commit": "benchmark",
        "config": "{}",
        "package_versions": "{}",
    }
    runs.create_run(
        path, inputs=inputs, attrs=attrs, batch_size=batch, mode="logits", record=True,
        n_layers=layers,
    )  # fmt: skip
    for start in range(0, n, batch):
        m = min(batch, n - start)
        runs.write_batch(
            path,
            start,
            {
                "answer_logprobs": (
                    ("trial", "answer"),
                    -rng.random((m, 2), dtype=np.float32),
                ),
                "nonfinite": (("trial",), np.zeros(m, dtype=bool)),
                "resid": (
                    ("trial", "layer", "pos", "d_model"),
                    rng.standard_normal((m, layers, pos, d_model)).astype(np.float16),
                ),
            },
        )
    runs.mark_complete(path)


def measure(path: Path, check: str) -> dict[str, float]:
    t0 = time.perf_counter()
    ds = runs.open_run(path, check=check)
    t1 = time.perf_counter()
    ds["answer_logprobs"].load()
    t2 = time.perf_counter()
    ds["resid"].isel(layer=15).load()
    t3 = time.perf_counter()
    ds["resid"].load()
    t4 = time.perf_counter()
    return {
        "open": t1 - t0,
        "read answer_logprobs": t2 - t1,
        "read resid, one layer": t3 - t2,
        "read resid, all": t4 - t3,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=1000)
    p.add_argument("--layers", type=int, default=30)
    p.add_argument("--pos", type=int, default=8)
    p.add_argument("--d-model", type=int, default=576)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.zarr"
        t = time.perf_counter()
        make_store(path, args.trials, args.layers, args.pos, args.d_model, args.batch_size)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(
            f"store: {args.trials} trials, resid {args.layers}x{args.pos}x{args.d_model} "
            f"float16, batch {args.batch_size}; {size / 1e6:.0f} MB on disk, written in "
            f"{time.perf_counter() - t:.1f} s"
        )
        checks = ("off", "fast", "full")
        times: dict[str, list[dict[str, float]]] = {c: [] for c in checks}
        measure(path, "off")  # warm the page cache
        for _ in range(args.repeats):
            for c in checks:  # interleaved, so drift in the machine's load hits all alike
                times[c].append(measure(path, c))
    print(f"median of {args.repeats} (seconds); ratio to check='off' (the reads before issue 30)")
    print(f"{'':24}" + "".join(f"{c:>18}" for c in checks))
    for key in times["off"][0]:
        med = {c: statistics.median(r[key] for r in times[c]) for c in checks}
        cells = "".join(f"{med[c]:>9.3f} ({med[c] / med['off']:4.2f}x)" for c in checks)
        print(f"{key:24}{cells}")
    return 0


if __name__ == "__main__":
    script_main(main)
