"""Does dropping finished rows change any answer? ``engine.generate`` with ``prune=False`` (every
row kept to the end, nnsight's trace) and ``prune=True`` (the default for a local model) on whole
batches of the default ``injected-thoughts`` run, with the same seeds, at this machine's thread
count (set ``OMP_NUM_THREADS`` to choose it):

    python benchmarks/generation_equality.py [--model smollm2-135m] [--batches 0,40] \\
        [--temperatures 1,0]

Prints, per batch and temperature, how many rows gave identical tokens and the answers'
lengths. A row's logits can move by float rounding when the batch shrinks (docs/performance.md,
"Dropping finished rows"), so this counts what that does to real answers.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from mechintro.cli import script_main


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--batches", default="0,40", help="batch indices of the default run")
    p.add_argument("--temperatures", default="1,0", help="comma-separated (0: greedy)")
    p.add_argument("--batch", type=int, default=16)
    args = p.parse_args()

    from _protocol import protocol_trials

    import mechintro as mi
    from mechintro import engine
    from mechintro.runner import batch_seed

    model = mi.load_model(args.model)
    config, trials, injections, prefix = protocol_trials(model)
    print(f"{model.name}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for b in [int(x) for x in args.batches.split(",")]:
        rows = list(range(b * args.batch, min((b + 1) * args.batch, len(trials))))
        for temperature in [float(x) for x in args.temperatures.split(",")]:
            out, wall = {}, {}
            for prune in (False, True):
                start = time.perf_counter()
                out[prune] = engine.generate(
                    model,
                    [trials[i].prompt.input_ids for i in rows],
                    [injections[i] for i in rows],
                    max_new_tokens=config.max_new_tokens,
                    temperature=temperature,
                    seed=batch_seed(config.seed, b),
                    prefix=prefix,
                    prune=prune,
                ).generated
                wall[prune] = time.perf_counter() - start
            same = sum(torch.equal(x, y) for x, y in zip(out[False], out[True], strict=True))
            print(
                f"batch {b}, temperature {temperature:g}: identical rows {same}/{len(rows)}; "
                f"lengths {(out[True] >= 0).sum(1).tolist()}; "
                f"{wall[False]:.1f} s kept, {wall[True]:.1f} s pruned"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    script_main(main)
