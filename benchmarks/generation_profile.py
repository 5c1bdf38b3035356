"""Where a batched generation step's time goes, and how the time per generated token falls with
the batch size: the ceiling on batched generation's speed-up over one trial at a time.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_profile.py [--batches 1,16,32,64]

Work: trials of the default ``injected-thoughts`` run (layer 18, strength 8 for SmolLM2: the
runner's batch 40) as the runner builds them, the shared prefix reused, 30 tokens at temperature
1 (``engine.generate``, finished rows dropped). Part 1 profiles one batch of ``--profile-batch``
trials with ``torch.profiler`` and sums the operators' own CPU time into classes: matrix
products, the KV cache's concatenation, attention, sampling's exponential draws, the rest.
Part 2 times batches of each size in ``--batches`` (the best of ``--repeats``, after a
warm-up) and reports milliseconds per generated token: once the matrix products are limited by
arithmetic rather than by reading the weights, a larger batch stops making a token cheaper, and
the speed-up over one trial at a time stops growing.
"""

from __future__ import annotations

import argparse
import time

import torch

from mechintro.cli import script_main

CLASSES = {
    "matrix products": ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm", "aten::linear"),
    "KV cache concatenation": ("aten::cat",),
    "attention": ("aten::_scaled_dot_product_flash_attention_for_cpu",),
    "sampling's exponential draws": ("aten::exponential_",),
}


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--profile-batch", type=int, default=16)
    p.add_argument("--batches", default="1,16,32,64")
    p.add_argument("--new-tokens", type=int, default=30)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    from _protocol import protocol_trials
    from torch.profiler import ProfilerActivity, profile

    import mechintro as mi
    from mechintro import engine

    model = mi.load_model(args.model)
    config, trials, injections, prefix = protocol_trials(model)
    start = 40 * config.batch_size  # the runner's batch 40: one layer and strength

    def batch(size: int):
        rows = [start + i % config.batch_size for i in range(size)]
        return engine.generate(
            model,
            [trials[i].prompt.input_ids for i in rows],
            [injections[i] for i in rows],
            max_new_tokens=args.new_tokens,
            temperature=1.0,
            seed=1,
            prefix=prefix,
        )

    print(
        f"{model.name}, torch {torch.__version__}, {torch.get_num_threads()} thread(s); "
        f"trials {start}-{start + config.batch_size - 1} of the default injected-thoughts run "
        f"(repeated to fill larger batches), {args.new_tokens} tokens at temperature 1"
    )
    batch(args.profile_batch)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        batch(args.profile_batch)
    own = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(own.values())
    print(f"\nbatch {args.profile_batch}: operators' own CPU time {total / 1e6:.2f} s")
    counted = 0.0
    for name, ops in CLASSES.items():
        t = sum(own.get(op, 0.0) for op in ops)
        counted += t
        print(f"  {name:30s} {t / 1e6:7.2f} s  {t / total:6.1%}")
    print(f"  {'everything else':30s} {(total - counted) / 1e6:7.2f} s  {1 - counted / total:6.1%}")

    print("\nbatch | best wall | tokens | ms per generated token")
    for size in [int(b) for b in args.batches.split(",")]:
        batch(size)
        best, tokens = float("inf"), 0
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            result = batch(size)
            best = min(best, time.perf_counter() - t0)
            tokens = int((result.generated >= 0).sum())
        print(f"{size:5d} | {best:8.2f} s | {tokens:6d} | {1000 * best / tokens:8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    script_main(main)
