"""bf16 against fp32: the same protocol run in both precisions, compared run by run.

    .venv/bin/python benchmarks/precision.py FP32_RUN BF16_RUN [FP32_RUN BF16_RUN ...]
    .venv/bin/python benchmarks/precision.py runs/results/smollm2-135m \\
        runs/results/smollm2-135m-bfloat16

Given two folders (``scripts/results.py run --dtype``), every protocol present in both is compared.
For each pair it prints both runs' summaries (the protocol's own ``format_summary``: shifts, rates
and their intervals), and, where the runs store answer log-probabilities (logit mode) for the
same trials, how far the per-trial log-probabilities moved: the median and maximum |Δ| and the
share of trials whose yes-vs-no preference flipped. Whether a conclusion changed is read from the
two summaries side by side; nothing here decides it. ``--readout four_forms`` summarises the
protocols whose ``summarize`` takes a readout (the sweep) with the four answer forms that
``docs/results.md`` uses instead of their default.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import numpy as np

from mechintro.cli import script_main


def pairs(args: list[str]) -> list[tuple[Path, Path]]:
    paths = [Path(a) for a in args]
    if len(paths) == 2 and all(p.is_dir() and not p.name.endswith(".zarr") for p in paths):
        return [
            (paths[0] / f.name, paths[1] / f.name)
            for f in sorted(paths[0].glob("*.zarr"))
            if (paths[1] / f.name).exists()
        ]
    if len(paths) % 2:
        raise SystemExit("give FP32_RUN BF16_RUN pairs, or two folders")
    return list(zip(paths[::2], paths[1::2], strict=True))


def compare(a_path: Path, b_path: Path, readout: str | None = None) -> None:
    import mechintro as mi
    from mechintro.experiments import EXPERIMENTS

    a, b = mi.open_run(a_path), mi.open_run(b_path)
    name = a.attrs.get("experiment", "")
    print(f"\n=== {name}: {a_path} vs {b_path}")
    module = EXPERIMENTS.get(name)
    options = {}
    if readout and module is not None and hasattr(module, "summarize"):
        if "readout" in inspect.signature(module.summarize).parameters:
            options = {"readout": readout}
            print(f"(readout: {readout})")
    for label, ds in (("fp32", a), ("bf16", b)):
        print(f"--- {label} ({ds.sizes['trial']} trials)")
        print(
            module.format_summary(module.summarize(ds, **options))
            if module is not None and hasattr(module, "summarize")
            else "(no summary)"
        )
    if "answer_logprobs" in a and "answer_logprobs" in b and a.sizes["trial"] == b.sizes["trial"]:
        if not np.array_equal(a["input_ids"].values, b["input_ids"].values):
            print("trials differ (other prompts): no per-trial comparison")
            return
        la, lb = (
            a["answer_logprobs"].values.astype(float),
            b["answer_logprobs"].values.astype(float),
        )
        d = np.abs(la - lb)
        print(
            "per-trial answer log-probabilities, |bf16 − fp32|: "
            f"median {np.nanmedian(d):.3f}, max {np.nanmax(d):.3f}"
        )
        if "answer_label" in a:
            yes = a["answer_label"].values == "yes"
            pref = [
                np.logaddexp.reduce(x[:, yes], 1) > np.logaddexp.reduce(x[:, ~yes], 1)
                for x in (la, lb)
            ]
            print(
                "yes-vs-no preference flipped on "
                f"{np.mean(pref[0] != pref[1]):.1%} of {len(pref[0])} trials"
            )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("runs", nargs="+")
    p.add_argument(
        "--readout",
        choices=["four_forms", "godet"],
        help="the readout of protocols that take one (the sweep); default: the protocol's own",
    )
    args = p.parse_args()
    todo = pairs(args.runs)
    if not todo:
        raise SystemExit("no protocol is present in both")
    for a, b in todo:
        compare(a, b, args.readout)
    return 0


if __name__ == "__main__":
    script_main(main)
