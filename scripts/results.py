"""Run the published experiments on an offline model, and write ``docs/results.md`` from the runs.

    # every experiment, paper defaults
    python scripts/results.py run --model smollm2-135m --size default
    python scripts/results.py run --model qwen2.5-coder-0.5b --size small
    python scripts/results.py run --model smollm2-135m --size small --dtype bfloat16   # beside fp32
    python scripts/results.py write        # docs/results.md from runs/results/
    python scripts/results.py refresh      # its summary tables recomputed from the runs it names

Runs go to ``runs/results/{model}/{experiment}.zarr`` (an existing run is resumed, so a killed
sweep continues where it stopped: run the same command again); progress goes to stderr as
``[k/N] experiment: done/total trials, elapsed, ETA``; each experiment's wall time is added to
``runs/results/{model}/timing.json``. ``--size small`` shrinks the grids (listed in SMALL) for the
larger models on CPU, ``--size tiny`` runs only the two logit protocols on a minimal grid (TINY);
the doc says which size each table comes from.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from mechintro.cli import script_main

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "results"
# The order the experiments run in (cheapest first). Every other registered experiment runs after
# them with its defaults (or its SMALL entry), and analyses/results_doc.py writes its table:
# a new experiment needs no edit here. detection-logits runs with the analysis runs
# (--only analysis) and self-prediction in scripts/looking_inward.py.
FIRST = (
    "sweep",
    "latent-introspection",
    "localisation",
    "intentional-control",
    "thoughts-vs-text",
    "prefill",
    "injected-thoughts",
)
ELSEWHERE = ("detection-logits", "self-prediction")


def order() -> list[str]:
    """Every registered experiment this script runs, in order."""
    from mechintro.experiments import MODULES

    return [*FIRST, *(n for n in MODULES if n not in FIRST and n not in ELSEWHERE)]


SMALL: dict[str, dict[str, object]] = {
    "sweep": {
        "layers": ("0.1", "0.25", "0.4", "0.5", "0.6", "0.75", "0.9"),
        "strengths": (2.0, 4.0, 6.0, 8.0, 10.0),
    },
    "latent-introspection": {"concepts": ("cats", "bread")},
    "localisation": {"trials": 20},
    "intentional-control": {"pairs": 20},
    "thoughts-vs-text": {"pairs": 20, "layers": ("0.5", "0.67"), "strengths": (2.0, 4.0, 8.0)},
    "prefill": {"pairs": 20, "layers": ("0.5", "0.67"), "strengths": (2.0, 4.0, 8.0)},
    "injected-thoughts": {
        "layers": ("0.5", "0.67"),
        "strengths": (2.0, 4.0),
        "trials": 20,
        "controls": 10,
        "max_new_tokens": 60,
    },
    # their best layers (2-3 of 32) and mid-depth, their two best pairs, half their draws
    "strength-comparison": {
        "layers": ("0.0625", "0.125", "0.5"),
        "pairs": ("2:6", "3:7"),
        "trials": 15,
    },
    # three of their word concepts, their best layer (18 of 32), their three coefficients
    "strength-classification": {
        "concepts": ("Dust", "Satellites", "Trumpets"),
        "layers": ("0.5625",),
    },
    # six of their concepts (k = 5 partners need six), their 57 % layer, two of their strengths
    "mismatch": {
        "concepts": ("dust", "satellites", "trumpets", "lightning", "oceans", "bread"),
        "layers": ("0.5556",),
        "strengths": (4.0, 6.0),
    },
    # one concept, their best layer (2) and two strengths, 4 draws of 10 sentences
    "sentence-localisation": {
        "concepts": ("Dust",),
        "layers": ("2",),
        "strengths": (5.0, 20.0),
        "trials": 4,
    },
    # the inject framing without an info document, the 64 first PCA-center suffixes
    "concept-confusion": {
        "interventions": ("inject",),
        "infos": ("none",),
        "suffixes_file": "analyses/data/smollm2-135m/concept-confusion-suffixes.json",
    },
}
# Runs the analyses of issue 4 read (``--only analysis``): Lindsey's vectors for every word an
# analysis compares with, and a detection-logits run over 20 concepts with residuals recorded.
ANALYSIS_CONCEPTS = 20
TINY: dict[
    str, dict[str, object]
] = {  # for the 1.5B model on 2 CPU cores: the two logit protocols only
    "sweep": {"layers": ("0.25", "0.5", "0.75"), "strengths": (4.0, 8.0)},
    "latent-introspection": {
        "concepts": ("cats",),
        "variants": ("none", "introspect"),
        "control_context": "none",
    },
}


def run(model_name: str, size: str, only: list[str], dtype: str = "float32") -> None:
    from mechintro.experiments import EXPERIMENTS
    from mechintro.models import load_model

    model = load_model(model_name, dtype=dtype)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl-C does
    folder = _folder(model_name, dtype)
    folder.mkdir(parents=True, exist_ok=True)
    timing_path = folder / "timing.json"
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    names = list(only or order())
    for name in names:
        if name == "analysis":
            analysis_runs(model, folder, timing, timing_path)
            continue
        module = EXPERIMENTS[name]
        overrides = {"small": SMALL, "tiny": TINY}.get(size, {}).get(name, {})
        if size == "tiny" and name not in TINY:
            continue
        config = module.Config(model=model_name, **overrides)
        out = folder / f"{name}.zarr"
        start, load = time.perf_counter(), os.getloadavg()[0]
        step = f"[{names.index(name) + 1}/{len(names)}] {name}"
        try:
            module.run(config, out, model=model, progress=Progress(step))
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep this segment's time, then stop
            _add_segment(timing, timing_path, name, size, start, load, finished=False)
            print(
                f"\n{name}: stopped; its committed batches are kept and the same command "
                "resumes it",
                file=sys.stderr,
            )
            raise SystemExit(130) from None
        print(file=sys.stderr)
        seconds = _add_segment(timing, timing_path, name, size, start, load, finished=True)
        print(f"{name}: {seconds:.0f} s", flush=True)


def _folder(model_name: str, dtype: str) -> Path:
    # other precisions go beside the fp32 runs (docs/results.md reads only the fp32 folders)
    return RUNS / (model_name if dtype == "float32" else f"{model_name}-{dtype}")


def timing_table(timing: dict) -> str:
    """``timing.json`` as a markdown table: each protocol's size, wall time (resumed segments
    added up), segments, and the load average at each segment's start and end."""
    rows = ["| protocol | size | wall | segments | load average (start→end) | finished |"]
    rows.append("|---|---|---|---|---|---|")
    total = 0.0
    for name, e in timing.items():
        segments = e.get("segments", [])
        loads = ", ".join(f"{s['load'][0]:.1f}→{s['load'][1]:.1f}" for s in segments) or "—"
        done = {True: "yes", False: "**no**"}.get(e.get("finished"), "—")
        counted = len(segments) or "—"
        if segments and e["seconds"] > sum(s["seconds"] for s in segments) + 0.5:  # older time
            counted = f"{len(segments)} + earlier, load not recorded"
        rows.append(
            f"| {name} | {e['size']} | {_clock(e['seconds'])} | {counted} | {loads} | {done} |"
        )
        total += e["seconds"]
    rows.append(f"| all | | {_clock(total)} | | | |")
    return "\n".join(rows)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def _add_segment(
    timing: dict, path: Path, name: str, size: str, start: float, load: float, finished: bool
) -> float:
    """Add one run segment's wall time to ``timing[name]`` (resumed segments add up) with the
    1-minute load average at its start and end — about the thread count when the protocol had
    the machine to itself, higher when other work shared the cores — and write the file."""
    seconds = time.perf_counter() - start
    entry = timing.get(name, {})
    if entry.get("size") != size:
        entry = {"size": size, "seconds": 0.0}
    entry["seconds"] = round(entry["seconds"] + seconds, 1)
    entry.setdefault("segments", []).append(
        {"seconds": round(seconds, 1), "load": [round(load, 2), round(os.getloadavg()[0], 2)]}
    )
    entry["finished"] = finished
    timing[name] = entry
    path.write_text(json.dumps(timing, indent=1))
    return seconds


class Progress:
    """``[k/N] experiment: done/total trials, elapsed, ETA`` on one stderr line. The rate counts
    only trials run in this process, so a resumed run's ETA is not flattered by the trials it
    found already done."""

    def __init__(self, label: str) -> None:
        self.label, self.start = label, time.perf_counter()
        self.first: int | None = None
        self.last = self.total = 0

    def __call__(self, done: int, total: int) -> None:
        if (
            self.first is None or done < self.last or total != self.total
        ):  # a protocol's next phase starts again
            self.first, self.start = done, time.perf_counter()
        self.last, self.total = done, total
        elapsed = time.perf_counter() - self.start
        ran = done - self.first
        eta = f"ETA {_clock(elapsed / ran * (total - done))}" if ran > 0 and done < total else ""
        print(
            f"\r{self.label}: {done}/{total} trials, {_clock(elapsed)} {eta}   ",
            end="",
            file=sys.stderr,
            flush=True,
        )


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def analysis_runs(model, folder: Path, timing: dict, timing_path: Path) -> None:
    from mechintro import stimuli
    from mechintro.experiments import detection_logits
    from mechintro.vectors import concept_vectors, load_vectors, save_vectors

    start = time.perf_counter()
    path = folder / "vectors.zarr"
    if path.exists():
        vectors = load_vectors(path, model)
    else:
        vectors = concept_vectors(model, stimuli.analysis_words())
        save_vectors(vectors, path)
    config = detection_logits.Config(
        model=model.name,
        concepts=tuple(stimuli.concept_words()[:ANALYSIS_CONCEPTS]),
        record_resid=True,
    )
    detection_logits.run(config, folder / "detection-logits.zarr", model=model, vectors=vectors)
    timing["analysis"] = {"size": "default", "seconds": round(time.perf_counter() - start, 1)}
    timing_path.write_text(json.dumps(timing, indent=1))
    print(f"analysis runs: {timing['analysis']['seconds']:.0f} s", flush=True)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", default="smollm2-135m")
    r.add_argument("--size", choices=["default", "small", "tiny"], default="default")
    r.add_argument("--only", default="", help="comma-separated experiments")
    r.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="weights' precision; bfloat16 runs go to runs/results/{model}-bfloat16/",
    )
    sub.add_parser("write")
    r = sub.add_parser(
        "refresh",
        help="recompute the summary tables of docs/results.md from the runs it names "
        "(analyses/data), leaving its prose as it is",
    )
    r.add_argument(
        "--only", default="", help="comma-separated experiments (and looking-inward); default all"
    )
    t = sub.add_parser("timing", help="the wall times in runs/results/{model}/timing.json")
    t.add_argument("--model", default="smollm2-135m")
    t.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = p.parse_args()
    if args.cmd == "run":
        run(args.model, args.size, [s for s in args.only.split(",") if s], args.dtype)
    elif args.cmd == "timing":
        path = _folder(args.model, args.dtype) / "timing.json"
        if not path.exists():
            raise SystemExit(
                f"no {path}: run `scripts/results.py run --model {args.model} --dtype "
                f"{args.dtype}` first"
            )
        print(timing_table(json.loads(path.read_text())))
    elif args.cmd == "refresh":
        sys.path.insert(0, str(ROOT / "analyses"))
        from results_doc import refresh

        only = tuple(x for x in args.only.split(",") if x)
        for rel in refresh(ROOT / "docs" / "results.md", ROOT, only):
            print(rel)
    else:
        sys.path.insert(0, str(ROOT / "analyses"))
        from results_doc import write

        write(RUNS, ROOT / "docs" / "results.md")
    return 0


if __name__ == "__main__":
    script_main(main)
