"""Research scale on a CPU: what full residual streams cost to compress and store, measured on
the real code path, at SmolLM2's shape and at the widths of Llama-3.1-8B and Llama-3.3-70B.

Four measurements, printed as JSON lines (``docs/performance.md``, "Research scale", quotes them):

1. ``compressors``: real SmolLM2 residual streams (float16, every layer, a detection-logits
   batch's prompts) through each candidate codec — ratio, encode and decode MB/s of raw data,
   one thread (``benchmarks/resid_storage.py --parts codecs`` is the fuller table, on which the
   store's codec, plain zstd 3, was chosen).
2. ``dtypes``: the same residuals stored as float16 / bfloat16 instead of float32 — the
   relative error each introduces (per vector, and in a logit-lens readout at the last layer).
3. ``store``: a logit-mode run with residuals recorded, through ``runner.execute``, on SmolLM2
   and on random-weight Llama models with the 8B and 70B widths (hidden size, heads, KV heads,
   MLP width of the published configs) but only ``--sim-layers`` layers and SmolLM2's tokenizer
   (49,152 entries) so they fit in this machine's memory. Time in the forward
   (``engine.run_batch``) and in the store's write (``runs.write_batch``) is accumulated
   separately; bytes per trial on disk and raw; write MB/s (raw bytes / write seconds, wall
   clock) and, with writes inline, MB per CPU-second (what a core of one's own does, which a
   shared machine's load does not move); the run's peak resident memory. With
   ``--writer-modes both`` each run is repeated on the runner's background writer, side by
   side: the wall-time ratio, the writer's back-pressure (seconds the forward loop waited for
   the batch in flight before handing over the next) and its tail (the last batch's write).
4. ``writer`` (``--parts writer``): the same SmolLM2 run with the runner's background writer
   off and on, alternated in one process; the ratio of the best wall times.

Bytes per trial grow linearly with layers, so the full models' numbers follow from the
simulated ones by ``layers_full / layers_sim``; the script prints that scaling next to each
simulated row. Nothing here times a GPU: the H100 estimate in the docs is on paper.

    python benchmarks/research_scale.py --parts compressors,dtypes,store
    python benchmarks/research_scale.py --all-quick   # the docs' research-scale rows, < 4 min idle

Every run prints the 1/5/15-minute load average at its start and end, and each row its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

SIMS = {
    # name: (hidden, heads, kv heads, intermediate, full layers)  — Llama-3.1-8B / Llama-3.3-70B
    "llama-8b-width": (4096, 32, 8, 14336, 32),
    "llama-70b-width": (8192, 64, 8, 28672, 80),
}


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> bool:
    """Reset the process's peak resident memory (Linux: VmHWM), so each run's peak is its own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _peak() -> int:
    """The peak resident memory since the last :func:`_reset_peak` (else of the process)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _rss()


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def smollm2_residuals(n: int = 16) -> tuple[np.ndarray, object]:
    """float32 residual streams ``(trial, layer, pos, d_model)`` after every block, over ``n``
    detection-logits prompts on SmolLM2 (uninjected; left padding zero-masked out of nothing:
    the prompts share one length or nearly), and the model."""
    import torch

    import mechintro as mi
    from mechintro import engine
    from mechintro.experiments import detection_logits

    model = mi.load_model("smollm2-135m", progress=False)
    vectors = mi.concept_vectors(model, ["Dust", "Oceans"], progress=False)
    config = detection_logits.Config(concepts=("Dust", "Oceans"), layers=("0.5",),
                                     strengths=(1.0, 2.0, 4.0, 8.0))  # fmt: skip
    trials, _ = detection_logits.build_trials(config, model, vectors)
    trials = trials[:n]
    # float32, as the forward computes them (the engine hands residuals back in float16)
    batch = engine._pad(model, [t.prompt.input_ids for t in trials])
    with torch.no_grad():
        out = model.hf(**batch, output_hidden_states=True)
    # after each block but the last (HF returns that one after the final norm)
    resid = torch.stack(out.hidden_states[1:-1], 1)
    return resid.float().numpy(), model


def compressors(resid: np.ndarray) -> list[dict]:
    import numcodecs
    from numcodecs import Blosc, Zstd

    numcodecs.blosc.set_nthreads(1)
    data = np.ascontiguousarray(resid.astype(np.float16))
    raw = data.tobytes()
    codecs = {
        "none": None,
        "blosc-lz4-shuffle": Blosc("lz4", 5, Blosc.SHUFFLE),
        "blosc-lz4-bitshuffle": Blosc("lz4", 5, Blosc.BITSHUFFLE),
        "blosc-zstd1-shuffle": Blosc("zstd", 1, Blosc.SHUFFLE),
        "blosc-zstd3-shuffle (store)": Blosc("zstd", 3, Blosc.SHUFFLE),
        "blosc-zstd3-bitshuffle": Blosc("zstd", 3, Blosc.BITSHUFFLE),
        "zstd3 (no shuffle)": Zstd(3),
    }
    rows = []
    for name, codec in codecs.items():
        if codec is None:
            rows.append({"codec": name, "ratio": 1.0, "encode_MB_s": None, "decode_MB_s": None})
            continue
        t0 = time.perf_counter()
        enc = codec.encode(raw)
        t1 = time.perf_counter()
        dec = codec.decode(enc)
        t2 = time.perf_counter()
        assert bytes(dec) == raw
        rows.append(
            {
                "codec": name,
                "ratio": round(len(raw) / len(enc), 3),
                "encode_MB_s": round(len(raw) / 1e6 / (t1 - t0), 1),
                "decode_MB_s": round(len(raw) / 1e6 / (t2 - t1), 1),
            }
        )
    return rows


def dtypes(resid: np.ndarray, model) -> list[dict]:
    """Relative error of storing float32 residuals as float16 / bfloat16, per vector and in the
    logit lens (final norm + unembedding at the last position of every layer)."""
    import torch

    from mechintro.arch import get_module

    x = torch.from_numpy(resid)
    norm = get_module(model.hf, model.arch.final_norm)
    head = model.hf.get_output_embeddings()
    last = x[:, :, -1]

    def lens(h: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.log_softmax(head(norm(h.float())), -1)

    reference = lens(last)
    top = reference.argmax(-1)
    rows = []
    for name, dt in (("float16", torch.float16), ("bfloat16", torch.bfloat16)):
        stored = x.to(dt).float()
        rel = (stored - x).norm(dim=-1) / x.norm(dim=-1).clamp_min(1e-12)
        got = lens(stored[:, :, -1])
        rows.append(
            {
                "dtype": name,
                "bytes_vs_float32": 0.5,
                "median_rel_err": float(rel.median()),
                "max_rel_err": float(rel.max()),
                "lens_max_abs_dlogprob_top1": float(
                    (got.gather(-1, top[..., None]) - reference.gather(-1, top[..., None]))
                    .abs()
                    .max()
                ),
                "lens_top1_agreement": float((got.argmax(-1) == top).float().mean()),
                "overflow_to_inf": int((~torch.isfinite(stored)).sum()),
            }
        )
    return rows


def _sim_model(name: str, layers: int, tokenizer):
    import torch
    import transformers as tf

    from mechintro.models import from_hf

    hidden, heads, kv, inter, _ = SIMS[name]
    config = tf.LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, num_attention_heads=heads,
        num_key_value_heads=kv, intermediate_size=inter, num_hidden_layers=layers,
        max_position_embeddings=4096, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    hf = tf.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return from_hf(hf, tokenizer, name=f"{name}-{layers}L-random", weights_sha256="random-" + name)


def store(args: argparse.Namespace) -> list[dict]:
    import torch

    import mechintro as mi
    from mechintro import engine, runner, runs
    from mechintro.experiments import detection_logits
    from mechintro.reading import NextToken
    from mechintro.runner import execute

    # Each run twice: writes inline, so the CPU time counted around each write is the write's
    # alone (MB per CPU-second), then on the runner's background writer, where the time the
    # forward loop waits for the previous batch's write is the writer's back-pressure.
    smol = mi.load_model("smollm2-135m", progress=False)
    shapes = [("smollm2-135m", smol, 30)]
    for name in args.sims.split(",") if args.sims else []:
        shapes.append((name, None, SIMS[name][4]))
    sim_positions = dict(x.split("=", 1) for x in args.sim_positions.split("|") if "=" in x)
    writer_modes = [False, True] if args.writer_modes == "both" else [args.writer_modes == "on"]
    rows = []
    for name, model, full_layers in shapes:
        if model is None:
            t_build = time.perf_counter()
            model = _sim_model(name, args.sim_layers, smol.tokenizer)
            print(json.dumps({"built": name, "s": round(time.perf_counter() - t_build, 1),
                              "load_1min": _load()}), flush=True)  # fmt: skip
        variants = sim_positions.get(name, args.positions) if name in SIMS else args.positions
        for positions, background in ((p, w) for p in variants.split(";") for w in writer_modes):
            runner.BACKGROUND_WRITES = background
            rng = np.random.default_rng(0)
            array = rng.standard_normal((2, model.n_layers, model.d_model)).astype(np.float32)
            vectors = mi.vectors_from_array(array, model, ["Dust", "Oceans"], method="random")
            smol_shape = name == "smollm2-135m"
            strengths = args.strengths if smol_shape else args.sim_strengths
            config = detection_logits.Config(
                model=model.name, concepts=("Dust", "Oceans"), layers=("0.5",),
                strengths=tuple(float(s) for s in range(1, strengths + 1)),
                record_resid=True,
                batch_size=args.batch_size if smol_shape else args.sim_batch_size,
                resid_positions=tuple(positions.split(",")),
            )  # fmt: skip
            trials, layers = detection_logits.build_trials(config, model, vectors)
            clock = {"forward": 0.0, "write": 0.0, "forward_cpu": 0.0, "write_cpu": 0.0}
            waits: list[float] = []

            def timed(fn, key, clock=clock):
                def wrapper(*a, **kw):
                    t0, c0 = time.perf_counter(), time.process_time()
                    try:
                        return fn(*a, **kw)
                    finally:
                        clock[key] += time.perf_counter() - t0
                        clock[key + "_cpu"] += time.process_time() - c0

                return wrapper

            def waited(fn, waits=waits):
                def wrapper(self):
                    busy = self.pending is not None
                    t0 = time.perf_counter()
                    try:
                        return fn(self)
                    finally:
                        if busy:  # a write was in flight: the forward loop waited for it
                            waits.append(time.perf_counter() - t0)

                return wrapper

            real_forward, real_write = engine.run_batch, runs.write_batch
            real_wait = runner._Writer.wait
            engine.run_batch = timed(real_forward, "forward")
            runs.write_batch = timed(real_write, "write")
            runner._Writer.wait = waited(real_wait)
            try:
                with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
                    out = Path(tmp) / "r.zarr"
                    load_start = os.getloadavg()[0]
                    _reset_peak()
                    t0 = time.perf_counter()
                    execute(
                        model, trials, out, config=config,
                        readouts=[NextToken(detection_logits.YES_NO)], layers=layers,
                        vectors=vectors, progress=False,
                    )  # fmt: skip
                    wall = time.perf_counter() - t0
                    peak = _peak()
                    load_end = os.getloadavg()[0]
                    on_disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
                    resid_disk = sum(
                        f.stat().st_size for f in (out / "resid").rglob("*") if f.is_file()
                    )
                    opened = runs.open_run(out)
                    width = opened.sizes["pos"]
                    kept = int(opened.resid_stored.values.sum())
            finally:
                engine.run_batch, runs.write_batch = real_forward, real_write
                runner._Writer.wait = real_wait
                runner.BACKGROUND_WRITES = True
            n = len(trials)
            raw_resid = n * model.n_layers * width * model.d_model * 2
            scale = full_layers / model.n_layers
            rows.append(
                {
                    "shape": name,
                    "layers_run": model.n_layers,
                    "d_model": model.d_model,
                    "trials": n,
                    "resid_positions": positions,
                    "writer": "background" if background else "inline",
                    "batches": -(-n // config.batch_size),
                    "prompt_width": width,
                    "positions_stored": kept,
                    "resid_raw_MB_per_trial": round(raw_resid / n / 1e6, 3),
                    "store_MB_per_trial": round(on_disk / n / 1e6, 3),
                    "resid_ratio": round(raw_resid / resid_disk, 3),
                    "forward_s": round(clock["forward"], 2),
                    "write_s": round(clock["write"], 2),
                    "wall_s": round(wall, 2),
                    "write_raw_MB_s": round(raw_resid / 1e6 / clock["write"], 1),
                    # CPU seconds of the whole process during the writes (inline writes: nothing
                    # else runs then), so MB per CPU-second: what a core of one's own would do;
                    # with the background writer the forward runs meanwhile: not the write's own
                    "write_cpu_s": round(clock["write_cpu"], 2) if not background else None,
                    "write_raw_MB_per_cpu_s": (
                        round(raw_resid / 1e6 / clock["write_cpu"], 1) if not background else None
                    ),
                    # back-pressure: seconds the forward loop waited for the batch in flight
                    # before handing over the next one; the tail: the last batch's write, which
                    # nothing can overlap
                    "writer_backpressure_s": round(sum(waits[:-1]), 3) if background else None,
                    "writer_tail_s": round(waits[-1], 3) if background and waits else None,
                    "peak_rss_GB": round(peak / 1e9, 2),
                    "full_layers": full_layers,
                    "store_MB_per_trial_full_depth": round(on_disk / n / 1e6 * scale, 1),
                    "load_1min_start_end": [round(load_start, 2), round(load_end, 2)],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        del model
    # Ratios between rows of this one run (the machine is shared: compare within a run only).
    for r in rows:
        if r["writer"] != "background":
            continue
        inline = next(
            x for x in rows
            if (x["shape"], x["resid_positions"], x["writer"])
            == (r["shape"], r["resid_positions"], "inline")
        ) if "inline" in {x["writer"] for x in rows} else None  # fmt: skip
        if inline is not None:
            print(json.dumps({"writer_effect": {
                "shape": r["shape"], "resid_positions": r["resid_positions"],
                "wall_background_over_inline": round(r["wall_s"] / inline["wall_s"], 3),
                "write_s_inline": inline["write_s"],
                "writer_backpressure_s": r["writer_backpressure_s"],
                "writer_tail_s": r["writer_tail_s"],
            }}), flush=True)  # fmt: skip
    rows_inline = [r for r in rows if r["writer"] == "inline"] or rows
    first = {r["resid_positions"]: r for r in rows_inline if r["shape"] == "smollm2-135m"}
    for r in rows_inline:
        base = next(x for x in rows_inline if x["shape"] == r["shape"])  # its first variant
        ratio = {
            "shape": r["shape"],
            "resid_positions": r["resid_positions"],
            "store_bytes_vs_first_variant": round(
                r["store_MB_per_trial"] / base["store_MB_per_trial"], 4
            ),
            "write_s_per_trial_vs_first_variant": round(
                (r["write_s"] / r["trials"]) / (base["write_s"] / base["trials"]), 3
            ),
        }
        smol_row = first.get(r["resid_positions"])
        if smol_row is not None:
            ratio["write_raw_MB_s_vs_smollm2"] = round(
                r["write_raw_MB_s"] / smol_row["write_raw_MB_s"], 3
            )
            ratio["write_share_of_wall"] = round(r["write_s"] / r["wall_s"], 3)
            if r["write_raw_MB_per_cpu_s"] and smol_row["write_raw_MB_per_cpu_s"]:
                ratio["write_MB_per_cpu_s_vs_smollm2"] = round(
                    r["write_raw_MB_per_cpu_s"] / smol_row["write_raw_MB_per_cpu_s"], 3
                )
        print(json.dumps({"ratios": ratio}), flush=True)
    return rows


def writer(args: argparse.Namespace) -> list[dict]:
    """The background writer's effect: the same SmolLM2 run (logit mode, residuals recorded)
    with writes inline and in the background, alternated, in one process."""
    import mechintro as mi
    from mechintro import runner
    from mechintro.experiments import detection_logits

    model = mi.load_model("smollm2-135m", progress=False)
    vectors = mi.concept_vectors(model, ["Dust", "Oceans"], progress=False)
    config = detection_logits.Config(
        concepts=("Dust", "Oceans"), layers=("0.5",), record_resid=True,
        strengths=tuple(float(s) for s in range(1, args.strengths + 1)),
        batch_size=args.batch_size,
    )  # fmt: skip
    walls: dict[bool, list[float]] = {False: [], True: []}
    load_start = _load()
    for rep in range(2):
        for background in (False, True) if rep == 0 else (True, False):
            runner.BACKGROUND_WRITES = background
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                detection_logits.run(config, Path(tmp) / "r.zarr", model=model, vectors=vectors,
                                     progress=False)  # fmt: skip
                walls[background].append(time.perf_counter() - t0)
    runner.BACKGROUND_WRITES = True
    row = {
        "inline_s": [round(w, 2) for w in walls[False]],
        "background_s": [round(w, 2) for w in walls[True]],
        "background_over_inline": round(min(walls[True]) / min(walls[False]), 3),
        "trials": 3 * args.strengths,
        "load_1min_start_end": [load_start, _load()],
    }
    print(json.dumps(row), flush=True)
    return [row]


def estimate(args: argparse.Namespace) -> list[dict]:
    """On paper: a 1,000-trial Llama-3.1-8B injected-thoughts run with residuals recorded, on one
    H100, under the defaults (every layer, every prompt position, float16) and under the
    recommended settings (``--resid-layers 0.5,0.67 --resid-positions window``). Nothing here is
    timed: the inputs are the assumptions below and the rates and ratios measured by the other
    parts (passed as arguments; their defaults are the numbers docs/performance.md quotes).

    GPU (assumed, not measured: no GPU was lent): the prompt pass at 40 % of the H100's 989
    TFLOP/s dense bf16 (2 x 8.0 GFLOP per token); decoding memory-bound, 16 GB of bf16 weights
    read per step at 60 % of 3.35 TB/s. The store writes on one background thread, overlapped
    with the next batch's forward (the runner's writer), so a batch costs max(forward, write);
    the write takes the bytes handed to the writer (stored layers x the whole prompt: positions
    outside ``resid_positions`` are zeros that are still digested and compressed) at the write
    path's rate measured by ``--parts store`` for that ``resid_positions`` (MB/s of raw
    bytes)."""
    layers, d_model, prompt, new, trials, batch = 32, 4096, args.prompt_tokens, 100, 1000, 16
    batches = -(-trials // batch)
    prompt_s = batch * prompt * 2 * 8.0e9 / (0.4 * 989e12)
    decode_s = new * 16e9 / (0.6 * 3.35e12)
    forward_s = prompt_s + decode_s
    settings = {
        "defaults (all layers, all positions, float16)": (
            layers, prompt, args.ratio_all, args.write_mb_s_all,
        ),
        "recommended (--resid-layers 0.5,0.67 --resid-positions window)": (
            2, round(prompt * args.window_share), args.ratio_window, args.write_mb_s_window,
        ),
    }  # fmt: skip
    rows = []
    for name, (n_layers, positions, ratio, rate) in settings.items():
        raw = n_layers * positions * d_model * 2  # stored bytes per trial, float16
        handed = n_layers * prompt * d_model * 2  # what the writer digests and compresses
        write_s = batch * handed / 1e6 / rate
        row = {
            "settings": name,
            "raw_MB_per_trial": round(raw / 1e6, 2),
            "raw_GB_run": round(trials * raw / 1e9, 1),
            "on_disk_GB_run": round(trials * raw / ratio / 1e9, 1),
            "forward_s_per_batch": round(forward_s, 2),
            "write_s_per_batch": round(write_s, 2),
            "run_minutes": round(batches * max(forward_s, write_s) / 60, 1),
            "gpu_only_minutes": round(batches * forward_s / 60, 1),
            "assumed": {
                "write_MB_s": rate, "compression_ratio_of_stored_bytes": ratio,
                "prompt_tokens": prompt, "window_share": args.window_share,
            },
        }  # fmt: skip
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def estimate_inputs(rows: list[dict], args: argparse.Namespace, rate: str) -> None:
    """Fill the estimate's inputs from this run's ``store`` rows (inline writes): the write
    rates at 8B width (the target's; SmolLM2's where no 8B-width row), in MB per CPU-second
    (``rate="cpu"``) or wall-clock MB/s (``"wall"``); the compression ratios and the window's
    share of the prompt from SmolLM2 (a trained model's residuals: a random-weight model's do
    not repeat as a trained one's do)."""
    inline = [r for r in rows if r["writer"] == "inline"]

    def row(shape: str, positions: str) -> dict | None:
        return next(
            (r for r in inline if (r["shape"], r["resid_positions"]) == (shape, positions)), None
        )

    key = "write_raw_MB_per_cpu_s" if rate == "cpu" else "write_raw_MB_s"
    for positions, attr in (("all", "write_mb_s_all"), ("window", "write_mb_s_window")):
        source = row("llama-8b-width", positions) or row("smollm2-135m", positions)
        if source is not None:
            setattr(args, attr, source[key])
    smol_all, smol_window = row("smollm2-135m", "all"), row("smollm2-135m", "window")
    if smol_all is not None:
        args.ratio_all = smol_all["resid_ratio"]
    if smol_window is not None:
        share = smol_window["positions_stored"] / smol_window["prompt_width"]
        args.window_share = round(share, 3)
        args.ratio_window = round(smol_window["resid_ratio"] * share, 2)


QUICK = {
    # --all-quick: every part of the research-scale section in one command (< 4 min idle)
    "parts": "store,writer,estimate",
    "sims": "llama-8b-width,llama-70b-width",
    "sim_layers": 1,
    "strengths": 8,  # SmolLM2: 24 trials, batch 8
    "sim_strengths": 2,  # the simulations: 6 trials
    "sim_batch_size": 3,  # two batches, so the writer can hold one back
    "positions": "all;window",
    "sim_positions": "llama-70b-width=all",
    "writer_modes": "both",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="compressors,dtypes,store")
    parser.add_argument("--sims", default="llama-8b-width,llama-70b-width")
    parser.add_argument("--sim-layers", type=int, default=2)
    parser.add_argument(
        "--strengths", type=int, default=16, help="SmolLM2's strengths (3 trials each; sims: 2)"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--positions",
        default="all",
        help="resid_positions variants, ';'-separated (e.g. all;window)",
    )
    parser.add_argument("--sim-strengths", type=int, default=2, help="the sims' strengths")
    parser.add_argument("--sim-batch-size", type=int, default=8)
    parser.add_argument(
        "--sim-positions",
        default="",
        help="per-simulation positions variants, e.g. 'llama-70b-width=all' ('|'-separated)",
    )
    parser.add_argument(
        "--writer-modes",
        choices=("off", "on", "both"),
        default="off",
        help="store: writes inline (off: MB per CPU-second), on the background writer (on: "
        "its back-pressure), or both, side by side",
    )
    parser.add_argument(
        "--all-quick",
        action="store_true",
        help="the whole research-scale section in one command (< 4 min on an idle 2-core "
        "machine): " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in QUICK.items()),
    )
    est = parser.add_argument_group("estimate (measured inputs; see docs/performance.md)")
    est.add_argument("--write-mb-s-all", type=float, default=10.0)
    est.add_argument("--write-mb-s-window", type=float, default=10.0)
    est.add_argument("--ratio-all", type=float, default=1.0)
    est.add_argument("--ratio-window", type=float, default=1.0)
    est.add_argument("--window-share", type=float, default=1.0)
    est.add_argument("--prompt-tokens", type=int, default=150)
    args = parser.parse_args()
    if args.all_quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    import platform

    print(json.dumps({"start_load_1_5_15min": [round(x, 2) for x in os.getloadavg()],
                      "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
                      "args": vars(args)}), flush=True)  # fmt: skip
    t_start = time.perf_counter()
    parts = args.parts.split(",")
    rows: list[dict] = []
    if "compressors" in parts or "dtypes" in parts:
        resid, model = smollm2_residuals()
        print(f"SmolLM2 residuals: {resid.shape}, {resid.nbytes / 1e6:.0f} MB float32")
        if "compressors" in parts:
            for row in compressors(resid):
                print(json.dumps(row), flush=True)
        if "dtypes" in parts:
            for row in dtypes(resid, model):
                print(json.dumps(row), flush=True)
    if "store" in parts:
        rows = store(args)
    if "writer" in parts:
        writer(args)
    if "estimate" in parts:
        if rows:  # from this run's measurements, per CPU-second and at the wall-clock rates
            for rate in ("cpu", "wall"):
                estimate_inputs(rows, args, rate)
                print(json.dumps({"estimate_from_this_run": f"write rates per {rate}"}))
                estimate(args)
        else:
            estimate(args)
    print(json.dumps({"total_wall_s": round(time.perf_counter() - t_start, 1),
                      "end_load_1_5_15min": [round(x, 2) for x in os.getloadavg()]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    from mechintro.cli import script_main

    script_main(main)
