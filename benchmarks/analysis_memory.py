"""Peak memory and time of the residual-reading analyses on a run far larger than the memory
they may use: anomaly directions, the logit lens and the alignment read the residuals one layer
and ``CHUNK_TRIALS`` trials at a time, so their extra memory should not grow with the run.

    .venv/bin/python benchmarks/analysis_memory.py RUN [--cap-mb 400] [--lens] [--only lens] \\
        [--lens-chunks 0,8192]

Each analysis runs in a fresh interpreter: after the imports (and, for the lens, the model load,
with every weight read once so that it is resident), it resets the kernel's peak resident set
(``/proc/self/clear_refs``, Linux), runs, and reports the peak's rise over the resident set it
started from — the memory the analysis itself needed — against ``--cap-mb`` and the run's
residual bytes on disk and in memory. ``--lens-chunks`` runs the lens once per vocabulary chunk
size, side by side (0: the whole vocabulary in one piece, as the lens computed it before it was
chunked; omitted: the library's default).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from mechintro.cli import script_main

CHILD = r"""
import json, re, sys, time
import mechintro as mi
from mechintro import analysis

def status(key):  # kB, from the kernel's accounting of this process
    return int(re.search(key + r":\s+(\d+)", open("/proc/self/status").read()).group(1))

ds = mi.open_run(sys.argv[1])
what = sys.argv[2]
ds = ds.isel(trial=slice(0, int(sys.argv[3]))) if int(sys.argv[3]) > 0 else ds
kwargs = json.loads(sys.argv[4])
model = mi.load_model(ds.attrs["model"]) if what == "lens" else None
resident = sys.argv[5] == "resident"
# the weights the lens reads are the model's memory, not the analysis's: make them resident
if model is not None and resident:
    for p in model.hf.parameters():
        float(p.detach().float().sum())
if resident:
    # reset the peak (VmHWM) to the current resident set
    open("/proc/self/clear_refs", "w").write("5")
# load-peak: the rise of the peak over the peak so far
before = status("VmRSS" if resident else "VmHWM")
t = time.perf_counter()
if what == "anomaly":
    analysis.anomaly_directions(ds, analysis.detection_labels(ds), n_boot=200)
else:
    analysis.logit_lens(ds, model, **kwargs)
seconds = time.perf_counter() - t
after = status("VmHWM")
extra_mb, baseline_mb = (after - before) / 1024, before / 1024
print(json.dumps({"seconds": seconds, "extra_mb": extra_mb, "baseline_mb": baseline_mb}))
"""


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run")
    p.add_argument("--cap-mb", type=float, default=400.0)
    p.add_argument(
        "--lens", action="store_true", help="also the logit lens (loads the run's model)"
    )
    p.add_argument(
        "--fraction",
        type=float,
        default=0.25,
        help="also run each analysis on this share of the trials: "
        "the same extra memory means it does not grow with the run",
    )
    p.add_argument(
        "--baseline",
        choices=["resident", "load-peak"],
        default="resident",
        help=(
            "resident (default): from the resident set after reading every weight once; "
            "load-peak: the rise of the process's peak over its peak after the imports "
            "and the load, with the weights as the load left them (the measure used "
            "before 2026-11-29, which counts weights first paged in by the analysis)"
        ),
    )
    p.add_argument("--only", choices=["anomaly", "lens"], help="run only this analysis")
    p.add_argument(
        "--lens-chunks", help="comma-separated vocabulary chunk sizes for the lens (0: no chunking)"
    )
    args = p.parse_args()
    import mechintro as mi

    ds = mi.open_run(args.run)
    resid = ds["resid"]
    stored = resid.size * 2 / 2**20  # float16, as recorded
    on_disk = (
        sum(f.stat().st_size for f in Path(args.run, "resid").rglob("*") if f.is_file()) / 2**20
    )
    print(
        f"{args.run}: resid {tuple(resid.shape)} — {on_disk:.0f} MB on "
        f"disk, {stored:.0f} MB as float16 ({stored / args.cap_mb:.1f}× "
        f"the {args.cap_mb:.0f} MB cap; twice that as float32)"
    )
    part = max(1, int(args.fraction * ds.sizes["trial"]))
    analyses = (args.only,) if args.only else ("anomaly", "lens") if args.lens else ("anomaly",)
    chunks = [int(c) for c in args.lens_chunks.split(",")] if args.lens_chunks else [None]
    for what in analyses:
        for chunk in chunks if what == "lens" else [None]:
            # 0: one chunk as large as any vocabulary, i.e. the unchunked lens
            kwargs = {} if chunk is None else {"chunk": chunk or 2**31}
            for n in (part, 0):
                out = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        CHILD,
                        args.run,
                        what,
                        str(n),
                        json.dumps(kwargs),
                        args.baseline,
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(out.stdout.strip().splitlines()[-1])
                verdict = "within" if r["extra_mb"] <= args.cap_mb else "OVER"
                label = what if chunk is None else f"{what} (chunk {chunk or 'none'})"
                print(
                    f"  {label:<20} {n or ds.sizes['trial']:>5} trials {r['seconds']:6.1f} s, "
                    f"peak +{r['extra_mb']:.0f} MB over a {r['baseline_mb']:.0f} MB "
                    f"{args.baseline} baseline — {verdict} the cap"
                )
    return 0


if __name__ == "__main__":
    script_main(main)
