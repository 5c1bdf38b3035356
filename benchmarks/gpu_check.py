"""The GPU check: the same small runs on the accelerator and on the CPU, compared, with
throughput and store write rate.

Run it whenever a CUDA machine is at hand (the ``device`` tool lends one to some sessions)::

    python benchmarks/gpu_check.py --model /path/to/checkpoint-or-hub-id --out /tmp/gpu-check

It loads the model twice — on ``--device`` in ``--dtype`` (default: bfloat16 on CUDA, float32 on
the CPU) and on the CPU in float32, the reference — computes the concept vectors once on the
reference, and runs with those same vectors on both:

* **detection-logits** with residual streams recorded (logit mode): answer log-probabilities,
  P(yes) share and the stored residuals are compared;
* **injected-thoughts**, greedy (temperature 0), short answers: the generated tokens are
  compared (first token, and the share of tokens equal up to the first difference).

Tolerances are stated, not tuned to pass: bfloat16 keeps 8 bits of mantissa, so a log-probability
moves by up to about 1 (``docs/performance.md`` measured ≤ 1 on SmolLM2 on the CPU), a P(yes)
share by a few points, and a greedy answer may take another path after a near-tie; float32 on
another device differs only by summation order. It prints one JSON line per run (throughput in
trials/s and tokens/s, store MB/s = bytes on disk / run wall time) and a verdict, and exits 1
when a comparison fails its tolerance. ``--device cpu`` runs the whole path without a GPU (the
unit test does this on a tiny checkpoint).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

# (max |Δ log-prob|, max |Δ P(yes) share|, min first-token agreement, max resid median rel. error)
TOLERANCES = {
    "bfloat16": (1.5, 0.10, 0.75, 0.05),
    "float16": (0.5, 0.05, 0.85, 0.01),
    "float32": (1e-3, 1e-3, 1.0, 1e-3),
}


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _run(module, config, out: Path, model, vectors) -> dict:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    module.run(config, out, model=model, vectors=vectors, progress=False)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    import mechintro as mi

    ds = mi.open_run(out)
    n = ds.sizes["trial"]
    tokens = int(ds.attention_mask.values.sum())  # prompt tokens, padding excluded
    if "response_ids" in ds:
        tokens += int((ds.response_ids.values >= 0).sum())
    size = _size(out)
    return {
        "trials": n,
        "seconds": round(seconds, 3),
        "trials_per_s": round(n / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "store_mb": round(size / 1e6, 2),
        "store_mb_per_s": round(size / 1e6 / seconds, 2),
    }


def check(args: argparse.Namespace) -> int:
    import torch

    import mechintro as mi
    from mechintro.errors import MechintroError
    from mechintro.experiments import detection_logits, injected_thoughts
    from mechintro.readouts import yes_no

    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        raise MechintroError("no CUDA device here: run with --device cpu to exercise the path")
    dtype = args.dtype or ("bfloat16" if device == "cuda" else "float32")
    tol_lp, tol_share, tol_first, tol_resid = TOLERANCES[dtype]
    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise MechintroError(f"{out} is not empty: give a new --out")
    out.mkdir(parents=True, exist_ok=True)
    device_map = {"": "cuda:0"} if device == "cuda" else None
    t0 = time.perf_counter()
    model = mi.load_model(args.model, dtype=dtype, device_map=device_map, progress=False)
    load_s = time.perf_counter() - t0
    reference = mi.load_model(args.model, dtype="float32", progress=False)
    concepts = tuple(args.concepts.split(","))
    vectors = mi.concept_vectors(reference, list(concepts), progress=False)
    common = dict(model=args.model, concepts=concepts, layers=("0.5",), batch_size=args.batch_size)
    dl = detection_logits.Config(**common, strengths=(2.0, 8.0), record_resid=True)
    it = injected_thoughts.Config(
        **common, strengths=(4.0,), trials=args.trials, controls=2, temperature=0.0,
        max_new_tokens=args.max_new_tokens,
    )  # fmt: skip
    report = {"model": args.model, "device": device, "dtype": dtype, "load_s": round(load_s, 1)}
    if device == "cuda":
        report["gpu"] = torch.cuda.get_device_name(0)
    failures = []
    for name, module, config in (("detection-logits", detection_logits, dl),
                                 ("injected-thoughts", injected_thoughts, it)):  # fmt: skip
        on_device = _run(module, config, out / f"{name}-{device}.zarr", model, vectors)
        on_cpu = _run(module, config, out / f"{name}-cpu-ref.zarr", reference, vectors)
        a = mi.open_run(out / f"{name}-{device}.zarr")
        b = mi.open_run(out / f"{name}-cpu-ref.zarr")
        row = {"run": name, device: on_device, "cpu_float32": on_cpu}
        if name == "detection-logits":
            lp_a, lp_b = a.answer_logprobs.values, b.answer_logprobs.values
            row["max_abs_dlogprob"] = float(np.abs(lp_a - lp_b).max())
            share_a, share_b = yes_no(a).p_yes_norm.values, yes_no(b).p_yes_norm.values
            row["max_abs_dshare"] = float(np.abs(share_a - share_b).max())
            ra = a.resid.values.astype(np.float32)
            rb = b.resid.values.astype(np.float32)
            scale = np.linalg.norm(rb, axis=-1)
            ok = scale > 0
            rel = np.linalg.norm(ra - rb, axis=-1)[ok] / scale[ok]
            row["resid_median_rel_err"] = float(np.median(rel))
            if row["max_abs_dlogprob"] > tol_lp:
                failures.append(f"{name}: |Δ log-prob| {row['max_abs_dlogprob']:.3g} > {tol_lp}")
            if row["max_abs_dshare"] > tol_share:
                failures.append(
                    f"{name}: |Δ P(yes) share| {row['max_abs_dshare']:.3g} > {tol_share}"
                )
            if row["resid_median_rel_err"] > tol_resid:
                failures.append(
                    f"{name}: residual median relative error {row['resid_median_rel_err']:.3g} "
                    f"> {tol_resid}"
                )
        else:
            ia, ib = a.response_ids.values, b.response_ids.values
            first = float((ia[:, 0] == ib[:, 0]).mean())
            same = []
            for x, y in zip(ia, ib, strict=True):
                differ = np.nonzero(x != y)[0]
                same.append((differ[0] if len(differ) else len(x)) / len(x))
            row["first_token_agreement"] = first
            row["mean_share_equal_until_first_difference"] = float(np.mean(same))
            if first < tol_first:
                failures.append(f"{name}: first-token agreement {first:.2f} < {tol_first}")
        print(json.dumps(row))
    report["verdict"] = "PASS" if not failures else "FAIL: " + "; ".join(failures)
    print(json.dumps(report))
    return 0 if not failures else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", default="smollm2-135m", help="offline name, local path or Hub id"
    )
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dtype", choices=sorted(TOLERANCES), help="default: bfloat16 on cuda")
    parser.add_argument("--concepts", default="Dust,Oceans")
    parser.add_argument("--trials", type=int, default=4, help="injected trials per cell")
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", required=True, help="an empty or new directory for the stores")
    return check(parser.parse_args(argv))


if __name__ == "__main__":
    from mechintro.cli import script_main

    script_main(main)
